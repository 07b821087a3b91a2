"""numba kernels for rnncli.core.fast (imported only when numba is installed and wanted).

numba caches their machine code on disk (cache=True), keyed on their code and on a hash
of the sources they inline (``_kernels``): the first call in a process then loads instead
of compiling. Every kernel runs the steps of one chunk for a block of rows, with one
signature for every cell:

    kernel(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
           zero_out, prev, fresh)

``x`` (n, T', D) holds those rows' inputs, C-contiguous (one compiled signature), the
chunk's from step ``x0``;
``kernel`` and ``panels`` the kernel and recurrent kernel packed by
rnncli/core/_numba_panels.py, ``bias`` (P,) the input bias (zeros for none); ``rb`` a
GRU's recurrent bias (P,); ``states`` (h[, c]), each (n, H), are updated in place;
``outs`` (h[, c]), ``xw`` (x·W, traced) and ``terms`` (the cell's trace terms; empty
arrays when not traced) are arrays (T, N, width) shared by every block, whose rows
``row0 .. row0 + n`` this block writes (so blocks run in threads side by side: the
kernels release the GIL). ``mask`` (T, n) bool, or (0, 0) for none: a masked step keeps
the states and outputs the previous output ``prev`` (n, H) (zeros with ``zero_out``), as
Keras and the numpy loop do. ``fresh``: h starts at zero and U is finite, so the first
step's h·U is +0 and is not computed (the same bits: multiply-adds of 0·u from +0 give
+0); an LSTM of 32 features and 256 units over 2 steps spends 44% of its multiply-adds
there. Each row's x·W and h·U sum over their inputs in order, whatever the rows around
it: a row's numbers never depend on its batch, block or thread.

A traced kernel writes ``xw`` and every term; a "gates" kernel (LSTM, GRU) only what
their backward pass reads (LSTM: gate; GRU: hu and gate), the rest left empty.

Numba inlines ``drive``, ``activate_range``, ``panel_product``, and the row steps and
``commit`` of rnncli/core/_numba_rows.py (they take functions as arguments, which a
cached kernel can't keep as calls); the activations are ordinary functions that LLVM
inlines where it pays. Inlining the activations at numba's level too, and the row step
at two call sites, took 290 s to compile the twelve kernels there were then on a busy
machine, this 43-73 s, at the same speed
(benchmarks: old/new within 5% on LSTM, GRU and SimpleRNN loops, 40 interleaved runs
each); the compiled code is cached on disk after.
"""

import numba
import numpy as np

from ._numba_activations import activate32, activate64
from ._numba_borrowed import alive, borrowed
from ._numba_panels import (
    AHEAD,
    AHEAD_ROWS,
    BLOCK,
    ROWS,
    panel_product,
    project_ahead,
    source_stamp,
)
from ._numba_rows import FULL, GATES, NONE, commit, gru_row, lstm_row, simple_row


@numba.njit(inline="always")
def drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
          zero_out, prev, fresh, row, activate, one, trace):
    """The steps of a chunk (as many as ``outs`` holds, x's from step ``x0``): per step and
    group of up to BLOCK rows, the group's x·W + b and h·U (W and U packed in panels,
    rnncli/core/_numba_panels.py), then each row's ``row`` (its cell's step, which writes
    its new states to ``outs``) and commit; x·W + b of up to AHEAD_ROWS rows AHEAD steps
    at a time. Every array is used borrowed
    (rnncli/core/_numba_borrowed.py): the views made a row cost no atomic operations."""
    n = x.shape[0]
    T = outs[0].shape[0]
    P = bias.shape[0]
    Pp = panels.shape[0] * panels.shape[2]
    x, kernel, bias, panels, rb, xw, mask, prev = borrowed(
        (x, kernel, bias, panels, rb, xw, mask, prev))
    states, outs, terms = borrowed(states), borrowed(outs), borrowed(terms)
    h = states[0]
    early = n <= AHEAD_ROWS
    acc_memory = np.empty((BLOCK + ROWS, Pp), dtype=bias.dtype)
    # x·W a step at a time: none where it is computed ahead
    xacc_memory = np.empty((0 if early else BLOCK + ROWS, kernel.shape[0] * kernel.shape[2]),
                           dtype=bias.dtype)
    ahead_memory = np.empty((n if early else 0, AHEAD + ROWS, Pp), dtype=bias.dtype)
    acc, xacc, ahead = borrowed(acc_memory), borrowed(xacc_memory), borrowed(ahead_memory)
    for t in range(T):  # alive() after the loop keeps the memory the borrowed views use
        xt = x[:, x0 + t, :]
        if early and t % AHEAD == 0:
            project_ahead(x, x0, t, min(AHEAD, T - t), kernel, bias, xw, row0, ahead,
                          trace == FULL)
        for g0 in range(0, n, BLOCK):
            g1 = min(n, g0 + BLOCK)
            if not early:
                panel_product(xt, g0, g1, kernel, xacc)
            if fresh and t == 0:  # h is zero and U finite: h·U is +0 (what the FMAs give)
                acc[:g1 - g0, :P] = 0
            else:
                panel_product(h, g0, g1, panels, acc)
            for b in range(g0, g1):  # one call site: the cell's step is inlined once
                r = row0 + b
                if early:
                    xwb = ahead[b, t % AHEAD, :P]
                else:
                    xwb = xacc[b - g0, :P]
                    if trace == FULL:
                        for j in range(P):
                            xw[t, r, j] = xwb[j]
                    for j in range(P):
                        xwb[j] += bias[j]
                row(xwb, acc[b - g0, :P], rb, states, b, outs, t, r, act, ract, terms,
                    activate, one, trace)
                commit(t, b, r, outs, states, mask, zero_out, prev, one)
    alive(acc_memory)
    alive(xacc_memory)
    alive(ahead_memory)


# ------------------------------------------------------------------ entry points
# Per cell, float32 or float64, trace level: constants folded at compile time.


def _kernels(stamp):
    """The kernels by (cell, float32?, traced: False, True or "gates"), each keeping
    ``stamp`` (a hash of this module's, _numba_rows.py's, _numba_activations.py's,
    _numba_panels.py's and _numba_borrowed.py's source) in its closure, where numba's disk
    cache looks: their machine code is compiled again when one of those files changes.
    Written out one by one: the row steps and activations can't be closure variables too
    (numba pickles closures into the cache key, and a compiled function pickles with a
    per-process id: every process would compile again)."""
    njit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @njit
    def simple_f32(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                   zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, simple_row, activate32, np.float32(1), NONE)

    @njit
    def simple_f32_trace(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                         zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, simple_row, activate32, np.float32(1), FULL)

    @njit
    def simple_f64(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                   zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, simple_row, activate64, 1.0, NONE)

    @njit
    def simple_f64_trace(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                         zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, simple_row, activate64, 1.0, FULL)

    @njit
    def lstm_f32(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                 zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, lstm_row, activate32, np.float32(1), NONE)

    @njit
    def lstm_f32_trace(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                       zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, lstm_row, activate32, np.float32(1), FULL)

    @njit
    def lstm_f64(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                 zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, lstm_row, activate64, 1.0, NONE)

    @njit
    def lstm_f64_trace(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                       zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, lstm_row, activate64, 1.0, FULL)

    @njit
    def gru_f32(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, gru_row, activate32, np.float32(1), NONE)

    @njit
    def gru_f32_trace(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                      zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, gru_row, activate32, np.float32(1), FULL)

    @njit
    def gru_f64(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, gru_row, activate64, 1.0, NONE)

    @njit
    def gru_f64_trace(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
                      zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, gru_row, activate64, 1.0, FULL)

    @njit
    def lstm_f32_gates(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms,
                       mask, zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, lstm_row, activate32, np.float32(1), GATES)

    @njit
    def lstm_f64_gates(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms,
                       mask, zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, lstm_row, activate64, 1.0, GATES)

    @njit
    def gru_f32_gates(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms,
                      mask, zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, gru_row, activate32, np.float32(1), GATES)

    @njit
    def gru_f64_gates(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms,
                      mask, zero_out, prev, fresh):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        drive(x, x0, kernel, bias, panels, rb, states, outs, xw, row0, act, ract, terms, mask,
              zero_out, prev, fresh, gru_row, activate64, 1.0, GATES)

    return {('simple', True, False): simple_f32,
            ('simple', True, True): simple_f32_trace,
            ('simple', False, False): simple_f64,
            ('simple', False, True): simple_f64_trace,
            ('lstm', True, False): lstm_f32,
            ('lstm', True, True): lstm_f32_trace,
            ('lstm', False, False): lstm_f64,
            ('lstm', False, True): lstm_f64_trace,
            ('gru', True, False): gru_f32,
            ('gru', True, True): gru_f32_trace,
            ('gru', False, False): gru_f64,
            ('gru', False, True): gru_f64_trace,
            ('lstm', True, 'gates'): lstm_f32_gates,
            ('lstm', False, 'gates'): lstm_f64_gates,
            ('gru', True, 'gates'): gru_f32_gates,
            ('gru', False, 'gates'): gru_f64_gates}


KERNELS = _kernels(source_stamp("_numba_panels", "_numba_activations", "_numba_kernels",
                                   "_numba_rows", "_numba_borrowed"))
