"""An LSTM's compiled backward loop with each step's units split across threads, for
batches too small to split by rows (numba; imported only when rnncli/core/fast_backward.py
picks it), as rnncli/core/_numba_split.py splits the forward loop.

Going back from step T-1, item (s, q) of step s (t = T-1-s) computes, for units j0 .. j1
of part q, dL/dh_t = dz_{t+1}·Uᵀ (those columns of Uᵀ, packed apart: fast.Packed,
``recurrent_transposed``), then that step's chain rule through the gates for those
units, writing their four columns of dz_t and their dL/dc. The product needs every
column of dz_{t+1}, so an item waits until every item of step s - 1 is done; a last
step (s = T) computes dL/dh of the initial state. Threads claim items as the forward
split loop's do (_numba_atomics.claim: their own part first), and a wait longer than a
short spin returns to Python, which yields the core and calls again. Each number is the
one-thread loop's (rnncli/core/_numba_backward.py): the same products in the same
order, the same sums over 4H for each unit.
"""

import numba
import numpy as np

from ._numba_activations import SIGMOID as SIGMOID_CODE
from ._numba_activations import TANH as TANH_CODE
from ._numba_activations import activate_range
from ._numba_atomics import DONE, SPIN, atomic_add, atomic_load, claim
from ._numba_backward import _slope
from ._numba_borrowed import alive, borrowed
from ._numba_panels import BLOCK, ROWS, panel_product, source_stamp


def _kernels(stamp):
    """The LSTM loop, keeping ``stamp`` (a hash of the sources it inlines) in its closure,
    where numba's disk cache looks."""
    njit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @njit
    def lstm(g_out, has_out, gate, slopes, slope, act, activate, c, c0, tc, dtc, panels, gh,
             gc, hidden, dxp, one, counters, parts, home, pending):
        """Items of LSTMBackward.step split by units (the one-thread loop's arguments for
        every row, ``panels`` (parts, ...) Uᵀ's columns part by part) until every item is
        claimed, part ``home`` first: returns -1, or an item whose wait ran past SPIN
        (call again with it as ``pending``). ``gh``, ``gc`` (n, H) enter as dL/d(the
        last states) and leave as dL/d(the initial ones)."""
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        T = gate.shape[0]
        n, H = gh.shape
        Hl = H // parts
        g_out, gate, slopes, slope, c, c0, tc, dtc, panels, gh, gc, hidden, dxp, counters = \
            borrowed((g_out, gate, slopes, slope, c, c0, tc, dtc, panels, gh, gc, hidden,
                      dxp, counters))
        memory = (np.empty((BLOCK + ROWS, panels.shape[1] * panels.shape[3]), gate.dtype),
                  np.empty((2, Hl), gate.dtype))
        acc, own = borrowed(memory)
        k = pending
        while True:
            if k < 0:
                k = claim(counters, parts, home, T + 1)
                if k < 0:
                    alive(memory)
                    return -1
            s, q = k // parts, k % parts
            spins = 0
            while atomic_load(counters, DONE) < s * parts:  # step s - 1 not finished
                spins += 1
                if spins > SPIN:
                    alive(memory)
                    return k
            j0, t = q * Hl, T - 1 - s
            if s > 0:  # dL/dh_t of these units: dz_{t+1}·Uᵀ
                d = dxp[t + 1]
                for g0 in range(0, n, BLOCK):
                    g1 = min(n, g0 + BLOCK)
                    panel_product(d, g0, g1, panels[q], acc)
                    for b in range(g0, g1):
                        for j in range(Hl):
                            gh[b, j0 + j] = acc[b - g0, j]
            if t >= 0:
                gt, st, d = gate[t], slope[min(t, slope.shape[0] - 1)], dxp[t]
                for b in range(n):
                    tcr, dtcr = own[0], own[1]
                    if act < 0:
                        for j in range(Hl):
                            tcr[j], dtcr[j] = tc[t, b, j0 + j], dtc[t, b, j0 + j]
                    else:  # act(c_k) and its slope, each in a loop of its own
                        for j in range(Hl):
                            tcr[j] = c[t, b, j0 + j]
                        activate_range(tcr, 0, Hl, act, activate)
                        if act == TANH_CODE:
                            for j in range(Hl):
                                dtcr[j] = one - tcr[j] * tcr[j]
                        elif act == SIGMOID_CODE:
                            for j in range(Hl):
                                dtcr[j] = tcr[j] * (one - tcr[j])
                        else:
                            for j in range(Hl):
                                dtcr[j] = one
                    for jl in range(Hl):
                        j = j0 + jl
                        c_prev = c[t - 1, b, j] if t else c0[b, j]
                        dh = gh[b, j] + g_out[t, b, j] if has_out else gh[b, j]
                        hidden[t, b, j] = dh
                        i, f = gt[b, j], gt[b, H + j]
                        cand, o = gt[b, 2 * H + j], gt[b, 3 * H + j]
                        dc = gc[b, j] + dh * o * dtcr[jl]
                        d[b, j] = dc * cand * _slope(slopes[0], i, st, b, j, one)
                        d[b, H + j] = dc * c_prev * _slope(slopes[1], f, st, b, H + j, one)
                        d[b, 2 * H + j] = dc * i * _slope(slopes[2], cand, st, b, 2 * H + j,
                                                          one)
                        d[b, 3 * H + j] = dh * tcr[jl] * _slope(slopes[3], o, st, b,
                                                                3 * H + j, one)
                        gc[b, j] = dc * f
            atomic_add(counters, DONE, 1)
            k = -1

    return {"lstm": lstm}


KERNELS = _kernels(source_stamp("_numba_panels", "_numba_backward_split", "_numba_backward",
                                "fast_backward", "_numba_borrowed", "_numba_activations",
                                "_numba_atomics"))
