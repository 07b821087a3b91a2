"""ONNX models with RNN, LSTM and GRU nodes as rnncli models.

Each recurrent node becomes one layer (a ``Bidirectional`` with concat for
``direction="bidirectional"``; ``reverse`` is Keras' ``go_backwards``), named after the
node (``/rnn/LSTM_1`` -> ``rnn.LSTM_1``; unnamed nodes ``lstm_0`` ...), with the weights
mapped as rnncli/onnx/gates.py says. Nodes chain when each takes the one before's ``Y``
through layout operators (rnncli/onnx/dataflow.py); a MatMul/Gemm (+ Add, + activation)
after the last node is a Dense head, TimeDistributed on ``Y``, plain on ``Y_h``. Other
operators are skipped, and a note names them. Inputs are batch-first (B, T, features)
whatever the graph's input layout.

Read exactly: ``layout`` 0 and 1, activations with a Keras equivalent,
``linear_before_reset`` 0 and 1, stored ``initial_h``/``initial_c`` (the layer's default
initial state), stored ``sequence_lens`` (a mask: ONNX's outputs are zeros past each
length and Y_h is the last valid step, which is what Keras' masking computes with
``zero_output_for_mask``). Refused, one line each: ``clip``, peepholes ``P`` (unless
zeros), ``input_forget=1``, LSTM activations g ≠ h, weights computed by the graph,
lengths or states computed by it.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..core import layers as L
from ..core.cells import registry
from ..core.model import InputSpec, Model
from ..core.rnn import RNN, Bidirectional
from ..core.settings import apply_settings
from ..errors import ModelFileError
from .dataflow import Dense, Flow
from .gates import GATES, OP_CLASS, keras_activations, keras_weights
from .graph import read_onnx


class _Names:
    def __init__(self):
        self.used = set()

    def __call__(self, raw, fallback):
        base = re.sub(r"[^A-Za-z0-9_.:-]+", ".", (raw or "").strip("/")).strip(".") or fallback
        name, n = base, 1
        while name in self.used:
            name, n = f"{base}_{n}", n + 1
        self.used.add(name)
        return name


def _settings(node, where) -> dict:
    """The node's settings, each checked to be of the type ONNX defines."""
    a = node.attributes
    acts = a.get("activations")
    if acts is not None and not (isinstance(acts, list) and all(isinstance(x, str)
                                                                 for x in acts)):
        raise ModelFileError(f"{where}: attribute activations is {acts!r:.40}; expected a "
                             f"list of names")
    s = node.settings()

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    checks = {
        "direction": (lambda v: isinstance(v, str) and v in ("forward", "reverse",
                                                             "bidirectional"),
                      "forward, reverse or bidirectional"),
        "hidden_size": (lambda v: v is None or (isinstance(v, int) and v > 0),
                        "a positive integer"),
        "activation_alpha": (lambda v: v is None or (isinstance(v, list) and
                                                     all(number(x) for x in v)), "floats"),
        "activation_beta": (lambda v: v is None or (isinstance(v, list) and
                                                    all(number(x) for x in v)), "floats"),
        "clip": (lambda v: v is None or number(v), "a float"),
        "layout": (lambda v: isinstance(v, int) and v in (0, 1), "0 or 1"),
        "linear_before_reset": (lambda v: isinstance(v, int) and v in (0, 1), "0 or 1"),
        "input_forget": (lambda v: isinstance(v, int) and v in (0, 1), "0 or 1"),
    }
    for key, (ok, want) in checks.items():
        if key in s and (isinstance(s[key], bool) or not ok(s[key])):
            raise ModelFileError(f"{where}: attribute {key} is {s[key]!r:.40}; expected {want}")
    return s


class _Node:
    """One recurrent node, checked, with what rnncli builds from it."""

    def __init__(self, m, flow, index, node, k, where, names):
        self.index, self.node, self.op = index, node, node.op_type
        self.name = names(node.name, f"{node.op_type.lower()}_{k}")
        self.where = f"{where}: node {node.name or self.name!r} ({self.op})"
        s = _settings(node, self.where)
        self.direction, self.layout = s["direction"], s["layout"]
        roles = node.input_names()
        arrays = {r: flow.consts[n] for r, n in roles.items() if n in flow.consts}
        for role in ("W", "R") + (("B",) if "B" in roles else ()):
            if role not in arrays:
                raise ModelFileError(f"{self.where}: its {role} ({roles.get(role)!r}) is "
                                     f"computed by the graph; expected an initializer or "
                                     f"Constant")
        W, R = arrays["W"], arrays["R"]
        B = arrays.get("B")
        G = GATES[self.op]
        dirs = 2 if self.direction == "bidirectional" else 1
        if self.direction not in ("forward", "reverse", "bidirectional"):
            raise ModelFileError(f"{self.where}: direction {self.direction!r}; expected "
                                 f"forward, reverse or bidirectional")
        H = R.shape[-1] if R.ndim == 3 else 0
        if s["hidden_size"] not in (None, H) or W.ndim != 3 or W.shape[:2] != (dirs, G * H) \
                or R.shape != (dirs, G * H, H) or (B is not None and B.shape != (dirs, 2 * G * H)):
            raise ModelFileError(
                f"{self.where}: W {W.shape}, R {R.shape}, B {None if B is None else B.shape}"
                f"; expected [{dirs}, {G}·H, D], [{dirs}, {G}·H, H], [{dirs}, {2 * G}·H] "
                f"with H = hidden_size {s['hidden_size']}")
        if W.dtype.kind != "f" or R.dtype.kind != "f":
            raise ModelFileError(f"{self.where}: W and R are {W.dtype}, {R.dtype}; expected "
                                 f"floats")
        self.dirs, self.hidden, self.input_size = dirs, H, W.shape[2]
        if s["clip"] is not None:
            raise ModelFileError(f"{self.where}: clips its cell inputs to ±{s['clip']:g}, "
                                 f"which rnncli does not compute; expected no clip")
        if s.get("input_forget"):
            raise ModelFileError(f"{self.where}: input_forget=1 couples the input and forget "
                                 f"gates, which rnncli does not compute; expected 0")
        if "P" in roles:
            P = arrays.get("P")
            if P is None or np.any(P):
                raise ModelFileError(f"{self.where}: has peephole weights P, which rnncli "
                                     f"does not compute; expected no P (or zeros)")
        acts = s["activations"]
        n = len(acts) // dirs if len(acts) % dirs == 0 else 0
        if n != {"RNN": 1, "GRU": 2, "LSTM": 3}[self.op]:
            raise ModelFileError(f"{self.where}: {len(acts)} activations; expected "
                                 f"{dirs * {'RNN': 1, 'GRU': 2, 'LSTM': 3}[self.op]}")
        mapped = keras_activations(acts, s["activation_alpha"], s["activation_beta"],
                                   self.where)
        self.lengths = self._lengths(m, flow, roles)
        self.zero_states, self.state_input = frozenset(), None
        states = self._states(m, flow, roles, dirs)
        f32 = (lambda a: a.astype(np.float32)) if W.dtype.itemsize < 4 else (lambda a: a)
        self.directions = []
        for d in range(dirs):
            these = mapped[d * n:(d + 1) * n]
            self.directions.append(self._rnn(d, f32(W[d]), f32(R[d]),
                                             None if B is None else f32(B[d]), these,
                                             s.get("linear_before_reset", 0), states))

    def _lengths(self, m, flow, roles):
        name = roles.get("sequence_lens")
        if not name:
            return None
        lens = flow.const(name)
        if lens is None:
            raise ModelFileError(f"{self.where}: its sequence_lens ({name!r}) is computed or "
                                 f"a graph input; rnncli reads stored lengths only (or run "
                                 f"full-length sequences without them)")
        lens = np.asarray(lens).reshape(-1)
        if lens.dtype.kind not in "iu":
            raise ModelFileError(f"{self.where}: sequence_lens is {lens.dtype}; expected "
                                 f"integers")
        return lens

    def _states(self, m, flow, roles, dirs):
        out = {}
        for role, state in (("initial_h", "h"), ("initial_c", "c")):
            name = roles.get(role)
            if not name:
                continue
            value = flow.const(name)
            if value is not None:
                a = np.asarray(value)
                if a.ndim != 3 or a.dtype.kind != "f":
                    raise ModelFileError(f"{self.where}: {role} is {a.dtype} {a.shape}; "
                                         f"expected floats of 3 dimensions")
                out[state] = a if self.layout == 0 else a.transpose(1, 0, 2)
                continue
            zeros = flow.zeros(name)
            if zeros is not None:
                self.zero_states |= zeros
            elif any(v.name == name for v in m.inputs):
                self.state_input = (role, name)
            else:
                raise ModelFileError(f"{self.where}: its {role} ({name!r}) is computed by the "
                                     f"graph and not zeros; expected an initializer, zeros "
                                     f"or a graph input")
        if out and any(a.shape[0] != dirs or a.shape[2] != self.hidden for a in out.values()):
            raise ModelFileError(f"{self.where}: initial states of shapes "
                                 f"{[a.shape for a in out.values()]} don't fit {dirs} "
                                 f"direction(s) of {self.hidden} units")
        return out

    def _rnn(self, d, W, R, B, acts, lbr, states):
        cls = OP_CLASS[self.op]
        kernel, recurrent, bias, reset_after = keras_weights(self.op, W, R, B, lbr)
        majors = {m for _, m in acts if m is not None}
        if len(majors) > 1:
            raise ModelFileError(f"{self.where}: mixes Keras 2's and Keras 3's "
                                 f"hard_sigmoid; expected one")
        major = majors.pop() if majors else 3
        names = [a for a, _ in acts]
        if self.op == "LSTM" and names[1] != names[2]:
            raise ModelFileError(f"{self.where}: cell activation {names[1]} differs from its "
                                 f"output activation {names[2]}; Keras' LSTM has one "
                                 f"activation for both (expected g = h)")
        cell_type, _ = registry()[cls]
        inner = self.name if self.dirs == 1 else f"{self.name}/{('forward', 'backward')[d]}"
        kw = {"activation": names[-1], "keras_major": major, "name": inner}
        if self.op != "RNN":
            kw["recurrent_activation"] = names[0]
        if self.op == "GRU":
            kw["reset_after"] = reset_after
        cell = cell_type(kernel, recurrent, bias, **kw)
        layer = RNN(inner, cell, return_sequences=True,
                    go_backwards=d == 1 or self.direction == "reverse",
                    zero_output_for_mask=self.lengths is not None)
        if states:
            names = cell.state_names
            layer.default_initial_state = tuple(states[s][d] if s in states else
                                                np.zeros((1, self.hidden), cell.dtype)
                                                for s in names)
        return layer

    def seed(self, flow):
        i, D, H = self.index, f"D{self.index}", f"H{self.index}"
        sizes = {D: self.dirs, H: self.hidden}
        y = [("T",), (D,), ("B",), (H,)] if self.layout == 0 else [("B",), ("T",), (D,), (H,)]
        state = [(D,), ("B",), (H,)] if self.layout == 0 else [("B",), (D,), (H,)]
        for role, name in self.node.output_names().items():
            flow.seed(name, f"node:{i}:{role}", y if role == "Y" else state, sizes)

    def layer(self, return_sequences):
        for d in self.directions:
            d.return_sequences = return_sequences
        if self.dirs == 1:
            return self.directions[0]
        return Bidirectional(self.name, *self.directions)

    def describe(self):
        return {"layer": self.name, "node": self.node.name, "op": self.op,
                "direction": self.direction, "layout": self.layout,
                "outputs": self.node.output_names()}


def load(path, settings: dict | None = None) -> Model:
    """A model from the ONNX file ``path``: its RNN/LSTM/GRU nodes and the head after them."""
    where = os.fspath(path)
    m = read_onnx(where)
    found = [(i, n) for i, n in enumerate(m.nodes) if n.is_recurrent]
    if not found:
        ops = ", ".join(m.other_op_types[:8]) or "none"
        raise ModelFileError(f"{where}: no RNN, LSTM or GRU node (operators: {ops}); "
                             f"expected an ONNX model with a recurrent node")
    flow, names = Flow(m), _Names()
    nodes = [_Node(m, flow, i, n, k, where, names) for k, (i, n) in enumerate(found)]
    for node in nodes:
        node.seed(flow)
    for v in m.inputs:
        rank = len(v.shape) if v.shape is not None else 3
        last = v.shape[-1] if v.shape and isinstance(v.shape[-1], int) and v.shape[-1] > 0 \
            else None
        atoms = [f"in:{v.name}#{k}" for k in range(rank)]
        flow.seed(v.name, f"input:{v.name}", [(a,) for a in atoms],
                  {a: None for a in atoms[:-1]} | {atoms[-1]: last})
    flow.run()
    notes = []
    first, embed, time_major = _first_input(flow, nodes[0], where)
    if time_major:
        notes.append(f"{where}: the graph's input {first.root[6:]!r} is time-major [T, B, "
                     f"features]; rnncli takes batch-first (B, T, features), as for every model")
    for prev, node in zip(nodes, nodes[1:]):
        _check_chain(flow, prev, node, where)
    out = _output(m, flow, nodes[-1])
    layers = []
    if embed is not None:
        layers.append(L.Embedding(names(m.nodes[embed[0]].name, "embedding"), embed[1]))
    lengths = [n.lengths for n in nodes if n.lengths is not None]
    if lengths:
        if len(lengths) != len(nodes) or any(not np.array_equal(x, lengths[0]) for x in lengths):
            raise ModelFileError(f"{where}: its recurrent nodes take different sequence_lens; "
                                 f"expected the same lengths for every node")
        layers.append(L.SequenceLengths("sequence_lens", lengths[0]))
    seq = out is None or out.root.endswith(":Y")
    layers += [n.layer(True) for n in nodes[:-1]] + [nodes[-1].layer(seq)]
    for k, item in enumerate(out.head if out else ()):
        if isinstance(item, Dense):
            dense = L.Dense(names(item.name, f"dense_{k}"), item.kernel, item.bias,
                            item.activation, item.keras_major)
            layers.append(L.TimeDistributed(dense.name, dense) if seq else dense)
        else:
            layers.append(L.Activation(names(item[2], f"activation_{k}"), item[0], item[1]))
    other = ("T",) if nodes[-1].direction == "reverse" else ("T~",)
    if out is not None and seq and other in flow.normal(out.axes):
        ours = "processing order (Keras' go_backwards)" if other == ("T",) else "input order"
        notes.append(f"{where}: the graph's output runs in the opposite time order to "
                     f"rnncli's, which is in {ours}")
    for node in nodes:
        if node.state_input:
            role, name = node.state_input
            notes.append(f"{where}: node {node.name!r} takes {role} from the graph input "
                         f"{name!r}: rnncli starts from zeros unless given an initial state")
    skipped = _skipped(m, flow, nodes, first, out)
    if skipped:
        notes.append(f"{where}: skipped operators {', '.join(skipped)}; rnncli computes the "
                     f"RNN, LSTM and GRU nodes and the layout and Dense operators around them")
    rec = nodes[0].directions[0]
    spec = None if embed is not None else InputSpec(first.root[6:], (None, None, rec.input_dim),
                                                    str(rec.dtype))
    producer = f"{m.producer_name} {m.producer_version}".strip()
    source = {"path": where, "format": "onnx", "title": "ONNX model", "framework": "onnx",
              "has_config": True, "opset": m.opset, "producer": producer,
              "onnx_nodes": [n.describe() for n in nodes]}
    model = Model.chain(m.graph.name or os.path.splitext(os.path.basename(where))[0], layers,
                        input_spec=spec, source=source, notes=notes)
    apply_settings(model, settings)
    return model


def _first_input(flow, node, where):
    """(the graph input's Value, embedding or None, time-major?) feeding the first node."""
    x = node.node.inputs[0] if node.node.inputs else ""
    v = flow.values.get(x)
    axes = flow.normal(v.axes) if v is not None else ()
    ok = v is not None and v.root.startswith("input:") and not v.head and len(axes) == 3 and \
        all(len(g) == 1 for g in axes)
    if ok:
        t, b, f = (axes[0][0], axes[1][0], axes[2][0]) if node.layout == 0 else \
            (axes[1][0], axes[0][0], axes[2][0])
        a = f"in:{v.root[6:]}#"
        ok = {t, b} == {a + "0", a + "1"} and (f == a + "2" or (v.embed and f.startswith("E")))
        ok = ok and flow.sizes.get(f) in (None, node.input_size)
    if not ok:
        raise ModelFileError(f"{where}: node {node.node.name or node.name!r} takes {x!r}, which "
                             f"is not the graph's input (B, T, features) or (T, B, features) "
                             f"through layout operators; rnncli can't tell what it holds")
    return v, v.embed, t == a + "0"


def _check_chain(flow, prev, node, where):
    x = node.node.inputs[0] if node.node.inputs else ""
    v = flow.values.get(x)
    t = ("T~",) if prev.direction == "reverse" else ("T",)
    feats = flow.normal([(f"D{prev.index}", f"H{prev.index}")])
    want = (t, ("B",)) + feats if node.layout == 0 else (("B",), t) + feats
    if v is None or v.root != f"node:{prev.index}:Y" or v.head or flow.normal(v.axes) != want:
        order = "reversed to processing order " if prev.direction == "reverse" else ""
        raise ModelFileError(
            f"{where}: node {node.node.name or node.name!r} takes {x!r}, which is not node "
            f"{prev.node.name or prev.name!r}'s Y {order}with directions concatenated, as "
            f"{'[T, B, features]' if node.layout == 0 else '[B, T, features]'}; rnncli reads "
            f"recurrent nodes that form a chain")


def _output(m, flow, last):
    """The graph output that continues the last node (through a head), or None."""
    feats = flow.normal([(f"D{last.index}", f"H{last.index}")])
    best = None
    for pos, out in enumerate(m.outputs):
        v = flow.values.get(out.name)
        if v is None or v.root not in (f"node:{last.index}:Y", f"node:{last.index}:Y_h"):
            continue
        axes = flow.normal(v.axes)
        dense = [h for h in v.head if isinstance(h, Dense)]
        if (dense and dense[0].takes != feats) or (not dense and axes[-1:] != feats):
            continue
        rest = set(axes[:-1])
        if v.root.endswith(":Y") and not (len(axes) == 3 and rest in ({("B",), ("T",)},
                                                                      {("B",), ("T~",)})):
            continue
        if v.root.endswith(":Y_h") and axes[:-1] != (("B",),):
            continue
        key = (len(v.head), -pos)  # a head first, then the first listed
        if best is None or key > best[0]:
            best = (key, v)
    return best[1] if best else None


def _skipped(m, flow, nodes, first, out) -> list:
    """Op types of the nodes nothing rnncli computes depends on."""
    used = set(n.index for n in nodes) | set(first.used) | (set(out.used) if out else set())
    for n in nodes:
        used |= n.zero_states
        x = flow.values.get(n.node.inputs[0])
        if x is not None:
            used |= x.used
    producers = {name: i for i, n in enumerate(m.nodes) for name in n.outputs}
    todo = list(used)
    while todo:
        for name in m.nodes[todo.pop()].inputs:
            i = producers.get(name)
            if i is not None and i not in used:
                used.add(i)
                todo.append(i)
    return sorted({m.nodes[i].op_type for i in range(len(m.nodes))
                   if i not in used and m.nodes[i].op_type != "Constant"})


# ---------------------------------------------------------------- framework outputs


def framework_arrays(model, result) -> dict:
    """What each recurrent node outputs in ONNX's own layout: ``Y`` ([T, dirs, B, H], or
    [B, T, dirs, H] for layout 1), ``Y_h`` and, for LSTMs, ``Y_c`` ([dirs, B, H] or
    [B, dirs, H]); named ``Y/<layer>`` ... when the model has several nodes."""
    nodes = model.source.get("onnx_nodes", [])
    out = {}
    for node in nodes:
        r = result.layers.get(node["layer"])
        if r is None:
            continue
        dirs = list(r.directions.values())
        layers = list(r.layer.directions.values())
        seqs = []
        for d, la in zip(dirs, layers):
            s = d.sequence
            seqs.append(None if s is None else (s[:, ::-1] if la.go_backwards else s))
        suffix = "" if len(nodes) == 1 else f"/{node['layer']}"
        if all(s is not None for s in seqs):
            y = np.stack(seqs)  # dirs, B, T, H
            out["Y" + suffix] = y.transpose(2, 0, 1, 3) if node["layout"] == 0 else \
                y.transpose(1, 2, 0, 3)
        for state, role in (("h", "Y_h"), ("c", "Y_c")):
            if state in dirs[0].states:
                s = np.stack([d.states[state] for d in dirs])  # dirs, B, H
                out[role + suffix] = s if node["layout"] == 0 else s.transpose(1, 0, 2)
    return out
