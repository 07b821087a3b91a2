"""Rich tables for people: states as a heatmap, the trace arithmetic, the model summary.

Only the CLI imports this module. Colour appears only on a terminal (rich decides
from the stream); piped tables are plain text.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..core import activations
from ..io.formats import fmt
from .views import PART_TITLES

EDGE_ROWS = 8  # rows shown at each end of a long table
MAX_UNITS = 12  # unit columns before the middle ones are elided


ROUNDED = "rounded to {} decimals (--precision N or -f csv: every digit)"


def _notes(notes):
    """A table's notes, under it as text that wraps at the console's width (a caption
    wraps at the table's, leaving a word a line)."""
    return [Text("; ".join(notes), style="dim")] if notes else []


class _Console(Console):
    """A closed pipe (``| head``) ends the program quietly, with exit 0 (rich exits 1)."""

    def on_broken_pipe(self):
        self.quiet = True
        try:
            import os
            import sys

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise SystemExit(0)


def _stderr_columns():
    """The width of the terminal stderr writes to (at least 40), or None."""
    import os

    try:
        columns = os.get_terminal_size(2).columns
    except (OSError, ValueError):
        return None
    return columns if columns >= 40 else None


def make_console(file=None, stderr=False, color="auto", width=None) -> Console:
    """A console for tables: colour on a terminal (``color="auto"``), or ``always``
    (FORCE_COLOR) or ``never`` (NO_COLOR); as wide as the terminal, else ``width``, else
    $COLUMNS, else the terminal on stderr (a table piped to ``less`` or ``head`` is still
    read there: bash does not export $COLUMNS), else 120."""
    import os

    if color == "auto" and os.environ.get("NO_COLOR"):
        color = "never"
    elif color == "auto" and os.environ.get("FORCE_COLOR"):
        color = "always"
    probe = Console(file=file, stderr=stderr)
    terminal = probe.is_terminal
    if width is None and not terminal:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) >= 40 else \
            _stderr_columns() or 120
    colored = color == "always" or (color == "auto" and terminal)
    return _Console(file=file, stderr=stderr, highlight=False, soft_wrap=False, width=width,
                   force_terminal=True if color == "always" else None,
                   no_color=not colored, color_system="truecolor" if color == "always" else
                   ("auto" if colored else None))


def _edges(n, show_all):
    """Row positions to show, with None where rows are elided."""
    if show_all or n <= 2 * EDGE_ROWS + 1:
        return list(range(n))
    return list(range(EDGE_ROWS)) + [None] + list(range(n - EDGE_ROWS, n))


def _elided_steps(rows, total) -> list:
    """The note on a table whose middle steps ``_edges`` left out (``rows``), or none."""
    if None not in rows:
        return []
    return [f"{len(rows) - 1} of {total} steps shown (⋮: the middle ones); --steps picks "
            f"them, --all shows every one"]


def _unit_cols(n, show_all, limit=MAX_UNITS):
    limit = max(2, limit)
    if show_all or n <= limit:
        return list(range(n))
    head, tail = (limit + 1) // 2, limit // 2
    return list(range(head)) + [None] + list(range(n - tail, n))


def fit(values, precision, width, show_all, extra=0):
    """Choose (precision, text, unit columns) so a table of ``values`` (rows, units) fits
    ``width`` characters: exact digits if they fit, else 4 decimals, else fewer columns."""
    n = values.shape[-1]
    for p in ([precision] if precision is not None or show_all else [None, 4]):
        text = fmt(values, p)
        cell = max((len(t) for t in text.ravel()), default=1) + 3
        if extra + cell * n <= width or show_all:
            return p, text, _unit_cols(n, True)
    cols = max(2, (width - extra) // cell - 1)
    return p, text, _unit_cols(n, False, min(cols, MAX_UNITS))


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
    kind = layer.class_name
    if kind == "Bidirectional":
        kind = f"Bidirectional({layer.forward_layer.class_name})"
    bits = [kind, act, f"{layer.units} units"]
    if getattr(layer, "go_backwards", False):
        bits.append("go_backwards")
    if layer.class_name == "Bidirectional":
        bits.append(f"merge {layer.merge_mode}")
    return f"{layer.name} ({', '.join(b for b in bits if b)})"


def matrix_table(heading, row_labels, col_labels, values, *, precision=None, show_all=False,
                 colour=True, scale=None, width=100, caption=None, masked=None, inputs=None):
    """A heatmap table: a row per timestep, a column per unit; long tables elided.
    ``masked``: bool per row, True where the step was masked (shown dim, marked *);
    ``inputs``: (rows, D) input features shown (dim) before the units."""
    if inputs is not None and inputs.dtype.kind == "f" and np.all(inputs == np.round(inputs)):
        inputs = inputs.astype(np.int64)  # token ids, or whole numbers: no decimals
    in_text = None if inputs is None else fmt(inputs, None if inputs.dtype.kind in "iu"
                                              else precision)
    in_cols = [] if in_text is None else _unit_cols(in_text.shape[1], show_all, 6)
    extra = 8 + sum(max(len(t) for t in in_text[:, c]) + 3 for c in in_cols if c is not None) \
        if in_text is not None and len(in_text) else 8
    p, text, cols = fit(values, precision, width, show_all, extra=extra)
    scale = _scale(values) if scale is None else scale
    table = Table(header_style="bold")
    table.add_column("t", justify="right", style="dim")
    for c in in_cols:
        table.add_column("…" if c is None else f"x{c}", justify="right", style="dim")
    for c in cols:
        table.add_column("…" if c is None else col_labels[c], justify="right")
    rows = _edges(len(row_labels), show_all)
    for r in rows:
        if r is None:
            table.add_row("⋮", *([""] * (len(in_cols) + len(cols))))
            continue
        skip = masked is not None and masked[r]
        xs = ["…" if c is None else in_text[r, c] for c in in_cols]
        table.add_row(f"{row_labels[r]}*" if skip else str(row_labels[r]), *xs, *(
            "…" if c is None else _cell(text[r, c], values[r, c], scale, colour and not skip)
            for c in cols), style="dim" if skip else None)
    notes = [caption] if caption else []
    if masked is not None and masked.any():
        notes.append("* masked step: the state is carried over")
    if p is not None and precision is None:
        notes.append(ROUNDED.format(p))
    if None in cols:
        notes.append(f"{len(cols) - 1} of {len(col_labels)} units shown; -u/--unit picks them")
    notes += _elided_steps(rows, len(row_labels))
    return Group(Text(heading, style="bold"), table, *_notes(notes))


def states_table(view, layer, precision=None, show_all=False, colour=True, width=100,
                 inputs=None):
    """One sample's hidden states: a row per step, a column per unit; ``inputs`` (T, D), the
    model's input for that sample in input time, adds its features in front. A view of
    one direction of a Bidirectional ``layer`` is titled so, its units named as that
    direction's."""
    picked = []
    if len(view.t) < view.total_steps:
        picked.append(f"steps {len(view.t)} of {view.total_steps}")
    if len(view.units) < view.total_units:
        picked.append(f"units {len(view.units)} of {view.total_units} picked")
    title = " ".join(p for p in (layer_title(layer), view.direction) if p)
    if view.direction:
        layer = getattr(layer, f"{view.direction}_layer")
    return matrix_table(f"{title}  sample {view.samples[0]}", view.t,
                        unit_labels(layer, view.units), view.values[0], precision=precision,
                        show_all=show_all, colour=colour,
                        scale=_scale(view.values, getattr(layer, "activation", None)),
                        width=width, caption=", ".join(picked) or None,
                        masked=None if view.mask is None else ~view.mask[0],
                        inputs=None if inputs is None else inputs[view.t])


def unit_labels(layer, units) -> list:
    """Column names of a layer's states: h0, h1 ...; a Bidirectional layer's concatenated
    units are named by direction (f0 ... forward, b0 ... backward)."""
    if getattr(layer, "merge_mode", "") == "concat":
        H = layer.forward_layer.units
        return [f"f{u}" if u < H else f"b{u - H}" for u in units]
    return [f"h{u}" for u in units]


def states_tables(views, model, precision=None, show_all=False, width=100, inputs=None):
    """A states table per layer and sample; ``inputs`` (B, T, D) as shown, or None."""
    from .select import one_sample

    out = []
    for v in views:
        layer = model.get_layer(v.layer)
        for i in range(len(v.samples)):
            out.append(states_table(one_sample(v, i), layer, precision, show_all,
                                    width=width,
                                    inputs=None if inputs is None else np.asarray(inputs[i])))
    return out


def heatmaps(views, model, console, column=None):
    """Units × steps heatmaps, a sample a map: states views, or one ``column`` of trace
    views (rnncli/present/heatmap.py pools steps to the console's width)."""
    from ..errors import UsageError
    from .heatmap import color_system_of, heatmap_renderable

    out = []
    for v in views:
        values = v.values if column is None else v.arrays.get(column)
        if values is None:
            other = "; --gate NAME shows a gate's section and its columns" if v.section else ""
            raise UsageError(f"--heatmap {column}: the {v.section or 'trace'} section of layer "
                             f"{v.layer!r} has columns {', '.join(v.columns)}{other}")
        what = "h" if column is None else v.title(column)
        where = " ".join(p for p in (v.layer, getattr(v, "direction", ""),
                                     getattr(v, "section", "")) if p)
        for i, b in enumerate(v.samples):
            masked = None if v.mask is None else ~np.asarray(v.mask[i], bool)
            out.append(heatmap_renderable(
                np.asarray(values[i]).T, row_labels=[f"{what}{u}" for u in v.units],
                title=f"{where}  sample {b}: {what} (units × steps)", width=console.width,
                color_system=color_system_of(console), masked_steps=masked))
    return out


def output_tables(outputs, samples, shown, precision=None, show_all=False, colour=True,
                  width=100):
    """What model.predict returns, per sample: ``outputs`` hold the shown samples, in
    order, numbered ``samples``. Outputs equal to a hidden sequence already shown
    (``shown``: name -> array) are named, not repeated; sequences get a table."""
    out, rounded = [], False
    rows = Table(header_style="bold")
    for c in ("output", "sample", "values"):
        rows.add_column(c, justify="right" if c == "sample" else "left",
                        style="dim" if c != "values" else None)
    for i, o in enumerate(outputs):
        name = "output" if i == 0 else f"output_{i}"
        same = next((n for n, a in shown.items() if a.shape == o.shape and np.array_equal(a, o)),
                    None)
        if same is not None:
            out.append(Text(f"{name}: the hidden sequence of layer {same!r}, shown above",
                            style="bold"))
            continue
        for i, b in enumerate(samples):  # o holds the shown samples, in this order
            v = np.asarray(o[i])
            if v.ndim == 2:
                out.append(matrix_table(f"{name}  sample {b}", range(len(v)),
                                        [f"y{j}" for j in range(v.shape[1])], v,
                                        precision=precision, show_all=show_all, colour=colour,
                                        width=width))
            else:
                text = _vector(v.ravel(), precision, width - 30)
                rounded = rounded or (precision is None and text != _vector(v.ravel(), None,
                                                                             10**6))
                rows.add_row(name, str(b), f"[{text}]")
    if rows.row_count:
        out.append(Group(Text("model output (what model.predict returns)", style="bold"), rows,
                         *_notes([ROUNDED.format(4)] if rounded else [])))
    return out


def _vector(flat, precision, room):
    """A vector's values on as few lines as they need: all digits if they fit ``room``
    characters a line over up to 2 lines, else 4 decimals; the middle of a long one elided."""
    for p in ([precision] if precision is not None else [None, 4]):
        text = " ".join(fmt(flat, p)) if flat.size <= 32 else \
            " ".join(fmt(flat[:16], p)) + " … " + " ".join(fmt(flat[-16:], p))
        if len(text) <= 2 * room:
            break
    return text


AUTO = ("auto",)  # trace_table's digits: chosen per table


def trace_digits(views, precision=None, show_all=False, width=100):
    """The digits every trace table of a command shows (``trace_table``'s ``digits``): the
    fewest any of them needs to fit ``width``, so the tables of one command (an LSTM's
    gates) are rounded alike; ``precision`` when given (None with ``show_all``)."""
    if precision is not None or show_all:
        return precision
    order = [None, 4, 3, 2]
    chosen = [_fitted(v, b, width, order)[0] for v in views for b in range(len(v.samples))]
    return max(chosen, key=order.index, default=None)


def _fitted(view, b, width, choices):
    """(digits, text, cell, core, largest, terms, tcell, fit_n) of sample b's table at
    the first of ``choices`` that fits: all digits (None) if they fit with a few feature
    terms, else 4 decimals; fewer only where the cell's own columns don't fit at 4 (a GRU
    gate's seven at 80: rich squeezed the "unit" column away)."""
    columns = view.columns
    nterms = 0 if view.terms is None else view.terms.shape[2]
    note = max((len(f) for f in view.flags()[b].ravel()), default=0)
    for p in choices:
        text = {k: fmt(view.arrays[k][b], p) for k in columns}
        cell = max(max((len(t) for t in text[k].ravel()), default=1) for k in columns) + 3
        core = len(str(view.t[-1] if len(view.t) else 0)) + 3 + 7 + \
            sum(max(cell, len(view.title(k)) + 3) for k in columns) + max(note, 4) + 3 + 1
        largest = view.dominant() is not None and core + 10 <= width
        core += 10 if largest else 0
        terms = None if view.terms is None else fmt(view.terms[b], p)
        tcell = 0 if terms is None else max((len(t) for t in terms.ravel()), default=1) + 3
        fit_n = (width - core) // tcell if tcell else 0  # feature columns that fit
        if core <= width and (terms is None or fit_n >= min(nterms, 4) or p == 4):
            break
    return p, text, cell, core, largest, terms, tcell, fit_n


def trace_table(view, layer, sample_pos=0, precision=None, show_all=False, colour=True,
                width=100, digits=AUTO):
    """The arithmetic of one sample: z = x·W + h·U + b and h = f(z), a row per step and unit.

    Numbers keep all their digits when the table fits ``width``, else 4 decimals (or
    ``digits``, from :func:`trace_digits`, for every table of a command); with --terms,
    as many per-feature columns as fit are shown (all with --all)."""
    b = sample_pos
    direction = f" {view.direction}" if view.direction else ""
    section = f" {view.section}" if view.section else ""
    head = f"{layer_title(layer)}{direction}{section}  sample {view.samples[b]}:"
    equation = layer.cell.equation(view.section)
    # the equation on a line of its own where the two don't fit one (rich broke a line
    # inside "(gate z)" or "h = tanh(z)")
    heading = Text(f"{head}  {equation}" if len(head) + 2 + len(equation) <= width else
                   f"{head}\n  {equation}", style="bold")
    columns = view.columns
    nterms = 0 if view.terms is None else view.terms.shape[2]
    choices = [precision] if precision is not None or show_all else \
        [None, 4, 3, 2] if digits is AUTO else [digits]
    p, text, cell, core, largest, terms, tcell, fit_n = _fitted(view, b, width, choices)
    if terms is not None and not show_all and fit_n < nterms:
        shown = (width - core - 4) // tcell  # beside a 4-wide "…" column
        term_cols = _unit_cols(nterms, False, shown) if shown >= 2 else []
    else:
        term_cols = list(range(nterms))
    table = Table(header_style="bold")
    table.add_column("t", justify="right", style="dim", no_wrap=True)
    table.add_column("unit", justify="right", style="dim", no_wrap=True)
    for k in columns:
        table.add_column(view.title(k), justify="right", no_wrap=True,
                         min_width=max(len(view.title(k)), cell - 3))
    for c in term_cols:
        table.add_column("…" if c is None else f"x{c}·W{c}j", justify="right", style="dim")
    dominant = view.dominant() if largest else None
    if dominant is not None:
        table.add_column("largest", style="dim", no_wrap=True)
    table.add_column("note", no_wrap=True, min_width=max(
        (len(f) for f in view.flags()[b].ravel()), default=4))
    dom = np.array(list(PART_TITLES.values()))[dominant[b]] if dominant is not None else None
    flags = view.flags()[b]
    hscale = _scale(view.arrays[view.value][b], view.activation)
    zscale = _scale(view.arrays["z"][b]) if "z" in view.arrays else hscale
    units = _unit_cols(len(view.units), show_all)
    rows = _edges(len(view.t), show_all)
    for r in rows:
        if r is None:
            table.add_row("⋮", *([""] * (len(table.columns) - 1)))
            continue
        for n, u in enumerate(units):
            if u is None:
                table.add_row("", "…", *([""] * (len(table.columns) - 2)))
                continue
            row = [str(view.t[r]) if n == 0 else "", str(view.units[u])]
            for k in columns:
                v = view.arrays[k][b, r, u]
                row.append(_cell(text[k][r, u], v, hscale if k == view.value else zscale,
                                 colour and k in ("z", view.value)))
            row += ["…" if c is None else terms[r, c, u] for c in term_cols]
            flag = flags[r, u]
            row += ([] if dom is None else [dom[r, u]]) + [Text(flag, style="yellow" if flag
                                                               else "")]
            table.add_row(*row, end_section=(n == len(units) - 1))
    notes = []
    if len(view.t) < view.total_steps:
        notes.append(f"steps {len(view.t)} of {view.total_steps}")
    if None in units:
        notes.append(f"{len(units) - 1} of {len(view.units)} units shown (-u picks them, "
                     f"--all shows every one)")
    notes += _elided_steps(rows, len(view.t))
    if view.mask is not None and not view.mask[b].all() and view.value == "h":
        notes.append("at masked steps h is what Keras outputs there (the previous output, "
                     "or 0 inside Bidirectional) and the states carry over; the other "
                     "columns show what the cell computed")
    if view.dominant() is not None and dominant is None:
        notes.append("'largest' left out to fit (--width, or -f csv)")
    if p is not None and precision is None:
        notes.append(ROUNDED.format(p))
    if terms is not None and len([c for c in term_cols if c is not None]) < nterms:
        shown = len([c for c in term_cols if c is not None])
        notes.append("the feature terms x_i·W_ij don't fit (--width, or -f csv --terms)"
                     if not shown else f"{shown} of {nterms} feature terms "
                     f"shown (x_i·W_ij); --all or -f csv --terms for every one")
    return Group(heading, table, *_notes(notes))
