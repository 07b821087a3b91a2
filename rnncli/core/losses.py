"""Keras' five training losses and their gradients with respect to the prediction, in numpy.

Each is what ``model.compile(loss=NAME)`` trains on in Keras 3 with TensorFlow: a value
per element, averaged over the last axis (``mean(square(y_true - y_pred), axis=-1)`` for
``mse``), then Keras' default reduction, ``"sum_over_batch_size"``: the sum over every
remaining element divided by their count. Where the prediction carries a Keras mask
(B, T), a masked element weighs 0 and the others ``total / valid``: the loss is the mean
over unmasked steps (``keras.losses.loss.apply_mask``).

Crossentropies on probabilities clip them to ``[1e-7, 1 - 1e-7]`` as Keras does. With
TensorFlow, an output made by a ``softmax`` or ``sigmoid`` activation (a Dense or
Activation layer, not a TimeDistributed one) carries its logits, and the three
crossentropies use them instead (``_get_logits`` in Keras' TensorFlow backend):
``binary_crossentropy`` as ``sigmoid_cross_entropy_with_logits``, the categorical ones as
``softmax_cross_entropy_with_logits``. The value is the same unless a probability is
clipped; the gradient then still flows, as in TensorFlow. :func:`compute` takes those
logits when the caller has them and returns the gradient with respect to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError, UsageError

EPSILON = 1e-7  # keras.backend.epsilon()
LOSSES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy",
          "sparse_categorical_crossentropy")
ALIASES = {"mean_squared_error": "mse", "mean_absolute_error": "mae"}
CROSSENTROPIES = LOSSES[2:]


def normalize(name) -> str:
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in LOSSES:
        raise UsageError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return key


@dataclass
class LossValue:
    """``value``: the loss, a 0-d array; ``grad``: dL/d(prediction), or dL/d(logits) when
    ``through_logits`` (the caller passed the logits and the loss used them)."""

    value: np.ndarray
    grad: np.ndarray
    through_logits: bool = False


def compute(name, y_pred, y_true, mask=None, logits=None) -> LossValue:
    """Loss ``name`` of prediction ``y_pred`` against ``y_true`` and its gradient.

    ``mask``: the prediction's Keras mask ((B, T) for a (B, T, C) prediction) or None;
    ``logits``: the pre-activation of a softmax/sigmoid output, or None. Computes in
    ``y_pred``'s precision."""
    name = normalize(name)
    y_pred = np.asarray(y_pred)
    dtype = y_pred.dtype if y_pred.dtype.kind == "f" else np.dtype("float32")
    y_pred = y_pred.astype(dtype, copy=False)
    if name == "sparse_categorical_crossentropy":
        y_true, labels_shape = _labels(y_true, y_pred)
        pred = y_pred
    else:
        y_true = _targets(y_true, dtype, name)
        y_true, pred = _same_rank(y_true, y_pred)
        if y_true.shape != pred.shape:
            raise InputDataError(
                f"target has shape {y_true.shape}; expected {pred.shape} to match the "
                f"model's output for loss {name}")
    use_logits = logits is not None and name in CROSSENTROPIES
    z = np.asarray(logits, dtype).reshape(pred.shape) if use_logits else None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values, dvalues_dpred, factor = _ELEMENTWISE[name](pred if z is None else z, y_true,
                                                             z is not None, dtype)
    weights, total = _weights(values.shape, mask, dtype)
    weighted = values if weights is None else values * weights
    n = dtype.type(max(total, 1))
    value = np.asarray(np.sum(weighted, dtype=dtype) / n, dtype)
    grad = dvalues_dpred.astype(dtype, copy=False)
    grad *= (dtype.type(factor) / n) if weights is None else \
        (weights * (dtype.type(factor) / n))[..., None]
    return LossValue(value, grad.reshape(y_pred.shape), use_logits)


# ---------------------------------------------------------------- the parts


def _targets(y_true, dtype, name):
    y = np.asarray(y_true)
    if y.dtype.kind not in "fiub":
        raise InputDataError(f"target must be numeric for loss {name}, got dtype {y.dtype}")
    return y.astype(dtype, copy=False)


def _same_rank(y_true, y_pred):
    """Keras' squeeze_or_expand_to_same_rank(y_true, y_pred): a trailing axis of 1 more or
    less on one side is added or removed."""
    a, b = y_true, y_pred
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        b, a = (b[..., None], a) if b.ndim == 1 else (b, a[..., 0])
    elif b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        a, b = (a[..., None], b) if a.ndim == 1 else (a, b[..., 0])
    if b.ndim == 0:
        a, b = a.reshape(1), b.reshape(1)
    if b.ndim == 1:  # a loss per value of a (B,) output
        a, b = a[:, None], b[:, None]
    return a, b


def _labels(y_true, y_pred):
    y = np.asarray(y_true)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise InputDataError("targets for sparse_categorical_crossentropy must be "
                                 "integer class ids, got non-integer values")
    elif y.dtype.kind not in "iub":
        raise InputDataError(f"targets for sparse_categorical_crossentropy must be integer "
                             f"class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.ndim == y_pred.ndim and y.shape[-1] == 1:
        y = y[..., 0]
    if y.shape != y_pred.shape[:-1]:
        raise InputDataError(
            f"target has shape {np.shape(y_true)}; expected {y_pred.shape[:-1]} (one class id "
            f"per prediction of shape {y_pred.shape}) for sparse_categorical_crossentropy")
    C = y_pred.shape[-1]
    bad = (y < 0) | (y >= C)
    if bad.any():
        raise InputDataError(
            f"target class id {y[bad].ravel()[0]} is out of range; expected "
            + (f"0..{C - 1} for an output of {C} classes" if C > 1 else
               "0 for an output of one unit (0/1 targets: --loss binary_crossentropy)"))
    return y, y.shape


def _weights(shape, mask, dtype):
    """(per-value weights or None, count of values): Keras' apply_mask and reduce_values."""
    total = int(np.prod(shape))
    if mask is None:
        return None, total
    m = np.asarray(mask, bool)
    if m.shape != tuple(shape):
        return None, total  # Keras applies a mask only where it lines up with the values
    valid = int(m.sum())
    scale = dtype.type(total) / dtype.type(valid) if valid else dtype.type(0)
    return m.astype(dtype) * scale, total


# Each loss per element: (values over all but the last axis, d(values)/d(prediction)
# up to a constant factor, that factor), so the gradient is scaled in one pass.


def _mean_last(per_value, grad, dtype, factor=1.0):
    C = per_value.shape[-1]
    return np.mean(per_value, axis=-1, dtype=dtype), grad, factor / C


def _mse(p, t, logits, dtype):
    d = p - t
    C = d.shape[-1]
    return np.einsum("...i,...i->...", d, d) / dtype.type(C), d, 2.0 / C


def _mae(p, t, logits, dtype):
    d = p - t
    return _mean_last(np.abs(d), np.sign(d), dtype)


def _clip(p, dtype):
    lo, hi = dtype.type(EPSILON), dtype.type(1.0 - EPSILON)
    inside = (p >= lo) & (p <= hi)  # tf.clip_by_value passes the gradient at its ends
    return np.clip(p, lo, hi), inside


def _bce(p, t, logits, dtype):
    if logits:  # sigmoid_cross_entropy_with_logits
        z = p
        per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        return _mean_last(per, _sigmoid(z) - t, dtype)
    pc, inside = _clip(p, dtype)
    per = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    grad = np.where(inside, -t / pc + (1 - t) / (1 - pc), 0)
    return _mean_last(per, grad.astype(dtype, copy=False), dtype)


def _cce(p, t, logits, dtype):
    if logits:  # softmax_cross_entropy_with_logits
        logp = _log_softmax(p)
        per = -np.sum(t * logp, axis=-1)
        return per, np.exp(logp) * np.sum(t, axis=-1, keepdims=True) - t, 1.0
    s = np.sum(p, axis=-1, keepdims=True)
    q = p / s
    qc, inside = _clip(q, dtype)
    per = -np.sum(t * np.log(qc), axis=-1)
    dq = np.where(inside, -t / qc, 0).astype(dtype, copy=False)
    grad = (dq - np.sum(dq * p, axis=-1, keepdims=True) / s) / s
    return per, grad, 1.0


def _scce(p, labels, logits, dtype):
    onehot = np.zeros(p.shape, dtype)
    np.put_along_axis(onehot, labels[..., None], 1, axis=-1)
    if logits:  # sparse_softmax_cross_entropy_with_logits
        logp = _log_softmax(p)
        return -np.sum(onehot * logp, axis=-1), np.exp(logp) - onehot, 1.0
    pc, inside = _clip(p, dtype)
    logp = _log_softmax(np.log(pc))
    dl = np.exp(logp) - onehot  # d/d log(clipped p)
    return -np.sum(onehot * logp, axis=-1), np.where(inside, dl / pc, 0).astype(dtype), 1.0


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _log_softmax(z):
    s = z - z.max(axis=-1, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))


_ELEMENTWISE = {"mse": _mse, "mae": _mae, "binary_crossentropy": _bce,
                "categorical_crossentropy": _cce, "sparse_categorical_crossentropy": _scce}
