"""Write a model's weights back out: .npz, Keras 3 ``.keras`` and ``.weights.h5``, legacy ``.h5``.

The files follow what Keras 3 writes, so ``keras.saving.load_model`` and
``model.load_weights`` read them and compute the same numbers. Configs are made
from rnncli's layers in Keras 3's form (a Keras 2 model comes out as a Keras 3
one); a Keras 3 functional model keeps its original config.
"""

from __future__ import annotations

import datetime
import json
import zipfile

import numpy as np

from ..core.layers import OP_CLASSES, Dense, Embedding, TimeDistributed
from ..core.rnn import RNN, Bidirectional
from ..errors import RnncliError
from .build import snake_case

KERAS_VERSION = "3.0.0"  # the oldest Keras 3 that reads what is written here


# ---------------------------------------------------------------- configs


def _rnn_config(layer: RNN, name=None):
    return {"name": name or layer.name, "trainable": True, "dtype": str(layer.dtype),
            "return_sequences": layer.return_sequences, "return_state": layer.return_state,
            "go_backwards": layer.go_backwards, "stateful": False, "unroll": False,
            "zero_output_for_mask": layer.zero_output_for_mask,
            **layer.cell.keras3()[0], "dropout": 0.0, "recurrent_dropout": 0.0}


def _dense_config(layer: Dense, name=None):
    return {"name": name or layer.name, "trainable": True, "dtype": str(layer.kernel.dtype),
            "units": layer.units, "activation": layer.activation,
            "use_bias": layer.bias is not None}


def _entry(class_name, config):
    return {"module": "keras.layers", "class_name": class_name, "config": config,
            "registered_name": None}


def layer_entry(layer) -> dict:
    """A Keras 3 layer config for an rnncli layer."""
    if isinstance(layer, RNN):
        cfg = _rnn_config(layer)
        cfg["zero_output_for_mask"] = False
        return _entry(layer.class_name, cfg)
    if isinstance(layer, Bidirectional):
        f, b = layer.forward_layer, layer.backward_layer
        fcfg = _rnn_config(f, "forward_" + layer.name)
        bcfg = _rnn_config(b, "backward_" + layer.name)
        return _entry("Bidirectional", {"name": layer.name, "trainable": True,
                                        "dtype": str(f.dtype), "merge_mode": layer.merge_mode,
                                        "layer": _entry(f.class_name, fcfg),
                                        "backward_layer": _entry(b.class_name, bcfg)})
    if isinstance(layer, TimeDistributed):
        return _entry("TimeDistributed", {"name": layer.name, "trainable": True,
                                          "layer": _entry("Dense", _dense_config(layer.inner))})
    if isinstance(layer, Dense):
        return _entry("Dense", _dense_config(layer))
    if isinstance(layer, Embedding):
        return _entry("Embedding", {"name": layer.name, "trainable": True,
                                    "input_dim": layer.input_dim,
                                    "output_dim": layer.embeddings.shape[1],
                                    "mask_zero": layer.mask_zero,
                                    "dtype": str(layer.embeddings.dtype)})
    if layer.class_name == "Masking":
        return _entry("Masking", {"name": layer.name, "mask_value": layer.mask_value})
    if layer.class_name == "Flatten":
        return _entry("Flatten", {"name": layer.name})
    if layer.class_name == "Activation":
        return _entry("Activation", {"name": layer.name, "activation": layer.activation})
    if layer.class_name in ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
                            "AlphaDropout", "unknown (no weights)"):
        keep = {k: v for k, v in layer.config.items() if k in ("rate", "stddev", "seed")}
        keep.setdefault("stddev" if layer.class_name == "GaussianNoise" else "rate", 0.0)
        cls = "Dropout" if layer.class_name.startswith("unknown") else layer.class_name
        return _entry(cls, {"name": layer.name, **keep})
    raise RnncliError(f"layer {layer.name!r} ({layer.class_name}) can't be written as Keras 3")


def _input_entry(model):
    spec = model.input_specs[0] if model.input_specs else None
    if model.takes_token_ids:
        t = spec.shape[1] if spec and len(spec.shape) > 1 else None
        shape, dtype = [None, t], "int32"
    else:
        t = spec.shape[1] if spec and len(spec.shape) == 3 else None
        d = model.input_dim or model.recurrent_layers[0].input_dim
        shape, dtype = [None, t, d], str(model.dtype)
    return shape, {"module": "keras.layers", "class_name": "InputLayer",
                   "config": {"batch_shape": shape, "dtype": dtype, "sparse": False,
                              "name": "input_layer"}, "registered_name": None}


def _is_chain(model):
    return all(len(n.args) == 1 and not n.kwargs for n in model.nodes.values())


def _with_modules(entry: dict, top=False) -> dict:
    """A Keras 3 legacy-h5 config -> a ``.keras`` one: the same, with the ``module`` keys
    Keras 3 deserializes by (legacy .h5 files leave them out)."""
    entry = dict(entry)
    cls = entry.get("class_name")
    if "module" not in entry:
        if top and cls in ("Functional", "Model"):
            entry["module"], entry["registered_name"] = "keras.src.models.functional", "Functional"
        elif top:
            entry["module"] = "keras"
        elif cls in OP_CLASSES:
            entry["module"], entry["registered_name"] = "keras.src.ops.numpy", cls
        else:
            entry["module"] = "keras.layers"
    cfg = dict(entry.get("config") or {})
    for key in ("layer", "backward_layer"):
        if isinstance(cfg.get(key), dict):
            cfg[key] = _with_modules(cfg[key])
    if isinstance(cfg.get("layers"), list):
        cfg["layers"] = [_with_modules(e) for e in cfg["layers"]]
    entry["config"] = cfg
    return entry


def keras3_config(model) -> dict:
    """The model as a Keras 3 ``config.json`` document."""
    original = model.original_config
    if original is not None and original.get("class_name") in ("Functional", "Model"):
        return _with_modules(original, top=True)
    if not _is_chain(model):
        raise RnncliError("only Sequential-like models (a chain of layers) can be converted to "
                          "Keras 3 files unless they came from Keras 3; write .npz instead")
    shape, inp = _input_entry(model)
    layers = [inp] + [layer_entry(la) for la in model.layers]
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": model.name, "trainable": True, "dtype": str(model.dtype),
                       "layers": layers, "build_input_shape": shape},
            "registered_name": None, "build_config": {"input_shape": shape},
            "compile_config": None}


# ---------------------------------------------------------------- weights layouts


def _layer_vars(layer):
    """Keras 3 variable groups under a layer's path: {subpath: [arrays]}."""
    if isinstance(layer, RNN):
        return {"cell": list(keras3_weights(layer).values()), "": []}
    if isinstance(layer, Bidirectional):
        return {"forward_layer/cell": list(keras3_weights(layer.forward_layer).values()),
                "forward_layer": [],
                "backward_layer/cell": list(keras3_weights(layer.backward_layer).values()),
                "backward_layer": [], "": []}
    if isinstance(layer, TimeDistributed):
        return {"layer": list(layer.inner.weights().values()), "": []}
    return {"": list(layer.weights().values())}


def _k3_layer_list(model, config):
    """The layers in the order Keras 3 names their weight groups, InputLayers included for
    functional models."""
    if config["class_name"] == "Sequential":
        return [(la.class_name, la) for la in model.layers]
    by_name = {la.name: la for la in model.layers}
    out = []
    for entry in config["config"]["layers"]:
        if str(entry.get("module", "keras.layers")).startswith("keras.src.ops"):
            continue
        name = entry.get("name") or entry["config"].get("name")
        out.append((entry["class_name"], by_name.get(name)))
    return out


def write_weights_h5(model, target, config=None):
    """Keras 3 ``.weights.h5`` into ``target`` (a path or file object)."""
    import h5py

    config = config or keras3_config(model)
    with h5py.File(target, "w") as f:
        f.create_group("vars").attrs["name"] = model.name
        layers = f.create_group("layers")
        used: dict = {}
        for cls, layer in _k3_layer_list(model, config):
            snake = snake_case(cls)
            n = used.get(snake, -1) + 1
            used[snake] = n
            g = layers.create_group(snake if n == 0 else f"{snake}_{n}")
            if layer is None:  # InputLayer
                g.create_group("vars").attrs["name"] = "input_layer"
                continue
            for sub, arrays in _layer_vars(layer).items():
                vg = g.require_group(f"{sub}/vars" if sub else "vars")
                vg.attrs["name"] = layer.name if not sub else sub.split("/")[0]
                for i, a in enumerate(arrays):
                    vg.create_dataset(str(i), data=a)


def write_legacy_h5(model, target):
    """Keras 3's legacy HDF5 model (``model.save("m.h5")``)."""
    import h5py

    config = keras3_config(model)
    with h5py.File(target, "w") as f:
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["saved_by"] = "rnncli"  # as a .keras archive's metadata says it
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        mw = f.create_group("model_weights")
        mw.attrs["keras_version"] = KERAS_VERSION
        mw.attrs["backend"] = "tensorflow"
        names = [la.name for la in model.layers]
        mw.attrs["layer_names"] = np.array(names, dtype="S")
        for la in model.layers:
            g = mw.create_group(la.name)
            wnames = []
            for key, a in _legacy_weights(la):
                path = f"{model.name}/{la.name}/{key}"
                g.create_dataset(path, data=a)
                wnames.append(path)
            g.attrs["weight_names"] = np.array(wnames, dtype="S")
        mw.create_group("top_level_model_weights").attrs["weight_names"] = np.array([], "S")


def _legacy_weights(layer):
    if isinstance(layer, RNN):
        cell = snake_case(layer.class_name) + "_cell"
        return [(f"{cell}/{k}", v) for k, v in keras3_weights(layer).items()]
    if isinstance(layer, Bidirectional):
        out = []
        for d, inner in layer.directions.items():
            cell = snake_case(inner.class_name) + "_cell"
            out += [(f"{d}_{layer.name}/{cell}/{k}", v) for k, v in keras3_weights(inner).items()]
        return out
    return list(layer.weights().items())


def write_keras_archive(model, target):
    config = keras3_config(model)
    import io

    buf = io.BytesIO()
    write_weights_h5(model, buf, config)
    meta = {"keras_version": KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "saved_by": "rnncli"}
    with zipfile.ZipFile(target, "w") as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", buf.getvalue())


def keras3_weights(layer) -> dict:
    """A layer's weights by Keras name, as a Keras 3 file holds them to compute the same
    numbers (rnncli/core/cell.py: Cell.keras3)."""
    if isinstance(layer, RNN):
        return dict(zip(layer.weights(), layer.cell.keras3()[1]))
    if isinstance(layer, Bidirectional):
        return {f"{d}/{k}": v for d, inner in layer.directions.items()
                for k, v in keras3_weights(inner).items()}
    return layer.weights()


def weights_arrays(model) -> dict:
    """The .npz weights schema: ``<layer>/kernel`` ... plus ``config`` (Keras 3 JSON)."""
    out = {}
    for la in model.layers:
        for k, v in keras3_weights(la).items():
            out[f"{la.name}/{k}"] = v
    try:
        out["config"] = np.array(json.dumps(keras3_config(model)))
    except RnncliError:
        pass
    return out


def write(model, target, fmt):
    """Write ``model``'s weights to ``target`` (a path or a binary file) as ``fmt``: npz,
    keras, weights.h5 or h5 (rnncli.models.WRITERS)."""
    if fmt == "npz":
        if isinstance(target, str):  # (np.savez would add .npz to the temporary name)
            with open(target, "wb") as fh:
                np.savez(fh, **weights_arrays(model))
        else:
            np.savez(target, **weights_arrays(model))
    elif fmt == "keras":
        write_keras_archive(model, target)
    elif fmt == "weights.h5":
        write_weights_h5(model, target)
    elif fmt == "h5":
        write_legacy_h5(model, target)
    else:
        raise RnncliError(f"unknown Keras weights format {fmt!r}; expected npz, keras, "
                          f"weights.h5 or h5")
