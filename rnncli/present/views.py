"""Slices of a Result that the commands show: one layer's states, or one direction's trace,
restricted to chosen samples, steps and units. Shared by the table renderer and
the data formats so both always show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import activations
from ..errors import RnncliError, UsageError, index_range, there_are

PARTS = ("xw", "hu", "bias")  # the parts of z; `largest` names the biggest
PART_TITLES = {"xw": "x·W", "hu": "h·U", "bias": "b"}


@dataclass
class Selection:
    steps: slice | None = None
    units: list | None = None


def parse_slice(text: str, what: str) -> slice:
    """``"0:10"``, ``"-5:"``, ``"3"`` -> slice."""
    try:
        if ":" not in text:
            i = int(text)
            return slice(i, i + 1 if i != -1 else None)
        parts = [int(p) if p.strip() else None for p in text.split(":")]
        chosen = slice(*parts)
    except (TypeError, ValueError):
        raise UsageError(f"--{what} {text} is not a slice; expected e.g. 0:10, -5: or 3") from None
    if chosen.step == 0:
        raise UsageError(f"--{what} {text}: a slice's stride can't be 0; expected e.g. 0:10:2")
    return chosen


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
            raise UsageError(f"--{what} {text}: {part!r} is not an index; expected e.g. "
                             f"0,2 or 0:4") from None
        if not -size <= i < size:
            raise UsageError(f"--{what} {i} is out of range; {there_are(size)} "
                             f"({index_range(size, what)})")
        out.append(i % size)
    if not out:
        raise UsageError(f"--{what} {text} selects nothing ({there_are(size)})")
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
    direction: str = ""  # one direction of a Bidirectional layer: "forward" or "backward"

    @property
    def key(self) -> str:
        """``layer``, or ``layer/direction`` (as --layer names it)."""
        return f"{self.layer}/{self.direction}" if self.direction else self.layer


def states_view(result, name, sel: Selection, direction: str = "") -> StatesView:
    """Layer ``name``'s states, or those of one ``direction`` of a Bidirectional layer (in
    the order it processes its steps, as a go_backwards layer's are shown)."""
    r = result.layers[name]
    if direction:
        seq = r.directions[direction].sequence
        backwards = getattr(getattr(r.layer, f"{direction}_layer", None), "go_backwards",
                            direction == "backward")
    else:
        seq = r.hidden
        if seq is None:  # Bidirectional, merge_mode=None: both directions side by side
            seq = np.concatenate([r.directions["forward"].sequence,
                                  r.directions["backward"].sequence[:, ::-1]], -1)
        backwards = getattr(r.layer, "go_backwards", False) and list(r.directions) == [""]
    B, T, H = seq.shape
    t_all = np.arange(T)[::-1] if backwards else np.arange(T)
    samples = np.arange(B)
    steps = _pick(T, None, sel.steps)
    units = _pick(H, sel.units)
    values = seq[np.ix_(samples, steps, units)]
    mask = None
    if r.mask is not None:
        m = r.mask[:, ::-1] if backwards else r.mask  # rows are in Keras' order
        mask = m[np.ix_(samples, steps)]
    return StatesView(name, samples, steps, t_all[steps], units, values, T, H, mask, direction)


@dataclass
class TraceView:
    """One section of one direction of one layer's arithmetic: arrays[column][b, s, u].

    ``section`` is "" for a one-block cell (SimpleRNN), else a gate's name or "state"
    (rnncli/core/cell.py: Cell.trace_sections); ``value`` names the column holding the
    section's result (``h``, or the gate's value)."""

    layer: str
    direction: str  # "" for a one-way layer
    activation: str
    samples: np.ndarray
    steps: np.ndarray
    t: np.ndarray
    units: np.ndarray
    arrays: dict  # column -> (b, s, u), in the cell's order
    terms: np.ndarray | None  # (b, s, D, u) per-feature shares of xw, when asked
    mask: np.ndarray | None  # (b, s) processing order
    total_steps: int
    total_units: int
    section: str = ""
    value: str = "h"
    titles: dict | None = None
    # the csv/tsv header's columns for the whole model, whatever layers are shown (see
    # model_columns); None: the view's own
    model_columns: tuple | None = None

    @property
    def columns(self) -> tuple:
        return tuple(self.arrays)

    def title(self, column) -> str:
        return (self.titles or {}).get(column, column)

    def dominant(self) -> np.ndarray | None:
        """Which of x·W, h·U, b has the largest magnitude, per (b, s, u): 0, 1 or 2
        (None where the section has no such parts)."""
        if not all(k in self.arrays for k in PARTS):
            return None
        stack = np.stack([np.abs(self.arrays[k]) for k in PARTS])
        return stack.argmax(axis=0)

    def flags(self) -> np.ndarray:
        """'saturated' (bounded activation near its bound; a gate below 0.1 or above 0.9),
        'dead' (relu z <= 0), 'holds memory' (an LSTM forget gate above 0.9), or ''."""
        h = self.arrays[self.value]
        z = self.arrays.get("z", h)
        out = np.full(h.shape, "", dtype=object)
        if self.value == "gate" and self.activation in ("sigmoid", "hard_sigmoid"):
            out[(h < 0.1) | (h > 0.9)] = "saturated"
            if self.section == "f":
                out[h > 0.9] = "holds memory"
        elif self.activation in activations.BOUNDS:
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


def trace_views(result, name, sel: Selection, with_terms=False, sections=None) -> list:
    """Views of a layer's trace: each direction, each of the cell's sections (all, or
    those named in ``sections``)."""
    r = result.layers[name]
    views = []
    header = model_columns(result)
    for direction, tr in r.traces.items():
        B, T, H = tr["h"].shape
        samples = np.arange(B)
        shown = steps = _pick(T, None, sel.steps)
        units = _pick(H, sel.units)
        if len(steps) and len(steps) < T:  # a trace computed when read computes only these
            k0 = int(steps.min())
            tr, steps = tr.window(k0, int(steps.max()) + 1), steps - k0
        ix = np.ix_(samples, steps, units)
        mask = None if tr.mask is None else tr.mask[np.ix_(samples, steps)]
        found = tr.cell.trace_sections(tr)
        if sections and not any(s in sections for s, *_ in found):
            raise UsageError(_no_such_section(name, tr.cell, sections, [s for s, *_ in found]))
        for section, cols, act, value in found:
            if sections and section not in sections:
                continue
            arrays = {k: a[ix] for k, a in cols.items()}
            terms = None
            if with_terms and section in ("", *tr.gates):
                share = tr.feature_terms()
                if tr.gates:
                    g = tr.gates.index(section)
                    share = share[..., g * H:(g + 1) * H]
                terms = share[samples][:, steps][..., units]
            views.append(TraceView(name, direction, act, samples, shown, tr.step_index[steps],
                                   units, arrays, terms, mask, T, H, section, value,
                                   tr.cell.section_titles(section), header))
    if not views:
        raise RnncliError(f"layer {name!r} has no trace")
    return views


def model_columns(result) -> tuple:
    """The trace columns of every traced recurrent layer of ``result``, whichever are
    shown: cell kinds in the registry's order (SimpleRNN, LSTM, GRU, then any other), each
    kind's columns in its own order. csv/tsv lay every row out under these, so a column's
    position depends on the model alone, never on --layers/--gate (docs/export.md)."""
    from ..core.cells import registry

    order = [cell for cell, _ in registry().values()]
    found = {}
    for r in result.layers.values():
        for tr in (r.traces or {}).values():
            kind = type(tr.cell)
            if kind not in found:  # one step's sections name the columns (computes no more)
                sections = tr.cell.trace_sections(tr.window(0, 1))
                found[kind] = [c for _, cols, *_ in sections for c in cols]
    kinds = sorted(found, key=lambda k: (order.index(k) if k in order else len(order),
                                         k.__name__))
    return tuple(dict.fromkeys(c for k in kinds for c in found[k]))


def gated_sections() -> str:
    """Every gated cell's --gate names, by the registry: "LSTM: i, f, c, o, state; GRU: ..."."""
    from ..core.cells import registry

    return "; ".join(f"{kind}: {', '.join((*cell.gates, 'state'))}"
                     for kind, (cell, _) in registry().items() if getattr(cell, "gates", ()))


def _no_such_section(name, cell, asked, valid):
    """--gate names none of a layer's trace sections: say which there are."""
    kind = type(cell).__name__.removesuffix("Cell") or "this cell"
    asked = ", ".join(asked)
    if valid == [""]:
        return (f"--gate {asked}: layer {name!r} ({kind}) has no gates, only one trace "
                f"section; leave out --gate ({gated_sections()})")
    return (f"--gate {asked}: layer {name!r} ({kind}) has no such gate or section; expected "
            f"one of {', '.join(valid)}")
