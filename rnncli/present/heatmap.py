"""Terminal heatmaps of a (units x steps) array, fitted to the terminal's width.

With colour, each character cell shows two units of one step: the upper unit in the
foreground of "▀", the lower in the background, so 64 units take 32 lines. Truecolor
terminals get the report's blue - white - red palette exactly; 256-colour terminals get the
nearest of their colours; 8/16-colour terminals get the plain-text ramp, tinted red/blue.

Without colour (NO_COLOR, a pipe) each unit is one line of characters: by magnitude,
``.oO@`` for positive values and ``,xX#`` for negative ones, blank near 0 (a sequential
scale uses `` .:-=+*#%@``); ``?`` is NaN, ``>``/``<`` are +inf/-inf, ``/`` a masked step.

Steps are pooled into columns so the map fits ``width`` (the legend says how many steps a
column holds and how they are pooled: the mean, or the value of largest magnitude); given a
``height``, units are pooled the same way so map and legend fit that many lines.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.text import Text

from ..errors import InputDataError
from ..report.colors import NAN, NEGINF, POSINF, SPECIAL_HEX, STEPS, Scale, xterm256
from ..report.pooling import pool_columns

POS, NEG = ".oO@", ",xX#"
SEQ = " .:-=+*#%@"
EDGES = (0.1, 0.35, 0.6, 0.85)  # |t| where the diverging ramp steps up a level
SPECIAL_CHAR = {NAN: "?", POSINF: ">", NEGINF: "<"}
TERM_HEX = {**SPECIAL_HEX, NAN: "#d000d0"}  # black would vanish on dark terminals
MASK_CHAR, MASK_FG, MASK_BG = "╱", "#6e6e6e", "#b4b4b4"
HALF = "▀"


def _scale(a, scale, diverging):
    if scale is None:
        return Scale.fit(a, diverging)
    if isinstance(scale, Scale):
        return scale
    if np.ndim(scale) == 0:
        s = abs(float(scale))
        return Scale.fit([], diverging, vmin=-s if diverging else 0.0, vmax=s)
    lo, hi = (float(v) for v in scale)
    return Scale.fit([], diverging, vmin=lo, vmax=hi)


class _Map:
    """The pooled grid and everything the renderers need to draw it."""

    def __init__(self, values, width, height, row_labels, title, scale, masked_steps,
                 diverging, pool, half):
        a = np.asarray(values)
        if a.ndim != 2 or 0 in a.shape or a.dtype.kind not in "fiub":
            raise InputDataError(f"a terminal heatmap needs a non-empty (units, steps) array of "
                                 f"numbers; got shape {a.shape} of {a.dtype}")
        if int(width) < 8:
            raise InputDataError(f"a terminal heatmap {width} characters wide is too narrow; "
                                 "expected at least 8")
        units, steps = a.shape
        labels = [f"h{i}" for i in range(units)] if row_labels is None else \
            [str(s) for s in row_labels]
        if len(labels) != units:
            raise InputDataError(f"{len(labels)} row labels were given for {units} units; "
                                 "expected one per unit")
        self.scale = _scale(a, scale, diverging)
        self.title, self.units, self.steps, self.half = title, units, steps, half
        f = a.astype(np.float64)
        finite = f[np.isfinite(f)]
        self.lo = float(finite.min()) if finite.size else math.nan
        self.hi = float(finite.max()) if finite.size else math.nan
        self.specials = {c: int(n) for c, n in ((NAN, np.isnan(f).sum()),
                                                 (POSINF, np.isposinf(f).sum()),
                                                 (NEGINF, np.isneginf(f).sum())) if n}

        # Rows: pool units when a height is given and they would not fit.
        per_line = 2 if half else 1
        self.per_row = 1
        if height is not None:
            room = max(1, int(height) - (1 if title else 0) - 1 - 3)  # axis, legend
            self.per_row = max(1, math.ceil(units / (room * per_line)))
        rows = pool_columns(f.T, math.ceil(units / self.per_row), pool).values.T \
            if self.per_row > 1 else f
        starts = range(0, units, self.per_row)
        self.row_labels = [labels[s] if self.per_row == 1 else
                           f"{labels[s]}-{labels[min(s + self.per_row, units) - 1]}"
                           for s in starts]
        shown_labels = self.row_labels[::per_line]
        every = 1 if len(shown_labels) <= 12 else 4
        cut = max(1, int(width) // 3)  # labels take at most a third of the width
        self.line_labels = [s[:cut] if i % every == 0 else "" for i, s in enumerate(shown_labels)]
        self.label_w = max(len(s) for s in self.line_labels) + 1

        # Columns: pool steps to fit the width.
        mask = None if masked_steps is None else np.asarray(masked_steps, dtype=bool).ravel()
        if mask is not None and mask.shape != (steps,):
            raise InputDataError(f"masked_steps has {mask.size} flags for {steps} steps; "
                                 "expected one per step")
        room = max(1, int(width) - self.label_w)
        p = pool_columns(rows, room, pool, mask)
        self.grid, self.masked, self.per_col, self.starts, self.pool = \
            p.values, p.masked, p.per_group, p.starts, pool
        self.index = self.scale.index(self.grid)  # palette index per cell
        self.width = int(width)

    def char(self, i, j) -> str:
        """The plain-text character of pooled cell (i, j)."""
        if self.masked is not None and self.masked[j]:
            return "/"
        k = int(self.index[i, j])
        if k >= STEPS:
            return SPECIAL_CHAR[k]
        t = k / (STEPS - 1)
        if not self.scale.diverging:
            return SEQ[min(len(SEQ) - 1, int(t * len(SEQ)))]
        m = abs(2 * t - 1)
        level = sum(m >= e for e in EDGES)
        return " " if level == 0 else (POS if t > 0.5 else NEG)[level - 1]

    def axis(self) -> str:
        """Step numbers under every e-th column (the step that column starts with)."""
        cols = len(self.starts)
        need = len(str(int(self.starts[-1]))) + 2
        e = next(e for e in (1, 2, 4, 5, 10, 20, 25, 50, 100, 200, 250, 500, 10**9)
                 if e >= need or e >= cols)
        line = [" "] * (self.label_w + cols)
        line[0] = "t"
        for j in range(0, cols, e):
            word = str(int(self.starts[j]))
            x = self.label_w + j
            if x + len(word) <= len(line):
                line[x:x + len(word)] = word
        return "".join(line).rstrip()

    def facts(self, colour: bool) -> list[str]:
        """Legend phrases: pooling, scale, data range, special values."""
        out = []
        if self.per_col > 1:
            how = "mean" if self.pool == "mean" else "largest |value|"
            out.append(f"1 column = {self.per_col} steps ({how})")
        else:
            out.append("1 column = 1 step")
        if self.half:
            out.append(f"{2 * self.per_row} units per line")
        elif self.per_row > 1:
            out.append(f"{self.per_row} units per line ({self.pool})")
        out.append(f"{self.units} unit{'s' * (self.units != 1)}, "
                   f"{self.steps} step{'s' * (self.steps != 1)}")
        out.append(f"min {self.lo:.4g} max {self.hi:.4g}" if math.isfinite(self.lo)
                   else "no finite values")
        names = {NAN: "NaN", POSINF: "+inf", NEGINF: "-inf"}
        for k, n in self.specials.items():
            out.append(f"{n} {names[k]}" + ("" if colour else f" '{SPECIAL_CHAR[k]}'"))
        if self.masked is not None and self.masked.any():
            out.append(f"'{MASK_CHAR if colour else '/'}' masked")
        return out

    def ramp_key(self) -> list[str]:
        """Legend phrases for the characters of the plain-text ramp."""
        s = self.scale
        if s.diverging:
            return [f"'{NEG[::-1]}' < 0 < '{POS}'", f"blank ~0, full at ±{s.hi:.3g}"]
        return [f"'{SEQ}'", f"from {s.lo:.3g} to {s.hi:.3g}"]


def _wrap(phrases, width):
    """Phrases joined by " · " into lines of at most ``width`` characters."""
    lines, cur = [], ""
    for p in phrases:
        if cur and len(cur) + 4 + len(p) > width:
            lines.append(cur)
            cur = ""
        cur = f"{cur}  · {p}" if cur else p
    if cur:
        lines.append(cur)
    return [s[:width] for s in lines]


def heatmap_lines(values, width: int = 80, *, row_labels=None, title: str = "", scale=None,
                  masked_steps=None, diverging: bool = True, pool: str = "mean",
                  height: int | None = None) -> list[str]:
    """The heatmap as plain text lines (no colour), each at most ``width`` characters: a
    title, one line per unit (or group of units, to fit ``height``), the step axis and a
    legend. ``scale``: None (fit the data), a magnitude, (lo, hi), or a report Scale."""
    m = _Map(values, width, height, row_labels, title, scale, masked_steps, diverging, pool,
             half=False)
    out = [title[:width]] if title else []
    for i, label in enumerate(m.line_labels):
        out.append(label.rjust(m.label_w - 1) + " "
                   + "".join(m.char(i, j) for j in range(m.grid.shape[1])))
    out.append(m.axis())
    out += _wrap(m.ramp_key() + m.facts(False), width)
    return out


def color_system_of(console) -> str | None:
    """The ``color_system`` argument for a rich Console: None when it shows no colour
    (NO_COLOR, not a terminal), else its colour system."""
    return None if console.no_color or not console.color_system else console.color_system


@lru_cache(maxsize=4096)
def _colour(hex_code, system):
    """A rich Color; for 256-colour terminals the nearest xterm colour in CIELAB (rich's own
    downgrade turns some of the palette's reds brown)."""
    if system != "256":
        return Color.parse(hex_code)
    rgb = np.array([int(hex_code[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
    return Color.from_ansi(int(xterm256(rgb)))


def heatmap_renderable(values, *, row_labels=None, title: str = "", width: int = 80,
                       color_system: str | None = "truecolor", scale=None, masked_steps=None,
                       diverging: bool = True, pool: str = "mean",
                       height: int | None = None) -> Text:
    """The heatmap as a rich Text at most ``width`` cells wide, for a console whose
    ``color_system`` is "truecolor", "256", "standard"/"windows" (ramp tinted red/blue) or
    None (the plain lines of :func:`heatmap_lines`)."""
    if color_system not in ("truecolor", "256", "standard", "windows", None):
        raise InputDataError(f"color_system {color_system!r} is unknown; expected truecolor, "
                             "256, standard, windows or None")
    if color_system is None:
        return Text("\n".join(heatmap_lines(
            values, width, row_labels=row_labels, title=title, scale=scale,
            masked_steps=masked_steps, diverging=diverging, pool=pool, height=height)),
            no_wrap=True)
    half = color_system in ("truecolor", "256")
    m = _Map(values, width, height, row_labels, title, scale, masked_steps, diverging, pool,
             half=half)
    out = Text(no_wrap=True, overflow="crop")
    if title:
        out.append(title[:width] + "\n", style="bold")
    table = m.scale.hex_table
    cols = m.grid.shape[1]
    styles: dict = {}

    def hexes(i):
        return [TERM_HEX[k] if k >= STEPS else table[k] for k in m.index[i].tolist()]

    for li, label in enumerate(m.line_labels):
        out.append(label.rjust(m.label_w - 1) + " ", style="dim")
        if half:
            top = hexes(2 * li)
            bottom = hexes(2 * li + 1) if 2 * li + 1 < m.grid.shape[0] else [None] * cols
            for j in range(cols):
                if m.masked is not None and m.masked[j]:
                    out.append(MASK_CHAR, style=Style(color=MASK_FG, bgcolor=MASK_BG))
                    continue
                key = (top[j], bottom[j])
                if key not in styles:
                    styles[key] = Style(color=_colour(top[j], color_system),
                                        bgcolor=None if bottom[j] is None
                                        else _colour(bottom[j], color_system))
                out.append(HALF, style=styles[key])
        else:
            for j in range(cols):
                ch = m.char(li, j)
                k = int(m.index[li, j])
                colour = "magenta" if k >= STEPS else (
                    "red" if k > STEPS // 2 else "blue") if m.scale.diverging else "cyan"
                out.append(ch, style=colour)
        out.append("\n")
    out.append(m.axis() + "\n", style="dim")
    if half:
        key = _gradient(m, color_system, width)
        out.append_text(key)
        phrases = m.facts(True)
        first = f"  · {phrases[0]}"
        if key.cell_len + len(first) <= width:
            out.append(first)
            phrases = phrases[1:]
        out.append("\n")
    else:
        phrases = m.ramp_key() + m.facts(True)
    out.append("\n".join(_wrap(phrases, width)), style="dim")
    return out


def _gradient(m, system, width) -> Text:
    """``-0.98 ████████████████ 0.98``: the colour scale from its low to its high end, as
    many blocks (up to 16) as fit ``width``."""
    s = m.scale
    lo, hi = f"{s.lo:.3g} ", f" {s.hi:.3g}"
    cells = min(16, width - len(lo) - len(hi))
    key = Text()
    if cells < 4:
        return key.append(f"{s.lo:.3g}..{s.hi:.3g}"[:width])
    key.append(lo)
    for q in np.linspace(0, STEPS - 1, cells).round().astype(int):
        key.append("█", style=Style(color=_colour(s.hex_table[q], system)))
    return key.append(hi)
