"""Reading gradients: does a recurrent layer's gradient vanish or explode going back, what
bounds it, and what clipping would do (what ``rnncli grad`` prints next to the numbers).

For a SimpleRNN, dh_t/dh_{t-1} = diag(f'(z_t))·Uᵀ, so
``||dh_{T-1}/dh_t||_2 <= (γ·σ_max(U))^(T-1-t)`` with γ the activation's largest slope:
below 1 the gradient must vanish geometrically; above 1 it may explode (nothing forces
it). Masked steps carry the state (a Jacobian of 1), so they do not count.

Gated cells (LSTM, GRU) get no bound: a forget gate (LSTM) or update gate (GRU) near 1
keeps the gradient over any number of steps whatever the kernels, so no bound from the
weights alone can fall with the distance (docs/math.md derives it); :func:`contraction`
and :func:`jacobian_bound` return None, :func:`no_bound` says why, and the measured
Jacobian norms are what `rnncli grad` shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import activations

VANISHED = 1e-3  # a gradient below this fraction of its last-step size has vanished
EXPLODED = 1e3  # ... above this multiple, it has exploded


def contraction(cell) -> float | None:
    """γ·σ_max(U) of a one-block cell (SimpleRNN), or None (an unbounded activation, or
    a gated cell, whose Jacobian is not of that form)."""
    if cell.gates:
        return None
    gamma = activations.slope_bound(cell.activation, cell.keras_major)
    if gamma is None:
        return None
    return float(gamma * np.linalg.norm(np.asarray(cell.recurrent_kernel, np.float64), 2))


def no_bound(cell) -> str | None:
    """Why :func:`contraction` is None for ``cell``, in a line (None when it has one)."""
    if cell.gates:
        return "bound –: a gated cell has none (docs/math.md)"
    if activations.slope_bound(cell.activation, cell.keras_major) is None:
        return f"bound –: no slope limit known for {cell.activation}"
    return None


def jacobian_bound(cell, steps: int, mask=None) -> np.ndarray | None:
    """(γ·σ_max(U))^(n_t), n_t the unmasked steps after t, (B, T) with a mask (processing
    order) and (T,) without; None where :func:`contraction` is None."""
    rate = contraction(cell)
    if rate is None:
        return None
    if mask is None:
        after = np.arange(steps - 1, -1, -1)
    else:
        m = np.asarray(mask, bool)
        after = np.cumsum(m[:, ::-1], axis=1)[:, ::-1] - m  # unmasked steps after t
    return rate ** after.astype(np.float64)


@dataclass
class Reading:
    """What the gradient does going back: ``kind`` is "vanishing", "exploding", "healthy"
    or "none" (no gradient at the last step); ``steps`` how many steps back it crossed
    the threshold (vanishing, exploding)."""

    kind: str
    steps: int | None
    ratio: float | None  # the first step's size over the last step's
    text: str


def read(norms, mask=None) -> Reading:
    """A reading of ``||dL/dh_t||`` over the steps (T,), in processing order. With a
    ``mask`` (T,), only unmasked steps count: the last of them is the reference, and
    steps back are counted in unmasked steps (a padded tail is not "the last step")."""
    norms = np.asarray(norms, np.float64)
    if mask is not None:
        norms = norms[np.asarray(mask, bool)]
    T = len(norms)
    last = norms[-1] if T else 0.0
    if not T or not np.isfinite(last) or last == 0:
        return Reading("none", None, None, "no gradient reaches the last step")
    ratio = norms / last
    first = float(ratio[0])
    low = np.nonzero(ratio < VANISHED)[0]
    high = np.nonzero(~(ratio <= EXPLODED))[0]  # NaN and inf count as exploded
    if len(high):
        n = T - 1 - int(high.max())
        return Reading("exploding", n, first,
                       f"exploding: above {EXPLODED:g}x its last-step size {n} steps back")
    if len(low):
        n = T - 1 - int(low.max())
        return Reading("vanishing", n, first,
                       f"vanishing: below {VANISHED:g} of its last-step size {n} steps back")
    return Reading("healthy", None, first,
                   f"healthy: {first:.3g}x its last-step size {T - 1} steps back")


def weight_summary(grads: dict, clip: float | None = None) -> list:
    """Per gradient ``grad/<layer>/<weight>``: its norm, largest entry by size, and with
    ``clip`` the factor a clip-by-norm (Keras' ``clipnorm``: each gradient on its own)
    would scale it by. Returns dicts in the order given."""
    rows = []
    for name, g in grads.items():
        g = np.asarray(g)
        norm = float(np.linalg.norm(g.astype(np.float64).ravel()))
        largest = float(g.ravel()[np.argmax(np.abs(g))]) if g.size else 0.0
        row = {"name": name, "norm": norm, "largest": largest}
        if clip is not None:
            row["clip_scale"] = 1.0 if norm <= clip else clip / norm
        rows.append(row)
    return rows


def global_clip_scale(grads: dict, clip: float) -> float:
    """The factor Keras' ``global_clipnorm`` would scale every gradient by."""
    total = np.sqrt(sum(float(np.sum(np.square(np.asarray(g, np.float64))))
                        for g in grads.values()))
    return 1.0 if total <= clip else clip / total


def split_gates(model, grads: dict) -> dict:
    """``grads`` with each gated cell's weights split per gate, in Keras' order
    (``grad/lstm/kernel/i`` ... ``/o``); other weights as they are."""
    out = {}
    for name, g in grads.items():
        parts = name.split("/")
        layer = next((la for la in model.layers if la.name == parts[1]), None) \
            if len(parts) > 2 else None
        cell = None
        if layer is not None and layer.recurrent:
            d = parts[2] if parts[2] in ("forward", "backward") else ""
            cell = layer.directions.get(d, layer).cell
        if cell is None or not cell.gates:
            out[name] = g
            continue
        H = cell.units
        for i, gate in enumerate(cell.gates):
            out[f"{name}/{gate}"] = g[..., i * H:(i + 1) * H]
    return out
