"""The backward pass of the layers around the recurrent ones (rnncli/core/layers.py).

``backward(layer, inputs, outputs, g)`` takes what a layer's call took and gave and the
gradient of its output(s), and returns the gradient of each input (None where there is
none: integer ids, masks, comparisons) and of each of its weights by Keras name. Dropouts
and noise layers are identities, as at inference.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedLayerError
from . import activations
from .engine import matmul_rows
from .layers import (
    Activation,
    Dense,
    Embedding,
    Flatten,
    Identity,
    Masking,
    Op,
    SequenceLengths,
    TimeDistributed,
)

LOGIT_ACTIVATIONS = ("softmax", "sigmoid")  # they hand their input on to a crossentropy


def logits(layer, inputs):
    """The pre-activation of a ``softmax``/``sigmoid`` Dense or Activation layer (what
    TensorFlow's crossentropies use instead of the probabilities), else None.
    TimeDistributed restacks its steps, which drops them, as in Keras."""
    if isinstance(layer, Dense) and layer.activation in LOGIT_ACTIVATIONS:
        return _pre_activation(layer, inputs[0])
    if isinstance(layer, Activation) and layer.activation in LOGIT_ACTIVATIONS:
        return np.asarray(inputs[0])
    return None


def backward(layer, inputs, outputs, g, g_logits=None, kwargs=None):
    """(dL/d(each input), {weight name: dL/dw}) for one call of ``layer``.

    ``inputs``: the values the call took (masks stripped), ``outputs``: the values it
    gave, ``g``: dL/d(each output) or None; ``g_logits``: a gradient with respect to the
    pre-activation (from a loss that used :func:`logits`), added to what ``g`` gives;
    ``kwargs``: the call's keyword arguments (an operation's ``axis``)."""
    if isinstance(layer, Op):
        return _op(layer, inputs, outputs[0], g[0], kwargs or {}), {}
    g0 = g[0] if g else None
    x = inputs[0]
    if isinstance(layer, (Dense, TimeDistributed)):
        dense = layer.inner if isinstance(layer, TimeDistributed) else layer
        if not isinstance(dense, Dense):
            raise UnsupportedLayerError(
                f"layer {layer.name!r}: rnncli computes gradients through TimeDistributed("
                f"Dense) only, got TimeDistributed({dense.class_name})")
        return _dense(dense, x, outputs[0], g0, g_logits)
    if isinstance(layer, Activation):
        z = np.asarray(x)
        dz = 0 if g0 is None else activations.backward(layer.activation, g0, z, outputs[0],
                                                       layer.keras_major)
        return [dz + (0 if g_logits is None else g_logits)], {}
    if isinstance(layer, Embedding):
        return [None], {"embeddings": _embedding(layer, x, g0)}
    if g0 is None:
        return [None], {}
    if isinstance(layer, Masking):
        keep = np.any(np.asarray(x) != layer.mask_value, axis=-1)
        return [g0 * keep[..., None].astype(g0.dtype)], {}
    if isinstance(layer, Flatten):
        return [g0.reshape(np.shape(x))], {}
    if isinstance(layer, (Identity, SequenceLengths)):  # (lengths only mask later steps)
        return [g0], {}
    raise UnsupportedLayerError(
        f"layer {layer.name!r}: rnncli cannot compute gradients through a {layer.class_name}")


def _pre_activation(dense, x):
    x = np.asarray(x, dtype=dense.kernel.dtype)
    z = matmul_rows(x.reshape(-1, x.shape[-1]), dense.kernel).reshape(*x.shape[:-1], -1)
    return z if dense.bias is None else z + dense.bias


def _dense(dense, x, y, g, g_logits):
    x = np.asarray(x, dtype=dense.kernel.dtype)
    if g is None:
        dz = np.zeros_like(y)
    elif dense.activation == "linear":
        dz = g
    else:
        dz = activations.backward(dense.activation, g, _pre_activation(dense, x), y,
                                  dense.keras_major)
    if g_logits is not None:
        dz = dz + g_logits
    D, U = dense.kernel.shape
    flat = dz.reshape(-1, U)
    grads = {"kernel": x.reshape(-1, D).T @ flat}
    if dense.bias is not None:
        grads["bias"] = flat.sum(axis=0)
    return [(flat @ dense.kernel.T).reshape(x.shape)], grads


def _embedding(layer, ids, g):
    grad = np.zeros_like(layer.embeddings)
    if g is not None:
        ids = np.asarray(ids).astype(np.int64)
        np.add.at(grad, ids.reshape(-1), g.reshape(-1, grad.shape[1]))
    return grad


# ---------------------------------------------------------------- operations


def unbroadcast(g, shape):
    """Sum ``g`` down to ``shape`` (the reverse of numpy broadcasting)."""
    shape = tuple(shape)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _floats(v):
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def _op(layer, inputs, y, g, kwargs):
    """Gradients of an operation recorded as a layer, one per input (flattened)."""
    kind = layer.class_name
    xs = inputs[0] if len(inputs) == 1 and isinstance(inputs[0], list) else list(inputs)
    none = [None] * len(xs)
    if g is None or not _floats(np.asarray(y)):
        return none  # comparisons, Any/All, casts to ints or bools: no gradient
    xs_arr = [np.asarray(v) for v in xs]

    def fit(gi, v):
        return unbroadcast(gi, v.shape).astype(v.dtype, copy=False) if _floats(v) else None

    if kind == "Cast":
        return [fit(g, xs_arr[0])]
    if kind == "Add":
        return [fit(g, v) for v in xs_arr]
    if kind == "Subtract":
        return [fit(g, xs_arr[0]), fit(-g, xs_arr[1])]
    if kind == "Average":
        return [fit(g / len(xs), v) for v in xs_arr]
    if kind == "Multiply":
        out = []
        for i, v in enumerate(xs_arr):
            others = np.ones_like(g)
            for j, w in enumerate(xs_arr):
                if j != i:
                    others = others * w
            out.append(fit(g * others, v))
        return out
    if kind in ("Maximum", "Minimum"):
        # pairwise as the forward reduces: TensorFlow gives a tie to the first
        better = np.greater_equal if kind == "Maximum" else np.less_equal
        acc, partial = xs_arr[0], [xs_arr[0]]
        for v in xs_arr[1:]:
            acc = np.maximum(acc, v) if kind == "Maximum" else np.minimum(acc, v)
            partial.append(acc)
        out, gacc = [None] * len(xs), g
        for i in range(len(xs) - 1, 0, -1):
            first = better(partial[i - 1], xs_arr[i])
            out[i] = fit(np.where(first, 0, gacc), xs_arr[i])
            gacc = np.where(first, gacc, 0)
        out[0] = fit(gacc, xs_arr[0])
        return out
    if kind == "Concatenate":
        axis = {**layer.config, **kwargs}.get("axis", -1)
        edges = np.cumsum([v.shape[axis] for v in xs_arr])[:-1]
        return [fit(p, v) for p, v in zip(np.split(g, edges, axis=axis), xs_arr)]
    raise UnsupportedLayerError(f"layer {layer.name!r}: rnncli cannot compute gradients "
                                f"through {kind}")
