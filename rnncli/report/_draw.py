"""Shared pieces of the SVG pictures: the Figure result, escaping, number formats, ticks,
axes and the colour legend. Every string that reaches the SVG passes through :func:`esc`."""

from __future__ import annotations

import hashlib
import html
import math
import re
from dataclasses import dataclass

import numpy as np

from . import colors

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif"
INK, GRID, MUTED = "#222222", "#e4e4e4", "#666666"
CHAR_W = 6.6  # rough width of one character of 11px text, for layout


@dataclass(frozen=True)
class Figure:
    """An SVG picture and the sentence(s) a page should print under it."""

    svg: str
    caption: str = ""

    def __str__(self) -> str:
        return self.svg


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def exact(values) -> np.ndarray:
    """Each number as the shortest text that reads back to the same value of its dtype."""
    a = np.asarray(values)
    if a.dtype.kind not in "fiub":
        a = a.astype(np.float64)
    return a.astype(str)


def fig_id(*parts) -> str:
    """A short id, the same for the same inputs, for the <defs> of one picture."""
    h = hashlib.blake2s(digest_size=5)
    for p in parts:
        h.update(p.tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
    return "r" + h.hexdigest()


def num(v: float) -> str:
    """A coordinate, short: at most two decimals."""
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def nice_step(span: float, count: int = 5) -> float:
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values between ``lo`` and ``hi`` (inclusive), about ``count`` of them."""
    if not hi > lo:
        return [lo]
    step = nice_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + step * 1e-9:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def log_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Powers of ten between ``lo`` and ``hi`` (both > 0); every 2nd, 3rd, 5th, 10th, ...
    decade when there are many, on exponents that are multiples of that."""
    a, b = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    span = max(1, b - a)
    every = next(k for k in (1, 2, 3, 5, 10, 20, 25, 50, 100, 10**6) if span / k <= count)
    return [10.0 ** e for e in range(a, b + 1) if e % every == 0
            and lo * 0.999 <= 10.0 ** e <= hi * 1.001]


def tick_text(v: float, step: float | None = None) -> str:
    """A tick label: as few digits as the spacing of the ticks needs."""
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.0e}" if step is None or abs(v / step) < 10 else f"{v:.2g}"
    if step is None:
        return f"{v:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    scaled = step * 10 ** decimals
    if abs(scaled - round(scaled)) > 1e-6:
        decimals += 1  # e.g. 0.25
    return f"{v:.{decimals}f}"


def text(x, y, s, *, anchor="start", size=11, weight=None, fill=INK, rotate=None,
         baseline=None) -> str:
    attrs = [f'x="{num(x)}" y="{num(y)}"', f'font-size="{size}"']
    if anchor != "start":
        attrs.append(f'text-anchor="{anchor}"')
    if weight:
        attrs.append(f'font-weight="{weight}"')
    if fill != INK:
        attrs.append(f'fill="{fill}"')
    if baseline:
        attrs.append(f'dominant-baseline="{baseline}"')
    if rotate is not None:
        attrs.append(f'transform="rotate({rotate} {num(x)} {num(y)})"')
    return f"<text {' '.join(attrs)}>{esc(s)}</text>"


def svg_doc(width: float, height: float, body: list[str], label: str) -> str:
    """A standalone <svg> element (valid inline in HTML and as a file of its own)."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(width)}" '
            f'height="{num(height)}" viewBox="0 0 {num(width)} {num(height)}" role="img" '
            f'aria-label="{esc(label)}" font-family="{esc(FONT)}" fill="{INK}">'
            f"<title>{esc(label)}</title>" + "".join(body) + "</svg>")


def title_text(title: str, x: float = 0) -> list[str]:
    return [text(x, 16, title, size=14, weight="600")] if title else []


def axes(x0, y0, w, h, xticks, yticks, x_label="", y_label="") -> list[str]:
    """Grid lines, tick labels and axis titles around the plot box (x0, y0, w, h);
    ``xticks``/``yticks`` are (pixel position, label) pairs."""
    out = [f'<g stroke="{GRID}" stroke-width="1">']
    out += [f'<line x1="{num(x0)}" x2="{num(x0 + w)}" y1="{num(y)}" y2="{num(y)}"/>'
            for y, _ in yticks]
    out.append("</g>")
    out.append(f'<rect x="{num(x0)}" y="{num(y0)}" width="{num(w)}" height="{num(h)}" '
               f'fill="none" stroke="#999999"/>')
    out += [f'<line x1="{num(x)}" x2="{num(x)}" y1="{num(y0 + h)}" y2="{num(y0 + h + 4)}" '
            f'stroke="#999999"/>' + text(x, y0 + h + 16, s, anchor="middle", fill=MUTED)
            for x, s in xticks]
    for y, s in yticks:
        power = re.fullmatch(r"1e([+-]?)0*(\d+)", s)
        if power:  # 1e-12 -> 10 with a raised -12
            exp = ("−" if power[1] == "-" else "") + power[2]
            out.append(f'<text x="{num(x0 - 6)}" y="{num(y + 4)}" font-size="11" text-anchor="end" '
                       f'fill="{MUTED}">10<tspan dy="-5" font-size="8.5">{exp}</tspan></text>')
        else:
            out.append(text(x0 - 6, y + 4, s, anchor="end", fill=MUTED))
    if x_label:
        out.append(text(x0 + w / 2, y0 + h + 34, x_label, anchor="middle"))
    if y_label:
        out.append(text(14, y0 + h / 2, y_label, anchor="middle", rotate=-90))
    return out


def colour_legend(scale: colors.Scale, x, y, height, uid, specials=()) -> tuple[list[str], float]:
    """A vertical gradient bar with tick values, top = high; swatches below it for the
    special colours named in ``specials`` (of "NaN", "+inf", "-inf", "masked").
    Returns the SVG pieces and the width they take."""
    table = scale.hex_table
    stops = "".join(f'<stop offset="{i / 16:.4g}" stop-color="{table[round((1 - i / 16) * 255)]}"/>'
                    for i in range(17))
    out = [f'<defs><linearGradient id="{uid}-bar" x1="0" y1="0" x2="0" y2="1">{stops}'
           "</linearGradient></defs>",
           f'<rect x="{num(x)}" y="{num(y)}" width="14" height="{num(height)}" '
           f'fill="url(#{uid}-bar)" stroke="#999999"/>']
    ticks = nice_ticks(scale.lo, scale.hi, 4)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    near = (scale.hi - scale.lo) * 0.12
    ends = [(v, f"{v:.3g}") for v in (scale.lo, scale.hi)
            if not any(abs(v - t) < near for t in ticks)]
    widest = 0.0
    for v, label in [(t, tick_text(t, step)) for t in ticks] + ends:
        ty = y + height * (1 - (v - scale.lo) / (scale.hi - scale.lo))
        out.append(f'<line x1="{num(x + 14)}" x2="{num(x + 18)}" y1="{num(ty)}" y2="{num(ty)}" '
                   'stroke="#999999"/>')
        out.append(text(x + 21, ty + 4, label, fill=MUTED))
        widest = max(widest, len(label) * CHAR_W)
    swatch = {"NaN": colors.SPECIAL_HEX[colors.NAN], "+inf": colors.SPECIAL_HEX[colors.POSINF],
              "-inf": colors.SPECIAL_HEX[colors.NEGINF], "masked": f"url(#{uid}-hatch)"}
    sy = y + height + 14
    for name in specials:
        out.append(f'<rect x="{num(x)}" y="{num(sy)}" width="14" height="10" '
                   f'fill="{swatch[name]}" stroke="#999999"/>')
        out.append(text(x + 21, sy + 9, name, fill=MUTED))
        sy += 16
    return out, 21 + max(widest, 40)


def hatch_defs(uid: str) -> str:
    return (f'<defs><pattern id="{uid}-hatch" width="5" height="5" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><rect width="5" height="5" fill="{colors.MASKED_HEX}"/>'
            '<line x1="0" y1="0" x2="0" y2="5" stroke="#8a8a8a" stroke-width="2"/></pattern></defs>')


def label_every(count: int, pixels_each: float, need: float) -> int:
    """Show every k-th of ``count`` labels so neighbours are ``need`` pixels apart;
    k is 1, 2, 5, 10, 20, 50, ..."""
    if pixels_each <= 0:
        return count
    k, mult = 1, 1
    while k * pixels_each < need and k < count:
        k = (1, 2, 5)[mult % 3] * 10 ** (mult // 3)
        mult += 1
    return max(1, k)
