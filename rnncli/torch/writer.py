"""Write a model as a PyTorch ``state_dict`` in a safetensors file.

One ``nn.RNN``/``nn.LSTM``/``nn.GRU`` holds a stack of same-kind layers of one hidden
size, all one-way or all bidirectional, returning every step: models that are such a
stack (optionally after an ``nn.Embedding`` and before ``nn.Linear`` heads) are written;
anything else is refused with what the module can't hold. Parameters follow PyTorch:
``weight_ih_l{k}`` = kernelᵀ, ``weight_hh_l{k}`` = recurrent_kernelᵀ, and for SimpleRNN
and LSTM ``bias_ih_l{k}`` = bias, ``bias_hh_l{k}`` = 0 (PyTorch adds the two); GRU gates
back to r, z, n with Keras' two biases as they are. A bare stack's keys have no prefix,
so ``nn.LSTM(...).load_state_dict`` takes them; with an embedding or a head they are
``embedding.weight``, ``rnn.*``, ``head.weight`` (``head.0``, ``head.1`` ... for several).

What no module argument holds but the numbers need (the last layer returning only its
last step, a head's activation) is kept in the file's metadata as rnncli settings
(``rnncli.settings``), which rnncli reads back; :func:`describe` shows it as code.
"""

from __future__ import annotations

import json

import numpy as np

from ..core import layers as L
from ..core.rnn import RNN, Bidirectional
from ..errors import OutputError
from .model import GRU_ORDER, METADATA_KEY, TORCH_CLASS, constructor, layer_name, reorder
from .safetensors import write_safetensors

TORCH_FUNCTIONS = {"softmax": "torch.softmax({}, dim=-1)", "sigmoid": "torch.sigmoid({})",
                   "tanh": "torch.tanh({})", "relu": "torch.relu({})",
                   "log_softmax": "torch.log_softmax({}, dim=-1)"}


def _refuse(layer, why):
    raise _Refused(f"layer {layer.name!r} ({layer.class_name}): {why}; a PyTorch state_dict "
                   f"holds one nn.RNN, nn.LSTM or nn.GRU stack (after an nn.Embedding, "
                   f"before nn.Linear heads)")


class _Refused(OutputError):
    """A model a state_dict can't hold; ``plan`` says which format can."""


def _check_cell(layer, inner):
    cell = inner.cell
    if inner.default_initial_state is not None:
        _refuse(layer, "starts from a stored initial state, which a state_dict can't hold")
    if cell.class_name == "SimpleRNN":
        if cell.activation not in ("tanh", "relu"):
            _refuse(layer, f"activation {cell.activation!r}; nn.RNN computes tanh or relu")
        return
    if cell.activation != "tanh" or cell.recurrent_activation != "sigmoid":
        _refuse(layer, f"activation {cell.activation!r} with recurrent_activation "
                       f"{cell.recurrent_activation!r}; {TORCH_CLASS[cell.class_name]} "
                       f"computes tanh and sigmoid")
    if cell.class_name == "GRU" and not cell.reset_after:
        _refuse(layer, "reset_after=False; nn.GRU computes reset_after=True (the reset gate "
                       "applied after h·U)")


def plan(model) -> dict:
    """What the state_dict holds: {"embedding", "rnn": [layers], "heads": [Dense],
    "class_name", "hidden", "input_size", "dirs", "bias", "last_step"}; refuses clearly,
    naming the formats that can hold the model (.onnx only where rnncli can write it)."""
    try:
        return _plan(model)
    except _Refused as e:
        from ..onnx.writer import graph

        try:
            graph(model)
            elsewhere = ".onnx or .keras"
        except OutputError:
            elsewhere = ".keras"
        raise OutputError(f"{e}: write {elsewhere} instead") from None


def _plan(model) -> dict:
    chain = model.chain_layers()
    if chain is None:
        raise OutputError("only a chain of layers (each taking the one before's output) can "
                          "be written as a PyTorch state_dict; write .keras instead")
    layers = [la for la in chain if not isinstance(la, L.Identity)]
    p = {"embedding": None, "rnn": [], "heads": []}
    for la in layers:
        if isinstance(la, L.Embedding) and not p["rnn"] and p["embedding"] is None:
            if la.mask_zero:
                _refuse(la, "mask_zero masks padded steps, which nn.LSTM & co. don't")
            p["embedding"] = la
        elif isinstance(la, (RNN, Bidirectional)) and not p["heads"]:
            p["rnn"].append(la)
        elif isinstance(la, (L.Dense, L.TimeDistributed)) and p["rnn"]:
            dense = la.inner if isinstance(la, L.TimeDistributed) else la
            if not isinstance(dense, L.Dense):
                _refuse(la, "wraps a layer that is not Dense")
            if dense.activation != "linear" and la is not layers[-1]:
                _refuse(la, f"activation {dense.activation!r} between two nn.Linear")
            p["heads"].append(la)
        else:
            why = {"Masking": "masks steps, which nn.LSTM & co. don't",
                   "SequenceLengths": "masks steps past stored lengths, which nn.LSTM & co. "
                                      "don't"}.get(la.class_name, "has no place in it")
            _refuse(la, why)
    if not p["rnn"]:
        raise OutputError("the model has no recurrent layer to write as a PyTorch state_dict")
    first = p["rnn"][0]
    inner = first.forward_layer if isinstance(first, Bidirectional) else first
    p.update(class_name=inner.class_name, hidden=inner.units, input_size=inner.input_dim,
             dirs=2 if isinstance(first, Bidirectional) else 1, bias=inner.use_bias,
             nonlinearity=inner.activation if inner.class_name == "SimpleRNN" else None)
    for k, la in enumerate(p["rnn"]):
        dirs = list(la.directions.values())
        if isinstance(la, Bidirectional):
            if la.merge_mode != "concat":
                _refuse(la, f"merge_mode {la.merge_mode!r}; a bidirectional module "
                            f"concatenates")
            if dirs[0].go_backwards or not dirs[1].go_backwards:
                _refuse(la, "its directions are not forward then backward")
        elif la.go_backwards:
            _refuse(la, "go_backwards alone (no forward direction)")
        if len(dirs) != p["dirs"] or any(d.class_name != p["class_name"] or
                                         d.units != p["hidden"] or d.use_bias != p["bias"]
                                         for d in dirs):
            _refuse(la, f"differs from the first recurrent layer's kind, units, bias or "
                        f"directions ({p['class_name']}, {p['hidden']} units)")
        for d in dirs:
            _check_cell(la, d)
            if d.cell.class_name == "SimpleRNN" and d.activation != p["nonlinearity"]:
                _refuse(la, "a different activation from the first layer's")
        if not la.return_sequences and k < len(p["rnn"]) - 1:
            _refuse(la, "returns only its last step to the next recurrent layer")
    p["last_step"] = not p["rnn"][-1].return_sequences
    return p


def _prefixes(p):
    bare = p["embedding"] is None and not p["heads"]
    heads = ["head"] if len(p["heads"]) == 1 else [f"head.{k}" for k in range(len(p["heads"]))]
    return ("" if bare else "rnn"), heads


def state_dict(model) -> tuple[dict, dict]:
    """(name -> array as PyTorch names them, rnncli settings the metadata keeps)."""
    p = plan(model)
    prefix, heads = _prefixes(p)
    dot = f"{prefix}." if prefix else ""
    out, settings = {}, {}
    if p["embedding"] is not None:
        out["embedding.weight"] = p["embedding"].embeddings
    for k, la in enumerate(p["rnn"]):
        for d, inner in enumerate(la.directions.values()):
            cell, tail = inner.cell, f"_l{k}" + ("_reverse" if d else "")
            if cell.class_name == "GRU":
                out[f"{dot}weight_ih{tail}"] = reorder(cell.kernel.T, GRU_ORDER)
                out[f"{dot}weight_hh{tail}"] = reorder(cell.recurrent_kernel.T, GRU_ORDER)
                if cell.bias is not None:
                    out[f"{dot}bias_ih{tail}"] = reorder(cell.bias[0], GRU_ORDER)
                    out[f"{dot}bias_hh{tail}"] = reorder(cell.bias[1], GRU_ORDER)
            else:
                out[f"{dot}weight_ih{tail}"] = cell.kernel.T
                out[f"{dot}weight_hh{tail}"] = cell.recurrent_kernel.T
                if cell.bias is not None:
                    out[f"{dot}bias_ih{tail}"] = cell.bias
                    out[f"{dot}bias_hh{tail}"] = np.zeros_like(cell.bias)
    if p["nonlinearity"] == "relu":
        settings["activation"] = "relu"
    if p["last_step"]:
        last = layer_name(prefix, p["class_name"], len(p["rnn"]) - 1)
        settings[f"{last}.return_sequences"] = "false"
    for name, la in zip(heads, p["heads"]):
        dense = la.inner if isinstance(la, L.TimeDistributed) else la
        out[f"{name}.weight"] = dense.kernel.T
        if dense.bias is not None:
            out[f"{name}.bias"] = dense.bias
        if dense.activation != "linear":
            settings[f"{name}.activation"] = dense.activation
    return {k: np.ascontiguousarray(v) for k, v in out.items()}, settings


def write(model, target, fmt="safetensors"):
    """Write ``model`` to ``target`` (a path or a binary file) as a safetensors state_dict."""
    if fmt != "safetensors":
        raise OutputError(f"unknown PyTorch weights format {fmt!r}; expected safetensors")
    tensors, settings = state_dict(model)
    metadata = {"format": "pt"}
    if settings:
        metadata[METADATA_KEY] = json.dumps(settings, sort_keys=True)
    write_safetensors(target, tensors, metadata)


def describe(model) -> str:
    """The PyTorch code whose ``state_dict()`` the written file is: the constructor line of
    a bare stack, or a small nn.Module with an embedding, heads, a last-step output."""
    p = plan(model)
    prefix, heads = _prefixes(p)
    mod = {"class": TORCH_CLASS[p["class_name"]], "input_size": p["input_size"],
           "hidden_size": p["hidden"], "num_layers": len(p["rnn"]),
           "bidirectional": p["dirs"] == 2, "bias": p["bias"]}
    line = constructor(mod, p["nonlinearity"])
    if prefix == "" and not p["last_step"]:
        return line
    lines = ["class Model(nn.Module):", "    def __init__(self):",
             "        super().__init__()"]
    if p["embedding"] is not None:
        v, e = p["embedding"].embeddings.shape
        lines.append(f"        self.embedding = nn.Embedding({v}, {e})")
    lines.append(f"        self.{prefix or 'rnn'} = {line}")
    holder = heads[0].split(".")[0] if heads else None
    linears = []
    for la in p["heads"]:
        dense = la.inner if isinstance(la, L.TimeDistributed) else la
        n_in, n_out = dense.kernel.shape
        bias = "" if dense.bias is not None else ", bias=False"
        linears.append(f"nn.Linear({n_in}, {n_out}{bias})")
    if len(linears) == 1:
        lines.append(f"        self.{holder} = {linears[0]}")
    elif linears:
        lines.append(f"        self.{holder} = nn.Sequential({', '.join(linears)})")
    x = "self.embedding(x)" if p["embedding"] is not None else "x"
    state = "(h_n, _)" if p["class_name"] == "LSTM" else "h_n"
    lines += ["", "    def forward(self, x):",
              f"        y, {state} = self.{prefix or 'rnn'}({x})"]
    if p["last_step"]:
        lines.append("        y = torch.cat([h_n[-2], h_n[-1]], dim=-1)" if p["dirs"] == 2
                     else "        y = h_n[-1]")
    if holder:
        lines.append(f"        y = self.{holder}(y)")
        act = (p["heads"][-1].inner if isinstance(p["heads"][-1], L.TimeDistributed)
               else p["heads"][-1]).activation
        if act != "linear":
            fn = TORCH_FUNCTIONS.get(act)
            lines.append(f"        y = {fn.format('y')}" if fn else
                         f"        # then {act} (kept in the file's rnncli.settings)")
    lines.append("        return y")
    return "\n".join(lines)
