"""A compiled loop whose steps are split by units across threads, for batches too small
to split by rows (numba; imported only when the engine picks it).

With a row or two and a U of megabytes, a step is one pass over U, and one core reads it
from the shared cache at a fraction of what two do. Here each step is cut into ``parts``
items, item q computing units j0 .. j1 of every gate (U's and W's columns for them,
packed apart: rnncli/core/fast.py, Packed). Threads claim the items of the earliest
step with one unclaimed, each thread its own part q first (its ``home``, see below), so
a thread whose core is taken leaves its items to the others, and one thread alone runs
them all. An item of step t waits until every item of step t-1
is done (h is read from one buffer and written to the other, two in turn); a wait longer
than a short spin returns to Python, which yields the core and calls again (nothing
spins past ``SPIN`` loads). A unit's numbers are those of the one-thread loop: its
products sum over the same inputs in the same order. For a row or two (AHEAD_ROWS), each
part's x·W + b is computed AHEAD steps at once, as the one-thread loop does: a step's own
would read the part's W again beside U (LSTM (1, 200, 32, 512), float32, two threads:
0.91-1.06x ONNX Runtime's speed before, 0.97-1.08x after; 4 runs of each, 9 rounds).

Each thread keeps to its own part, and reads that part's panels of U first to last on
even steps and last to first on odd ones: a core's cache then still holds, when a step
starts, the panels the last one read last (LSTM (1, 200, 32, 512) float32: a part's U
is 2 MiB, this CPU's L2 cache 1 MiB a core, so it can keep about half). Before, a
thread took whichever item came next, its part changed from step to step, and read
first to last, a part larger than the cache left none of it there for the next step.
Measured against that, 20 alternated blocks of 40 ms in one process, medians: LSTM (1,
200, 32, 512) float32 0.80x the time, GRU 0.83x, float64 LSTM (1, 200, 32, 256) 0.77x,
(1, 200, 32, 512) 0.93x; the same part each step but always first to last: 0.94x,
0.96x, 0.93x, 0.99x. From 4 rows, 0.98-1.03x (U's bytes, read once a step for up to 8
rows, weigh less there against the multiply-adds). Reading the panels back and forth in
the row-block loop measured 0.99-1.01x, so only this loop does it.

The states: ``hbuf`` (2, n, H), h at even steps in [0], odd in [1]; ``c`` (n, H), an
LSTM's cell state, each part updating its own units. No mask, and of a trace only the
gates a gated cell's backward pass reads (rnncli/core/fast.py, GATE_TERMS), each part
writing its own columns (rnncli/core/split.py puts them in place): the engine takes
this loop only so.
"""

import numba
import numpy as np

from ._numba_activations import activate32, activate64
from ._numba_atomics import DONE, atomic_add, next_item
from ._numba_borrowed import alive, borrowed
from ._numba_panels import AHEAD, BLOCK, ROWS, panel_product, project_ahead, source_stamp
from ._numba_rows import GATES, NONE, gru_row, lstm_row, simple_row


@numba.njit(inline="always")
def split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts,
                home, limit, pending, ahead, terms, act, ract, row, activate, one, has_c,
                trace):
    """Items of steps t0 .. t0 + T (outs holds those steps, x those from step ``shift``)
    until every item of the steps before ``limit`` is claimed, part ``home`` first:
    returns -1, or an item whose wait ran past SPIN (call again with it as
    ``pending``). ``ahead`` (parts, n, AHEAD + ROWS, width), or
    empty: x·W + b of AHEAD steps at once, part q's computed by the item of part q whose
    step starts them (every item of part q before it has finished: it waited for them).
    ``terms``: the row step's six trace terms (rnncli/core/_numba_rows.py), each
    (T, parts, n, width / parts), part q's own columns in its own order; at trace level
    GATES (a constant of the kernel) the row writes those a gated cell's backward pass
    reads, at NONE none (then each is empty)."""
    n = x.shape[0]
    Hl = hbuf.shape[2] // parts
    P = biases.shape[1]
    x, kernels, biases, panels, rbs, hbuf, c, counters, ahead = borrowed(
        (x, kernels, biases, panels, rbs, hbuf, c, counters, ahead))
    early = ahead.shape[0] > 0
    outs, terms = borrowed(outs), borrowed(terms)
    acc_memory = np.empty((BLOCK + ROWS, panels.shape[1] * panels.shape[3]), dtype=hbuf.dtype)
    xacc_memory = np.empty((0 if early else BLOCK + ROWS, kernels.shape[1] * kernels.shape[3]),
                           dtype=hbuf.dtype)  # x·W a step at a time: none when ahead
    # borrowed: every return below must pass acc_memory and xacc_memory to alive() first
    acc, xacc = borrowed(acc_memory), borrowed(xacc_memory)
    empty = np.empty((0, 0, 0), dtype=hbuf.dtype)
    k = pending
    while True:
        k, ready = next_item(counters, parts, home, limit, k)
        if not ready:  # -1: every item claimed; else one to hand back
            alive(acc_memory)
            alive(xacc_memory)
            return k
        tg, q = k // parts, k % parts
        t = tg - t0
        j0 = q * Hl
        hcur, hnext = hbuf[tg % 2], hbuf[(tg + 1) % 2]
        states = (hcur[:, j0:j0 + Hl], c[:, j0:j0 + Hl])
        part_outs = (outs[0][:, :, j0:j0 + Hl], outs[1][:, :, j0:j0 + Hl])
        part_terms = (terms[0][:, q], terms[1][:, q], terms[2][:, q], terms[3][:, q],
                      terms[4][:, q], terms[5][:, q])
        bias, rb = biases[q], rbs[q]
        xt = x[:, tg - shift, :]
        if early and t % AHEAD == 0:
            project_ahead(x, -shift, tg, min(AHEAD, outs[0].shape[0] - t), kernels[q], bias,
                          empty, 0, ahead[q], False)
        for g0 in range(0, n, BLOCK):
            g1 = min(n, g0 + BLOCK)
            if not early:
                panel_product(xt, g0, g1, kernels[q], xacc)
            panel_product(hcur, g0, g1, panels[q], acc, tg % 2 == 1)
            for b in range(g0, g1):
                if early:
                    xwb = ahead[q, b, t % AHEAD, :P]
                else:
                    xwb = xacc[b - g0, :P]
                    for j in range(P):
                        xwb[j] += bias[j]
                row(xwb, acc[b - g0, :P], rb, states, b, part_outs, t, b, act, ract,
                    part_terms, activate, one, trace)
                for j in range(Hl):
                    hnext[b, j0 + j] = part_outs[0][t, b, j]
                if has_c:
                    for j in range(Hl):
                        c[b, j0 + j] = part_outs[1][t, b, j]
        atomic_add(counters, DONE, 1)
        k = -1


# Per cell, float32 or float64, untraced or writing the gates (the arguments are
# split_drive's, up to ``ract``).


def _kernels(stamp):
    """The kernels by (cell, float32?, "gates" or False), each keeping ``stamp`` (a hash
    of this module's, _numba_rows.py's, _numba_activations.py's, _numba_panels.py's,
    _numba_borrowed.py's and _numba_atomics.py's source: it inlines their code) in its
    closure, where numba's disk cache looks. Written out one by one, as
    _numba_kernels.py's are (its ``_kernels`` says why: kernels made in a loop or from
    closures over functions would compile again in every process)."""
    njit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @njit
    def simple_f32(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                   limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, simple_row,
                           activate32, np.float32(1), False, NONE)

    @njit
    def simple_f64(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                   limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, simple_row,
                           activate64, 1.0, False, NONE)

    @njit
    def lstm_f32(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                 limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, lstm_row,
                           activate32, np.float32(1), True, NONE)

    @njit
    def lstm_f64(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                 limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, lstm_row,
                           activate64, 1.0, True, NONE)

    @njit
    def gru_f32(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, gru_row,
                           activate32, np.float32(1), False, NONE)

    @njit
    def gru_f64(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, gru_row,
                           activate64, 1.0, False, NONE)

    @njit
    def lstm_f32_gates(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                       limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, lstm_row,
                           activate32, np.float32(1), True, GATES)

    @njit
    def lstm_f64_gates(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                       limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, lstm_row,
                           activate64, 1.0, True, GATES)

    @njit
    def gru_f32_gates(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                      limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, gru_row,
                           activate32, np.float32(1), False, GATES)

    @njit
    def gru_f64_gates(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters, parts, home,
                      limit, pending, ahead, terms, act, ract):
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        return split_drive(x, shift, kernels, biases, panels, rbs, hbuf, c, outs, t0, counters,
                           parts, home, limit, pending, ahead, terms, act, ract, gru_row,
                           activate64, 1.0, False, GATES)

    return {('simple', True, False): simple_f32,
            ('simple', False, False): simple_f64,
            ('lstm', True, False): lstm_f32,
            ('lstm', False, False): lstm_f64,
            ('gru', True, False): gru_f32,
            ('gru', False, False): gru_f64,
            ('lstm', True, 'gates'): lstm_f32_gates,
            ('lstm', False, 'gates'): lstm_f64_gates,
            ('gru', True, 'gates'): gru_f32_gates,
            ('gru', False, 'gates'): gru_f64_gates}


KERNELS = _kernels(source_stamp("_numba_panels", "_numba_activations", "_numba_rows",
                                 "_numba_split", "_numba_borrowed", "_numba_atomics"))
