"""Turn a Keras model config (and the weights that go with it) into a :class:`Model`.

Reads the JSON Keras 3 writes (``config.json`` in a ``.keras`` archive, the
``model_config`` attribute of a legacy ``.h5``) and what Keras 2 / tf.keras wrote.
Nothing in a config is ever executed: a layer rnncli does not know becomes an
:class:`~rnncli.layers.Unsupported` layer that can be listed but not run.
"""

from __future__ import annotations

import re

import numpy as np

from . import layers as L
from .errors import ModelFileError, RnncliError, UnsupportedLayerError
from .model import ALL_OUTPUTS, InputSpec, Model, Node, Ref

RECURRENT_KEYS = {"activation", "go_backwards", "return_sequences", "return_state",
                  "zero_output_for_mask", "stateful"}
WRAPPER_KEYS = {"merge_mode"}


def snake_case(name: str) -> str:
    """Keras' naming of weight groups: ``SimpleRNN`` -> ``simple_rnn``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def compute_dtype(cfg: dict, notes: list, name: str):
    """The numpy dtype a layer computes in, from its Keras dtype or dtype policy."""
    d = cfg.get("dtype", "float32")
    if isinstance(d, dict):
        d = d.get("config", {}).get("name", "float32")
    if not isinstance(d, str):
        d = "float32"
    if d.startswith("mixed_"):
        d = d[len("mixed_"):]
    if d == "bfloat16":
        notes.append(f"layer {name!r} computes in bfloat16 in Keras; rnncli uses float32")
        d = "float32"
    try:
        return np.dtype(d)
    except TypeError:
        return np.dtype("float32")


class Overrides:
    """Config values given on the command line (``--set [LAYER.]KEY=VALUE``).

    A plain key applies to every recurrent layer (and both directions of a
    Bidirectional one) whose config has that key; ``LAYER.KEY`` to one layer.
    """

    def __init__(self, values: dict | None = None):
        self.values = dict(values or {})
        self.used: set = set()

    def apply(self, name: str, cfg: dict, recurrent: bool, keys=None) -> dict:
        cfg = dict(cfg)
        for key, value in self.values.items():
            if "." in key:
                lname, k = key.rsplit(".", 1)
                if lname == name:
                    cfg[k] = value
                    self.used.add(key)
            elif recurrent and (keys is None or key in keys):
                cfg[key] = value
                self.used.add(key)
        return cfg

    def check_all_used(self, model: Model):
        unused = set(self.values) - self.used
        if unused:
            names = ", ".join(la.name for la in model.layers)
            raise RnncliError(
                f"--set {sorted(unused)[0]} matched no layer; expected KEY (for every recurrent "
                f"layer) or LAYER.KEY with LAYER one of: {names}")


def build_layer(entry: dict, weights: list | None, keras_major: int, overrides: Overrides,
                notes: list) -> L.Layer:
    """One layer from its config entry and its weights in Keras' order."""
    cls = entry.get("class_name")
    cfg = entry.get("config") or {}
    if not isinstance(cfg, dict) or not isinstance(cls, str):
        raise ModelFileError(f"a layer entry in the config has no class_name/config: {str(entry)[:80]}")
    name = cfg.get("name") or entry.get("name") or snake_case(cls)
    weights = list(weights or [])
    try:
        return _build(cls, name, cfg, weights, keras_major, overrides, notes)
    except UnsupportedLayerError as e:
        return L.Unsupported(name, cls, str(e), cfg, {f"w{i}": w for i, w in enumerate(weights)})


def _as_dtype(arrs, dtype):
    return [np.asarray(a).astype(dtype, copy=False) for a in arrs]


def _expect(name, cls, weights, counts):
    if not weights and 0 not in counts:
        raise ModelFileError(f"layer {name!r} ({cls}) has no weights in the file; the config "
                             f"and the weights do not match")
    if len(weights) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise ModelFileError(
            f"layer {name!r} ({cls}) has {len(weights)} weight arrays in the file; expected {want}")


def _simple_rnn(name, cfg, weights, keras_major, overrides, notes, dtype):
    cfg = overrides.apply(name, cfg, True, RECURRENT_KEYS | {"units"})
    cls = "SimpleRNN"
    use_bias = cfg.get("use_bias", True)
    _expect(name, cls, weights, (3,) if use_bias else (2,))
    k, u, *b = _as_dtype(weights, dtype)
    if cfg.get("stateful"):
        notes.append(f"layer {name!r} is stateful in Keras; rnncli runs it from a zero state "
                     f"(or --initial-state) on each call")
    if cfg.get("units") not in (None, k.shape[-1]):
        raise ModelFileError(
            f"layer {name!r}: config says units={cfg.get('units')} but the kernel has shape {k.shape}")
    return L.SimpleRNN(
        name, k, u, b[0] if b else None, activation=cfg.get("activation", "tanh"),
        return_sequences=_bool(cfg.get("return_sequences", False)),
        return_state=_bool(cfg.get("return_state", False)),
        go_backwards=_bool(cfg.get("go_backwards", False)),
        zero_output_for_mask=_bool(cfg.get("zero_output_for_mask", False)),
        stateful=_bool(cfg.get("stateful", False)), keras_major=keras_major, config=cfg)


def _bool(v):
    if isinstance(v, str):
        return v.lower() in ("1", "true", "yes", "on")
    return bool(v)


def _build(cls, name, cfg, weights, keras_major, overrides, notes):
    dtype = compute_dtype(cfg, notes, name)
    if cls == "SimpleRNN":
        return _simple_rnn(name, cfg, weights, keras_major, overrides, notes, dtype)
    if cls == "Bidirectional":
        cfg = overrides.apply(name, cfg, True, WRAPPER_KEYS)
        inner = cfg.get("layer") or {}
        if inner.get("class_name") != "SimpleRNN":
            raise UnsupportedLayerError(
                f"layer {name!r}: rnncli computes Bidirectional(SimpleRNN), not "
                f"Bidirectional({inner.get('class_name')})")
        back = cfg.get("backward_layer") or {
            "class_name": "SimpleRNN",
            "config": {**inner.get("config", {}), "go_backwards": not inner.get("config", {}).get("go_backwards", False),
                       "name": "backward_" + inner.get("config", {}).get("name", "")}}
        if len(weights) % 2:
            raise ModelFileError(
                f"layer {name!r} (Bidirectional) has {len(weights)} weight arrays; expected an "
                f"even number (forward then backward)")
        half = len(weights) // 2
        fcfg = dict(inner.get("config", {}))
        bcfg = dict(back.get("config", {}))
        fwd = _simple_rnn(f"{name}/forward", fcfg, weights[:half], keras_major, overrides,
                          notes, compute_dtype(fcfg, notes, name))
        bwd = _simple_rnn(f"{name}/backward", bcfg, weights[half:], keras_major, overrides,
                          notes, compute_dtype(bcfg, notes, name))
        if "go_backwards" in overrides.values:
            # A global go_backwards makes both directions flip; keep Keras' pairing.
            bwd.go_backwards = not fwd.go_backwards
        merge = cfg.get("merge_mode", "concat")
        return L.Bidirectional(name, fwd, bwd, None if merge in (None, "None", "none") else merge,
                               config=cfg)
    if cls in ("Dense", "TimeDistributed"):
        if cls == "TimeDistributed":
            inner = cfg.get("layer") or {}
            if inner.get("class_name") != "Dense":
                raise UnsupportedLayerError(
                    f"layer {name!r}: rnncli computes TimeDistributed(Dense), not "
                    f"TimeDistributed({inner.get('class_name')})")
            icfg = overrides.apply(name, inner.get("config", {}), False)
            dense = _dense(name, icfg, weights, keras_major, dtype)
            return L.TimeDistributed(name, dense, config=cfg)
        cfg = overrides.apply(name, cfg, False)
        return _dense(name, cfg, weights, keras_major, dtype)
    if cls == "Embedding":
        cfg = overrides.apply(name, cfg, False)
        _expect(name, cls, weights, (1,))
        return L.Embedding(name, np.asarray(weights[0]).astype(dtype, copy=False),
                           mask_zero=_bool(cfg.get("mask_zero", False)), config=cfg)
    if cls == "Masking":
        cfg = overrides.apply(name, cfg, False)
        return L.Masking(name, float(cfg.get("mask_value", 0.0)), config=cfg)
    if cls in L.IDENTITY_CLASSES:
        return L.Identity(name, cls, config=cfg)
    if cls == "Flatten":
        return L.Flatten(name, config=cfg)
    if cls == "Activation":
        return L.Activation(name, cfg.get("activation"), keras_major, config=cfg)
    if cls in L.OP_CLASSES:
        return L.Op(name, cls, config=cfg)
    if cls in ("Lambda", "TFOpLambda", "SlicingOpLambda"):
        raise UnsupportedLayerError(
            f"layer {name!r} is a {cls} (Python code stored in the file); rnncli never runs code "
            f"from a model file")
    raise UnsupportedLayerError(f"layer {name!r} is a {cls}, which rnncli cannot compute")


def _dense(name, cfg, weights, keras_major, dtype):
    use_bias = cfg.get("use_bias", True)
    _expect(name, "Dense", weights, (2,) if use_bias else (1,))
    k, *b = _as_dtype(weights, dtype)
    return L.Dense(name, k, b[0] if b else None, cfg.get("activation", "linear"), keras_major,
                   config=cfg)


WEIGHTLESS = L.IDENTITY_CLASSES | L.OP_CLASSES | {"InputLayer", "Masking", "Flatten", "Activation"}


# ---------------------------------------------------------------- whole models


def model_from_config(config: dict, weights_for, keras_major: int = 3, overrides=None,
                      source=None, notes=None) -> Model:
    """Build a Model from a Keras model config.

    ``weights_for(index, name, class_name)`` returns the layer's weight arrays in
    Keras' order (``index`` counts the config's layers, InputLayer included).
    """
    overrides = overrides or Overrides()
    notes = notes if notes is not None else []
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError("the model config is not a Keras model config (no class_name)")
    cls = config["class_name"]
    cfg = config.get("config") or {}
    entries = cfg.get("layers")
    if not isinstance(entries, list):
        if cls in ("SimpleRNN", "Bidirectional"):  # a bare layer saved on its own
            entries, cls = [config], "Sequential"
        else:
            raise ModelFileError(f"the model config ({cls}) lists no layers")
    name = cfg.get("name", "model")
    built = []
    for i, entry in enumerate(entries):
        ecls = entry.get("class_name")
        if ecls == "InputLayer":
            built.append(None)
            continue
        if ecls in ("Sequential", "Functional", "Model"):
            lname = (entry.get("config") or {}).get("name", ecls)
            built.append(L.Unsupported(lname, ecls, f"layer {lname!r} is a nested {ecls} model, "
                                       f"which rnncli cannot compute yet", entry.get("config")))
            continue
        lname = (entry.get("config") or {}).get("name") or entry.get("name")
        built.append(build_layer(entry, weights_for(i, lname, ecls), keras_major, overrides, notes))
    if cls == "Sequential":
        model = _sequential(name, entries, built, source, notes)
    elif cls in ("Functional", "Model"):
        model = _functional(name, cfg, entries, built, source, notes)
    else:
        raise ModelFileError(f"model class {cls!r} is not Sequential or Functional")
    overrides.check_all_used(model)
    for layer in model.layers:
        if isinstance(layer, L.Unsupported):
            model.notes.append(f"{layer.reason}; its recurrent layers can still be inspected")
        for wname, w in layer.weights().items():
            if w.dtype.kind == "f" and not np.isfinite(w).all():
                model.notes.append(f"layer {layer.name!r}: {wname} holds NaN or Inf values")
    return model


def _input_spec(cfg: dict, name: str) -> InputSpec:
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if shape is None and cfg.get("input_shape"):
        shape = [None, *cfg["input_shape"]]
    dtype = cfg.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    return InputSpec(name, tuple(shape) if shape else (), dtype)


def _sequential(name, entries, built, source, notes):
    layers, nodes = [], {}
    spec = None
    prev = Ref("__input__")
    for entry, layer in zip(entries, built):
        cfg = entry.get("config") or {}
        if layer is None:
            spec = _input_spec(cfg, cfg.get("name", "input"))
            continue
        if spec is None and (cfg.get("batch_input_shape") or cfg.get("batch_shape")):
            spec = _input_spec(cfg, "input")
        layers.append(layer)
        nodes[(layer.name, 0)] = Node(layer, [prev])
        prev = Ref(layer.name)
    # A Sequential model returns every output of its last layer (return_state, merge_mode=None).
    last = Ref(prev.layer, 0, ALL_OUTPUTS) if layers else prev
    return Model(name, layers, nodes, [Ref("__input__")], [last],
                 input_specs=[spec] if spec else [], source=source, notes=notes)


def _history(obj):
    """A Keras 3 serialized KerasTensor -> Ref; other values unchanged, recursively."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            h = obj.get("config", {}).get("keras_history")
            return Ref(h[0], int(h[1]), int(h[2]))
        return {k: _history(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_history(o) for o in obj]
    return obj


def _k2_ref(item):
    return Ref(item[0], int(item[1]), int(item[2]) if len(item) > 2 else 0)


def _parse_node(node):
    """One entry of ``inbound_nodes`` -> (args, kwargs), for Keras 3 and Keras 2 forms."""
    if isinstance(node, dict):  # Keras 3
        return _history(node.get("args", [])), _history(node.get("kwargs", {}))
    if isinstance(node, list):  # Keras 2: [[layer, node, tensor, kwargs], ...]
        refs = [_k2_ref(t) for t in node]
        kwargs = {}
        for t in node:
            if len(t) > 3 and isinstance(t[3], dict):
                for k, v in t[3].items():
                    if isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str):
                        kwargs[k] = _k2_ref(v)
                    elif k not in ("training",):
                        kwargs[k] = v
        return ([refs[0]] if len(refs) == 1 else [refs]), kwargs
    raise ModelFileError(f"unreadable inbound node in the config: {str(node)[:80]}")


def _refs(spec):
    """input_layers / output_layers: [name, node, tensor] or a list of them."""
    if not spec:
        return []
    if isinstance(spec[0], str):
        spec = [spec]
    return [_k2_ref(s) for s in spec]


def _functional(name, cfg, entries, built, source, notes):
    layers, nodes, specs = [], {}, []
    for entry, layer in zip(entries, built):
        ecfg = entry.get("config") or {}
        lname = entry.get("name") or ecfg.get("name")
        if layer is None:
            specs.append(_input_spec(ecfg, lname))
            continue
        layers.append(layer)
        for i, node in enumerate(entry.get("inbound_nodes") or []):
            args, kwargs = _parse_node(node)
            nodes[(layer.name, i)] = Node(layer, args, {k: v for k, v in kwargs.items()
                                                        if k != "training"})
    inputs = _refs(cfg.get("input_layers"))
    outputs = _refs(cfg.get("output_layers"))
    if not inputs or not outputs:
        raise ModelFileError("the functional model config names no input_layers or output_layers")
    if len(inputs) > 1:
        raise UnsupportedLayerError(
            f"the model has {len(inputs)} inputs; rnncli runs models with one input")
    return Model(name, layers, nodes, inputs, outputs, input_specs=specs, source=source,
                 notes=notes)
