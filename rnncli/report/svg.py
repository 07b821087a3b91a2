"""SVG pictures for the offline HTML report: heatmaps here, line plots, stacked bars and
histograms in :mod:`.charts` (re-exported). Each function takes plain numpy arrays and
labels and returns a :class:`Figure`: an inline SVG string (no scripts, no external
references) and a caption saying what the picture shows and what it left out.

Large heatmaps. Up to ``max_cells`` cells (20,000 by default) every cell is a ``<rect>``
whose ``<title>`` is its exact value, about 95 bytes a cell (64 x 300 float32 cells:
1.8 MB). Past that, one of:

- ``large="png"`` (the default): the cells are drawn into a PNG (one colour per cell,
  nothing averaged) embedded as a data URI; hovering a row tells its min, max and mean.
  A 64 x 1000 grid costs about 110 kB and 0.1 s.
- ``large="pool"``: consecutive columns are pooled (``pool="mean"`` or ``"maxabs"``) into
  at most ``max_cells // rows`` columns, each still a ``<rect>`` with its exact pooled
  value. A 64 x 1000 grid becomes 64 x 250 cells (4 steps each), about 1.9 MB, and a
  spike of one step is diluted by the mean.

The PNG keeps every value visible at a seventeenth of the size, so it is the default;
pooling is there for when hovering over single values matters more than resolution.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputDataError
from . import colors, png
from ._draw import (
    CHAR_W,
    MUTED,
    Figure,
    colour_legend,
    esc,
    exact,
    fig_id,
    hatch_defs,
    label_every,
    num,
    svg_doc,
    text,
    title_text,
)
from .charts import histogram, line_plot, stacked_bars
from .pooling import pool_columns

__all__ = ["Figure", "heatmap", "histogram", "line_plot", "stacked_bars"]

PLOT_W = 880  # pixels the cells of a wide heatmap spread over
PLOT_H = 384


def _labels(given, n, prefix, what):
    if given is None:
        return [f"{prefix}{i}" for i in range(n)]
    labels = [str(s) for s in given]
    if len(labels) != n:
        raise InputDataError(f"{len(labels)} {what} labels were given for {n} {what}s; "
                             f"expected one per {what}")
    return labels


def _runs(flags):
    """(start, stop) of each run of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _scale_sentence(scale, given, clipped, zero=False):
    """``zero``: every finite value is 0 (the scale's end is then no magnitude of them)."""
    if scale.diverging:
        why = "" if given else " (every value is 0)" if zero else " (the largest magnitude)"
        s = f"Blue below 0, white at 0, red above; full colour at ±{scale.hi:.4g}{why}."
    else:
        s = f"Pale at {scale.lo:.4g}, dark at {scale.hi:.4g}."
    if clipped:
        s += f" {clipped} values beyond the scale are drawn in its end colours."
    return s


def _special_counts(a):
    counts = {"NaN": int(np.isnan(a).sum()), "+inf": int(np.isposinf(a).sum()),
              "-inf": int(np.isneginf(a).sum())}
    return {k: v for k, v in counts.items() if v}


def _row_summaries(a, row_labels, col_labels):
    out = []
    with np.errstate(all="ignore"):
        for label, row in zip(row_labels, a):
            r = np.where(np.isfinite(row), row, np.nan).astype(np.float64)
            if np.isnan(r).all():
                out.append(f"{label}: no finite values")
                continue
            lo, hi = int(np.nanargmin(r)), int(np.nanargmax(r))
            out.append(f"{label}: min {exact(row[lo])} at {col_labels[lo]}, "
                       f"max {exact(row[hi])} at {col_labels[hi]}, mean {np.nanmean(r):.6g}")
    return out


def heatmap(values, *, row_labels=None, col_labels=None, title: str = "",
            diverging: bool = True, vmin: float | None = None, vmax: float | None = None,
            masked_cols=None, cell_titles: bool = True, max_cells: int = 20_000,
            large: str = "png", pool: str = "mean") -> Figure:
    """A heatmap of ``values`` (rows, cols), e.g. units x time steps.

    ``row_labels``/``col_labels`` default to ``h0, h1, ...`` and ``t=0, t=1, ...``; a cell's
    title reads ``"h3 @ t=17: -0.7345123"``. Diverging scales are symmetric about 0 (over
    ``max(|vmin|, |vmax|)`` or the largest finite magnitude); sequential ones run
    ``vmin``..``vmax`` (default the data's range). ``masked_cols`` (bool per column) are
    hatched grey. Grids larger than ``max_cells``, or wider than the plot has pixels, are drawn
    as ``large`` says (module doc)."""
    a = np.asarray(values)
    if a.ndim != 2 or 0 in a.shape or a.dtype.kind not in "fiub":
        raise InputDataError(f"a heatmap needs a non-empty 2-D array of numbers; got shape "
                             f"{a.shape} of {a.dtype}")
    if large not in ("png", "pool"):
        raise InputDataError(f"large={large!r} is unknown; expected 'png' or 'pool'")
    if a.dtype.kind in "iub":
        a = a.astype(np.float64)
    rows, cols = a.shape
    row_labels = _labels(row_labels, rows, "h", "row")
    col_labels = _labels(col_labels, cols, "t=", "column")
    mask = None
    if masked_cols is not None:
        mask = np.asarray(masked_cols, dtype=bool).ravel()
        if mask.shape != (cols,):
            raise InputDataError(f"masked_cols has {mask.size} flags for {cols} columns; "
                                 "expected one per column")
    scale = colors.Scale.fit(a, diverging, vmin, vmax)
    uid = fig_id("heatmap", title, a, mask)
    mode = "cells" if rows * cols <= max_cells and cols <= PLOT_W else large

    # What is drawn: the columns themselves, or their pooled groups.
    shown, shown_mask, per_col, caption_extra = a, mask, 1, ""
    col_text = col_labels
    if mode == "pool":
        p = pool_columns(a, max(1, min(max_cells // rows, PLOT_W)), pool, mask)
        shown, shown_mask, per_col = p.values, p.masked, p.per_group
        col_text = [col_labels[s] if e - s == 1 else f"{col_labels[s]}–{col_labels[e - 1]}"
                    for s, e in zip(p.starts, p.stops)]
        how = "mean" if pool == "mean" else "largest magnitude"
        col_text = [f"{c} ({how} of {e - s})" for c, s, e in zip(col_text, p.starts, p.stops)]
        caption_extra = " Columns pooled: " + p.describe(cols, "columns")
        if mask is not None:
            caption_extra += " Masked columns are left out of their group."
    n_shown = shown.shape[1]

    if mode == "png":
        cw = max(1, PLOT_W // cols)
        ch = max(1, min(22, round(PLOT_H / rows)))
    else:
        cw = min(40.0, PLOT_W / n_shown)
        ch = max(2, min(22, round(PLOT_H / rows)))
    plot_w, plot_h = cw * n_shown, ch * rows
    if plot_w > PLOT_W:  # an image of more columns than PLOT_W: the browser shrinks it
        plot_w = PLOT_W
    col_w = plot_w / n_shown  # on screen
    x0 = max(30.0, max(len(s) for s in row_labels) * CHAR_W + 12)
    y0 = 30.0 if title else 8.0

    body = title_text(title)
    if mask is not None and mask.any():
        body.append(hatch_defs(uid))
    if mode == "png":
        pix = scale.rgb(shown)
        if shown_mask is not None:
            pix[:, shown_mask] = [int(colors.MASKED_HEX[i:i + 2], 16) for i in (1, 3, 5)]
        pix = np.repeat(np.repeat(pix, ch, axis=0), cw, axis=1)
        style = ' style="image-rendering:pixelated"' if cw > 1 else ""
        body.append(f'<image x="{num(x0)}" y="{num(y0)}" width="{num(plot_w)}" '
                    f'height="{num(plot_h)}" preserveAspectRatio="none"{style} '
                    f'href="{png.png_data_uri(pix)}"/>')
        if cell_titles:
            body.append('<g fill="#000000" fill-opacity="0">')
            body += [f'<rect x="{num(x0)}" y="{num(y0 + r * ch)}" width="{num(plot_w)}" '
                     f'height="{ch}"><title>{esc(s)}</title></rect>'
                     for r, s in enumerate(_row_summaries(a, row_labels, col_labels))]
            body.append("</g>")
        caption_extra = (f" Drawn as an image, one colour per cell ({cols} columns): "
                         "hovering a row shows its min, max and mean, not single cells.")
    else:
        fills = scale.hex(shown)
        words = exact(shown)
        body.append(f'<g transform="translate({num(x0)} {num(y0)}) scale({num(cw)} {ch})" '
                    'shape-rendering="crispEdges">')
        for r in range(rows):
            body.append(f'<g transform="translate(0 {r})">')
            if cell_titles:
                body += [f'<rect x="{c}" width="1" height="1" fill="{f}"><title>'
                         f'{esc(row_labels[r])} @ {esc(ct)}: {w}</title></rect>'
                         for c, (f, w, ct) in enumerate(zip(fills[r], words[r], col_text))]
            else:
                body += [f'<rect x="{c}" width="1" height="1" fill="{f}"/>'
                         for c, f in enumerate(fills[r])]
            body.append("</g>")
        body.append("</g>")
    if shown_mask is not None and shown_mask.any():
        body += [f'<rect x="{num(x0 + s * col_w)}" y="{num(y0)}" width="{num((e - s) * col_w)}" '
                 f'height="{num(plot_h)}" fill="url(#{uid}-hatch)" fill-opacity="0.85" '
                 'pointer-events="none"/>' for s, e in _runs(shown_mask)]
    body.append(f'<rect x="{num(x0)}" y="{num(y0)}" width="{num(plot_w)}" height="{num(plot_h)}" '
                'fill="none" stroke="#999999" pointer-events="none"/>')

    every = label_every(rows, ch, 13)
    body += [text(x0 - 5, y0 + (r + 0.5) * ch + 4, row_labels[r], anchor="end", fill=MUTED)
             for r in range(0, rows, every)]
    px_per_col = col_w / per_col
    need = max(len(s) for s in col_labels) * CHAR_W + 14
    every = label_every(cols, px_per_col, need)
    for c in range(0, cols, every):
        x = x0 + (c + 0.5) * px_per_col
        body.append(f'<line x1="{num(x)}" x2="{num(x)}" y1="{num(y0 + plot_h)}" '
                    f'y2="{num(y0 + plot_h + 4)}" stroke="#999999"/>')
        body.append(text(x, y0 + plot_h + 16, col_labels[c], anchor="middle", fill=MUTED))

    specials = _special_counts(shown)
    names = list(specials) + (["masked"] if mask is not None and mask.any() else [])
    bar_h = min(max(plot_h, 120), 260)
    legend, legend_w = colour_legend(scale, x0 + plot_w + 18, y0, bar_h, uid, names)
    body += legend
    width = x0 + plot_w + 18 + legend_w + 8
    height = max(y0 + plot_h + 26, y0 + bar_h + 16 * len(names) + 12)

    finite = a[np.isfinite(a)]
    clipped = int(((finite < scale.lo) | (finite > scale.hi)).sum())
    caption = (f"{rows} × {cols} values. "
               + _scale_sentence(scale, vmin is not None or vmax is not None, clipped,
                                 not finite.any())
               + caption_extra)
    counts = _special_counts(a)
    if counts:
        caption += " " + ", ".join(f"{v} {k}" for k, v in counts.items()) + \
            " shown in their own colours (legend)."
    if mask is not None and mask.any():
        caption += f" {int(mask.sum())} masked columns hatched grey."
    return Figure(svg_doc(math.ceil(width), math.ceil(height), body, title or "heatmap"),
                  caption)
