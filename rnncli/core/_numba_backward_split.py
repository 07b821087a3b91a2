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

from ._numba_atomics import DONE, atomic_add, next_item
from ._numba_backward import lstm_cell_act, lstm_units
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
            k, ready = next_item(counters, parts, home, T + 1, k)
            if not ready:  # -1: every item claimed; else one to hand back
                alive(memory)
                return k
            s, q = k // parts, k % parts
            j0, t = q * Hl, T - 1 - s
            if s > 0:  # dL/dh_t of these units: dz_{t+1}·Uᵀ
                d = dxp[t + 1]
                for g0 in range(0, n, BLOCK):
                    g1 = min(n, g0 + BLOCK)
                    panel_product(d, g0, g1, panels[q], acc)
                    for b in range(g0, g1):
                        for j in range(Hl):
                            gh[b, j0 + j] = acc[b - g0, j]
            if t >= 0:  # the chain rule for these units, the one-thread loop's own
                gt, st, d = gate[t], slope[min(t, slope.shape[0] - 1)], dxp[t]
                for b in range(n):
                    tcr, dtcr = lstm_cell_act(t, b, j0, Hl, act, activate, c, tc, dtc, own,
                                              one)
                    lstm_units(t, b, b, j0, Hl, g_out, has_out, gt, st, d, slopes, c, c0, tcr,
                               dtcr, gh, gc, hidden, one)
            atomic_add(counters, DONE, 1)
            k = -1

    return {"lstm": lstm}


KERNELS = _kernels(source_stamp("_numba_panels", "_numba_backward_split", "_numba_backward",
                                "fast_backward", "_numba_borrowed", "_numba_activations",
                                "_numba_atomics"))
