"""The time loop: runs any cell (rnncli/core/cell.py) over a sequence.

Per step a cell computes ``x_t·kernel + bias`` (no recurrence in it) and the rest. The
engine computes the first part for a *chunk* of steps at once, one matrix product just
ahead of the steps that use it (about 1 MiB, in buffers reused from chunk to chunk: the
input is never copied whole, and a caller that needs only the final states keeps
O(batch x units) memory), then calls the cell's step for each step of the chunk.
Arrays are time-major (T, B, H) inside, so every step reads and writes contiguous rows.

A big batch is cut into row blocks that threads claim one after another, each thread
with a single-threaded BLAS (rnncli/core/blas.py): rows of a batch never interact, so
a block runs its whole sequence without waiting for the others, the elementwise work
runs on every core too, and a thread whose core is busy with something else simply
claims fewer blocks.

Where a cell has a compiled loop (rnncli/core/fast.py) and it beats numpy's
(``fast.worth_it``), that loop runs instead, over the same row blocks; a batch too small
to split by rows has each step's units split across the threads (``split.split_scan``).
Which loop, threads and blocks a scan gets is rnncli/core/planning.py's choice.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from . import blas, fast
from .planning import (  # noqa: F401 (API)
    BLOCKS_PER_THREAD,
    DEFAULT,
    MIN_ROWS,
    SPLIT_MIN_VALUES,
    Engine,
    Plan,
    as_engine,
    block_edges,
    compiled_rows,
    compiled_threads,
    plan,
    split_parts,
)
from .workers import POOL, Job, available_cores, restore  # noqa: F401 (API)

CHUNK_BYTES = 2**20


@dataclass
class Scan:
    """What a scan computed, arrays (B, T, ...) in processing order.

    ``sequences``: the output ``h`` at every step (Keras' output: the previous output, or
    zeros, at masked steps) and every other state at every step (LSTM ``c``), when kept;
    ``states``: the final states; ``terms``: the trace (``xw``, the cell's terms, ``h``;
    a rnncli.core.result.Terms, computed when first read where the compiled loop ran)."""

    sequences: dict
    states: tuple
    terms: Mapping | None


class _Projection:
    """``x·W [+ b]`` for chunks of up to ``c`` steps of ``n`` rows, in reused buffers.

    With ``bias``, it rides in the same product as a column of ones in x and a row in
    the kernel (BLAS adds it last: Keras' ``x·W + b``), saving a pass over the array.
    """

    def __init__(self, n, c, kernel, bias=None):
        D, P = kernel.shape
        self.kernel = kernel if bias is None else \
            np.concatenate([kernel, bias.reshape(1, P)], axis=0)
        self.xa = np.empty((c, n, self.kernel.shape[0]), kernel.dtype)
        if bias is not None:
            self.xa[..., D] = 1
        self.res = np.empty((c * n, P), kernel.dtype)

    def __call__(self, x):
        """x (n, c', D), c' <= c -> (c', n, P), a view of the buffer."""
        n, c, D = x.shape
        xa = self.xa[:c]
        xa[..., :D] = x.transpose(1, 0, 2)
        res = np.matmul(xa.reshape(c * n, -1), self.kernel, out=self.res[:c * n])
        return res.reshape(c, n, -1)


def writer(fn):
    """``fn`` as ``write(z, out)`` for a step loop: numpy ufuncs write in place, sigmoid
    as four in-place ufuncs (the same numbers as 1 / (1 + exp(-z)), no temporaries; exp's
    overflow to inf is harmless, 1 / inf is 0: the step loops ignore overflow), other
    activations copy."""
    from . import activations

    if fn is activations.sigmoid:
        negative, exp, add, reciprocal = np.negative, np.exp, np.add, np.reciprocal

        def sigmoid(z, out):
            negative(z, out=out)
            exp(out, out=out)
            add(out, 1, out=out)
            return reciprocal(out, out=out)

        return sigmoid
    return activations.writer(fn)


def matmul_rows(x, w):
    """``x @ w``, where a single row takes BLAS's matrix-matrix path like every row of a
    batch (the matrix-vector one sums in another order)."""
    if x.ndim == 2 and x.shape[0] == 1:
        return (np.repeat(x, 2, axis=0) @ w)[:1]
    return x @ w


def chunk_steps(B, width, itemsize, T, chunk_bytes=CHUNK_BYTES):
    return int(max(1, min(T, chunk_bytes // max(1, B * width * itemsize))))


def scan(cell, x, states=None, mask=None, zero_output_for_mask=False, trace=False,
         keep=True, engine=None) -> Scan:
    """Run ``cell`` over x (B, T, D), in the order given, from ``states`` (a tuple of
    (B, H) arrays in ``cell.state_names`` order; zeros when None).

    mask: (B, T) bool or None; a masked step carries every state. ``keep=False`` (and no
    trace) keeps no sequence: O(batch x units) memory. ``trace=True``: where the compiled
    loop runs, the terms are computed when first read (rnncli/core/replay.py);
    ``trace="full"``: every term at once, written by the loop itself (or computed right
    after a scan split by units, which writes none). ``trace="gates"``: where the
    compiled loop runs an LSTM or GRU, only the terms their backward pass reads
    (rnncli/core/fast.py, GATE_TERMS: 6 numbers a unit and step instead of 21 for an
    LSTM); the whole trace elsewhere.
    """
    B, T, _ = x.shape
    H, dtype = cell.units, cell.dtype
    # any other value is True or False (1, numpy's True, "yes"): the loop writes no terms
    # where trace is neither "full" nor "gates" (those are computed after a compiled scan)
    trace = trace if trace in ("full", "gates") else bool(trace)
    keep = keep or trace
    states = cell.initial_states(B) if states is None else \
        tuple(np.array(s, dtype=dtype, copy=True) for s in states)
    rows = B
    how = plan(cell, B, T, mask, engine, trace)
    if B == 1 and T > 0 and how.compiled is None:
        # BLAS may take one row through its matrix-vector product, which sums in another
        # order than a batch's matrix-matrix product: two copies keep a sample's numbers
        # what they are in a batch (at a few percent of a step's time).
        rows = 2
        x = np.broadcast_to(x, (2, T, x.shape[2]))
        states = tuple(np.repeat(s, 2, axis=0) for s in states)
        mask = None if mask is None else np.broadcast_to(mask, (2, T))
    # A compiled scan's trace is computed when read (rnncli/core/replay.py); "full" has
    # the loop write every term as it goes (cheaper when all are read), but where the scan
    # splits each step's units, which writes none, computes them right after; "gates":
    # the loop writes what an LSTM's or GRU's backward pass reads.
    derived = T > 0 and how.compiled is not None and (trace is True or
                                                      (trace == "full" and how.split > 0))
    if trace == "gates":
        kind = getattr(how.compiled, "kind", None)
        names = fast.GATE_TERMS[kind] if kind in fast.GATE_TERMS else ("xw", *cell.terms)
    else:
        names = ("xw", *cell.terms) if trace and not derived else ()
    initial = tuple(s.copy() for s in states) if derived else None  # the scan writes states
    widths = [cell.term_width(n) for n in names]
    kept = cell.state_names if keep else ()
    # One block for all of them: numpy asks for huge pages from 4 MiB, so first touches
    # fault far less often (a (64, 100, 32, 128) float32 trace: 11.8 -> 4.0 ms here).
    sizes = [w for w in widths] + [H] * len(kept)
    block = np.empty(T * rows * sum(sizes), dtype)
    views, offset = [], 0
    for w in sizes:
        views.append(block[offset:offset + T * rows * w].reshape(T, rows, w))
        offset += T * rows * w
    terms = dict(zip(names, views[:len(names)])) if names else None
    seqs = dict(zip(kept, views[len(names):]))
    if T:
        mask_t = None if mask is None else \
            np.ascontiguousarray(np.asarray(mask, bool).T)[..., None]
        job = _Rows(cell, x, states, mask_t, zero_output_for_mask, seqs, terms, how.compiled,
                    bool(how.split))
        if how.split:
            from .split import split_scan

            split_scan(job, how.split)
        else:
            job.run_blocks(how.edges, how.threads)
        states = job.states

    def batch_major(a):
        return a[:, :B].transpose(1, 0, 2)

    out_terms = None
    if trace:
        from .result import Terms

        given = {k: batch_major(v) for k, v in (terms or {}).items()}
        given.update({k: batch_major(v) for k, v in seqs.items()})  # h, and LSTM's c
        derive = None
        if derived:
            from . import replay

            args = (cell, how.compiled, x, initial, seqs,
                    None if mask_t is None else mask_t[..., 0], engine)
            if trace == "full":  # now, from the scan's own arrays
                given.update(replay.scan_terms(*args))
            else:
                derive = replay.deferred(*args)
        out_terms = Terms((*(("xw", *cell.terms) if derived else names), *kept), given, derive)
    return Scan({k: batch_major(v) for k, v in seqs.items()},
                tuple(s[:B] for s in states), out_terms)


class _Rows:
    """The numpy loop over row blocks; writes the shared time-major arrays' rows of each
    block and the final states ``self.states[i][b0:b1]``. Subclasses (the backward loop,
    the Jacobian norms) reuse ``run_blocks`` with their own ``run``."""

    compiled = None  # the cell's compiled loop, run by run_compiled instead of run

    def __init__(self, cell, x, states, mask_t, zero_output_for_mask, seqs, terms,
                 compiled=None, split=False):
        self.cell, self.x, self.states, self.mask_t = cell, x, states, mask_t
        self.zero_out, self.seqs, self.terms = zero_output_for_mask, seqs, terms
        self.compiled = compiled
        self.packed = None
        if compiled is not None and not split:
            self.packed = fast.packed(cell)  # kept with the cell

    @functools.cached_property
    def stop(self):
        """Set when a block fails or on Ctrl-C: the others stop at their next step (made
        when first asked for: a scan of one block never needs it)."""
        return threading.Event()

    def stopping(self) -> bool:
        """Whether ``stop`` is set, without making it to ask (a scan of one block of a
        few steps spent 2.4 of its 35 us making an Event it never set)."""
        stop = self.__dict__.get("stop")
        return stop is not None and stop.is_set()

    def run_blocks(self, edges, threads, step_loop=None, spin=None):
        """Run the row blocks ``edges``, claimed one after another by ``threads`` threads,
        numpy's with the caller's floating-point error handling in every thread (overflow
        ignored: it shows in the numbers as inf, and sigmoid's exp overflows harmlessly;
        the compiled loop's arithmetic reports nothing).
        BLAS runs single-threaded throughout (except under the scan's own compiled loop,
        which calls none: setting it took a few us of scans of 30): a multi-threaded
        product every step makes every step wait for its slowest thread, which on a busy
        machine is one whose core was taken (measured: benchmarks/forward.py --grid
        --loaded). ``spin`` (default: where the cell's compiled loop runs): the calling
        thread waits for the helpers' last blocks spinning, for up to about 0.1 ms, before
        it blocks (rnncli/core/workers.py, SPIN_LOADS); and while another task is
        runnable, the calling thread is pinned to its core for the call and the helpers
        keep to the others (workers.keep_apart), its own affinity given back after."""
        compiled = step_loop is None and self.compiled is not None
        step_loop = step_loop or (self.run if self.compiled is None else self.run_compiled)
        settings = contextlib.nullcontext if compiled else blas.single_threaded
        if compiled:  # numba's arithmetic raises nothing and warns of nothing
            run = step_loop
        else:
            fp_errors = {**np.geterr(), "over": "ignore"}

            def run(b0, b1):
                with np.errstate(**fp_errors):
                    step_loop(b0, b1)

        if threads == 1 or len(edges) == 2:
            with settings():
                for b0, b1 in zip(edges, edges[1:]):
                    run(b0, b1)
            return

        spin = self.compiled is not None if spin is None else spin
        job = Job(run, edges, self.stop, fast.spin_wait() if spin else None)
        with settings():
            # the compiled loops' threads keep to different cores while another task is
            # runnable (workers.keep_apart; numpy's blocks were not measured so)
            mask = POOL.submit(job, threads - 1, apart=spin)
            try:
                job.work()
                job.wait()
            except BaseException:  # Ctrl-C: the others stop at their next step
                self.stop.set()
                job.wait(interruptible=False)
                raise
            finally:
                restore(mask)
        if job.errors:
            raise job.errors[0]

    def chunk_bytes(self, n, whole):
        """A block's share of ``whole`` bytes of x·W a chunk: blocks run side by side, and
        together they keep what one block of every row would."""
        return max(2**16, whole * n // max(1, len(self.x)))

    def run(self, b0, b1):
        cell, x, mask_t = self.cell, self.x[b0:b1], self.mask_t
        n, T, _ = x.shape
        kernel, bias = cell.input_projection()
        P = kernel.shape[1]
        trace = self.terms is not None
        C = chunk_steps(n, P, kernel.dtype.itemsize, T, self.chunk_bytes(n, CHUNK_BYTES))
        project = _Projection(n, C, kernel, None if trace else bias)
        xpb = np.empty((C, n, P), kernel.dtype) if trace and bias is not None else None
        step = cell.stepper(n)
        S = len(cell.state_names)
        states = tuple(s[b0:b1] for s in self.states)
        seqs = [self.seqs.get(name) for name in cell.state_names]
        rings = [None if s is not None else np.empty((2, n, cell.units), cell.dtype)
                 for s in seqs]
        if mask_t is not None:  # states in buffers of their own; the step writes beside them
            states = tuple(s.copy() for s in states)
            fresh = tuple(np.empty_like(s) for s in states)
            prev_out = np.zeros_like(states[0])
        stopped = self.stop.is_set
        for t0 in range(0, T, C):
            c = min(C, T - t0)
            xp = project(x[:, t0:t0 + c])
            if trace:
                self.terms["xw"][t0:t0 + c, b0:b1] = xp
                if bias is not None:
                    xp = np.add(xp, bias, out=xpb[:c])
                chunk_terms = {k: v[t0:t0 + c, b0:b1] for k, v in self.terms.items()
                               if k != "xw"}
            for k in range(c):
                if stopped():  # another block failed, or Ctrl-C
                    return
                t = t0 + k
                out = tuple(r[k % 2] if s is None else s[t, b0:b1] for s, r in zip(seqs, rings))
                rows = None if not trace else {name: v[k] for name, v in chunk_terms.items()}
                if mask_t is None:
                    step(xp[k], states, out, rows)
                    states = out
                    continue
                # A masked step keeps every state; its output is the previous output
                # (zeros with zero_output_for_mask), as Keras' rnn() does.
                step(xp[k], states, fresh, rows)
                m = mask_t[t, b0:b1]
                for i in range(S):
                    np.copyto(states[i], fresh[i], where=m)
                    if i:
                        out[i][...] = states[i]
                out[0][...] = np.where(m, fresh[0], 0 if self.zero_out else prev_out)
                prev_out = out[0]
        for i in range(S):
            self.states[i][b0:b1] = states[i]

    def run_compiled(self, b0, b1):
        """The cell's compiled loop (rnncli/core/fast.py) over rows b0..b1, in chunks of
        steps (they bound the scratch outputs where sequences are not kept, and how long a
        Ctrl-C waits; each call costs tens of us, so they are long: 8 rows x 64 units of
        an LSTM, 64 steps a chunk took a fifth of the time); it computes x·W + b itself
        and writes the shared arrays' rows."""
        cell, terms, seqs = self.cell, self.terms, self.seqs
        x = self.x[b0:b1]
        n, T, _ = x.shape
        P = cell.input_projection()[0].shape[1]
        C = chunk_steps(n, P, cell.dtype.itemsize, T,
                        self.chunk_bytes(n, (16 if seqs else 4) * CHUNK_BYTES))
        scratch = {} if seqs else \
            {s: np.empty((C, n, cell.units), cell.dtype) for s in cell.state_names}
        row0 = b0 if seqs else 0
        states = tuple(s[b0:b1] for s in self.states)
        mask_t = self.mask_t
        prev = None if mask_t is None else np.zeros((n, cell.units), cell.dtype)
        for t0 in range(0, T, C):
            if self.stopping():
                return
            t1 = min(T, t0 + C)
            out = {s: (seqs[s][t0:t1] if seqs else scratch[s][:t1 - t0])
                   for s in cell.state_names}
            part = None if terms is None else \
                {k: v[t0:t1] for k, v in terms.items() if k != "xw"}
            xw = None if terms is None or "xw" not in terms else terms["xw"][t0:t1]
            mask = None if mask_t is None else mask_t[t0:t1, b0:b1, 0]
            xs, x0 = fast.input_chunk(x, t0, t1, cell.dtype)
            states = self.compiled(cell, self.packed, xs, x0, states, out, xw, part, row0,
                                   mask, self.zero_out, prev)
        for i, s in enumerate(states):
            self.states[i][b0:b1] = s
