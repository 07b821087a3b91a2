"""Which tensor is which in an ONNX graph around its RNN nodes, computed on names, not data.

Graphs such as ``torch.onnx.export`` writes put layout operators between the recurrent
nodes (Transpose, Squeeze, Reshape ...) and a head after them (MatMul, Add, Softmax).
:class:`Flow` follows values from the graph input and each recurrent node's outputs
through those operators, tracking each axis as a group of named *atoms*: ``B`` (batch),
``T`` (time in input order) or ``T~`` (reversed), ``D3``/``H3`` (directions and hidden
units of node 3), ``O5`` (the outputs of the Dense layer MatMul node 5 computes) ... A
Reshape that merges directions and units gives one axis ``(D3, H3)``: directions outer,
as Keras concatenates them. Nothing is computed on data; an operator it does not know
ends a path (the caller says which were skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .constants import fold

LAYOUT_OPS = ("Identity", "Dropout", "Cast")
ACTIVATION_OPS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Softsign": "softsign",
                  "Softplus": "softplus", "Softmax": "softmax", "LogSoftmax": "log_softmax",
                  "Elu": "elu", "LeakyRelu": "leaky_relu", "HardSigmoid": "hard_sigmoid"}
BIG = 2**31 - 1


@dataclass
class Dense:
    """A head layer found after the recurrent nodes: x·kernel + bias, then activation."""

    node: int
    name: str
    kernel: np.ndarray
    bias: np.ndarray | None = None
    activation: str = "linear"
    keras_major: int = 3
    takes: tuple = ()  # the atoms of the input's last axis


@dataclass(frozen=True)
class Value:
    """A tracked tensor: where it comes from (``root``: ``input:<name>`` or
    ``node:<i>:<role>``), its axes as groups of atoms, the nodes used on the way, the head
    layers applied, and an embedding lookup (node index, table) at its start."""

    root: str
    axes: tuple
    used: frozenset = field(default=frozenset(), compare=False)
    head: tuple = field(default=(), compare=False)
    embed: tuple | None = field(default=None, compare=False)

    def then(self, node, axes=None, head=None):
        return Value(self.root, self.axes if axes is None else tuple(axes),
                     self.used | {node}, self.head if head is None else tuple(head), self.embed)


class Flow:
    """Values of ``model`` (an rnncli.onnx.graph.OnnxModel) reachable from seeded roots."""

    def __init__(self, model):
        self.model = model
        self.consts = fold(model)  # initializers, Constants and what they make
        self.values: dict[str, Value] = {}
        self.sizes: dict[str, int | None] = {"B": None, "T": None, "T~": None}
        self.opset = model.opset or 14

    def seed(self, name, root, axes, sizes=None):
        self.values[name] = Value(root, tuple(tuple(g) for g in axes))
        self.sizes.update(sizes or {})

    def run(self):
        for i, node in enumerate(self.model.nodes):
            if node.is_recurrent or node.domain not in ("", "ai.onnx") or not node.outputs:
                continue
            step = getattr(self, f"_op_{node.op_type}", None)
            if step is None and node.op_type in LAYOUT_OPS:
                step = self._same
            if step is None and node.op_type in ACTIVATION_OPS:
                step = self._activation
            if step is None:
                continue
            try:
                out = step(i, node)
            except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError):
                out = None  # attributes or constants not as ONNX defines them: not followed
            if out is not None:
                self.values[node.outputs[0]] = out

    # ------------------------------------------------------------ helpers

    def size(self, group):
        """Elements in a group of atoms, or None when a size is unknown."""
        n = 1
        for a in group:
            s = self.sizes.get(a)
            if s is None:
                return None
            n *= s
        return n

    def normal(self, axes) -> tuple:
        """The axes as they compare: without a one-way node's directions atom (size 1) and
        without empty axes (from Unsqueeze)."""
        out = []
        for g in axes:
            g = tuple(a for a in g if not (a.startswith("D") and self.sizes.get(a) == 1))
            if g:
                out.append(g)
        return tuple(out)

    def const(self, name):
        return self.consts.get(name) if name else None

    def tracked(self, node, k=0):
        return self.values.get(node.inputs[k]) if len(node.inputs) > k else None

    def ints(self, node, attr, k):
        """A list of ints from attribute ``attr`` (older opsets) or constant input ``k``."""
        if attr in node.attributes:
            return [int(v) for v in node.attributes[attr]]
        c = self.const(node.inputs[k]) if len(node.inputs) > k else None
        return None if c is None else [int(v) for v in np.asarray(c).reshape(-1)]

    # ------------------------------------------------------------ layout

    def _same(self, i, node):
        v = self.tracked(node)
        return None if v is None else v.then(i)

    def _op_Transpose(self, i, node):
        v = self.tracked(node)
        if v is None:
            return None
        perm = node.attributes.get("perm") or list(range(len(v.axes)))[::-1]
        if sorted(perm) != list(range(len(v.axes))):
            return None
        return v.then(i, [v.axes[p] for p in perm])

    def _op_Squeeze(self, i, node):
        v = self.tracked(node)
        if v is None:
            return None
        axes = self.ints(node, "axes", 1)
        r = len(v.axes)
        if axes is None:
            drop = {k for k, g in enumerate(v.axes) if self.size(g) == 1}
        else:
            drop = {a % r for a in axes if -r <= a < r}
            if len(drop) != len(axes) or any(self.size(v.axes[k]) != 1 for k in drop):
                return None
        return v.then(i, [g for k, g in enumerate(v.axes) if k not in drop])

    def _op_Unsqueeze(self, i, node):
        v = self.tracked(node)
        axes = self.ints(node, "axes", 1)
        if v is None or axes is None:
            return None
        r = len(v.axes) + len(axes)
        where = sorted(a % r for a in axes if -r <= a < r)
        if len(set(where)) != len(axes):
            return None
        out = list(v.axes)
        for a in where:
            out.insert(a, ())
        return v.then(i, out)

    def _op_Flatten(self, i, node):
        v = self.tracked(node)
        if v is None:
            return None
        axis = node.attributes.get("axis", 1) % (len(v.axes) + 1)
        return v.then(i, [sum(v.axes[:axis], ()), sum(v.axes[axis:], ())])

    def _op_Reshape(self, i, node):
        v = self.tracked(node)
        shape = self.const(node.inputs[1]) if len(node.inputs) > 1 else None
        if v is None or shape is None:
            return None
        shape = [int(s) for s in np.asarray(shape).reshape(-1)]
        if node.attributes.get("allowzero", 0) and 0 in shape or shape.count(-1) > 1:
            return None
        axes = self._reshape(v.axes, shape)
        return None if axes is None else v.then(i, axes)

    def _reshape(self, groups, shape):
        atoms = [a for g in groups for a in g]
        starts = np.cumsum([0] + [len(g) for g in groups]).tolist()
        hole = shape.index(-1) if -1 in shape else len(shape)
        left, right = [], []
        p = 0
        for j in range(hole):
            got = self._take(groups, starts, atoms, shape[j], j, p, forward=True)
            if got is None:
                return None
            group, p = got
            left.append(group)
        q = len(atoms)
        for j in range(len(shape) - 1, hole, -1):
            got = self._take(groups, starts, atoms, shape[j], j, q, forward=False)
            if got is None:
                return None
            group, q = got
            right.insert(0, group)
        if hole < len(shape):
            if q < p:
                return None
            left.append(tuple(atoms[p:q]))
        elif p != q or any(self.sizes.get(a) != 1 for a in atoms[p:]):
            return None
        return left + right

    def _take(self, groups, starts, atoms, dim, j, at, forward):
        """(group, new position) for one target dim, reading atoms from ``at``."""
        if dim == 0:
            if j >= len(groups) or (starts[j] if forward else starts[j + 1]) != at:
                return None
            return groups[j], (starts[j + 1] if forward else starts[j])
        got, n = [], 1
        while n < dim or (forward and at < len(atoms) and self.sizes.get(atoms[at]) == 1):
            k = at if forward else at - 1
            if not 0 <= k < len(atoms):
                return None
            s = self.sizes.get(atoms[k])
            if s is None:
                return None
            if n * s > dim and s != 1:
                return None
            got.append(atoms[k])
            n *= s
            at = at + 1 if forward else at - 1
        return (tuple(got) if forward else tuple(reversed(got))), at

    def _op_Slice(self, i, node):
        """A whole slice (a no-op), or time reversed: step -1 from the end to the start."""
        v = self.tracked(node)
        if v is None:
            return None
        starts, ends = self.ints(node, "starts", 1), self.ints(node, "ends", 2)
        axes, steps = self.ints(node, "axes", 3), self.ints(node, "steps", 4)
        if starts is None or ends is None:
            return None
        r = len(v.axes)
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
        out = list(v.axes)
        for s, e, a, st in zip(starts, ends, axes, steps):
            a %= r
            if st == 1 and s == 0 and e >= BIG:
                continue  # the whole axis
            if st == -1 and (s == -1 or s >= BIG) and e <= -BIG and out[a] in (("T",), ("T~",)):
                out[a] = ("T~",) if out[a] == ("T",) else ("T",)
                continue
            return None
        return v.then(i, out)

    # ------------------------------------------------------------ embedding and head

    def _op_Gather(self, i, node):
        """An embedding lookup (a constant table indexed by the graph input's ids), or one
        direction picked from a one-way node's states (``h_n[-1]``), perhaps from a Concat
        of several nodes' states."""
        if self.const(node.inputs[0]) is None:
            return self._pick(i, node)
        table, ids = self.const(node.inputs[0]), self.tracked(node, 1)
        if table is None or ids is None or not ids.root.startswith("input:") or ids.head or \
                ids.embed or np.ndim(table) != 2 or node.attributes.get("axis", 0) != 0:
            return None
        atom = f"E{i}"
        self.sizes[atom] = table.shape[1]
        return Value(ids.root, ids.axes + ((atom,),), ids.used | {i}, (), (i, table))

    def _pick(self, i, node):
        index = self.const(node.inputs[1]) if len(node.inputs) > 1 else None
        if index is None or np.size(index) != 1 or np.asarray(index).dtype.kind not in "iu":
            return None
        k, axis = int(np.asarray(index).reshape(-1)[0]), node.attributes.get("axis", 0)
        parts = [node.inputs[0]]
        producer = next((n for n in self.model.nodes if node.inputs[0] in n.outputs), None)
        v = self.values.get(node.inputs[0])
        if v is None and producer is not None and producer.op_type == "Concat":
            parts = producer.inputs
            if producer.attributes.get("axis") != axis:
                return None
        values = [self.values.get(n) for n in parts]
        if any(p is None or not p.axes for p in values):
            return None
        axis %= len(values[0].axes)
        sizes = [self.size(p.axes[axis]) for p in values]
        if None in sizes:
            return None
        k %= sum(sizes)
        for p, n in zip(values, sizes):
            if k < n:
                group = p.axes[axis]
                if n != 1 or len(group) != 1 or not group[0].startswith("D"):
                    return None
                axes = list(p.axes)
                if np.ndim(index) == 0:
                    del axes[axis]
                else:
                    axes[axis] = ()
                used = p.used | {i} | ({self.model.nodes.index(producer)} if len(parts) > 1
                                       else set())
                return Value(p.root, tuple(axes), used, p.head, p.embed)
            k -= n
        return None

    def _dense(self, i, node, v, kernel, bias=None):
        if v is None or not v.axes or np.ndim(kernel) != 2 or \
                self.size(v.axes[-1]) != kernel.shape[0] or np.asarray(kernel).dtype.kind != "f":
            return None
        atom = f"O{i}"
        self.sizes[atom] = kernel.shape[1]
        d = Dense(i, node.name, np.asarray(kernel), bias, takes=self.normal(v.axes[-1:]))
        return v.then(i, v.axes[:-1] + ((atom,),), v.head + (d,))

    def _op_MatMul(self, i, node):
        return self._dense(i, node, self.tracked(node), self.const(node.inputs[1]))

    def _op_Gemm(self, i, node):
        a, b = node.attributes, self.const(node.inputs[1])
        c = self.const(node.inputs[2]) if len(node.inputs) > 2 else None
        v = self.tracked(node)
        if b is None or v is None or len(v.axes) != 2 or a.get("transA", 0) or \
                not np.isclose(a.get("alpha", 1.0), 1) or not np.isclose(a.get("beta", 1.0), 1):
            return None
        kernel = np.asarray(b).T if a.get("transB", 0) else np.asarray(b)
        if c is not None and np.size(c) != kernel.shape[1]:
            return None
        return self._dense(i, node, v, kernel, None if c is None else np.asarray(c).reshape(-1))

    def _op_Add(self, i, node):
        v, k = self.tracked(node, 0), 1
        if v is None:
            v, k = self.tracked(node, 1), 0
        b = self.const(node.inputs[k]) if len(node.inputs) > k else None
        if v is None or b is None or not v.head or not isinstance(v.head[-1], Dense):
            return None
        d = v.head[-1]
        units = d.kernel.shape[1]
        if d.bias is not None or d.activation != "linear" or np.size(b) != units or \
                np.shape(b)[-1:] != (units,) or np.ndim(b) > len(v.axes):
            return None
        bias = np.asarray(b).reshape(-1).astype(d.kernel.dtype)
        return v.then(i, head=v.head[:-1] + (Dense(d.node, d.name, d.kernel, bias,
                                                    takes=d.takes),))

    def _activation(self, i, node):
        v = self.tracked(node)
        if v is None:
            return None
        op, a = node.op_type, node.attributes
        name, major = ACTIVATION_OPS[op], 3
        if op in ("Softmax", "LogSoftmax"):
            default = -1 if self.opset >= 13 else 1
            if a.get("axis", default) % len(v.axes) != len(v.axes) - 1:
                return None
        elif op == "Elu" and not np.isclose(a.get("alpha", 1.0), 1):
            return None
        elif op == "LeakyRelu" and not np.isclose(a.get("alpha", 0.01), 0.2):
            return None
        elif op == "HardSigmoid":
            alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
            if not np.isclose(beta, 0.5) or not (np.isclose(alpha, 0.2) or
                                                  np.isclose(alpha, 1 / 6)):
                return None
            major = 2 if np.isclose(alpha, 0.2) else 3
        last = v.head[-1] if v.head else None
        if isinstance(last, Dense) and last.activation == "linear":
            d = Dense(last.node, last.name, last.kernel, last.bias, name, major, last.takes)
            return v.then(i, head=v.head[:-1] + (d,))
        return v.then(i, head=v.head + ((name, major, node.name),))

    # ------------------------------------------------------------ states

    def zeros(self, name) -> frozenset | None:
        """The nodes computing ``name`` when it is all zeros whatever the input
        (ConstantOfShape of 0, sliced, reshaped, expanded ...), else None."""
        c = self.const(name)
        if c is not None:
            return frozenset() if not np.any(c) else None
        producer = next(((i, n) for i, n in enumerate(self.model.nodes) if name in n.outputs),
                        None)
        if producer is None:
            return None
        i, node = producer
        if node.op_type in ("ConstantOfShape", "ConstantFill"):  # (ConstantFill: opset < 9)
            value = node.attributes.get("value")
            return frozenset({i}) if value is None or not np.any(value) else None
        if node.op_type in ("Slice", "Reshape", "Unsqueeze", "Squeeze", "Expand", "Tile",
                            "Transpose", "Identity", "Cast", "Gather"):
            inner = self.zeros(node.inputs[0]) if node.inputs else None
            return None if inner is None else inner | {i}
        if node.op_type == "Concat":
            parts = [self.zeros(n) for n in node.inputs]
            return None if any(p is None for p in parts) else frozenset({i}).union(*parts)
        return None
