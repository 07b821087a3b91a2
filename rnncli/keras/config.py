"""Turn a Keras model config (and the weights that go with it) into a :class:`Model`:
its layers (rnncli/keras/build.py) and the graph that connects them.

Reads the JSON Keras 3 writes (``config.json`` in a ``.keras`` archive, the
``model_config`` attribute of a legacy ``.h5``) and what Keras 2 / tf.keras wrote.
"""

from __future__ import annotations

import numpy as np

from .. import limits
from ..core import layers as L
from ..core.model import InputSpec, Model, Node, Ref
from ..core.settings import apply_settings
from ..errors import ModelFileError
from .build import build_layer

# ---------------------------------------------------------------- whole models

SIZE_KEYS = ("units", "input_dim", "output_dim")  # what a layer config declares, counted


def check_config_size(config, where: str):
    """Refuse a config over the max_layers or max_units limits (rnncli/limits.py) before
    anything is built or read for it; ``where`` names it in the message."""
    cfg = config.get("config") if isinstance(config, dict) else None
    entries = cfg.get("layers") if isinstance(cfg, dict) else None
    if not isinstance(entries, list):
        entries = [config]
    limits.check("max_layers", len(entries), f"{where} lists {{}} layers", ModelFileError)
    for entry in entries:
        ecfg = entry.get("config") if isinstance(entry, dict) else None
        if not isinstance(ecfg, dict):
            continue
        inner = ecfg.get("layer")
        inner = inner.get("config") if isinstance(inner, dict) else None
        for c in (ecfg, inner if isinstance(inner, dict) else {}):
            for key in SIZE_KEYS:
                n = c.get(key)
                if isinstance(n, int) and not isinstance(n, bool):
                    limits.check("max_units", n, f"{where}: layer {ecfg.get('name')!r} "
                                 f"declares {key}={{}}", ModelFileError)



def model_from_config(config: dict, weights_for, keras_major: int = 3, settings=None,
                      source=None, notes=None) -> Model:
    """Build a Model from a Keras model config.

    ``weights_for(index, name, class_name)`` returns the layer's weight arrays in
    Keras' order (``index`` counts the config's layers, InputLayer included);
    ``settings``: ``--set`` values applied to the layers (rnncli/core/settings.py).
    """
    notes = notes if notes is not None else []
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError("the model config is not a Keras model config (no class_name)")
    check_config_size(config, (source or {}).get("path") or "the model config")
    cls = config["class_name"]
    cfg = config.get("config") or {}
    entries = cfg.get("layers")
    if not isinstance(entries, list):
        if cls in ("SimpleRNN", "LSTM", "GRU", "Bidirectional"):  # a bare layer saved alone
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
        built.append(build_layer(entry, weights_for(i, lname, ecls), keras_major, notes))
    if cls == "Sequential":
        model = _sequential(name, entries, built, source, notes)
    elif cls in ("Functional", "Model"):
        model = _functional(name, cfg, entries, built, source, notes)
    else:
        raise ModelFileError(f"model class {cls!r} is not Sequential or Functional")
    apply_settings(model, settings)
    check_weights(model)
    return model


def check_weights(model):
    """Notes for weights holding NaN or Inf."""
    for layer in model.layers:
        for wname, w in layer.weights().items():
            if w.dtype.kind == "f" and not np.isfinite(w).all():
                model.notes.append(f"layer {layer.name!r}: {wname} holds NaN or Inf values")


def _input_spec(cfg: dict, name: str) -> InputSpec:
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if shape is None and cfg.get("input_shape"):
        shape = [None, *cfg["input_shape"]]
    dtype = cfg.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    return InputSpec(name, tuple(shape) if shape else (), dtype)


def _sequential(name, entries, built, source, notes):
    layers, spec = [], None
    for entry, layer in zip(entries, built):
        cfg = entry.get("config") or {}
        if layer is None:
            spec = _input_spec(cfg, cfg.get("name", "input"))
            continue
        if spec is None and (cfg.get("batch_input_shape") or cfg.get("batch_shape")):
            spec = _input_spec(cfg, "input")
        layers.append(layer)
    return Model.chain(name, layers, input_spec=spec, source=source, notes=notes)


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
        notes.append(f"the model has {len(inputs)} inputs; rnncli runs models with one input, "
                     f"so only `summary` describes it")
    return Model(name, layers, nodes, inputs, outputs, input_specs=specs, source=source,
                 notes=notes)
