"""Rich tables for people: states as a heatmap, the trace arithmetic, the model summary.

Only the CLI imports this module. Colour appears only on a terminal (rich decides
from the stream); piped tables are plain text.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from . import activations
from .formats import fmt
from .views import TERM_TITLES, TERMS

EDGE_ROWS = 8  # rows shown at each end of a long table
MAX_UNITS = 12  # unit columns before the middle ones are elided


def make_console(file=None, stderr=False) -> Console:
    console = Console(file=file, stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(file=file, stderr=stderr, highlight=False, width=400, no_color=True,
                          color_system=None)
    return console


def _edges(n, show_all):
    """Row positions to show, with None where rows are elided."""
    if show_all or n <= 2 * EDGE_ROWS + 1:
        return list(range(n))
    return list(range(EDGE_ROWS)) + [None] + list(range(n - EDGE_ROWS, n))


def _unit_cols(n, show_all):
    if show_all or n <= MAX_UNITS:
        return list(range(n))
    half = MAX_UNITS // 2
    return list(range(half)) + [None] + list(range(n - half, n))


def _style(v, scale):
    """Heatmap colour: red for positive, blue for negative, brighter with magnitude."""
    if not np.isfinite(v):
        return "bold magenta"
    k = min(abs(float(v)) / scale, 1.0) if scale > 0 else 0.0
    if v >= 0:
        r, g, b = 150 + int(105 * k), 150 - int(110 * k), 150 - int(110 * k)
    else:
        r, g, b = 150 - int(110 * k), 150 - int(40 * k), 150 + int(105 * k)
    return f"{'bold ' if k > 0.9 else ''}rgb({r},{g},{b})"


def _scale(values, activation=None):
    if activation in activations.BOUNDS:
        lo, hi = activations.BOUNDS[activation]
        return max(abs(lo), abs(hi))
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 1.0


def _cell(text, v, scale, colour):
    return Text(text, style=_style(v, scale)) if colour else Text(text)


def layer_title(layer) -> str:
    act = getattr(layer, "activation", None) or getattr(getattr(layer, "forward_layer", None),
                                                        "activation", "")
    bits = [layer.class_name, act, f"{layer.units} units"]
    if getattr(layer, "go_backwards", False):
        bits.append("go_backwards")
    if layer.class_name == "Bidirectional":
        bits.append(f"merge {layer.merge_mode}")
    return f"{layer.name} ({', '.join(b for b in bits if b)})"


def states_table(view, layer, precision=None, show_all=False, colour=True, inputs=None) -> Table:
    """One sample's hidden states: a row per step, a column per unit."""
    scale = _scale(view.values, getattr(layer, "activation", None))
    heading = Text(f"{layer_title(layer)}  sample {view.samples[0]}", style="bold")
    table = Table(show_edge=True, pad_edge=False, header_style="bold")
    table.add_column("t", justify="right", style="dim")
    if inputs is not None:
        for i in range(inputs.shape[-1]):
            table.add_column(f"x{i}", justify="right", style="dim")
    cols = _unit_cols(len(view.units), show_all)
    for c in cols:
        table.add_column("…" if c is None else f"h{view.units[c]}", justify="right")
    text = fmt(view.values[0], precision)
    for r in _edges(len(view.t), show_all):
        if r is None:
            table.add_row("⋮", *([""] * (len(table.columns) - 1)))
            continue
        row = [str(view.t[r])]
        if inputs is not None:
            row += list(fmt(inputs[r], precision))
        row += ["…" if c is None else _cell(text[r, c], view.values[0, r, c], scale, colour)
                for c in cols]
        table.add_row(*row)
    if len(view.t) < view.total_steps or len(view.units) < view.total_units:
        table.caption = (f"steps {len(view.t)} of {view.total_steps}, "
                         f"units {len(view.units)} of {view.total_units}")
    return Group(heading, table)


def output_table(outputs, samples, precision=None) -> Table:
    table = Table(header_style="bold")
    table.add_column("output", style="dim")
    table.add_column("sample", justify="right", style="dim")
    table.add_column("values")
    for i, o in enumerate(outputs):
        for b in samples:
            if b < len(o):
                vals = np.asarray(o[b])
                shown = np.array2string(vals, precision=precision, floatmode="unique"
                                        if precision is None else "fixed", threshold=24,
                                        max_line_width=120)
                table.add_row("output" if i == 0 else f"output_{i}", str(b), shown)
    return Group(Text("model output (what model.predict returns)", style="bold"), table)


def trace_table(view, layer, sample_pos=0, precision=None, show_all=False, colour=True) -> Table:
    """The arithmetic of one sample: z = x·W + h·U + b and h = f(z), a row per step and unit."""
    direction = f" {view.direction}" if view.direction else ""
    heading = Text(f"{layer_title(layer)}{direction}  sample {view.samples[sample_pos]}:  "
                   f"z = x·W + h·U + b,  h = {view.activation}(z)", style="bold")
    table = Table(header_style="bold", pad_edge=False)
    table.add_column("t", justify="right", style="dim")
    table.add_column("unit", justify="right", style="dim")
    for k in TERMS:
        table.add_column(TERM_TITLES[k], justify="right")
    nterms = 0 if view.terms is None else view.terms.shape[2]
    term_cols = _unit_cols(nterms, show_all)
    for c in term_cols:
        table.add_column("…" if c is None else f"x{c}·W{c}j", justify="right", style="dim")
    table.add_column("largest", style="dim")
    table.add_column("note")
    b = sample_pos
    text = {k: fmt(view.arrays[k][b], precision) for k in TERMS}
    dom = np.array(["x·W", "h·U", "b"])[view.dominant()[b]]
    flags = view.flags()[b]
    hscale = _scale(view.arrays["h"][b], view.activation)
    zscale = _scale(view.arrays["z"][b])
    terms = None if view.terms is None else fmt(view.terms[b], precision)
    units = _unit_cols(len(view.units), show_all)
    for r in _edges(len(view.t), show_all):
        if r is None:
            table.add_row("⋮", *([""] * (len(table.columns) - 1)))
            continue
        for n, u in enumerate(units):
            if u is None:
                table.add_row("", "…", *([""] * (len(table.columns) - 2)))
                continue
            label = str(view.t[r]) if n == 0 else ""
            row = [label, str(view.units[u])]
            for k in TERMS:
                v = view.arrays[k][b, r, u]
                scale = hscale if k == "h" else zscale
                row.append(_cell(text[k][r, u], v, scale, colour and k in ("z", "h")))
            if terms is not None:
                row += ["…" if c is None else terms[r, c, u] for c in term_cols]
            flag = flags[r, u]
            row += [dom[r, u], Text(flag, style="yellow" if flag else "")]
            table.add_row(*row, end_section=(n == len(units) - 1))
    if len(view.t) < view.total_steps:
        table.caption = f"steps {len(view.t)} of {view.total_steps}"
    return Group(heading, table)


def summary_tables(info) -> list:
    """Tables for `rnncli summary` from the dict built by rnncli.summary."""
    out = []
    t = Table(title=f"Model: {info['name']}", title_justify="left", header_style="bold")
    for c in ("Layer (type)", "Output shape", "Param #", "Config"):
        t.add_column(c, justify="right" if c == "Param #" else "left")
    for la in info["layers"]:
        t.add_row(f"{la['name']} ({la['class_name']})", la["output_shape"], f"{la['params']:,}",
                  la["config"])
    t.caption = (f"Total params: {info['total_params']:,}  "
                 f"({info['total_bytes']:,} bytes of weights)")
    out.append(t)
    w = Table(title="Weights", title_justify="left", header_style="bold")
    for c in ("layer", "weight", "shape", "dtype", "min", "max", "mean", "std", "norm"):
        w.add_column(c, justify="left" if c in ("layer", "weight", "shape", "dtype") else "right")
    for row in info["weights"]:
        w.add_row(row["layer"], row["weight"], str(tuple(row["shape"])), row["dtype"],
                  *(f"{row[k]:.4g}" for k in ("min", "max", "mean", "std", "norm")))
    out.append(w)
    if info["recurrence"]:
        r = Table(title="Recurrent kernels (what h·U does to the state)", title_justify="left",
                  header_style="bold")
        for c in ("layer", "spectral radius", "largest singular value", "reading"):
            r.add_column(c, justify="right" if c not in ("layer", "reading") else "left")
        for row in info["recurrence"]:
            r.add_row(row["layer"], f"{row['spectral_radius']:.4f}",
                      f"{row['max_singular_value']:.4f}", row["reading"])
        out.append(r)
    return out
