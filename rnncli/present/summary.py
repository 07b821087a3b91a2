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


def recurrence_reading(rho, sigma, gate=""):
    """What h·U does to the state, from U's spectral radius ``rho`` and norm ``sigma``.
    For one gate's block of a gated cell (LSTM, GRU: ``gate`` named) only the size of
    h·U_g, that gate's share of z, is read: the cell state c (LSTM) and the update gate
    (GRU) can keep memory whatever U is, so no memory claim is made for them."""
    if not (np.isfinite(rho) and np.isfinite(sigma)):
        return "not computed: the kernel holds NaN or Inf"
    if gate:
        if abs(sigma - 1) <= ONE:
            return f"h·U_{gate} keeps h's size at most (‖h·U_{gate}‖ ≤ σ‖h‖)"
        if sigma < 1:
            return f"h·U_{gate} only shrinks h (‖h·U_{gate}‖ ≤ σ‖h‖)"
        return f"h·U_{gate} can enlarge h (‖h·U_{gate}‖ ≤ σ‖h‖)"
    if abs(sigma - 1) <= ONE and abs(rho - 1) <= ONE:
        return "norm-preserving (orthogonal): rotates, never shrinks"
    if sigma < 1:
        return "contracting: only shrinks (memory fades)"
    if rho < 1 - ONE:
        return "may amplify a few steps, then fades"
    return "can amplify until the activation saturates"


EXACT_UNITS = 256  # up to here eigenvalues and singular values are computed exactly
KRYLOV_STEPS = 30  # above, estimated from this many products with U (and twice as many
GROWTH_STEPS = 60  # steps of h·U): O(steps·units²) time, Ctrl-C acts between products


def spectrum(u) -> tuple[float, float, bool]:
    """(spectral radius, largest singular value, exact) of the square matrix ``u``.

    Exact values cost O(units³) (4000 units: a minute, deaf to Ctrl-C); above EXACT_UNITS
    they are estimated in O(units²) steps: the largest singular value by Lanczos on UᵀU
    (converges fast, accurate to many digits), the radius as the larger of the largest Ritz
    value of an Arnoldi run and the growth rate ||h·Uᵏ||^(1/k) of a random state (exact for
    orthogonal kernels, Keras' default; within a few percent otherwise)."""
    if not u.size:
        return 0.0, 0.0, True
    if not np.isfinite(u).all():
        return float("nan"), float("nan"), True
    if u.shape[0] <= EXACT_UNITS:
        u = np.asarray(u, np.float64)
        return float(np.max(np.abs(np.linalg.eigvals(u)))), float(np.linalg.norm(u, 2)), True
    scale = float(np.max(np.abs(u)))  # (squares of float32 weights overflow from 1e19)
    if not scale:
        return 0.0, 0.0, False
    u = np.ascontiguousarray(u / scale, np.float64 if u.dtype == np.float64 else np.float32)
    rng = np.random.default_rng(0)
    sigma = _lanczos_largest_singular_value(u, rng, KRYLOV_STEPS)
    rho = max(_arnoldi_radius(u, rng, KRYLOV_STEPS), _growth_rate(u, rng, GROWTH_STEPS))
    return scale * min(rho, sigma), scale * sigma, False


def _start(n, rng):
    v = rng.standard_normal(n)
    return v / np.linalg.norm(v)


def _times(v, u):
    """``v·u`` in u's own dtype (no copy of u), as float64."""
    return np.asarray(v.astype(u.dtype, copy=False) @ u, np.float64)


def _orthogonalize(w, basis):
    """``w`` minus its part in the span of ``basis``'s (orthonormal) rows, twice over as
    float rounding needs, and the coefficients taken out."""
    h = basis @ w
    w = w - basis.T @ h
    h2 = basis @ w
    return w - basis.T @ h2, h + h2


BREAKDOWN = 1e-4  # a new direction this small (relative) is rounding: the basis is invariant


def _krylov(u, rng, steps, product):
    """An orthonormal Krylov basis of ``product`` from a random start, and the projection
    of ``product`` on it (Hessenberg; tridiagonal for a symmetric product). When the basis
    spans an invariant subspace (the new direction is rounding only), it goes on from a
    fresh random direction, uncoupled: the projection's eigenvalues are then those of both
    parts, each as valid (an error of at most BREAKDOWN relative)."""
    n = u.shape[0]
    k = min(steps, n)
    basis = np.zeros((k + 1, n))
    basis[0] = _start(n, rng)
    hess = np.zeros((k + 1, k))
    for j in range(k):
        p = product(basis[j])
        w, h = _orthogonalize(p, basis[:j + 1])
        hess[:j + 1, j] = h
        beta = np.linalg.norm(w)
        if beta <= BREAKDOWN * np.linalg.norm(p):
            beta = 0.0
            w, _ = _orthogonalize(_start(n, rng), basis[:j + 1])
        hess[j + 1, j] = beta
        basis[j + 1] = w / np.linalg.norm(w)
    return hess[:k, :k]


def _lanczos_largest_singular_value(u, rng, steps):
    t = _krylov(u, rng, steps, lambda v: _times(_times(v, u), u.T))  # UUᵀ: UᵀU's eigenvalues
    return float(np.sqrt(max(np.linalg.eigvalsh((t + t.T) / 2).max(), 0.0)))


def _arnoldi_radius(u, rng, steps):
    return float(np.max(np.abs(np.linalg.eigvals(_krylov(u, rng, steps, lambda v: _times(v, u))))))


def _growth_rate(u, rng, steps):
    v, logs = _start(u.shape[0], rng), 0.0
    for _ in range(steps):
        v = _times(v, u)
        norm = float(np.linalg.norm(v))
        if not norm or not np.isfinite(norm):
            return 0.0 if not norm else float("inf")
        logs += np.log(norm)
        v /= norm
    return float(np.exp(logs / steps))


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
    estimated: set = set()
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
                rho, sigma, exact = spectrum(u)
                where = " ".join(p for p in (la.name, d, gate and f"gate {gate}") if p)
                rec.append({"layer": la.name, "direction": d, "gate": gate, "name": where,
                            "spectral_radius": rho, "max_singular_value": sigma,
                            "exact": exact, "reading": recurrence_reading(rho, sigma, gate)})
                if not exact:
                    estimated.add(f"{la.name!r} ({inner.cell.units} units)")
    warnings = list(model.notes)
    if estimated:
        warnings.append(f"the spectral radius and largest singular value of "
                        f"{', '.join(sorted(estimated))} are estimates: exact values take time "
                        f"growing as units³ (about a minute for 4000 units)")
    for la in model.layers:
        if isinstance(la, Unsupported):
            warnings.append(f"layer {la.name!r} ({la.class_name}) can't be computed: {la.reason}")
    return {"name": model.name, "source": {k: v for k, v in model.source.items()},
            "layers": layers, "total_params": model.count_params(), "total_bytes": total_bytes,
            "weights": weights, "recurrence": rec, "warnings": warnings}
