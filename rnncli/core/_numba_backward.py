"""rnncli's compiled backward loops through time (numba; optional, the ``fast`` extra).
rnncli/core/bptt.py and the cells' ``backward`` steps are the reference they must equal.

Each loop runs a block of rows (threads take blocks as the forward loop's do): per step
the elementwise chain rule (the gates' slopes from their values, an LSTM's act(c) from
c, or read from what the numpy ``CellBackward`` computed for every step at once) and
dz·Uᵀ, with the forward loop's packed products (rnncli/core/_numba_panels.py) over Uᵀ
packed once per cell (fast.transposed). Numbers equal the
numpy steps' to rounding: the elementwise products in the same order, the sums over 4H
(or 3H) in order where BLAS blocks them.
"""

import numba
import numpy as np

from ._numba_activations import LINEAR as LINEAR_CODE
from ._numba_activations import SIGMOID as SIGMOID_CODE
from ._numba_activations import TANH as TANH_CODE
from ._numba_activations import activate_range
from ._numba_borrowed import alive, borrowed
from ._numba_panels import BLOCK, ROWS, panel_product, source_stamp
from .fast_backward import LINEAR, SIGMOID, TANH


@numba.njit(inline="always")
def _carry_back(d, r0, panels, acc, g, add):
    """g[b] = add[b] + d[r0 + b]·Uᵀ for the block's rows b (``add`` empty: the product
    alone), a group of up to BLOCK rows at a time."""
    n, H = g.shape
    for g0 in range(0, n, BLOCK):
        g1 = min(n, g0 + BLOCK)
        panel_product(d, r0 + g0, r0 + g1, panels, acc)
        for b in range(g0, g1):
            if add.shape[0]:
                for j in range(H):
                    g[b, j] = add[b, j] + acc[b - g0, j]
            else:
                for j in range(H):
                    g[b, j] = acc[b - g0, j]


@numba.njit(inline="always")
def _slope(code, y, st, r, col, one):
    """A gate's slope at row r, column col (fast_backward.SLOPE_CODES)."""
    if code == SIGMOID:
        return y * (one - y)
    if code == TANH:
        return one - y * y
    if code == LINEAR:
        return one
    return st[r, col]


@numba.njit(inline="always")
def lstm_cell_act(t, r, j0, count, act, activate, c, tc, dtc, own, one):
    """(act(c_t), its slope) of row r's units j0 .. j0 + count: read from ``tc`` and
    ``dtc`` (act < 0), or computed into ``own`` (2, count) by ``activate``, each in a loop
    of its own (they vectorize)."""
    if act < 0:
        return tc[t, r, j0:j0 + count], dtc[t, r, j0:j0 + count]
    tcr, dtcr = own[0, :count], own[1, :count]
    for j in range(count):
        tcr[j] = c[t, r, j0 + j]
    activate_range(tcr, 0, count, act, activate)
    if act == TANH_CODE:
        for j in range(count):
            dtcr[j] = one - tcr[j] * tcr[j]
    elif act == SIGMOID_CODE:
        for j in range(count):
            dtcr[j] = tcr[j] * (one - tcr[j])
    else:
        for j in range(count):
            dtcr[j] = one
    return tcr, dtcr


@numba.njit(inline="always")
def lstm_units(t, b, r, j0, count, g_out, has_out, gt, st, d, slopes, c, c0, tcr, dtcr, gh,
               gc, hidden, one):
    """LSTMBackward.step's chain rule through the gates for row r's units j0 .. j0 +
    count (``b``: the row in ``gh``, ``gc``): dL/dh_t into ``hidden``, the four gates'
    columns of dz_t into ``d``, dL/dc_{t-1} into ``gc``; ``tcr``, ``dtcr`` act(c_t) and
    its slope for those units."""
    H = gh.shape[1]
    for jl in range(count):
        j = j0 + jl
        c_prev = c[t - 1, r, j] if t else c0[r, j]
        dh = gh[b, j] + g_out[t, r, j] if has_out else gh[b, j]
        hidden[t, r, j] = dh
        i, f, cand, o = gt[r, j], gt[r, H + j], gt[r, 2 * H + j], gt[r, 3 * H + j]
        dc = gc[b, j] + dh * o * dtcr[jl]
        d[r, j] = dc * cand * _slope(slopes[0], i, st, r, j, one)
        d[r, H + j] = dc * c_prev * _slope(slopes[1], f, st, r, H + j, one)
        d[r, 2 * H + j] = dc * i * _slope(slopes[2], cand, st, r, 2 * H + j, one)
        d[r, 3 * H + j] = dh * tcr[jl] * _slope(slopes[3], o, st, r, 3 * H + j, one)
        gc[b, j] = dc * f


def _kernels(stamp):
    """The SimpleRNN, LSTM and GRU loops, keeping ``stamp`` (a hash of this module's,
    fast_backward.py's, _numba_panels.py's, _numba_borrowed.py's and _numba_activations.py's
    source) in their closures, where numba's disk cache looks. Each takes whole time-major
    arrays (T, B, ...), C-contiguous (one compiled signature), and runs rows r0 .. r0 + n,
    n being the rows of ``gh``."""
    njit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @njit
    def simple_rnn(r0, g_out, has_out, h, z, act, panels, gh, hidden, dxp, one):
        """SimpleRNNBackward.step for t = T-1 down to 0: hidden[t] = g + g_out[t];
        dxp[t] = hidden[t] * f'(z[t]), f' from h (tanh 1 - h², sigmoid h(1 - h), linear
        1) or z (relu, SIMPLE_RNN_ACTIVATIONS' codes); g = dxp[t]·Uᵀ. ``gh`` (n, H) enters
        as dL/d(the last state) and leaves as dL/d(the initial one)."""
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        T = h.shape[0]
        n, H = gh.shape
        g_out, h, z, panels, gh, hidden, dxp = borrowed(
            (g_out, h, z, panels, gh, hidden, dxp))
        acc_memory = np.empty((BLOCK + ROWS, panels.shape[0] * panels.shape[2]), h.dtype)
        acc = borrowed(acc_memory)
        none = np.empty((0, 0), h.dtype)
        for t in range(T - 1, -1, -1):
            ht, d = h[t], dxp[t]
            for b in range(n):
                r = r0 + b
                for j in range(H):
                    dh = gh[b, j] + g_out[t, r, j] if has_out else gh[b, j]
                    hidden[t, r, j] = dh
                    y = ht[r, j]
                    if act == 0:
                        d[r, j] = dh * (one - y * y)
                    elif act == 1:
                        d[r, j] = dh if z[t, r, j] > 0 else dh * 0
                    elif act == 2:
                        d[r, j] = dh * (y * (one - y))
                    else:
                        d[r, j] = dh
            _carry_back(d, r0, panels, acc, gh, none)
        alive(acc_memory)

    @njit
    def lstm(r0, g_out, has_out, gate, slopes, slope, act, activate, c, c0, tc, dtc, panels,
             gh, gc, hidden, dxp, one):
        """LSTMBackward.step for t = T-1 down to 0: ``gh``, ``gc`` (n, H) enter as
        dL/d(the last states) and leave as dL/d(the initial ones); ``slopes`` (4,) how
        each gate's slope is had (``slope`` (T, B, 4H) read where FROM_ARRAY). ``c``
        (T, B, H) the cell state each step made, ``c0`` (B, H) the initial one; act(c)
        and its slope computed here by ``activate`` (activate32 or activate64) for ``act``
        (tanh, sigmoid or linear: the slope from the value), or, ``act`` < 0, read from
        ``tc`` and ``dtc`` (T, B, H)."""
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        T = gate.shape[0]
        n, H = gh.shape
        g_out, gate, slopes, slope, c, c0, tc, dtc, panels, gh, gc, hidden, dxp = borrowed(
            (g_out, gate, slopes, slope, c, c0, tc, dtc, panels, gh, gc, hidden, dxp))
        memory = (np.empty((BLOCK + ROWS, panels.shape[0] * panels.shape[2]), gate.dtype),
                  np.empty((2, H), gate.dtype))
        acc, own = borrowed(memory)
        none = np.empty((0, 0), gate.dtype)
        for t in range(T - 1, -1, -1):
            gt, st, d = gate[t], slope[min(t, slope.shape[0] - 1)], dxp[t]
            for b in range(n):
                r = r0 + b
                tcr, dtcr = lstm_cell_act(t, r, 0, H, act, activate, c, tc, dtc, own, one)
                lstm_units(t, b, r, 0, H, g_out, has_out, gt, st, d, slopes, c, c0, tcr, dtcr,
                           gh, gc, hidden, one)
            _carry_back(d, r0, panels, acc, gh, none)
        alive(memory)

    @njit
    def gru(r0, g_out, has_out, gate, slopes, slope, inner_h, h_prev, panels, gh, hidden, dxp,
            one):
        """GRUBackward.step (reset_after) for t = T-1 down to 0: ``inner_h`` (T, B, H)
        h·U_h + b_hh, ``h_prev`` (T, B, H) the state each step started from; ``gh``
        (n, H) enters as dL/d(the last state) and leaves as dL/d(the initial one);
        ``slopes`` (3,) and ``slope`` as for the LSTM."""
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        T, P = gate.shape[0], gate.shape[2]
        n, H = gh.shape
        g_out, gate, slopes, slope, inner_h, h_prev, panels, gh, hidden, dxp = borrowed(
            (g_out, gate, slopes, slope, inner_h, h_prev, panels, gh, hidden, dxp))
        memory = (np.empty((BLOCK + ROWS, panels.shape[0] * panels.shape[2]), gate.dtype),
                  np.empty((n, P), gate.dtype), np.empty((n, H), gate.dtype))
        acc, d_inner, back = borrowed(memory)
        for t in range(T - 1, -1, -1):
            gt, st, d = gate[t], slope[min(t, slope.shape[0] - 1)], dxp[t]
            for b in range(n):
                r = r0 + b
                for j in range(H):
                    dh = gh[b, j] + g_out[t, r, j] if has_out else gh[b, j]
                    hidden[t, r, j] = dh
                    zg, reset, hh = gt[r, j], gt[r, H + j], gt[r, 2 * H + j]
                    dz_z = dh * (h_prev[t, r, j] - hh) * _slope(slopes[0], zg, st, r, j, one)
                    dz_h = dh * (one - zg) * _slope(slopes[2], hh, st, r, 2 * H + j, one)
                    dz_r = dz_h * inner_h[t, r, j] * _slope(slopes[1], reset, st, r, H + j, one)
                    d[r, j], d[r, H + j], d[r, 2 * H + j] = dz_z, dz_r, dz_h
                    d_inner[b, j], d_inner[b, H + j] = dz_z, dz_r
                    d_inner[b, 2 * H + j] = dz_h * reset
                    back[b, j] = dh * zg
            _carry_back(d_inner, 0, panels, acc, gh, back)
        alive(memory)

    return {"simple_rnn": simple_rnn, "lstm": lstm, "gru": gru}


KERNELS = _kernels(source_stamp("_numba_panels", "_numba_backward", "fast_backward",
                                   "_numba_borrowed", "_numba_activations"))
IN_LOOP = (TANH_CODE, SIGMOID_CODE, LINEAR_CODE)  # an LSTM's activations the loop computes
