"""Tables for `rnncli summary` (rich): the layers, the weights, the recurrent kernels. At
any width no number or name is cut: free text wraps, optional columns give way."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .render import _notes


def _fitted(columns, rows, width, optional=(), wrap=None):
    """A table whose cells are never cut: every column as wide as its widest cell but
    ``wrap`` (free text, which wraps); columns in ``optional`` are left out, in order,
    until it fits ``width``. Returns (table, the columns left out)."""
    keep = list(columns)
    dropped = []

    def needed():
        cols = [c for c in keep if c != wrap]
        return sum(max([len(c)] + [len(str(r[columns.index(c)])) for r in rows]) + 3
                   for c in cols) + (24 if wrap in keep else 0) + 1

    for c in optional:
        if needed() <= width:
            break
        keep.remove(c)
        dropped.append(c)
    t = Table(header_style="bold")
    for c in keep:
        cells = [str(r[columns.index(c)]) for r in rows]
        numeric = all(_is_number_text(v) for v in cells) and cells
        if c == wrap:
            t.add_column(c, ratio=1, overflow="fold")  # a long word breaks, never "…"
        else:
            t.add_column(c, justify="right" if numeric else "left", no_wrap=True,
                         min_width=max([len(c)] + [len(v) for v in cells]))
    for r in rows:
        t.add_row(*(str(r[columns.index(c)]) for c in keep))
    return t, dropped


def _is_number_text(v):
    try:
        float(v.replace(",", ""))
        return True
    except ValueError:
        return False


def summary_tables(info, width=120) -> list:
    """Tables for `rnncli summary` from the dict built by rnncli/present/summary.py. At
    any width no number or name is cut: free text wraps, and optional columns give way
    (the caption says which)."""
    out = []
    rows = [(f"{la['name']} ({la['class_name']})", la["output_shape"], f"{la['params']:,}",
             la["config"]) for la in info["layers"]]
    t, _ = _fitted(("Layer (type)", "Output shape", "Param #", "Config"), rows, width,
                   wrap="Config")
    out.append(Group(Text(f"Model: {info['name']}", style="bold"), t,
                     Text(f"Total params: {info['total_params']:,} "
                          f"({info['total_bytes']:,} bytes of weights)")))
    cols = ("layer", "weight", "shape", "dtype", "min", "max", "mean", "std", "norm")
    rows = [(r["layer"], r["weight"], str(tuple(r["shape"])), r["dtype"],
             *(f"{r[k]:.4g}" for k in ("min", "max", "mean", "std", "norm")))
            for r in info["weights"]]
    w, dropped = _fitted(cols, rows, width, optional=("dtype", "mean", "std", "min", "max"))
    out.append(Group(Text("Weights", style="bold"), w, *_notes(
        [f"left out to fit: {', '.join(dropped)} (--width, or -f json for every column)"]
        if dropped else [])))
    if info["recurrence"]:
        rows = [(r["name"], f"{r['spectral_radius']:.4f}", f"{r['max_singular_value']:.4f}",
                 r["reading"]) for r in info["recurrence"]]
        r, _ = _fitted(("layer", "radius ρ", "norm σ", "reading"), rows, width, wrap="reading")
        notes = ["ρ: spectral radius (growth over many steps); σ: largest singular value "
                 "(growth in one step)"]
        if any(r["gate"] for r in info["recurrence"]):
            notes.append("gated cells (LSTM, GRU): each gate's row reads only the size of "
                         "h·U_g; the cell state c (LSTM) and the update gate z (GRU) can keep "
                         "memory whatever U is (docs/math.md)")
        out.append(Group(Text("Recurrent kernels (what h·U does to the state)", style="bold"), r,
                         *_notes(notes)))
    return out
