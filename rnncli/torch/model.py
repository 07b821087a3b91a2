"""PyTorch ``state_dict`` files (``.safetensors``, ``.pt``/``.pth``) as rnncli models.

A state_dict names each ``nn.RNN``/``nn.LSTM``/``nn.GRU`` parameter
``<module>.weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (and
``..._reverse`` for the backward direction). Each PyTorch layer ``k`` becomes one rnncli
layer named ``<module>_l{k}`` (``lstm_l0`` ... when the module has no name: a bare
``nn.LSTM``'s state_dict), returning sequences, a ``Bidirectional`` (concat) when there
are ``_reverse`` keys. The mapping onto Keras' cells:

- kernel = weight_ihᵀ, recurrent_kernel = weight_hhᵀ;
- SimpleRNN and LSTM: bias = bias_ih + bias_hh (one bias is all they add); PyTorch's
  LSTM gates i, f, g, o are Keras' i, f, c, o;
- GRU: Keras' ``reset_after=True`` with bias (2, 3H) = [bias_ih, bias_hh], gates
  reordered from PyTorch's r, z, n to Keras' z, r, h.

An ``nn.Linear`` whose input size is the last RNN's output width is a head applied at
every step (TimeDistributed(Dense)); an ``nn.Embedding`` (a bias-less ``*emb*.weight``
whose width is the first RNN's input size) takes token ids. What a state_dict can't
hold (``nonlinearity='relu'``) comes from ``--set``; the model's notes name what was
assumed. rnncli's own writer (rnncli/torch/writer.py) stores such settings in the
safetensors metadata under ``rnncli.settings``, read back here.
"""

from __future__ import annotations

import itertools
import json
import os
import re

import numpy as np

from ..core import layers as L
from ..core.cells import registry
from ..core.model import InputSpec, Model
from ..core.rnn import RNN, Bidirectional
from ..core.settings import apply_settings
from ..errors import ModelFileError, RnncliError

RNN_KEY = re.compile(r"^(?:(?P<prefix>.*)\.)?(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|"
                     r"weight_hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
GATES = {1: "SimpleRNN", 3: "GRU", 4: "LSTM"}
TORCH_CLASS = {"SimpleRNN": "nn.RNN", "LSTM": "nn.LSTM", "GRU": "nn.GRU"}
BASE_NAME = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
GRU_ORDER = (1, 0, 2)  # PyTorch r, z, n <-> Keras z, r, h (the same swap both ways)
METADATA_KEY = "rnncli.settings"
FORMAT_TITLES = {"pytorch_safetensors": "PyTorch state_dict (safetensors)",
                 "pytorch_pt": "PyTorch state_dict (torch.save)"}


def layer_name(prefix: str, class_name: str, k: int) -> str:
    """The rnncli layer for PyTorch layer ``k`` of the module named ``prefix``."""
    return f"{prefix or BASE_NAME[class_name]}_l{k}"


def reorder(a, order, axis=0):
    """``a``'s gate blocks (equal slices along ``axis``) in ``order``."""
    parts = np.split(np.asarray(a), len(order), axis=axis)
    return np.concatenate([parts[i] for i in order], axis=axis)


def to_keras(class_name, w_ih, w_hh, b_ih, b_hh):
    """(kernel, recurrent_kernel, bias or None) of a Keras cell from one PyTorch
    direction's parameters."""
    if class_name == "GRU":
        k, u = reorder(w_ih, GRU_ORDER).T, reorder(w_hh, GRU_ORDER).T
        b = None if b_ih is None else np.stack([reorder(b_ih, GRU_ORDER),
                                                reorder(b_hh, GRU_ORDER)])
        return np.ascontiguousarray(k), np.ascontiguousarray(u), b
    b = None if b_ih is None else b_ih + b_hh
    return np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T), b


# ---------------------------------------------------------------- reading


def read_state_dict(path):
    """(name -> array, metadata, format) for a .pt zip or a safetensors file."""
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    if zipped:
        from .pt import read_pt

        return read_pt(path), {}, "pytorch_pt"
    from .safetensors import read_safetensors_file

    st = read_safetensors_file(path)
    return st.tensors, st.metadata, "pytorch_safetensors"


class _Module:
    """One nn.RNN/LSTM/GRU's parameters: {(k, reverse): {param: array}}."""

    def __init__(self, prefix):
        self.prefix, self.params, self.order = prefix, {}, None

    def add(self, k, reverse, param, array):
        self.params.setdefault((k, reverse), {})[param] = array

    def check(self, where):
        """Validate the shapes; sets class_name, hidden, layers, dirs, input_size."""
        name = f"module {self.prefix!r}" if self.prefix else "the module"
        for (k, reverse), ps in self.params.items():
            if "weight_hr" in ps:
                key = f"weight_hr_l{k}" + ("_reverse" if reverse else "")
                raise ModelFileError(
                    f"{where}: {name} is an LSTM with proj_size ({key} "
                    f"{np.shape(ps['weight_hr'])}), which rnncli does not compute; expected "
                    f"nn.LSTM(proj_size=0)")
        self.layers = max(k for k, _ in self.params) + 1
        self.dirs = 2 if any(r for _, r in self.params) else 1
        first = self.params.get((0, False), {})
        w_hh = first.get("weight_hh")
        if w_hh is None:
            raise ModelFileError(f"{where}: {name} has no weight_hh_l0; expected the "
                                 f"state_dict of an nn.RNN, nn.LSTM or nn.GRU")
        shape = np.shape(w_hh)
        gates = 0
        if shape is not None and len(shape) == 2 and shape[1] and shape[0] % shape[1] == 0:
            gates, self.hidden = shape[0] // shape[1], shape[1]
        if gates not in GATES:
            raise ModelFileError(
                f"{where}: {name}'s weight_hh_l0 has shape {shape}; expected (H, H) for "
                f"nn.RNN, (3H, H) for nn.GRU or (4H, H) for nn.LSTM")
        self.class_name = GATES[gates]
        self.bias = "bias_ih" in first
        H, G = self.hidden, gates
        for k in range(self.layers):
            for reverse in ((False, True) if self.dirs == 2 else (False,)):
                key = f"l{k}" + ("_reverse" if reverse else "")
                ps = self.params.get((k, reverse), {})
                want = {"weight_ih", "weight_hh"} | ({"bias_ih", "bias_hh"} if self.bias else set())
                if set(ps) != want:
                    raise ModelFileError(
                        f"{where}: {name} layer {key} has {', '.join(sorted(ps)) or 'nothing'}"
                        f"; expected {', '.join(sorted(want))} (as every layer of the module)")
                w_ih, w_hh = ps["weight_ih"], ps["weight_hh"]
                if k == 0 and not reverse:
                    self.input_size = np.shape(w_ih)[1] if np.ndim(w_ih) == 2 else -1
                inp = self.input_size if k == 0 else H * self.dirs
                shapes = {"weight_ih": (G * H, inp), "weight_hh": (G * H, H),
                          "bias_ih": (G * H,), "bias_hh": (G * H,)}
                for p, a in ps.items():
                    if np.shape(a) != shapes[p] or np.asarray(a).dtype.kind != "f":
                        raise ModelFileError(
                            f"{where}: {name}'s {p}_{key} is {np.asarray(a).dtype} "
                            f"{np.shape(a)}; expected float {shapes[p]} for an "
                            f"{TORCH_CLASS[self.class_name]} of hidden_size {H}")

    @property
    def width(self):
        return self.hidden * self.dirs

    def build(self) -> list:
        layers = []
        cell_type, _ = registry()[self.class_name]
        for k in range(self.layers):
            name = layer_name(self.prefix, self.class_name, k)
            dirs = []
            for reverse in ((False, True) if self.dirs == 2 else (False,)):
                ps = {p: _float(a) for p, a in self.params[(k, reverse)].items()}
                w = to_keras(self.class_name, ps["weight_ih"], ps["weight_hh"],
                             ps.get("bias_ih"), ps.get("bias_hh"))
                inner = f"{name}/{'backward' if reverse else 'forward'}" if self.dirs == 2 else name
                cell = cell_type.from_weights(inner, [a for a in w if a is not None])
                dirs.append(RNN(inner, cell, return_sequences=True, go_backwards=reverse))
            layers.append(Bidirectional(name, *dirs) if self.dirs == 2 else dirs[0])
        return layers

    def describe(self) -> dict:
        return {"name": self.prefix, "class": TORCH_CLASS[self.class_name],
                "input_size": int(self.input_size), "hidden_size": int(self.hidden),
                "num_layers": self.layers, "bidirectional": self.dirs == 2,
                "bias": self.bias,
                "layers": [layer_name(self.prefix, self.class_name, k)
                           for k in range(self.layers)]}


def constructor(mod: dict, nonlinearity=None) -> str:
    """The PyTorch constructor of a module described as ``_Module.describe`` does."""
    args = [f"input_size={mod['input_size']}", f"hidden_size={mod['hidden_size']}",
            f"num_layers={mod['num_layers']}"]
    if nonlinearity and nonlinearity != "tanh":
        args.append(f"nonlinearity={nonlinearity!r}")
    if not mod["bias"]:
        args.append("bias=False")
    args += ["batch_first=True", f"bidirectional={mod['bidirectional']}"]
    return f"{mod['class']}({', '.join(args)})"


def _float(a):
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.itemsize < 4 else a


def _group(tensors: dict):
    """(modules in order of first key, {prefix: {param: array}} of the other keys)."""
    modules, others = {}, {}
    for key, a in tensors.items():
        m = RNN_KEY.match(key)
        if m:
            prefix = m["prefix"] or ""
            modules.setdefault(prefix, _Module(prefix)).add(
                int(m["layer"]), bool(m["reverse"]), m["param"], a)
        else:
            prefix, _, param = key.rpartition(".")
            others.setdefault(prefix, {})[param] = a
    return list(modules.values()), others


def _chain(modules, where):
    """The modules in the order where each takes the one before's output."""
    def fits(order):
        return all(b.input_size == a.width for a, b in zip(order, order[1:]))

    if fits(modules):
        return modules
    if len(modules) <= 5:
        found = [p for p in itertools.permutations(modules) if fits(p)]
        if len(found) == 1:
            return list(found[0])
    sizes = ", ".join(f"{m.prefix or '(top)'} {m.input_size} -> {m.width}" for m in modules)
    raise ModelFileError(f"{where}: holds {len(modules)} recurrent modules whose sizes don't "
                         f"chain ({sizes}); expected one module, or modules each taking the "
                         f"one before's output")


def _linear(params):
    """(weight, bias or None) of an nn.Linear's params, or None."""
    w, b = params.get("weight"), params.get("bias")
    if set(params) - {"weight", "bias"} or w is None or np.ndim(w) != 2 or \
            np.asarray(w).dtype.kind != "f":
        return None
    if b is not None and np.shape(b) != (np.shape(w)[0],):
        return None
    return _float(w), None if b is None else _float(b)


def _ends(modules, others, where):
    """(embedding (prefix, weight) or None, heads [(prefix, weight, bias)], unused keys)."""
    first_in, width = modules[0].input_size, modules[-1].width
    linears = {p: lin for p, ps in others.items() if (lin := _linear(ps)) is not None}
    embedding = None
    for p, (w, b) in linears.items():
        if b is None and "emb" in p.lower() and w.shape[1] == first_in:
            embedding = (p, w)
            break
    if embedding:
        del linears[embedding[0]]
    heads = []
    while True:
        nxt = [p for p, (w, _) in linears.items() if w.shape[1] == width]
        if not nxt:
            break
        p = nxt[0]
        w, b = linears.pop(p)
        heads.append((p, w, b))
        width = w.shape[0]
    used = {h[0] for h in heads} | ({embedding[0]} if embedding else set())
    unused = sorted(f"{p}.{k}" if p else k for p, ps in others.items() if p not in used
                    for k in ps)
    return embedding, heads, unused


def _metadata_settings(metadata, where) -> dict:
    text = metadata.get(METADATA_KEY)
    if text is None:
        return {}
    try:
        settings = json.loads(text)
    except ValueError:
        settings = None
    if not isinstance(settings, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in settings.items()):
        raise ModelFileError(f"{where}: metadata {METADATA_KEY!r} is {text[:60]!r}; expected "
                             f"a JSON object of setting -> value strings")
    return settings


def load(path, settings: dict | None = None) -> Model:
    """A model from a PyTorch state_dict file (``.safetensors`` or ``.pt``/``.pth``)."""
    where = os.fspath(path)
    tensors, metadata, fmt = read_state_dict(where)
    modules, others = _group(tensors)
    if not modules:
        keys = ", ".join(list(tensors)[:6]) or "none"
        raise ModelFileError(f"{where}: no nn.RNN, nn.LSTM or nn.GRU parameters (keys: "
                             f"{keys}); expected weight_ih_l0, weight_hh_l0 ...")
    for m in modules:
        m.check(where)
    modules = _chain(modules, where)
    embedding, heads, unused = _ends(modules, others, where)
    layers = []
    if embedding:
        layers.append(L.Embedding(embedding[0], embedding[1]))
    for m in modules:
        layers += m.build()
    for p, w, b in heads:
        dense = L.Dense(p or "linear", np.ascontiguousarray(w.T), b)
        layers.append(L.TimeDistributed(p or "linear", dense))
    rec = layers[1] if embedding else layers[0]
    spec = None if embedding else InputSpec("input", (None, None, rec.input_dim), str(rec.dtype))
    source = {"path": where, "format": fmt, "title": FORMAT_TITLES[fmt], "framework": "pytorch",
              "has_config": False, "torch_modules": [m.describe() for m in modules]}
    model = Model.chain(os.path.splitext(os.path.basename(where))[0], layers,
                        input_spec=spec, source=source)
    stored = _metadata_settings(metadata, where)
    try:
        apply_settings(model, stored)
    except RnncliError as e:
        raise ModelFileError(f"{where}: metadata {METADATA_KEY!r} doesn't fit the model "
                             f"({e})") from None
    model.notes += _notes(where, model, modules, embedding, heads, unused, stored,
                          settings or {})
    apply_settings(model, settings)
    return model


def _notes(where, model, modules, embedding, heads, unused, stored, given) -> list:
    notes = []
    keys = set(given) | set(stored)
    names = ", ".join((f"{m.prefix} = " if m.prefix else "") + constructor(m.describe())
                      for m in modules)
    notes.append(f"{where}: the state_dict of {names}; rnncli's inputs are batch-first "
                 f"(batch, timesteps, features) whatever the module's batch_first")
    for m in modules:
        if m.class_name == "SimpleRNN":
            names = m.describe()["layers"]
            if "activation" not in keys and not any(f"{n}.activation" in keys for n in names):
                notes.append(f"{where}: nn.RNN's nonlinearity is not in a state_dict: assumed "
                             f"tanh; give --set activation=relu for nonlinearity='relu'")
    if embedding:
        notes.append(f"{where}: {embedding[0]}.weight {tuple(embedding[1].shape)} read as an "
                     f"nn.Embedding: the model takes token ids (no padding mask)")
    for p, w, _ in heads:
        notes.append(f"{where}: {p}.weight {tuple(w.shape)} read as an nn.Linear applied at "
                     f"every step (TimeDistributed Dense, linear activation)")
    if unused:
        notes.append(f"{where}: ignored {', '.join(unused)}: not an nn.RNN, nn.LSTM, nn.GRU, "
                     f"or an nn.Linear or nn.Embedding that fits them")
    if stored:
        told = ", ".join(f"{k}={v}" for k, v in stored.items())
        notes.append(f"{where}: settings stored by rnncli in the file's metadata: {told}")
    return notes


# ---------------------------------------------------------------- framework outputs


def framework_arrays(model, result) -> dict:
    """What PyTorch's modules return beside their output sequence: ``h_n`` (and ``c_n``
    for LSTMs), (num_layers·directions, batch, hidden), per module (``h_n/<module>`` when
    the state_dict holds several)."""
    mods = model.source.get("torch_modules", [])
    out = {}
    for mod in mods:
        finals = {}
        for name in mod["layers"]:
            r = result.layers.get(name)
            if r is None:
                break
            for d in r.directions.values():
                for s, v in d.states.items():
                    finals.setdefault(s, []).append(v)
        else:
            for s, vs in finals.items():
                key = {"h": "h_n", "c": "c_n"}[s]
                out[key if len(mods) == 1 else f"{key}/{mod['name'] or 'top'}"] = np.stack(vs)
    return out
