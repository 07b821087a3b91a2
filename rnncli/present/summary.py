"""What `rnncli summary` reports, as plain data (tables are drawn by render.py)."""

from __future__ import annotations

import numpy as np

from ..core.layers import Unsupported
from ..core.rnn import RNN, Bidirectional


def _shape(s, time_len):
    if s is None:
        return "?"
    dims = ["None"] + [str(d) for d in s[1:]]
    if len(s) == 3 and time_len is None:
        dims[1] = "None"
    return "(" + ", ".join(dims) + ")"


def _dims(s, time_len):
    """A shape as a list, None for the batch (and an unknown time) axis."""
    dims = [None] + [int(d) for d in s[1:]]
    if len(s) == 3 and time_len is None:
        dims[1] = None
    return dims


def layer_settings(layer) -> dict:
    """What shapes a layer's numbers, as data (Keras' config keys)."""
    if isinstance(layer, Unsupported):
        return {"computed": False, "reason": layer.reason}
    if isinstance(layer, Bidirectional):
        return {"merge_mode": layer.merge_mode, "layer": layer.forward_layer.class_name,
                **layer_settings(layer.forward_layer)}
    if isinstance(layer, RNN):
        return {**layer.cell.config(), **{k: getattr(layer, k) for k in layer.options},
                **({"stateful": True} if layer.stateful else {})}
    out = {}
    for key in ("units", "activation", "mask_zero", "mask_value"):
        if hasattr(layer, key):
            out[key] = getattr(layer, key)
    if hasattr(layer, "inner"):
        out.update(layer_settings(layer.inner))
    if hasattr(layer, "embeddings"):
        out.update(input_dim=int(layer.embeddings.shape[0]),
                   output_dim=int(layer.embeddings.shape[1]))
    return out


def layer_config(layer) -> str:
    """The settings that shape what the layer computes, compactly: values that differ
    from Keras' defaults are named, the activation always."""
    if isinstance(layer, Unsupported):
        return f"not computed: {layer.reason}"
    bits = []
    if isinstance(layer, (RNN, Bidirectional)):
        inner = layer.forward_layer if isinstance(layer, Bidirectional) else layer
        if isinstance(layer, Bidirectional):
            bits.append(inner.class_name)
        bits.append(inner.activation)
        bits += [f"{k}={v}" for k, v in inner.cell.config().items()
                 if k not in ("units", "activation", "use_bias")]
        if not inner.use_bias:
            bits.append("no bias")
        if isinstance(layer, Bidirectional):
            bits.append(f"merge {layer.merge_mode}")
        elif layer.go_backwards:
            bits.append("go_backwards")
        bits += [k for k in ("return_sequences", "return_state") if getattr(layer, k)]
        if getattr(layer, "stateful", False):
            bits.append("stateful (run as not stateful)")
    elif layer.class_name == "Embedding":
        bits += [f"{layer.input_dim} ids -> {layer.embeddings.shape[1]}"]
        if layer.mask_zero:
            bits.append("mask_zero")
    elif layer.class_name == "Masking":
        bits.append(f"mask_value={layer.mask_value:g}")
    elif layer.class_name == "TimeDistributed":
        bits.append(f"Dense, {layer.inner.activation}")
    elif hasattr(layer, "activation"):
        bits.append(layer.activation)
    return ", ".join(bits)


ONE = 1e-3  # radius and norm this close to 1 are 1: float32 rounding must not decide


def recurrence_reading(rho, sigma):
    if abs(sigma - 1) <= ONE and abs(rho - 1) <= ONE:
        return "norm-preserving (orthogonal): rotates, never shrinks"
    if sigma < 1:
        return "contracting: only shrinks (memory fades)"
    if rho < 1 - ONE:
        return "may amplify a few steps, then fades"
    return "can amplify until the activation saturates"


def recurrent_blocks(cell) -> dict:
    """The recurrent kernel's square (H, H) blocks, by gate ("" for one block)."""
    U, H = cell.recurrent_kernel, cell.units
    if not cell.gates:
        return {"": U}
    return {g: U[:, i * H:(i + 1) * H] for i, g in enumerate(cell.gates)}


def describe(model) -> dict:
    """Layers, shapes, parameter counts, weight statistics and recurrent-kernel spectra."""
    spec = model.input_specs[0].shape if model.input_specs else ()
    time_len = spec[1] if len(spec) > 1 else None
    shapes = {}
    try:
        if model.takes_token_ids:
            x = np.ones((1, time_len or 2), np.int64)
        else:
            d = model.input_dim
            x = np.zeros((1, time_len or 2, d), model.dtype) if d else None
        if x is not None:
            model.run(x, trace=False)
            shapes = model.last_shapes
    except Exception:  # noqa: BLE001 - a summary still lists what it can
        shapes = getattr(model, "last_shapes", {})
    layers, weights, rec = [], [], []
    total_bytes = 0
    for la in model.layers:
        outs = shapes.get(la.name)
        shape = ", ".join(_shape(s, time_len) for s in outs) if outs else "?"
        layers.append({"name": la.name, "class_name": la.class_name, "output_shape": shape,
                       "output_shapes": [_dims(s, time_len) for s in outs] if outs else None,
                       "params": la.count_params(), "config": layer_config(la),
                       "settings": layer_settings(la)})
        for wname, w in la.weights().items():
            w64 = np.asarray(w, np.float64)
            total_bytes += w.nbytes
            weights.append({"layer": la.name, "weight": wname, "shape": list(w.shape),
                            "dtype": str(w.dtype), "min": float(w64.min()) if w.size else 0.0,
                            "max": float(w64.max()) if w.size else 0.0,
                            "mean": float(w64.mean()) if w.size else 0.0,
                            "std": float(w64.std()) if w.size else 0.0,
                            "norm": float(np.linalg.norm(w64))})
        directions = la.directions if isinstance(la, (RNN, Bidirectional)) else {}
        for d, inner in directions.items():
            for gate, u in recurrent_blocks(inner.cell).items():
                u = np.asarray(u, np.float64)
                rho = float(np.max(np.abs(np.linalg.eigvals(u)))) if u.size else 0.0
                sigma = float(np.linalg.norm(u, 2)) if u.size else 0.0
                where = " ".join(p for p in (la.name, d, gate and f"gate {gate}") if p)
                rec.append({"layer": la.name, "direction": d, "gate": gate, "name": where,
                            "spectral_radius": rho, "max_singular_value": sigma,
                            "reading": recurrence_reading(rho, sigma)})
    warnings = list(model.notes)
    for la in model.layers:
        if isinstance(la, Unsupported):
            warnings.append(f"layer {la.name!r} ({la.class_name}) can't be computed: {la.reason}")
    return {"name": model.name, "source": {k: v for k, v in model.source.items()},
            "layers": layers, "total_params": model.count_params(), "total_bytes": total_bytes,
            "weights": weights, "recurrence": rec, "warnings": warnings}
