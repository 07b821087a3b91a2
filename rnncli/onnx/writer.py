"""Write a model as an ONNX graph that ONNX Runtime runs with the same numbers.

One ``RNN``/``LSTM``/``GRU`` node per recurrent layer (opset 14), named after the layer,
its weights mapped as rnncli/onnx/gates.py says (GRU ``reset_after`` ->
``linear_before_reset=1``), activations under their ONNX names. The graph takes
``input`` batch-first, (batch, time, features) (int64 token ids (batch, time) when the
model starts with an Embedding), and returns ``output`` as rnncli's model does. Nodes use
layout 0 (ONNX Runtime runs no other), so Transposes turn batch-first into time-major and
back; between layers each node's ``Y`` [T, dirs, B, H] becomes [T, B, dirs·H] (directions
concatenated, as Keras' Bidirectional does). A layer returning only its last step gives
``Y_h``; ``go_backwards`` alone is a reverse node whose ``Y`` is flipped back to
processing order (Keras' order). Dense and TimeDistributed(Dense) become MatMul, Add and
an activation. Every node's ``Y``, ``Y_h`` (and ``Y_c``) are graph outputs too, named
``<layer>/Y`` ..., to compare with what rnncli exports.
"""

from __future__ import annotations

import numpy as np

from ..core import layers as L
from ..core.rnn import RNN, Bidirectional
from ..errors import OutputError
from .gates import CLASS_OP, activation_attributes, onnx_activation, onnx_weights
from .graph import OnnxNode, OnnxValue, write_onnx
from .tensor import WRITE_TYPES

OPSET = 14
INT64_MIN = -2**63
DENSE_ACTIVATIONS = {"relu": ("Relu", {}), "tanh": ("Tanh", {}), "sigmoid": ("Sigmoid", {}),
                     "softmax": ("Softmax", {"axis": -1}),
                     "log_softmax": ("LogSoftmax", {"axis": -1}),
                     "softplus": ("Softplus", {}), "softsign": ("Softsign", {}),
                     "elu": ("Elu", {"alpha": 1.0}), "leaky_relu": ("LeakyRelu", {"alpha": 0.2})}


def _refuse(layer, why):
    raise OutputError(f"layer {layer.name!r} ({layer.class_name}): {why}; rnncli writes "
                      f"ONNX for chains of SimpleRNN, LSTM, GRU, Bidirectional (concat), "
                      f"Embedding, Dense and Activation layers: write .keras instead")


class _Graph:
    def __init__(self, dtype):
        self.nodes, self.inits, self.outputs = [], {}, []
        self.elem = WRITE_TYPES.get((np.dtype(dtype).kind, np.dtype(dtype).itemsize), 1)

    def const(self, name, array):
        self.inits[name] = np.ascontiguousarray(array)
        return name

    def op(self, op_type, inputs, name, attributes=None, outputs=None):
        outputs = outputs or [f"{name}/out"]
        self.nodes.append(OnnxNode(op_type, list(inputs), outputs, dict(attributes or {}),
                                   name))
        return outputs[0]


def _activation_op(g, x, activation, keras_major, name, layer):
    if activation == "linear":
        return x
    if activation == "hard_sigmoid":
        alpha = 0.2 if keras_major < 3 else 1 / 6
        return g.op("HardSigmoid", [x], f"{name}/HardSigmoid", {"alpha": alpha, "beta": 0.5})
    if activation not in DENSE_ACTIVATIONS:
        _refuse(layer, f"activation {activation!r} has no ONNX operator here")
    op, attrs = DENSE_ACTIVATIONS[activation]
    return g.op(op, [x], f"{name}/{op}", attrs)


def _recurrent(g, layer, x, lengths):
    """Add ``layer``'s node; returns (output name, time-major?)."""
    dirs = list(layer.directions.values())
    inner = dirs[0]
    op = CLASS_OP.get(inner.class_name)
    if op is None:
        _refuse(layer, "not a SimpleRNN, LSTM or GRU")
    if isinstance(layer, Bidirectional):
        if layer.merge_mode != "concat":
            _refuse(layer, f"merge_mode {layer.merge_mode!r}; a bidirectional node's Y holds "
                           f"both directions, which rnncli concatenates")
        if dirs[0].go_backwards or not dirs[1].go_backwards:
            _refuse(layer, "its directions are not forward then backward")
        direction = "bidirectional"
    else:
        direction = "reverse" if layer.go_backwards else "forward"
    name = layer.name
    W, R, B, acts, lbr = [], [], [], [], set()
    for d in dirs:
        cell = d.cell
        if cell.class_name != inner.class_name or cell.units != inner.units or \
                cell.use_bias != inner.use_bias:
            _refuse(layer, "its two directions differ in kind, units or bias")
        w, r, b, flag = onnx_weights(op, cell)
        W.append(w)
        R.append(r)
        B.append(b)
        lbr.add(flag)
        order = [cell.activation] if op == "RNN" else \
            [cell.recurrent_activation, cell.activation] + ([cell.activation] if op == "LSTM"
                                                             else [])
        acts += [onnx_activation(a, cell.keras_major, f"layer {name!r}") for a in order]
    if len(lbr) > 1:
        _refuse(layer, "its directions differ in reset_after")
    attrs = {"hidden_size": inner.units, "direction": direction, **activation_attributes(acts)}
    if op == "GRU":
        attrs["linear_before_reset"] = lbr.pop()
    inputs = [x, g.const(f"{name}/W", np.stack(W)), g.const(f"{name}/R", np.stack(R)),
              g.const(f"{name}/B", np.stack(B)) if inner.use_bias else "",
              lengths or ""]
    states = [d.default_initial_state for d in dirs]
    if any(s is not None for s in states):
        if any(s is None for s in states):
            _refuse(layer, "a stored initial state in one direction only")
        for k, role in enumerate(("initial_h", "initial_c")[:len(inner.state_names)]):
            inputs.append(g.const(f"{name}/{role}", np.stack([s[k] for s in states])))
    while inputs and not inputs[-1]:
        inputs.pop()
    roles = ("Y", "Y_h", "Y_c") if op == "LSTM" else ("Y", "Y_h")
    outs = [f"{name}/{r}" for r in roles]
    g.op(op, inputs, name, attrs, outs)
    H, n = inner.units, len(dirs)
    g.outputs += [OnnxValue(outs[0], ["time", n, "batch", H], g.elem)] + \
        [OnnxValue(o, [n, "batch", H], g.elem) for o in outs[1:]]
    if layer.return_sequences:
        y = g.op("Transpose", [outs[0]], f"{name}/Transpose", {"perm": [0, 2, 1, 3]})
        y = g.op("Reshape", [y, g.const(f"{name}/shape", np.array([0, 0, -1], np.int64))],
                 f"{name}/Reshape")
        if direction == "reverse":  # Y is in input order; Keras returns processing order
            y = g.op("Slice", [y, g.const(f"{name}/starts", np.array([-1], np.int64)),
                               g.const(f"{name}/ends", np.array([INT64_MIN], np.int64)),
                               g.const(f"{name}/axes", np.array([0], np.int64)),
                               g.const(f"{name}/steps", np.array([-1], np.int64))],
                     f"{name}/Reverse")
        return y, True
    y = g.op("Transpose", [outs[1]], f"{name}/Transpose", {"perm": [1, 0, 2]})
    y = g.op("Reshape", [y, g.const(f"{name}/shape", np.array([0, -1], np.int64))],
             f"{name}/Reshape")
    return y, False


def graph(model):
    """(nodes, initializers, inputs, outputs) of the ONNX graph for ``model``."""
    chain = model.chain_layers()
    if chain is None:
        raise OutputError("only a chain of layers (each taking the one before's output) can "
                          "be written as ONNX; write .keras instead")
    g = _Graph(model.dtype)
    ids = model.takes_token_ids
    spec = model.input_specs[0].shape if model.input_specs else None
    t = spec[1] if spec and len(spec) > 1 and isinstance(spec[1], int) else "time"
    x, time_major, rank, lengths = "input", False, 2 if ids else 3, None
    width = None
    for la in chain:
        if isinstance(la, L.Identity):
            continue
        if isinstance(la, L.Embedding) and x == "input":
            if la.mask_zero:
                _refuse(la, "mask_zero masks padded steps; ONNX's recurrent operators take "
                            "lengths, not a mask")
            x = g.op("Gather", [g.const(f"{la.name}/embeddings", la.embeddings), x], la.name,
                     {"axis": 0})
            rank, width = 3, la.embeddings.shape[1]
        elif isinstance(la, L.SequenceLengths) and lengths is None:
            lengths = g.const("sequence_lens", la.lengths.astype(np.int32))
        elif isinstance(la, (RNN, Bidirectional)):
            if rank != 3:
                _refuse(la, "takes the last step of the layer before, not a sequence")
            if not time_major:
                x = g.op("Transpose", [x], f"{la.name}/TimeMajor", {"perm": [1, 0, 2]})
            x, time_major = _recurrent(g, la, x, lengths)
            rank, width = (3 if time_major else 2), la.output_width
        elif isinstance(la, (L.Dense, L.TimeDistributed)):
            dense = la.inner if isinstance(la, L.TimeDistributed) else la
            if not isinstance(dense, L.Dense):
                _refuse(la, "wraps a layer that is not Dense")
            x = g.op("MatMul", [x, g.const(f"{la.name}/kernel", dense.kernel)], la.name)
            if dense.bias is not None:
                x = g.op("Add", [x, g.const(f"{la.name}/bias", dense.bias)], f"{la.name}/Add")
            x = _activation_op(g, x, dense.activation, dense.keras_major, la.name, la)
            width = dense.units
        elif isinstance(la, L.Activation):
            x = _activation_op(g, x, la.activation, la.keras_major, la.name, la)
        else:
            why = {"Masking": "ONNX's recurrent operators take lengths, not a per-step mask",
                   "Embedding": "an Embedding after the first layer"}.get(la.class_name,
                                                                          "no ONNX operator here")
            _refuse(la, why)
    if width is None:
        raise OutputError("the model has no recurrent layer to write as ONNX")
    if time_major:
        x = g.op("Transpose", [x], "BatchFirst", {"perm": [1, 0, 2]}, ["output"])
    else:
        g.nodes[-1].outputs[0] = "output"
    out_shape = ["batch", t, width] if rank == 3 else ["batch", width]
    d = model.input_dim
    inputs = [OnnxValue("input", ["batch", t], 7) if ids else
              OnnxValue("input", ["batch", t, d], g.elem)]
    return g.nodes, g.inits, inputs, [OnnxValue("output", out_shape, g.elem)] + g.outputs


def write(model, target, fmt="onnx"):
    """Write ``model`` to ``target`` (a path or a binary file) as an ONNX model."""
    if fmt != "onnx":
        raise OutputError(f"unknown ONNX format {fmt!r}; expected onnx")
    nodes, inits, inputs, outputs = graph(model)
    write_onnx(target, nodes, inits, inputs, outputs, opset=OPSET, graph_name=model.name)
