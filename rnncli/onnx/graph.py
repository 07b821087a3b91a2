"""ONNX models as plain Python: the RNN/LSTM/GRU nodes, their attributes and arrays.

:func:`read_onnx` decodes a ``.onnx`` file (with :mod:`.proto`, no onnx package) into an
:class:`OnnxModel`; :func:`write_onnx` writes nodes, initializers, inputs and outputs as a
model ONNX Runtime loads. Names are ONNX's own: ``W``, ``R``, ``B``, ``Y``, ``Y_h`` ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelFileError, OutputError, file_error
from ..io.atomic import write_bytes
from . import proto
from .tensor import from_array, to_array, type_name

RECURRENT_OPS = ("RNN", "LSTM", "GRU")
# RNN/LSTM/GRU were last changed in opset 22 and are the same through 28 (onnx 1.23).
MIN_OPSET, MAX_OPSET = 7, 28
WRITE_OPSETS = range(7, 23)
# opset -> the IR version of the onnx release that introduced it
IR_VERSIONS = {7: 3, 8: 3, 9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8,
               19: 9, 20: 9, 21: 10, 22: 10}
INPUT_ROLES = {
    "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
    "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
    "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
}
OUTPUT_ROLES = {"RNN": ("Y", "Y_h"), "GRU": ("Y", "Y_h"), "LSTM": ("Y", "Y_h", "Y_c")}
DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"],
                       "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
# AttributeProto.type
FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS, STRINGS, TENSORS, GRAPHS = range(1, 11)
FLOAT_ATTRIBUTES = {"clip", "activation_alpha", "activation_beta", "alpha", "beta", "epsilon"}


@dataclass
class OnnxValue:
    """A graph input/output: ``shape`` lists ints (dim_value), strs (dim_param) or None
    (unknown) per axis, or is None when the rank is unknown; ``elem_type`` is the
    TensorProto data type (1 = FLOAT)."""

    name: str
    shape: list | None = None
    elem_type: int = 1

    @property
    def dtype(self) -> str:
        return type_name(self.elem_type)


@dataclass
class OnnxNode:
    """One operator; ``attributes`` holds only those in the file, as Python values
    (int, float, str, lists of them, numpy arrays, OnnxGraph for subgraphs)."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    domain: str = ""

    @property
    def is_recurrent(self) -> bool:
        return self.op_type in RECURRENT_OPS and self.domain in ("", "ai.onnx")

    def settings(self) -> dict[str, Any]:
        """A recurrent node's attributes with ONNX's defaults filled in (None: not set).

        ``activations`` is one list over all directions, as in the file.
        """
        a = self.attributes
        direction = a.get("direction", "forward")
        activations = a.get("activations")
        if activations is None:
            activations = DEFAULT_ACTIVATIONS[self.op_type] * (
                2 if direction == "bidirectional" else 1)
        out = {"direction": direction, "hidden_size": a.get("hidden_size"),
               "activations": list(activations), "activation_alpha": a.get("activation_alpha"),
               "activation_beta": a.get("activation_beta"), "clip": a.get("clip"),
               "layout": a.get("layout", 0)}
        if self.op_type == "GRU":
            out["linear_before_reset"] = a.get("linear_before_reset", 0)
        if self.op_type == "LSTM":
            out["input_forget"] = a.get("input_forget", 0)
        return out

    def input_names(self) -> dict[str, str]:
        """Role (``X``, ``W``, ``R``, ``B`` ...) -> value name, for the inputs given."""
        roles = INPUT_ROLES.get(self.op_type, ())
        return {r: n for r, n in zip(roles, self.inputs) if n}

    def output_names(self) -> dict[str, str]:
        roles = OUTPUT_ROLES.get(self.op_type, ())
        return {r: n for r, n in zip(roles, self.outputs) if n}


@dataclass
class OnnxGraph:
    name: str
    nodes: list[OnnxNode]
    initializers: dict[str, np.ndarray]
    inputs: list[OnnxValue]   # graph inputs that are not initializers
    outputs: list[OnnxValue]
    value_info: list[OnnxValue]


@dataclass
class OnnxModel:
    """What :func:`read_onnx` found. ``opset``: the default domain's version."""

    path: str
    ir_version: int
    opset: int | None
    opsets: dict[str, int]
    producer_name: str
    producer_version: str
    graph: OnnxGraph

    @property
    def nodes(self) -> list[OnnxNode]:
        return self.graph.nodes

    @property
    def initializers(self) -> dict[str, np.ndarray]:
        return self.graph.initializers

    @property
    def inputs(self) -> list[OnnxValue]:
        return self.graph.inputs

    @property
    def outputs(self) -> list[OnnxValue]:
        return self.graph.outputs

    @property
    def recurrent_nodes(self) -> list[OnnxNode]:
        return [n for n in self.graph.nodes if n.is_recurrent]

    @property
    def other_op_types(self) -> list[str]:
        """Op types of the top-level graph's other nodes, once each, in file order
        (``domain.op_type`` outside the default domain)."""
        seen = {}
        for n in self.graph.nodes:
            if not n.is_recurrent:
                seen.setdefault(f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx")
                                else n.op_type)
        return list(seen)

    def constants(self) -> dict[str, np.ndarray]:
        """Outputs of the top-level ``Constant`` nodes that hold a tensor (``value``)."""
        return {n.outputs[0]: n.attributes["value"] for n in self.graph.nodes
                if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.outputs
                and isinstance(n.attributes.get("value"), np.ndarray)}

    def node_arrays(self, node: OnnxNode) -> dict[str, np.ndarray]:
        """Role -> array for the node's inputs that are initializers or constants."""
        known = {**self.constants(), **self.graph.initializers}
        return {r: known[n] for r, n in node.input_names().items() if n in known}


# --- reading -----------------------------------------------------------------------------


def _value(v: dict) -> OnnxValue:
    tensor = v.get("type", {}).get("tensor_type", {})
    shape = None
    if "shape" in tensor:
        shape = [d["dim_value"] if "dim_value" in d else d.get("dim_param")
                 for d in tensor["shape"].get("dim", [])]
    return OnnxValue(v.get("name", ""), shape, tensor.get("elem_type", 0))


def _attribute(a: dict, where: str, base_dir, depth: int):
    kind = a.get("type")
    if kind is None:  # IR < 2 had no type: the field present tells
        kind = next((k for k, f in ((FLOAT, "f"), (INT, "i"), (STRING, "s"), (TENSOR, "t"),
                                    (GRAPH, "g"), (FLOATS, "floats"), (INTS, "ints"),
                                    (STRINGS, "strings"), (TENSORS, "tensors"),
                                    (GRAPHS, "graphs")) if f in a), None)
    if kind == FLOAT:
        return a.get("f", 0.0)
    if kind == INT:
        return a.get("i", 0)
    if kind == STRING:
        return bytes(a.get("s", b"")).decode("utf-8", "replace")
    if kind == TENSOR:
        return to_array(a.get("t", {}), where, base_dir)
    if kind == GRAPH:
        return _graph(a.get("g", {}), where, base_dir, depth + 1)
    if kind == FLOATS:
        return [float(x) for x in a.get("floats", [])]
    if kind == INTS:
        return [int(x) for x in a.get("ints", [])]
    if kind == STRINGS:
        return [bytes(s).decode("utf-8", "replace") for s in a.get("strings", [])]
    if kind == TENSORS:
        return [to_array(t, where, base_dir) for t in a.get("tensors", [])]
    if kind == GRAPHS:
        return [_graph(g, where, base_dir, depth + 1) for g in a.get("graphs", [])]
    return None  # sparse tensors, type protos: nothing rnncli uses


def _graph(g: dict, where: str, base_dir, depth: int = 0) -> OnnxGraph:
    initializers = {}
    for t in g.get("initializer", []):
        name = t.get("name", "")
        if name in initializers:
            raise ModelFileError(f"{where}: two initializers are named {name!r}; expected "
                                 "unique names")
        initializers[name] = to_array(t, where, base_dir)
    nodes = []
    for n in g.get("node", []):
        attributes = {}
        for a in n.get("attribute", []):
            attributes[a.get("name", "")] = _attribute(a, where, base_dir, depth)
        nodes.append(OnnxNode(n.get("op_type", ""), list(n.get("input", [])),
                              list(n.get("output", [])), attributes, n.get("name", ""),
                              n.get("domain", "")))
    inputs = [_value(v) for v in g.get("input", [])]
    return OnnxGraph(g.get("name", ""), nodes, initializers,
                     [v for v in inputs if v.name not in initializers],
                     [_value(v) for v in g.get("output", [])],
                     [_value(v) for v in g.get("value_info", [])])


def read_onnx(path) -> OnnxModel:
    """Decode the ONNX model at ``path`` (see :func:`parse_onnx`); external data is read
    only from files inside the model's folder."""
    where = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise file_error(where, e, ModelFileError) from None
    return parse_onnx(data, where, os.path.dirname(os.path.abspath(where)))


def parse_onnx(data: bytes, where: str = "<onnx>", base_dir: str | None = None) -> OnnxModel:
    """Decode the bytes of an ONNX model; ``where`` names it in errors.

    Initializers come back as numpy arrays in their own dtype. ``base_dir``: the folder
    external data is read from (None: external data is refused). A model with
    RNN/LSTM/GRU nodes must use a default-domain opset from 7 to 28 (the recurrent ops are
    the same from 22 to 28).
    """
    if not data:
        raise ModelFileError(f"{where}: empty file; expected an ONNX model")
    m = proto.decode("ModelProto", data, where)
    if "graph" not in m:
        raise ModelFileError(f"{where}: no graph (not an ONNX model?); expected a ModelProto "
                             "with a graph")
    opsets = {}
    for o in m.get("opset_import", []):
        opsets[o.get("domain", "")] = o.get("version", 0)
    opset = opsets.get("", opsets.get("ai.onnx"))
    graph = _graph(m["graph"], where, base_dir)
    model = OnnxModel(where, m.get("ir_version", 0), opset, opsets, m.get("producer_name", ""),
                      m.get("producer_version", ""), graph)
    if model.recurrent_nodes and not (opset is not None and MIN_OPSET <= opset <= MAX_OPSET):
        raise ModelFileError(f"{where}: opset {opset}; expected {MIN_OPSET} to {MAX_OPSET} "
                             f"for its {model.recurrent_nodes[0].op_type} nodes")
    return model


# --- writing -----------------------------------------------------------------------------


def _encode_attribute(name: str, value) -> dict | None:
    if value is None:
        return None
    a = {"name": name}
    if isinstance(value, np.ndarray):
        a.update(type=TENSOR, t=from_array("", value))
    elif isinstance(value, (bool, int, np.integer)) and name not in FLOAT_ATTRIBUTES:
        a.update(type=INT, i=int(value))
    elif isinstance(value, (int, float, np.floating, np.integer)):
        a.update(type=FLOAT, f=float(value))
    elif isinstance(value, (str, bytes)):
        a.update(type=STRING, s=value.encode("utf-8") if isinstance(value, str) else value)
    elif isinstance(value, (list, tuple)) and value:
        if all(isinstance(v, str) for v in value):
            a.update(type=STRINGS, strings=[v.encode("utf-8") for v in value])
        elif all(isinstance(v, (int, np.integer)) for v in value) and \
                name not in FLOAT_ATTRIBUTES:
            a.update(type=INTS, ints=[int(v) for v in value])
        elif all(isinstance(v, (int, float, np.integer, np.floating)) for v in value):
            a.update(type=FLOATS, floats=[float(v) for v in value])
        else:
            raise OutputError(f"attribute {name!r}: a list mixing types; expected ints, "
                              "floats or strings")
    else:
        raise OutputError(f"attribute {name!r} is {value!r:.60}; expected a number, string, "
                          "array or non-empty list")
    return a


def _encode_value(v: OnnxValue) -> dict:
    tensor: dict = {"elem_type": v.elem_type}
    if v.shape is not None:
        tensor["shape"] = {"dim": [{} if d is None else {"dim_param": d} if isinstance(d, str)
                                   else {"dim_value": int(d)} for d in v.shape]}
    return {"name": v.name, "type": {"tensor_type": tensor}}


def _output_shapes(nodes: list[OnnxNode], inputs: list[OnnxValue]) -> dict[str, list]:
    """Shapes of recurrent nodes' outputs, from X's declared shape where it is a graph input
    (onnx.checker wants a shape on every graph output)."""
    known = {v.name: v.shape for v in inputs}
    out = {}
    for n in nodes:
        if not n.is_recurrent:
            continue
        s = n.settings()
        dirs = 2 if s["direction"] == "bidirectional" else 1
        x = known.get(n.inputs[0] if n.inputs else "") or [None] * 3
        if len(x) != 3:
            continue
        t, b = (x[1], x[0]) if s["layout"] == 1 else (x[0], x[1])
        h = s["hidden_size"]
        y = [b, t, dirs, h] if s["layout"] == 1 else [t, dirs, b, h]
        state = [b, dirs, h] if s["layout"] == 1 else [dirs, b, h]
        for role, name in n.output_names().items():
            out[name] = y if role == "Y" else state
    return out


def onnx_bytes(nodes, initializers: dict, inputs, outputs, opset: int = 14, *,
               producer_name: str = "rnncli", graph_name: str = "rnncli") -> bytes:
    """The bytes of an ONNX model; see :func:`write_onnx`."""
    if opset not in WRITE_OPSETS:
        raise OutputError(f"opset {opset}; expected {WRITE_OPSETS[0]} to {WRITE_OPSETS[-1]}")
    ir_version = IR_VERSIONS[opset]
    nodes = [n if isinstance(n, OnnxNode) else OnnxNode(**n) for n in nodes]
    inputs = [v if isinstance(v, OnnxValue) else OnnxValue(*v) for v in inputs]
    outputs = [v if isinstance(v, OnnxValue) else OnnxValue(*v) for v in outputs]
    shapes = _output_shapes(nodes, inputs)
    outputs = [OnnxValue(v.name, shapes[v.name], v.elem_type)
               if v.shape is None and v.name in shapes else v for v in outputs]
    encoded_nodes = []
    for n in nodes:
        attrs = [_encode_attribute(k, v) for k, v in n.attributes.items()]
        encoded_nodes.append({"input": list(n.inputs), "output": list(n.outputs),
                              "name": n.name or None, "op_type": n.op_type,
                              "domain": n.domain or None,
                              "attribute": [a for a in attrs if a is not None]})
    values = [_encode_value(v) for v in inputs]
    if ir_version < 4:  # IR 3: every initializer is a graph input too
        values += [_encode_value(OnnxValue(k, list(np.shape(a)),
                                           from_array(k, a)["data_type"]))
                   for k, a in initializers.items()]
    graph = {"node": encoded_nodes, "name": graph_name,
             "initializer": [from_array(k, a) for k, a in initializers.items()],
             "input": values, "output": [_encode_value(v) for v in outputs]}
    model = {"ir_version": ir_version, "opset_import": [{"domain": "", "version": opset}],
             "producer_name": producer_name, "graph": graph}
    return proto.encode("ModelProto", model)


def write_onnx(path_or_file, nodes, initializers: dict, inputs, outputs, opset: int = 14, *,
               producer_name: str = "rnncli", graph_name: str = "rnncli") -> None:
    """Write an ONNX model: ``nodes`` (OnnxNode, or dicts of its fields) in order,
    ``initializers`` (name -> array), graph ``inputs``/``outputs`` (OnnxValue, or
    ``(name, shape[, elem_type])`` tuples), default-domain ``opset`` 7 to 22.

    Attributes are typed from their Python values (int -> INT, float -> FLOAT, str ->
    STRING, lists -> INTS/FLOATS/STRINGS, arrays -> TENSOR; ``clip`` and
    ``activation_alpha``/``beta`` are always floats); None values are left out.
    """
    write_bytes(path_or_file, onnx_bytes(nodes, initializers, inputs, outputs, opset,
                                         producer_name=producer_name, graph_name=graph_name))
