"""One rnncli layer from one Keras layer config entry and its weights in Keras' order.

Nothing in a config is ever executed: a layer rnncli does not know becomes an
:class:`~rnncli.core.layers.Unsupported` layer that can be listed but not run.
"""

from __future__ import annotations

import re

import numpy as np

from ..core import layers as L
from ..core.cells import registry
from ..core.layer import parse_bool
from ..core.rnn import RNN, Bidirectional
from ..errors import ModelFileError, UnsupportedLayerError

RNN_OPTIONS = ("return_sequences", "return_state", "go_backwards", "zero_output_for_mask",
               "stateful")


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
        dtype = np.dtype(d)
    except TypeError:
        return np.dtype("float32")
    return dtype if dtype.kind == "f" else np.dtype("float32")


def build_layer(entry: dict, weights: list | None, keras_major: int, notes: list) -> L.Layer:
    """One layer from its config entry and its weights in Keras' order."""
    cls = entry.get("class_name")
    cfg = entry.get("config") or {}
    if not isinstance(cfg, dict) or not isinstance(cls, str):
        raise ModelFileError(f"a layer entry in the config has no class_name/config: {str(entry)[:80]}")
    name = cfg.get("name") or entry.get("name") or snake_case(cls)
    weights = list(weights or [])
    try:
        return _build(cls, name, cfg, weights, keras_major, notes)
    except UnsupportedLayerError as e:
        return L.Unsupported(name, cls, str(e), cfg, _weight_names(cls, cfg, weights))


def _weight_names(cls, cfg, weights):
    """Weights of a layer rnncli can't compute, under the names Keras gives them."""
    names = ["kernel", "recurrent_kernel", "bias"] if cls in registry() or "LSTM" in cls \
        or "GRU" in cls or "RNN" in cls else \
        (["embeddings"] if cls == "Embedding" else ["kernel", "bias"])
    if len(weights) > len(names):
        names = [f"weight_{i}" for i in range(len(weights))]
    return dict(zip(names, weights))


def _as_dtype(arrs, dtype):
    return [np.asarray(a).astype(dtype, copy=False) for a in arrs]


def expect_count(name, cls, weights, counts):
    if not weights and 0 not in counts:
        raise ModelFileError(f"layer {name!r} ({cls}) has no weights in the file; the config "
                             f"and the weights do not match")
    if len(weights) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise ModelFileError(
            f"layer {name!r} ({cls}) has {len(weights)} weight arrays in the file; expected {want}")


def recurrent(cls, name, cfg, weights, keras_major, notes, dtype) -> RNN:
    """A SimpleRNN, LSTM or GRU layer: its cell from the config, the RNN options around it."""
    cells = registry()
    if cls not in cells:
        raise UnsupportedLayerError(f"layer {name!r} is {_a(cls)} {cls}, which rnncli cannot "
                                    f"compute; it computes {', '.join(cells)}")
    cell_class, _ = cells[cls]
    use_bias = parse_bool(cfg.get("use_bias", True))
    expect_count(name, cls, weights, (3,) if use_bias else (2,))
    cell = cell_class.from_config(name, cfg, _as_dtype(weights, dtype), keras_major)
    if cfg.get("units") not in (None, cell.units):
        raise ModelFileError(f"layer {name!r}: config says units={cfg.get('units')} but the "
                             f"kernel has shape {cell.kernel.shape}")
    if cfg.get("stateful"):
        notes.append(f"layer {name!r} is stateful in Keras; rnncli runs it from a zero state "
                     f"(or --initial-state) on each call")
    options = {k: parse_bool(cfg.get(k, False)) for k in RNN_OPTIONS}
    return RNN(name, cell, **options, config=cfg)


def _a(word):
    return "an" if word[:1].upper() in "AEIOU" or word[:2] in ("LS", "RN") else "a"


def _bidirectional(name, cfg, weights, keras_major, notes):
    inner = cfg.get("layer") or {}
    icls = inner.get("class_name")
    if icls not in registry():
        raise UnsupportedLayerError(
            f"layer {name!r}: rnncli computes Bidirectional({', '.join(registry())}), not "
            f"Bidirectional({icls})")
    icfg = inner.get("config", {})
    back = cfg.get("backward_layer") or {
        "class_name": icls, "config": {**icfg, "go_backwards": not icfg.get("go_backwards", False),
                                       "name": "backward_" + icfg.get("name", "")}}
    if len(weights) % 2:
        raise ModelFileError(
            f"layer {name!r} (Bidirectional) has {len(weights)} weight arrays; expected an "
            f"even number (forward then backward)")
    half = len(weights) // 2
    bcfg = dict(back.get("config", {}))
    fwd = recurrent(icls, f"{name}/forward", icfg, weights[:half], keras_major, notes,
                    compute_dtype(icfg, notes, name))
    bwd = recurrent(back.get("class_name", icls), f"{name}/backward", bcfg, weights[half:],
                    keras_major, notes, compute_dtype(bcfg, notes, name))
    merge = cfg.get("merge_mode", "concat")
    return Bidirectional(name, fwd, bwd, None if merge in (None, "None", "none") else merge,
                         config=cfg)


def _build(cls, name, cfg, weights, keras_major, notes):
    dtype = compute_dtype(cfg, notes, name)
    if cls in registry():
        return recurrent(cls, name, cfg, weights, keras_major, notes, dtype)
    if cls == "Bidirectional":
        return _bidirectional(name, cfg, weights, keras_major, notes)
    if cls == "TimeDistributed":
        inner = cfg.get("layer") or {}
        if inner.get("class_name") != "Dense":
            raise UnsupportedLayerError(
                f"layer {name!r}: rnncli computes TimeDistributed(Dense), not "
                f"TimeDistributed({inner.get('class_name')})")
        dense = dense_layer(name, inner.get("config", {}), weights, keras_major, dtype)
        return L.TimeDistributed(name, dense, config=cfg)
    if cls == "Dense":
        return dense_layer(name, cfg, weights, keras_major, dtype)
    if cls == "Embedding":
        expect_count(name, cls, weights, (1,))
        return L.Embedding(name, np.asarray(weights[0]).astype(dtype, copy=False),
                           mask_zero=parse_bool(cfg.get("mask_zero", False)), config=cfg)
    if cls == "Masking":
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
    return recurrent(cls, name, cfg, weights, keras_major, notes, dtype) if "RNN" in cls or \
        "LSTM" in cls or "GRU" in cls else _unknown(name, cls)


def _unknown(name, cls):
    raise UnsupportedLayerError(f"layer {name!r} is {_a(cls)} {cls}, which rnncli cannot compute")


def dense_layer(name, cfg, weights, keras_major, dtype):
    use_bias = parse_bool(cfg.get("use_bias", True))
    expect_count(name, "Dense", weights, (2,) if use_bias else (1,))
    k, *b = _as_dtype(weights, dtype)
    return L.Dense(name, k, b[0] if b else None, cfg.get("activation", "linear"), keras_major,
                   config=cfg)
