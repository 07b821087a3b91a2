"""The values of an ONNX graph's constant subgraphs: initializers and ``Constant`` nodes,
and what layout operators make of them.

``torch.onnx.export`` below opset 9 folds no constants: W, R and B reach a recurrent
node through Slice, Concat and Unsqueeze of the initializers, and shapes through Cast of
Constants. :func:`fold` computes those few operators on stored arrays (numpy only, no
operator that can grow an array: no Expand, Tile or ConstantOfShape), so the reader sees
the arrays the node takes.
"""

from __future__ import annotations

import numpy as np

from .tensor import DATA_TYPES

MAX_ELEMENTS = 2**26  # a folded value larger than this is left to the graph


def _ints(node, consts, attr, k):
    if attr in node.attributes:
        return [int(v) for v in node.attributes[attr]]
    if len(node.inputs) > k and node.inputs[k] in consts:
        return [int(v) for v in np.asarray(consts[node.inputs[k]]).reshape(-1)]
    return None


def _slice(node, a, consts):
    starts, ends = _ints(node, consts, "starts", 1), _ints(node, consts, "ends", 2)
    if starts is None or ends is None:
        return None
    axes = _ints(node, consts, "axes", 3) or list(range(len(starts)))
    steps = _ints(node, consts, "steps", 4) or [1] * len(starts)
    index = [slice(None)] * a.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st == 0:
            return None
        index[ax % a.ndim] = slice(s, e, st)
    return a[tuple(index)]


def _reshape(node, a, consts):
    shape = _ints(node, consts, "shape", 1)
    if shape is None:
        return None
    if not node.attributes.get("allowzero", 0):
        shape = [a.shape[k] if d == 0 and k < a.ndim else d for k, d in enumerate(shape)]
    return a.reshape(shape)


def _unsqueeze(node, a, consts):
    axes = _ints(node, consts, "axes", 1)
    if axes is None:
        return None
    r = a.ndim + len(axes)
    for ax in sorted(x % r for x in axes):
        a = np.expand_dims(a, ax)
    return a


def _squeeze(node, a, consts):
    axes = _ints(node, consts, "axes", 1)
    return np.squeeze(a) if axes is None else np.squeeze(a, tuple(x % a.ndim for x in axes))


def _cast(node, a, consts):
    to = DATA_TYPES.get(node.attributes.get("to"))
    return None if to is None or node.attributes.get("to") == 16 else \
        a.astype(np.dtype(to[1]).newbyteorder("="))


def _gather(node, a, consts):
    index = np.asarray(consts[node.inputs[1]]) if len(node.inputs) > 1 else None
    axis = node.attributes.get("axis", 0)
    if index is None or a.ndim == 0 or index.dtype.kind not in "iu" or \
            index.size * (a.size // max(a.shape[axis % a.ndim], 1)) > MAX_ELEMENTS:
        return None  # (checked before anything is allocated)
    return np.take(a, index, axis)


FOLD = {
    "Identity": lambda n, a, c: a,
    "Cast": _cast,
    "Transpose": lambda n, a, c: np.transpose(a, n.attributes.get("perm")),
    "Slice": _slice,
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Shape": lambda n, a, c: np.array(a.shape, np.int64),
    "Gather": lambda n, a, c: _gather(n, a, c),
    "Concat": lambda n, a, c: np.concatenate([np.asarray(c[i]) for i in n.inputs],
                                             n.attributes.get("axis", 0)),
}


def fold(model) -> dict:
    """name -> array for every initializer, Constant output and value computed from them
    alone by the operators in FOLD."""
    consts = {**model.constants(), **model.initializers}
    for node in model.nodes:
        step = FOLD.get(node.op_type)
        if step is None or node.domain not in ("", "ai.onnx") or not node.outputs or \
                not node.inputs or not node.inputs[0] or node.outputs[0] in consts:
            continue
        if any(name and name not in consts for name in node.inputs):
            continue
        try:
            value = step(node, np.asarray(consts[node.inputs[0]]), consts)
        except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError, OverflowError):
            value = None  # the graph's own business: left to it, and skipped if unused
        if value is not None and np.size(value) <= MAX_ELEMENTS:
            consts[node.outputs[0]] = np.ascontiguousarray(value)
    return consts
