"""The loop whose steps are split by units across threads (rnncli/core/_numba_split.py),
for batches too small to split by rows: each thread's claims of its items, a scan run
that way, and the gates it writes part by part put in place (the engine picks it:
rnncli/core/planning.py; fast.Packed packs the weights part by part)."""

from __future__ import annotations

import functools
import os

import numpy as np

from . import engine, fast
from .fast import check_widths, code, contiguous, input_chunk


@functools.cache  # imported once: an import in a function took 1-4 us of each call
def _kernels():
    from ._numba_split import KERNELS

    return KERNELS


def split_steps(cell, packed, x, x0, hbuf, c, outs, t0, counters, home, limit, pending=-1,
                ahead=None, terms=None):
    """Claim and run items of the split loop (rnncli/core/_numba_split.py) for steps
    t0 .. t0 + T (``x`` (n, T', D), C-contiguous, holding step t0 at x0; ``outs`` (h[, c])
    (T, n, H) those steps) until every item of the steps before ``limit`` is claimed,
    part ``home`` first: returns -1, or an item to pass back as ``pending`` after
    yielding the core. ``terms``: where the gates go, part by part (``part_terms``), or
    None."""
    if not 0 <= home < packed.parts:  # the kernel's counters are read unchecked
        raise ValueError(f"part {home} of {packed.parts}")
    dtype = cell.dtype
    x = contiguous(x, dtype)
    check_widths(x, (hbuf[0],), packed, cell.units)
    kind = cell.compiled().kind
    ract = getattr(cell, "recurrent_activation", "linear")
    outs = (outs[0], outs[-1])  # the second written by an LSTM only
    kernel = _kernels()[kind, dtype == np.float32, "gates" if terms is not None else False]
    if terms is None:
        terms = (np.empty((0, packed.parts, 0, 0), dtype),) * 6
    return kernel(
        x, t0 - x0, packed.kernel, packed.bias, packed.recurrent_kernel,
        packed.recurrent_bias, hbuf, c, outs, t0, counters, packed.parts, home, limit, pending,
        np.empty((0, 0, 0, 0), dtype) if ahead is None else ahead, terms,
        code(cell.activation, cell.keras_major), code(ract, cell.keras_major))


def split_ahead(weights, B):
    """Where the split loop keeps x·W + b of AHEAD steps computed at once, part by part
    (parts, B, steps, width), as the one-thread loop does for a row or two
    (rnncli/core/_numba_panels.py: AHEAD_ROWS): computed a step at a time, each step
    would read its part of W again beside U. None for more rows."""
    from ._numba_panels import AHEAD, AHEAD_ROWS, ROWS

    parts, count, _, nr = weights.recurrent_kernel.shape
    if B > AHEAD_ROWS:
        return None
    return np.empty((parts, B, AHEAD + ROWS, count * nr), weights.bias.dtype)


def part_terms(cell, names, T, B, parts):
    """Where the split loop writes a "gates" trace (the terms ``names``: fast.GATE_TERMS),
    part by part: the row step's six terms (fast.TERMS), each (T, parts, B, width /
    parts) for those named, empty for the others."""
    dtype = cell.dtype
    return tuple(np.empty((T, parts, B, cell.term_width(n) // parts), dtype) if n in names
                 else np.empty((0, parts, 0, 0), dtype)
                 for n in fast.TERMS[cell.compiled().kind])


def put_in_place(term, by_part, H):
    """A term of the gates' width (T, B, blocks·H) from its parts' columns (T, parts, B,
    blocks·H/parts: each part its own units of every block, ``part_terms``)."""
    T, parts, B, width = by_part.shape
    blocks = width * parts // H
    np.copyto(term.reshape(T, B, blocks, parts, H // parts),
              by_part.reshape(T, parts, B, blocks, H // parts).transpose(0, 2, 3, 1, 4))


def claim_all(job, items) -> bool:
    """One thread's claims of a split loop's items: ``items(pending)`` (a split kernel's
    call) until it has claimed every item (-1), yielding the core whenever it hands one
    back after a long wait (another thread holds an item of the step before); False if
    the job stopped first."""
    pending = -1
    while not job.stop.is_set():
        pending = items(pending)
        if pending < 0:
            return True
        os.sched_yield()
    return False


def split_scan(job, parts):
    """A scan's compiled loop with each step's units split into ``parts`` items that
    ``parts`` threads claim (rnncli/core/_numba_split.py), every row at once; ``job``:
    the scan's rnncli.core.engine._Rows (its input, states, sequences, stop and threads;
    its terms: none, or a "gates" trace's). A "gates" trace is written part by part a
    chunk of steps at a time, and each chunk's put in place once all its items are done
    (the threads meet between chunks, a few tens of us each, for a scratch of one chunk
    rather than of the whole trace)."""
    cell, seqs, x = job.cell, job.seqs, job.x
    B, T, _ = x.shape
    H, dtype = cell.units, cell.dtype
    weights = fast.packed(cell, parts)
    hbuf = np.empty((2, B, H), dtype)
    hbuf[0] = job.states[0]
    c = np.array(job.states[1], dtype) if len(job.states) > 1 else hbuf[1]
    counters = np.zeros(1 + parts, np.int64)
    ahead = split_ahead(weights, B)
    C = engine.chunk_steps(B, H, dtype.itemsize, T, 4 * engine.CHUNK_BYTES)
    scratch = {} if seqs else {s: np.empty((C, B, H), dtype) for s in cell.state_names}

    def run(chunks, by_part=None):
        """The threads' claims over ``chunks`` [(t0, t1)], the gates into ``by_part``."""
        def participant(home, _last):
            for t0, t1 in chunks:
                outs = tuple(seqs[s][t0:t1] if seqs else scratch[s][:t1 - t0]
                             for s in cell.state_names)
                xs, x0 = input_chunk(x, t0, t1, dtype)
                terms = None if by_part is None else \
                    tuple(a[:t1 - t0] if len(a) else a for a in by_part)
                items = functools.partial(split_steps, cell, weights, xs, x0, hbuf, c, outs,
                                          t0, counters, home, t1, ahead=ahead, terms=terms)
                if not claim_all(job, items):
                    return

        job.run_blocks(list(range(parts + 1)), parts, participant)

    chunks = [(t0, min(T, t0 + C)) for t0 in range(0, T, C)]
    if not job.terms:
        run(chunks)
    else:
        by_part = part_terms(cell, job.terms, C, B, parts)
        for t0, t1 in chunks:
            run([(t0, t1)], by_part)
            for name, term in zip(fast.TERMS[cell.compiled().kind], by_part):
                if name in job.terms:
                    put_in_place(job.terms[name][t0:t1], term[:t1 - t0], H)
    job.states[0][...] = hbuf[T % 2]
    if len(job.states) > 1:
        job.states[1][...] = c
