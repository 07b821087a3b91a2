"""A cell's step for one row, and the commit after it, for the compiled loops
(rnncli/core/_numba_kernels.py, _numba_split.py; numba, imported only with them).

``row(xwb, a, rb, states, b, outs, t, r, act, ract, terms, activate, one, trace)``: ``xwb``
holds the row's x·W + b, ``a`` its h·U (scratch: the gate-by-gate steps overwrite it);
the new states go to ``outs[..][t, r]``, and the trace's terms, at trace level FULL or
GATES, to ``terms``.

Untraced LSTM and GRU steps in float32 with Keras' activations (tanh, sigmoid) run as one
loop over the units, every gate of a unit in it: the activations of a unit's gates are
independent chains of arithmetic the CPU overlaps, where one loop a gate ran them one
after another, and at 16 units each loop was a single vector. Same bits: every number is
the same operations in the same order. One thread, 1000 steps, 32 features, four runs
each: LSTM (4, ., ., 16) 0.39-0.49 -> 0.31-0.36 us a step, (1, ., ., 16) 0.19-0.27 ->
0.17-0.19; GRU (4, ., ., 16) 0.40 -> 0.36; from 64 units, within 5%. Only where the
states and outputs are typed C-contiguous (the row-block kernels'; the split loop's part
of the units is a strided view of each row, where the one loop did not vectorize: LSTM
(1, 200, 32, 512) 1.2x slower), and not in float64, whose activations are longer: 0-20%
slower there.
"""

import numba
from numba import types
from numba.extending import intrinsic

from ._numba_activations import SIGMOID, TANH, activate_range

# Trace levels (a kernel's last argument to ``drive``, constant in each): none, every
# term, or only what a gated cell's backward pass reads (LSTM: gate; GRU: hu and gate).
NONE, FULL, GATES = 0, 1, 2


@intrinsic
def c_contiguous(typingctx, a):
    """Whether the array is typed C-contiguous (layout "C"): a constant of the compiled
    code, not a test at run time."""
    if not isinstance(a, types.Array):
        return None
    value = a.layout == "C"

    def codegen(context, builder, sig, args):
        return context.get_constant(types.boolean, value)

    return types.boolean(a), codegen


@numba.njit(inline="always")
def commit(t, b, r, outs, states, mask, zero_out, prev, one):
    """After a row's step has written its new states to ``outs[..][t, r]``: take them as the
    states, or, at a masked step, keep the states and output the previous output."""
    H = prev.shape[1]
    live = mask.shape[0] == 0 or mask[t, b]
    if live:
        for s in range(len(states)):
            for j in range(H):
                states[s][b, j] = outs[s][t, r, j]
        if mask.shape[0]:
            for j in range(H):
                prev[b, j] = outs[0][t, r, j]
        return
    for s in range(1, len(states)):
        for j in range(H):
            outs[s][t, r, j] = states[s][b, j]
    for j in range(H):
        v = one - one if zero_out else prev[b, j]
        outs[0][t, r, j] = v
        prev[b, j] = v


# ------------------------------------------------------------------ SimpleRNN


@numba.njit(inline="always")
def simple_row(xwb, a, rb, states, b, outs, t, r, act, ract, terms, activate, one, trace):
    """z = xwb + h·U; h = act(z). ``terms``: hu, z."""
    H = a.shape[0]
    if trace:
        for j in range(H):
            terms[0][t, r, j] = a[j]
    for j in range(H):
        a[j] += xwb[j]
    if trace:
        for j in range(H):
            terms[1][t, r, j] = a[j]
    activate_range(a, 0, H, act, activate)
    out = outs[0]
    for j in range(H):
        out[t, r, j] = a[j]


# ------------------------------------------------------------------ LSTM


@numba.njit(inline="always")
def lstm_row(xwb, a, rb, states, b, outs, t, r, act, ract, terms, activate, one, trace):
    """Keras' LSTM: z = xwb + h·U (blocks i f c o); c = f⊙c + i⊙act(z_c); h = o⊙act(c).
    ``terms``: hu, z, gate (4H wide), c_prev, fc, ig (H wide); the gates alone at trace
    level GATES. ``a`` holds h·U, and becomes z, then the gates (gate by gate; the one
    loop over the units leaves it)."""
    P = a.shape[0]
    H = P // 4
    c = states[1]
    out_h, out_c = outs[0], outs[1]
    if trace == NONE and act == TANH and ract == SIGMOID and a.itemsize == 4 and \
            c_contiguous(c) and c_contiguous(out_c) and c_contiguous(out_h):
        for j in range(H):
            i = activate(a[j] + xwb[j], SIGMOID)
            f = activate(a[H + j] + xwb[H + j], SIGMOID)
            g = activate(a[2 * H + j] + xwb[2 * H + j], TANH)
            o = activate(a[3 * H + j] + xwb[3 * H + j], SIGMOID)
            cn = f * c[b, j] + i * g
            out_c[t, r, j] = cn
            out_h[t, r, j] = o * activate(cn, TANH)
        return
    if trace == FULL:
        for j in range(P):
            terms[0][t, r, j] = a[j]
    for j in range(P):
        a[j] += xwb[j]
    if trace == FULL:
        for j in range(P):
            terms[1][t, r, j] = a[j]
    activate_range(a, 0, 2 * H, ract, activate)
    activate_range(a, 2 * H, 3 * H, act, activate)
    activate_range(a, 3 * H, P, ract, activate)
    if trace:
        for j in range(P):
            terms[2][t, r, j] = a[j]
    for j in range(H):
        cp = c[b, j]
        fc = a[H + j] * cp
        ig = a[j] * a[2 * H + j]
        cn = fc + ig
        if trace == FULL:
            terms[3][t, r, j] = cp
            terms[4][t, r, j] = fc
            terms[5][t, r, j] = ig
        out_c[t, r, j] = cn
        a[H + j] = cn  # f is used: its place takes act(c)
    activate_range(a, H, 2 * H, act, activate)
    for j in range(H):
        out_h[t, r, j] = a[3 * H + j] * a[H + j]


# ------------------------------------------------------------------ GRU (reset_after)


@numba.njit(inline="always")
def gru_row(xwb, a, rb, states, b, outs, t, r, act, ract, terms, activate, one, trace):
    """Keras' GRU with reset_after=True: inner = h·U + b_h (blocks z r h);
    z, r = ract(xwb + inner); h̃ = act(xwb_h + r⊙inner_h); h = z⊙h + (1-z)⊙h̃.
    ``terms``: hu, z, gate (3H wide), reset_term, keep, update (H wide); hu and the gates
    alone at trace level GATES."""
    P = a.shape[0]
    H = P // 3
    h = states[0]
    out = outs[0]
    if trace == NONE and act == TANH and ract == SIGMOID and a.itemsize == 4 and \
            c_contiguous(h) and c_contiguous(out):
        for j in range(H):
            gz = activate(xwb[j] + (a[j] + rb[j]), SIGMOID)
            gr = activate(xwb[H + j] + (a[H + j] + rb[H + j]), SIGMOID)
            candidate = activate(xwb[2 * H + j] + gr * (a[2 * H + j] + rb[2 * H + j]), TANH)
            out[t, r, j] = gz * h[b, j] + (one - gz) * candidate
        return
    if trace:
        for j in range(P):
            terms[0][t, r, j] = a[j]
    for j in range(P):
        a[j] += rb[j]
    for j in range(2 * H):  # z and r: their z, over h·U + b_h
        a[j] = xwb[j] + a[j]
    if trace == FULL:
        for j in range(2 * H):
            terms[1][t, r, j] = a[j]
    activate_range(a, 0, 2 * H, ract, activate)
    for j in range(H):  # the reset term, then h̃'s z, over h·U + b_h
        reset = a[H + j] * a[2 * H + j]
        if trace == FULL:
            terms[3][t, r, j] = reset
        a[2 * H + j] = xwb[2 * H + j] + reset
    if trace == FULL:
        for j in range(2 * H, P):
            terms[1][t, r, j] = a[j]
    activate_range(a, 2 * H, P, act, activate)
    if trace:
        for j in range(P):
            terms[2][t, r, j] = a[j]
    for j in range(H):
        gz = a[j]
        keep = gz * h[b, j]
        update = (one - gz) * a[2 * H + j]
        if trace == FULL:
            terms[4][t, r, j] = keep
            terms[5][t, r, j] = update
        out[t, r, j] = keep + update
