"""Slices of a Result that the commands show: one layer's states, or one direction's trace,
restricted to chosen samples, steps and units. Shared by the table renderer and
the data formats so both always show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import activations
from .errors import RnncliError

TERMS = ("xw", "hu", "bias", "z", "h")
TERM_TITLES = {"xw": "x·W", "hu": "h·U", "bias": "b", "z": "z", "h": "h=f(z)"}


@dataclass
class Selection:
    samples: list | None = None
    steps: slice | None = None
    units: list | None = None


def parse_slice(text: str, what: str) -> slice:
    """``"0:10"``, ``"-5:"``, ``"3"`` -> slice."""
    try:
        if ":" not in text:
            i = int(text)
            return slice(i, i + 1 if i != -1 else None)
        parts = [int(p) if p.strip() else None for p in text.split(":")]
        return slice(*parts)
    except (TypeError, ValueError):
        raise RnncliError(f"--{what} {text!r} is not a slice; expected e.g. 0:10, -5: or 3") from None


def parse_index_list(text: str, what: str, size: int) -> list:
    """``"0,2,5"`` or a slice ``"0:4"`` -> indices within ``range(size)``."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if ":" in part:
            out.extend(range(size)[parse_slice(part, what)])
            continue
        try:
            i = int(part)
        except ValueError:
            raise RnncliError(f"--{what} {text!r}: {part!r} is not an index; expected e.g. "
                              f"0,2 or 0:4") from None
        if not -size <= i < size:
            raise RnncliError(f"--{what} {i} is out of range; there are {size} ({what} 0 to "
                              f"{size - 1})")
        out.append(i % size)
    if not out:
        raise RnncliError(f"--{what} {text!r} selects nothing (there are {size})")
    return out


def _pick(n, sel_list, sel_slice=None):
    idx = np.arange(n)
    if sel_list is not None:
        idx = idx[sel_list]
    if sel_slice is not None:
        idx = idx[sel_slice]
    return idx


@dataclass
class StatesView:
    """Hidden states of one recurrent layer: values[b, s, u]."""

    layer: str
    samples: np.ndarray
    steps: np.ndarray  # row positions in Keras' order
    t: np.ndarray  # the input timestep each row came from
    units: np.ndarray
    values: np.ndarray
    total_steps: int
    total_units: int
    mask: np.ndarray | None = None  # (b, s): False where the step was masked


def states_view(result, name, sel: Selection) -> StatesView:
    r = result.layers[name]
    seq = r.hidden
    if seq is None:  # Bidirectional with merge_mode=None: show both directions side by side
        seq = np.concatenate([r.directions["forward"], r.directions["backward"][:, ::-1]], -1)
    B, T, H = seq.shape
    layer = r.layer
    backwards = getattr(layer, "go_backwards", False) and layer.class_name == "SimpleRNN"
    t_all = np.arange(T)[::-1] if backwards else np.arange(T)
    samples = _pick(B, sel.samples)
    steps = _pick(T, None, sel.steps)
    units = _pick(H, sel.units)
    values = seq[np.ix_(samples, steps, units)]
    mask = None
    if r.mask is not None:
        m = r.mask[:, ::-1] if backwards else r.mask  # rows are in Keras' order
        mask = m[np.ix_(samples, steps)]
    return StatesView(name, samples, steps, t_all[steps], units, values, T, H, mask)


@dataclass
class TraceView:
    """One direction of one layer's arithmetic: arrays[term][b, s, u]."""

    layer: str
    direction: str  # "" for a plain SimpleRNN
    activation: str
    samples: np.ndarray
    steps: np.ndarray
    t: np.ndarray
    units: np.ndarray
    arrays: dict  # term -> (b, s, u)
    terms: np.ndarray | None  # (b, s, D, u) per-feature shares of xw, when asked
    mask: np.ndarray | None  # (b, s) processing order
    total_steps: int
    total_units: int

    def dominant(self) -> np.ndarray:
        """Which of x·W, h·U, b has the largest magnitude, per (b, s, u): 0, 1 or 2."""
        stack = np.stack([np.abs(self.arrays[k]) for k in ("xw", "hu", "bias")])
        return stack.argmax(axis=0)

    def flags(self) -> np.ndarray:
        """'saturated' (bounded activation near its bound), 'dead' (relu z <= 0), or ''."""
        h, z = self.arrays["h"], self.arrays["z"]
        out = np.full(h.shape, "", dtype=object)
        if self.activation in activations.BOUNDS:
            lo, hi = activations.BOUNDS[self.activation]
            span = hi - lo
            out[(h - lo < 0.01 * span) | (hi - h < 0.01 * span)] = "saturated"
        elif self.activation in ("relu", "relu6"):
            out[z <= 0] = "dead"
            if self.activation == "relu6":
                out[z >= 6] = "saturated"
        if self.mask is not None:
            out[~self.mask] = "masked"
        return out


def trace_views(result, name, sel: Selection, with_terms=False) -> list:
    r = result.layers[name]
    views = []
    for direction, tr in r.traces.items():
        B, T, H = tr.z.shape
        samples = _pick(B, sel.samples)
        steps = _pick(T, None, sel.steps)
        units = _pick(H, sel.units)
        ix = np.ix_(samples, steps, units)
        arrays = {k: getattr(tr, k)[ix] for k in ("xw", "hu", "z", "h")}
        arrays["bias"] = np.broadcast_to(tr.bias[units], arrays["z"].shape)
        terms = None
        if with_terms:
            terms = tr.terms()[samples][:, steps][..., units]
        mask = None if tr.mask is None else tr.mask[np.ix_(samples, steps)]
        views.append(TraceView(name, direction, tr.activation, samples, steps,
                               tr.step_index[steps], units, arrays, terms, mask, T, H))
    if not views:
        raise RnncliError(f"layer {name!r} has no trace")
    return views
