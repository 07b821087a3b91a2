"""A compiled scan's trace, computed when it is first read.

A traced step writes far more than the step keeps: an LSTM's x·W, h·U, z and gates (4H
each), c_{k-1}, f⊙c_{k-1} and i⊙g, 21 numbers a unit against the forward pass's h and
c. Written from inside the time loop, into fresh memory, they cost it 2-3x its own time
at small widths (docs/performance.md). Yet once every step's states are known, no step
waits for another: step k of sample b is a function of x[b, k] and the states step k
started from. So a scan that runs the cell's compiled loop keeps only its states (as the
forward pass does), and the other terms are computed the first time one is read: the
same compiled loop runs once more over all T x B (step, sample) pairs, as the rows of a
single step, in row blocks on every thread.

Every number is the same bits as if the scan had written it: the loop's products sum in
one order whatever the rows beside (rnncli/core/_numba_panels.py), and a step's terms
depend on nothing but its row. A masked step computes its terms from the states it found
and then carries them, in the scan and here alike (tested against the terms the loop
writes itself, ``trace="full"``).
"""

from __future__ import annotations

import threading

import numpy as np


class Once:
    """``fn()``'s value, computed at the first call (one thread computes it, the others
    wait) and kept; ``fn`` is let go of then."""

    def __init__(self, fn):
        self._fn, self._value, self._lock = fn, None, threading.Lock()

    def __call__(self):
        with self._lock:
            if self._fn is not None:
                self._value, self._fn = self._fn(), None
        return self._value

    @property
    def done(self) -> bool:
        return self._fn is None


def carried(out, mask, initial):
    """The first state after every step, time-major (T, B, H), from the outputs ``out``
    (T, B, H): they are that state except at masked steps, where the state is carried from
    the last unmasked step (or is the initial one) while the output may be zeros.
    ``mask`` (T, B) bool or None (every step unmasked: ``out`` itself)."""
    if mask is None:
        return out
    T = len(out)
    last = np.where(mask, np.arange(T)[:, None], -1)
    np.maximum.accumulate(last, axis=0, out=last)  # the last unmasked step, or -1
    found = np.take_along_axis(out, np.maximum(last, 0)[..., None], axis=0)
    return np.where((last < 0)[..., None], initial[None], found)


def found_states(cell, sequences, mask, initial) -> tuple:
    """Every state as every step found it, (T, B, H) each, time-major: the initial one,
    then each step's. ``sequences``: the scan's kept states by name, time-major."""
    out = []
    for i, name in enumerate(cell.state_names):
        after = carried(sequences[name], mask, initial[0]) if i == 0 else sequences[name]
        out.append(np.concatenate([initial[i][None], after[:-1]]))
    return tuple(out)


class Deferred(Once):
    """A scan's terms (:func:`scan_terms`) at the first call, or those of a window of its
    steps alone (:meth:`window`), from what :func:`deferred` copied."""

    def __init__(self, cell, loop, x, initial, sequences, mask, engine=None):
        # in a list the computation empties (the copies go once the terms are made), not
        # in a bound method: a Deferred holding one of its own would live, with its
        # copies, until the garbage collector came by, and every trace's memory was
        # fresh, faulted in page by page ((16, 1000, 32, 16) LSTM: a trace took 4.9 ms
        # against a 2.2 ms forward pass; without the cycle 1.5 against 1.35)
        self._args = [(cell, loop, x, initial, sequences, mask, engine)]
        super().__init__(lambda args=self._args: _all_terms(args))

    def window(self, k0, k1) -> Once:
        """The terms of steps k0 .. k1 alone, computed at the first call (a trace table
        of five steps of a long sequence replays those five)."""
        cell, loop, x, initial, sequences, mask, engine = self._args[0]
        starts, names = initial, cell.state_names
        if k0 > 0:  # the states step k0 found (h carried over masked steps before it)
            h = carried(sequences[names[0]][:k0], None if mask is None else mask[:k0],
                        initial[0])[-1]
            starts = (h, *(sequences[n][k0 - 1] for n in names[1:]))
        part = {n: s[k0:k1] for n, s in sequences.items()}
        return Once(lambda: scan_terms(cell, loop, x[:, k0:k1], starts, part,
                                       None if mask is None else mask[k0:k1], engine))

    def take(self, rows) -> Deferred:
        """The terms of some samples (``rows`` of the batch) alone, computed at the first
        call (a trace of 3 of a batch of 1000 replays those 3)."""
        cell, loop, x, initial, sequences, mask, engine = self._args[0]
        return Deferred(cell, loop, x[rows], tuple(s[rows] for s in initial),
                        {k: v[:, rows] for k, v in sequences.items()},
                        None if mask is None else mask[:, rows], engine)


def _all_terms(args: list) -> dict:
    terms = scan_terms(*args[0])
    args[0] = None
    return terms


def deferred(cell, loop, x, initial, sequences, mask, engine=None) -> Deferred:
    """:func:`scan_terms` at the first call. What it is computed from is copied now, so
    the scan's sequences stay the caller's to write into (one pass over the states; the
    copies go once the terms are made), and a replay stopped (Ctrl-C) leaves them as they
    were: the next call starts again."""
    # in one block: numpy asks for huge pages from 4 MiB, so first touches fault far less
    # often (a (64, 100, 32, 128) float32 LSTM: 4.3 -> 1.0 ms here)
    arrays = (x, *sequences.values())
    block = np.empty(sum(a.size for a in arrays), cell.dtype)
    copies, offset = [], 0
    for a in arrays:
        copies.append(block[offset:offset + a.size].reshape(a.shape))
        np.copyto(copies[-1], a)
        offset += a.size
    x, sequences = copies[0], dict(zip(sequences, copies[1:]))
    initial = tuple(np.array(s) for s in initial)
    mask = None if mask is None else np.array(mask)
    return Deferred(cell, loop, x, initial, sequences, mask, engine)


def scan_terms(cell, loop, x, initial, sequences, mask, engine=None) -> dict:
    """:func:`replay`'s terms, batch-major (B, T, width), as a scan gives them."""
    made = replay(cell, loop, x, initial, sequences, mask, engine)
    return {k: v.transpose(1, 0, 2) for k, v in made.items()}


def replay(cell, loop, x, initial, sequences, mask, engine=None) -> dict:
    """The trace terms the compiled ``loop`` computes at every step of a scan of ``cell``,
    time-major (T, B, width) by name (``xw`` and ``cell.terms``).

    ``x`` (B, T, D) the scan's input in processing order; ``initial``: the states it
    started from; ``sequences``: the states after every step, time-major by name (``h``
    as output: zeros or the previous output at masked steps); ``mask`` (T, B) bool or
    None."""
    from .engine import _Rows
    from .planning import compiled_rows, compiled_threads, forced_idle

    B, T, D = x.shape
    N, H, dtype = T * B, cell.units, cell.dtype
    rows_x = np.ascontiguousarray(x.transpose(1, 0, 2), dtype).reshape(N, 1, D)
    starts = tuple(np.ascontiguousarray(s).reshape(N, H)
                   for s in found_states(cell, sequences, mask, initial))
    names = ("xw", *cell.terms)
    widths = [cell.term_width(n) for n in names]
    block = np.empty(N * sum(widths), dtype)  # one block: numpy asks for huge pages
    terms, offset = {}, 0
    for name, w in zip(names, widths):
        terms[name] = block[offset:offset + N * w].reshape(1, N, w)
        offset += N * w
    ends = {s: np.empty((1, N, H), dtype) for s in cell.state_names}  # already known
    job = _Rows(cell, rows_x, starts, None, False, ends, terms, loop)
    threads, edges = compiled_rows(N, compiled_threads(cell, N, 1, engine),
                                   idle=forced_idle(engine))
    job.run_blocks(edges, threads)
    return {name: a.reshape(T, B, w) for (name, a), w in zip(terms.items(), widths)}
