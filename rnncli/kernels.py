"""The hot loop of a SimpleRNN, kept apart from the layer's bookkeeping.

Per step, as Keras: ``z = (x_t·W + b) + h_{t-1}·U`` and ``h_t = f(z)``. ``x·W`` has no
recurrence in it, so it is computed as one matrix product per *chunk* of timesteps
(a few MiB), just ahead of the steps that use it: the input is never copied whole,
the chunk is still in cache when the steps read it, and a caller that needs only
the final state keeps O(batch x units) memory. Arrays are time-major (T, B, H)
inside, so every step reads and writes contiguous rows.
"""

from __future__ import annotations

import numpy as np

CHUNK_BYTES = 16 * 2**20


def project(x, kernel, bias=None):
    """x (B, c, D) · kernel (D, H) [+ bias] -> time-major (c, B, H) in one product.

    With ``bias``, it rides in the same product as a column of ones in x and a row in
    the kernel (BLAS adds it last: Keras' ``x·W + b``), saving a pass over the array.
    """
    B, c, D = x.shape
    if bias is None:
        xt = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=kernel.dtype)
        return (xt.reshape(c * B, D) @ kernel).reshape(c, B, -1)
    xa = np.empty((c, B, D + 1), kernel.dtype)
    xa[..., :D] = x.transpose(1, 0, 2)
    xa[..., D] = 1
    ka = np.concatenate([kernel, bias[None]], axis=0)
    return (xa.reshape(c * B, D + 1) @ ka).reshape(c, B, -1)


def chunk_steps(B, H, itemsize, T):
    return int(max(1, min(T, CHUNK_BYTES // max(1, B * H * itemsize))))


def scan(x, kernel, recurrent_kernel, bias, act, act_name, h, mask=None,
         zero_output_for_mask=False, trace=False, keep=True):
    """Run the layer over x (B, T, D) from state h (B, H).

    mask: (B, T) bool or None. ``keep=False`` (and no trace) keeps no sequence.
    Returns (outputs (B, T, H) or None, final state (B, H), xw, hu, z) where the last
    three are None unless ``trace``; all (B, T, H) are views of time-major arrays.
    """
    B, T, _ = x.shape
    H = kernel.shape[1]
    dtype = kernel.dtype
    keep = keep or trace
    h = np.array(h, dtype=dtype, copy=True)
    full = (lambda: np.empty((T, B, H), dtype)) if keep else (lambda: None)
    out, xw, hu, z = full(), *((full() for _ in range(3)) if trace else (None,) * 3)
    if T == 0:
        return _bm(out), h, _bm(xw), _bm(hu), _bm(z)

    from . import fast

    compiled = mask is None and fast.worth_it(T, B, H, act_name, dtype.itemsize)
    C = chunk_steps(B, H, dtype.itemsize, T)
    if compiled:
        C = T if B * H * T * dtype.itemsize <= 256 * 2**20 else C
    mask_t = None if mask is None else np.ascontiguousarray(np.asarray(mask, bool).T)[..., None]
    prev_out = np.zeros((B, H), dtype)
    buf = np.empty((B, H), dtype)
    for t0 in range(0, T, C):
        t1 = min(T, t0 + C)
        xs = x[:, t0:t1]
        if trace:
            xw[t0:t1] = project(xs, kernel)
            xwb = xw[t0:t1] + bias if bias is not None else xw[t0:t1]
        else:
            xwb = project(xs, kernel, bias)
        o = out[t0:t1] if keep else np.empty_like(xwb)
        if compiled:
            h = fast.recurrence(xwb, recurrent_kernel, h, o, act_name,
                                None if not trace else hu[t0:t1], None if not trace else z[t0:t1])
            continue
        for k in range(t1 - t0):
            np.matmul(h, recurrent_kernel, out=buf)
            if trace:
                hu[t0 + k] = buf
            np.add(xwb[k], buf, out=buf)
            if trace:
                z[t0 + k] = buf
            if mask_t is None:
                if act_name == "tanh":
                    np.tanh(buf, out=o[k])
                else:
                    o[k] = act(buf)
                h = o[k]
            else:
                # A masked step keeps the state; its output is the previous output
                # (zeros with zero_output_for_mask), as Keras' rnn() does.
                h_new = act(buf)
                m = mask_t[t0 + k]
                h = np.where(m, h_new, h)
                o[k] = np.where(m, h_new, 0 if zero_output_for_mask else prev_out)
                prev_out = o[k]
        h = np.array(h)  # detach from the chunk buffer
    return _bm(out), h, _bm(xw), _bm(hu), _bm(z)


def _bm(a):
    """Time-major (T, B, H) -> a batch-major (B, T, H) view."""
    return None if a is None else a.transpose(1, 0, 2)
