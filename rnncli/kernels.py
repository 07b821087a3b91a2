"""The hot loop of a SimpleRNN, kept apart from the layer's bookkeeping.

``x · kernel`` for every timestep is one matrix product (no recurrence there);
only ``h_{t-1} · recurrent_kernel`` must wait for the previous step. Arrays are
kept time-major (T, B, H) inside so each step reads and writes contiguous rows.
"""

from __future__ import annotations

import numpy as np


def input_projection(x, kernel):
    """x (B, T, D) · kernel (D, H) -> (B, T, H), computed time-major in one product."""
    B, T, D = x.shape
    xt = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * B, D)
    return (xt @ kernel).reshape(T, B, -1).transpose(1, 0, 2)


def recurrence(xw, recurrent_kernel, bias, act, act_name, h, mask=None,
               zero_output_for_mask=False, trace=False):
    """Run ``h_t = act(xw_t + bias + h_{t-1} · recurrent_kernel)`` over t.

    xw: (B, T, H), a time-major view from :func:`input_projection`; h: (B, H)
    initial state (copied, not changed); mask: (B, T) bool or None.
    Returns (outputs (B, T, H), final state (B, H), hu or None, z or None).
    """
    B, T, H = xw.shape
    dtype = xw.dtype
    xw_t = xw.transpose(1, 0, 2)  # (T, B, H), contiguous
    if trace:
        xwb = xw_t + bias if bias is not None else xw_t.copy()
    else:
        xwb = np.add(xw_t, bias, out=xw_t) if bias is not None else xw_t
    out = np.empty((T, B, H), dtype)
    hu = np.empty((T, B, H), dtype) if trace else None
    z = np.empty((T, B, H), dtype) if trace else None
    h = np.array(h, dtype=dtype, copy=True)
    if T == 0:
        return out.transpose(1, 0, 2), h, _tm(hu), _tm(z)

    if mask is None:
        from . import fast

        if fast.worth_it(T, B, H, act_name, dtype.itemsize):
            h = fast.recurrence(xwb, recurrent_kernel, h, out, act_name, hu, z)
            return out.transpose(1, 0, 2), h, _tm(hu), _tm(z)

    if mask is None:
        if trace:
            for t in range(T):
                np.matmul(h, recurrent_kernel, out=hu[t])
                np.add(xwb[t], hu[t], out=z[t])
                out[t] = act(z[t])
                h = out[t]
        elif act_name == "tanh":
            buf = np.empty((B, H), dtype)
            for t in range(T):
                np.matmul(h, recurrent_kernel, out=buf)
                buf += xwb[t]
                np.tanh(buf, out=out[t])
                h = out[t]
        else:
            buf = np.empty((B, H), dtype)
            for t in range(T):
                np.matmul(h, recurrent_kernel, out=buf)
                buf += xwb[t]
                out[t] = act(buf)
                h = out[t]
        return out.transpose(1, 0, 2), h.copy(), _tm(hu), _tm(z)

    # Masked: a masked step keeps the state; its output is the previous output
    # (zeros when zero_output_for_mask), as Keras' rnn() does.
    mask_t = np.ascontiguousarray(np.asarray(mask, bool).T)[..., None]  # (T, B, 1)
    prev_out = np.zeros((B, H), dtype)
    for t in range(T):
        hu_t = h @ recurrent_kernel
        z_t = xwb[t] + hu_t
        h_new = act(z_t)
        m = mask_t[t]
        h = np.where(m, h_new, h)
        out[t] = np.where(m, h_new, 0 if zero_output_for_mask else prev_out)
        prev_out = out[t]
        if trace:
            hu[t], z[t] = hu_t, z_t
    return out.transpose(1, 0, 2), h, _tm(hu), _tm(z)


def _tm(a):
    return None if a is None else a.transpose(1, 0, 2)
