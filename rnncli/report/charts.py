"""Line plots, stacked bars and histograms as SVG (see :mod:`.svg` for the conventions):
plain numpy arrays in, a :class:`Figure` out, every point or bar with a ``<title>``."""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputDataError
from . import colors
from ._draw import (
    CHAR_W,
    Figure,
    axes,
    esc,
    exact,
    label_every,
    log_ticks,
    nice_ticks,
    num,
    svg_doc,
    text,
    tick_text,
)
from .pooling import pool_columns

PLOT = (70.0, 58.0, 900.0, 320.0)  # x0, y0, width, height of the plot box
MAX_POINT_TITLES = 6000  # past this many points, titles go on every k-th point
MAX_BARS = 400


def _y_ticks(lo, hi, log, py):
    """(pixel, label) pairs for a y axis over lo..hi (log10 values when ``log``): powers of
    ten on a log axis spanning two or more of them, else round numbers."""
    if log:
        decades = log_ticks(10 ** lo, 10 ** hi)
        if len(decades) >= 2:
            return [(py(math.log10(t)), f"1e{round(math.log10(t))}") for t in decades]
        ticks = [t for t in nice_ticks(10 ** lo, 10 ** hi, 4) if t > 0]
        step = ticks[1] - ticks[0] if len(ticks) > 1 else None
        return [(py(math.log10(t)), tick_text(t, step)) for t in ticks]
    ticks = nice_ticks(lo, hi, 5)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    return [(py(t), tick_text(t, step)) for t in ticks]


def _range(lo, hi, pad=0.04):
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    return lo - span * pad, hi + span * pad


def _key(names, palette, dashed, y):
    """A one-line key of the series at height ``y``."""
    out, x = [], PLOT[0]
    for name, colour in zip(names, palette):
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        out.append(f'<line x1="{num(x)}" x2="{num(x + 18)}" y1="{num(y - 4)}" y2="{num(y - 4)}" '
                   f'stroke="{colour}" stroke-width="2.5"{dash}/>')
        out.append(text(x + 23, y, name))
        x += 23 + len(name) * CHAR_W + 18
    return out


def _1d(v, what):
    a = np.asarray(v)
    if a.ndim != 1 or a.dtype.kind not in "fiub":
        raise InputDataError(f"{what} must be a 1-D array of numbers; got shape {a.shape} "
                             f"of {a.dtype}")
    return a.astype(np.float64) if a.dtype.kind in "iub" else a


def line_plot(series: dict, x=None, *, log_y: bool = False, title: str = "",
              y_label: str = "", x_label: str = "", bands: dict | None = None,
              dashed=()) -> Figure:
    """Lines over a shared x (default 0, 1, 2, ...), e.g. ‖dL/dh_t‖ per step on a log axis
    beside a bound. ``bands`` maps a name to (lower, upper) arrays drawn as a shaded range
    in that series' colour; names in ``dashed`` are drawn dashed (bounds, references).
    NaN, inf and, on a log axis, values <= 0 leave gaps, counted in the caption."""
    if not series:
        raise InputDataError("line_plot got no series; expected at least one name -> array")
    ys = {str(k): _1d(v, f"series {k!r}") for k, v in series.items()}
    n = max(len(v) for v in ys.values())
    x_shown = np.arange(n) if x is None else _1d(x, "x")  # as the titles print it
    xs = x_shown.astype(np.float64)
    bands = {str(k): (_1d(lo, f"band {k!r}"), _1d(hi, f"band {k!r}"))
             for k, (lo, hi) in (bands or {}).items()}
    for name, v in list(ys.items()) + [(k, b) for k, pair in bands.items() for b in pair]:
        if len(v) > len(xs):
            raise InputDataError(f"{name!r} has {len(v)} points but x has {len(xs)}; "
                                 "expected at most one point per x")
    names = list(ys)
    palette = dict(zip(names + [k for k in bands if k not in ys],
                       colors.categorical(len(names) + len(bands))))

    def tr(v):
        v = v.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log10(np.where(v > 0, v, np.nan)) if log_y else v
        return np.where(np.isfinite(out), out, np.nan)

    ty = {k: tr(v) for k, v in ys.items()}
    tb = {k: (tr(lo), tr(hi)) for k, (lo, hi) in bands.items()}
    every_y = np.concatenate([v for v in ty.values()] + [b for p in tb.values() for b in p])
    if np.isnan(every_y).all():
        every_y = np.array([0.0, 1.0])
    ylo, yhi = _range(np.nanmin(every_y), np.nanmax(every_y))
    fx = xs[np.isfinite(xs)]
    xlo, xhi = (float(fx.min()), float(fx.max())) if fx.size else (0.0, 1.0)
    xlo, xhi = (xlo - 0.5, xhi + 0.5) if xhi == xlo else (xlo, xhi)
    x0, y0, w, h = PLOT

    def px(v):
        return x0 + (v - xlo) / (xhi - xlo) * w

    def py(v):
        return y0 + h - (v - ylo) / (yhi - ylo) * h

    yticks = _y_ticks(ylo, yhi, log_y, py)
    xt = nice_ticks(xlo, xhi, 6)
    xticks = [(px(t), tick_text(t, xt[1] - xt[0] if len(xt) > 1 else None)) for t in xt]
    body = [text(0, 16, title, size=14, weight="600")] if title else []
    body += _key(list(palette), list(palette.values()), set(dashed), 40)
    body += axes(x0, y0, w, h, xticks, yticks, x_label, " ".join(s for s in (y_label, "(log scale)" if log_y else "") if s))
    for name, (lo, hi) in tb.items():
        k = min(len(lo), len(hi))
        ok = ~np.isnan(lo[:k]) & ~np.isnan(hi[:k])
        for s, e in _segments(ok):
            pts = [f"{num(px(xs[i]))},{num(py(hi[i]))}" for i in range(s, e)]
            pts += [f"{num(px(xs[i]))},{num(py(lo[i]))}" for i in range(e - 1, s - 1, -1)]
            body.append(f'<polygon points="{" ".join(pts)}" fill="{palette[name]}" '
                        'fill-opacity="0.15" stroke="none"/>')
    total = sum(len(v) for v in ys.values())
    stride = max(1, math.ceil(total / MAX_POINT_TITLES))
    gaps = 0
    for name, v in ty.items():
        colour, raw = palette[name], exact(ys[name])
        ok = ~np.isnan(v)
        gaps += int((~ok).sum())
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        path = " ".join("M" + " L".join(f"{num(px(xs[i]))} {num(py(v[i]))}" for i in range(s, e))
                        for s, e in _segments(ok))
        if path:
            body.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.8" '
                        f'stroke-linejoin="round"{dash}/>')
        shown = "1" if len(v) <= 120 else "0"
        body.append(f'<g fill="{colour}" fill-opacity="{shown}">')
        label = x_label or "x"
        body += [f'<circle cx="{num(px(xs[i]))}" cy="{num(py(v[i]))}" r="{2.5 if shown == "1" else 3}">'
                 f"<title>{esc(name)} @ {esc(label)}={exact(x_shown[i])}: {raw[i]}</title></circle>"
                 for i in np.flatnonzero(ok)[::stride]]
        body.append("</g>")
    caption = []
    if gaps:
        why = "NaN, inf or values <= 0 on the log axis" if log_y else "NaN or inf"
        caption.append(f"{gaps} points not drawn ({why}).")
    if stride > 1:
        caption.append(f"Hover values on every {stride}th point.")
    return Figure(svg_doc(x0 + w + 20, y0 + h + 44, body, title or "line plot"), " ".join(caption))


def _segments(ok):
    d = np.diff(np.concatenate([[0], ok.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def stacked_bars(parts: dict, x_labels=None, *, title: str = "", y_label: str = "",
                 max_bars: int = MAX_BARS) -> Figure:
    """One bar per step made of ``parts`` (name -> non-negative shares per step), stacked in
    the order given, e.g. the shares of x·W, h·U and b in each step's pre-activation.
    Shares that sum to 1 in every step are drawn as percentages. More than ``max_bars``
    steps are pooled (mean) into at most ``max_bars`` bars, as the caption says."""
    if not parts:
        raise InputDataError("stacked_bars got no parts; expected at least one name -> array")
    arrs = {str(k): _1d(v, f"part {k!r}").astype(np.float64) for k, v in parts.items()}
    n = len(next(iter(arrs.values())))
    if any(len(v) != n for v in arrs.values()) or n == 0:
        raise InputDataError("stacked_bars parts have lengths "
                             f"{sorted({len(v) for v in arrs.values()})}; expected one length > 0")
    if any((v < 0).any() for v in arrs.values()):
        raise InputDataError("stacked_bars got a negative share; expected shares >= 0")
    labels = [f"t={i}" for i in range(n)] if x_labels is None else [str(s) for s in x_labels]
    if len(labels) != n:
        raise InputDataError(f"{len(labels)} x labels were given for {n} bars; expected one per bar")
    names = list(arrs)
    stack = np.stack([arrs[k] for k in names])
    p = pool_columns(stack, max_bars, "mean")
    stack = p.values
    bar_labels = [labels[s] if e - s == 1 else f"{labels[s]}–{labels[e - 1]}"
                  for s, e in zip(p.starts, p.stops)]
    totals = stack.sum(axis=0)
    bad = ~np.isfinite(totals)
    fine = totals[~bad]
    percent = fine.size > 0 and np.allclose(fine, 1.0, atol=1e-6)
    top = 1.0 if percent else (float(fine.max()) * 1.05 if fine.size and fine.max() > 0 else 1.0)
    x0, y0, w, h = PLOT
    nb = stack.shape[1]
    bw = w / nb
    gap = 0.15 * bw if bw >= 4 else -0.5  # narrow bars overlap a little: no seams

    def py(v):
        return y0 + h - v / top * h

    ticks = nice_ticks(0.0, top, 5)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    yticks = [(py(t), f"{t * 100:.0f}%" if percent else tick_text(t, step)) for t in ticks]
    every = label_every(nb, bw, max(len(s) for s in bar_labels) * CHAR_W + 14)
    xticks = [(x0 + (i + 0.5) * bw, bar_labels[i]) for i in range(0, nb, every)]
    palette = colors.categorical(len(names))
    body = [text(0, 16, title, size=14, weight="600")] if title else []
    body += _key(names, palette, set(), 40)
    body += axes(x0, y0, w, h, xticks, yticks, "", y_label or ("share" if percent else ""))
    body.append('<g shape-rendering="crispEdges">')
    for i in np.flatnonzero(~bad):
        base = 0.0
        for k, name in enumerate(names):
            v = stack[k, i]
            share = f" ({v / totals[i] * 100:.1f}%)" if totals[i] > 0 else ""
            body.append(f'<rect x="{num(x0 + i * bw + gap / 2)}" y="{num(py(base + v))}" '
                        f'width="{num(bw - gap)}" height="{num(v / top * h)}" fill="{palette[k]}">'
                        f"<title>{esc(bar_labels[i])} · {esc(name)}: {exact(v)}{share}</title></rect>")
            base += v
    body.append("</g>")
    caption = []
    if p.pooled:
        caption.append("Bars pooled: " + p.describe(n))
    if bad.any():
        caption.append(f"{int(bad.sum())} bars with NaN or inf shares not drawn.")
    return Figure(svg_doc(x0 + w + 20, y0 + h + 30, body, title or "stacked bars"),
                  " ".join(caption))


def histogram(values, bins: int = 40, *, title: str = "", x_label: str = "",
              value_range: tuple[float, float] | None = None) -> Figure:
    """Counts of the finite ``values`` (any shape) in ``bins`` equal bins over their range
    (or ``value_range``); NaN and inf are counted in the caption, not drawn."""
    a = np.asarray(values)
    if a.dtype.kind not in "fiub":
        raise InputDataError(f"histogram needs numbers; got {a.dtype}")
    if int(bins) < 1:
        raise InputDataError(f"histogram bins={bins} is too few; expected at least 1")
    f = a.astype(np.float64).ravel()
    finite = f[np.isfinite(f)]
    lo, hi = value_range if value_range else (
        (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
    lo, hi = (lo - 0.5, hi + 0.5) if not hi > lo else (lo, hi)
    counts, edges = np.histogram(finite, bins=int(bins), range=(lo, hi))
    x0, y0, w, h = PLOT
    y0 -= 22
    top = max(1, int(counts.max())) * 1.05
    yt = nice_ticks(0, top, 4)
    yt = [t for t in yt if t == int(t)]

    def px(v):
        return x0 + (v - lo) / (hi - lo) * w

    def py(v):
        return y0 + h - v / top * h

    xt = nice_ticks(lo, hi, 6)
    xstep = xt[1] - xt[0] if len(xt) > 1 else None
    body = [text(0, 16, title, size=14, weight="600")] if title else []
    body += axes(x0, y0, w, h, [(px(t), tick_text(t, xstep)) for t in xt],
                 [(py(t), str(int(t))) for t in yt], x_label, "count")
    body.append(f'<g fill="{colors.categorical(1)[0]}" shape-rendering="crispEdges">')
    bw = w / len(counts)
    gap = 1.0 if bw >= 4 else -0.5
    for i, c in enumerate(counts):
        close = "]" if i == len(counts) - 1 else ")"
        body.append(f'<rect x="{num(x0 + i * bw + gap / 2)}" y="{num(py(c))}" '
                    f'width="{num(bw - gap)}" height="{num(c / top * h)}">'
                    f"<title>[{edges[i]:.6g}, {edges[i + 1]:.6g}{close}: {c}</title></rect>")
    body.append("</g>")
    caption = [f"{finite.size} values in {len(counts)} bins of width {(hi - lo) / len(counts):.4g}."]
    odd = {k: int(v) for k, v in (("NaN", np.isnan(f).sum()), ("+inf", np.isposinf(f).sum()),
                                   ("-inf", np.isneginf(f).sum())) if v}
    if odd:
        caption.append("Not counted: " + ", ".join(f"{v} {k}" for k, v in odd.items()) + ".")
    outside = int(((finite < lo) | (finite > hi)).sum())
    if outside:
        caption.append(f"{outside} values outside {lo:.4g}..{hi:.4g} not counted.")
    return Figure(svg_doc(x0 + w + 20, y0 + h + 44, body, title or "histogram"), " ".join(caption))
