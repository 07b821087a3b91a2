"""Weights-only files (Keras 3 ``.weights.h5``, Keras 2 ``save_weights``, ``.npz`` of
arrays): no config, so the layers are inferred from the weights and built directly, with
Keras' defaults for what the weights can't tell (activation, go_backwards ...), which the
model's notes name and ``--set`` changes.

A recurrent kernel's shape tells the cell: recurrent_kernel (H, H) is a SimpleRNN,
(H, 3H) a GRU (bias (2, 3H): reset_after), (H, 4H) an LSTM.
"""

from __future__ import annotations

import numpy as np

from ..core import layers as L
from ..core.cells import registry
from ..core.model import InputSpec, Model
from ..core.rnn import RNN, Bidirectional
from ..core.settings import apply_settings
from ..errors import ModelFileError
from .build import snake_case
from .config import check_weights

RECURRENT = ("recurrent", "Bidirectional")
DROPOUT_NAMES = {snake_case(c): c for c in L.IDENTITY_CLASSES}
GATES_TO_CLASS = {1: "SimpleRNN", 3: "GRU", 4: "LSTM"}


def kind_from_name(name):
    """A weightless layer's class from its Keras name (``dropout_1`` -> Dropout); None for
    input layers; "weightless" when the name does not tell."""
    base = name.rstrip("0123456789").rstrip("_")
    if base in ("input_layer", "input", "top_level_model_weights", ""):
        return None
    if base in DROPOUT_NAMES:
        return DROPOUT_NAMES[base]
    return {"masking": "Masking", "flatten": "Flatten"}.get(base, "weightless")


def kind_from_arrays(arrs):
    """recurrent, Embedding or Dense from a layer's arrays alone."""
    if len(arrs) in (2, 3) and arrs[1].ndim == 2 and arrs[1].shape[1] % arrs[1].shape[0] == 0:
        return "recurrent"
    if len(arrs) == 1 and arrs[0].ndim == 2:
        return "Dense"  # (kernel alone; an Embedding is told by its name)
    if len(arrs) == 2 and arrs[0].ndim == 2 and arrs[1].ndim == 1:
        return "Dense"
    return "unknown"


def cell_class(arrs) -> str:
    """SimpleRNN, GRU or LSTM from recurrent_kernel (H, G·H)."""
    rk = arrs[1]
    return GATES_TO_CLASS.get(rk.shape[1] // max(rk.shape[0], 1), "unknown")


def _recurrent(name, arrs, keras_major, seq, backwards=False):
    cls = cell_class(arrs)
    if cls not in registry():
        raise ModelFileError(f"layer {name!r}: a recurrent_kernel of shape {arrs[1].shape} is "
                             f"not a SimpleRNN (H, H), GRU (H, 3H) or LSTM (H, 4H)")
    cell_type, _ = registry()[cls]
    cell = cell_type.from_weights(name, arrs, keras_major)
    return RNN(name, cell, return_sequences=seq, go_backwards=backwards)


def out_width(kind, arrs):
    if kind == "Bidirectional":
        return 2 * arrs[1].shape[0]  # concat, Keras' default merge
    return arrs[1].shape[0] if kind == "recurrent" else arrs[0].shape[1]


def build(entries, path, fmt_source, keras_major, settings: dict | None) -> Model:
    """A Sequential model from ``entries`` [(kind, name, arrays)], in model order."""
    settings = dict(settings or {})
    int_layers = {name: _float_type(arrs) for _, name, arrs in entries
                  if any(np.asarray(a).dtype.kind in "iub" for a in arrs)}
    # Keras makes every weight a float variable (float32 by default): integer arrays (a
    # hand-made identity kernel) are computed as those floats, or as the layer's others
    entries = [(kind, name, [np.asarray(a).astype(int_layers[name])
                             if np.asarray(a).dtype.kind in "iub" else a for a in arrs])
               for kind, name, arrs in entries]
    kinds = [k for k, _, _ in entries]
    if not any(k in RECURRENT for k in kinds):
        raise ModelFileError(f"{path}: holds no recurrent layer's weights; expected a Keras "
                             f"model with a SimpleRNN, LSTM or GRU layer")
    layers, unnamed, notes = [], [], []
    if "mask_value" in settings and "Masking" not in kinds:
        # --set mask_value=V: the model masked its input (Masking or mask ops in the graph)
        layers.append(L.Masking("masking", float(settings.pop("mask_value"))))
    for i, (kind, name, arrs) in enumerate(entries):
        later = kinds[i + 1:]
        # a recurrent layer feeding another recurrent (or TimeDistributed) layer returns
        # sequences; Keras' default (the last output) otherwise
        seq = bool(later[:1]) and (later[0] in (*RECURRENT, "TimeDistributed") or (
            later[0] in ("weightless", *L.IDENTITY_CLASSES) and
            any(k in RECURRENT for k in later)))
        if kind == "recurrent":
            layers.append(_recurrent(name, arrs, keras_major, seq))
        elif kind == "Bidirectional":
            half = len(arrs) // 2
            layers.append(Bidirectional(name, _recurrent(f"{name}/forward", arrs[:half],
                                                         keras_major, seq),
                                        _recurrent(f"{name}/backward", arrs[half:],
                                                   keras_major, seq, backwards=True)))
        elif kind in ("Dense", "TimeDistributed"):
            dense = L.Dense(name, arrs[0], arrs[1] if len(arrs) > 1 else None,
                            keras_major=keras_major)
            layers.append(L.TimeDistributed(name, dense) if kind == "TimeDistributed" else dense)
        elif kind == "Embedding":
            layers.append(L.Embedding(name, arrs[0]))
        elif kind == "Masking":
            layers.append(L.Masking(name, 0.0))
        elif kind == "Flatten":
            layers.append(L.Flatten(name))
        elif kind in L.IDENTITY_CLASSES:
            layers.append(L.Identity(name, kind))
        elif kind == "weightless":
            # No weights, no config: most such layers (Dropout, noise, Activation('linear'))
            # pass values through; say so, since a Masking or Reshape would not.
            unnamed.append(name)
            layers.append(L.Identity(name, "unknown (no weights)"))
        else:
            layers.append(L.Unsupported(name, "unknown", f"layer {name!r}: its weights "
                                        f"({', '.join(str(a.shape) for a in arrs)}) are not "
                                        f"a layer rnncli knows", weights={
                                            f"weight_{j}": a for j, a in enumerate(arrs)}))
    first = layers[0]
    spec = None
    if isinstance(first, (RNN, Bidirectional)) or (isinstance(first, L.Masking) and len(layers) > 1
                                                  and layers[1].recurrent):
        rec = next(la for la in layers if la.recurrent)
        spec = InputSpec("input", (None, None, rec.input_dim), str(rec.dtype))
    model = Model.chain("weights", layers, input_spec=spec, source=fmt_source)
    notes = model.notes
    note = defaults_note(path, model, settings)
    if note:
        notes.append(note)
    for (kind, name, arrs), (_, nxt, narrs) in zip(entries, entries[1:]):
        if kind == "Bidirectional" and narrs and narrs[0].ndim == 2 and \
                narrs[0].shape[0] == arrs[1].shape[0] and "merge_mode" not in settings \
                and f"{name}.merge_mode" not in settings:
            notes.append(f"{path}: layer {nxt!r} takes {arrs[1].shape[0]} features, as "
                         f"{name!r} gives with merge_mode sum, mul or ave, not concat: add "
                         f"--set {name}.merge_mode=sum (or mul, ave)")
    for name, dtype in int_layers.items():
        notes.append(f"{path}: layer {name!r} holds integer weights: computed in {dtype}, "
                     f"as Keras would load them")
    if unnamed:
        names = ", ".join(repr(n) for n in unnamed)
        notes.append(f"{path}: layer(s) {names} have no weights and the file no config: "
                     f"treated as pass-through (for a Masking layer, add --set mask_value=0)")
    apply_settings(model, settings)
    check_weights(model)  # NaN or Inf: said, as for a file with a config
    return model


def _float_type(arrs):
    """The float type a layer's integer weights become: its float weights' (float32 when
    it has none, Keras' default)."""
    floats = [np.asarray(a).dtype for a in arrs if np.asarray(a).dtype.kind == "f"]
    return np.result_type(*floats) if floats else np.dtype("float32")


def defaults_note(path, model, given) -> str:
    """Which of Keras' defaults a weights-only model was built with (those not --set)."""
    keys = set(given)
    assumed = []
    for la in model.layers:
        for key, value in _defaults(la):
            if key not in keys and f"{la.name}.{key}" not in keys:
                assumed.append(f"{la.name}.{key}={value}")
    if not assumed:
        return ""
    return (f"{path}: weights only, no config: assumed Keras' defaults {', '.join(assumed)}; "
            f"give the model's own with --set LAYER.KEY=VALUE (or KEY=VALUE for every "
            f"recurrent layer)")


def _defaults(layer):
    if isinstance(layer, RNN):
        d = [("activation", layer.activation)]
        d += [(k, v) for k, v in layer.cell.config().items() if k not in ("units", "use_bias",
                                                                          "activation")]
        return d + [("go_backwards", "false"),
                    ("return_sequences", str(layer.return_sequences).lower())]
    if isinstance(layer, Bidirectional):
        return [("activation", layer.activation), ("merge_mode", "concat"),
                ("return_sequences", str(layer.return_sequences).lower())]
    if isinstance(layer, (L.Dense, L.TimeDistributed)):
        return [("activation", "linear")]
    if isinstance(layer, L.Embedding):
        return [("mask_zero", "false")]
    if isinstance(layer, L.Masking):
        return [("mask_value", "0")]
    return []
