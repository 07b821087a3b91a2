"""Colour scales for heatmaps and charts, computed from CIELAB so lightness steps are even.

The diverging palette runs blue - white - red: lightness falls evenly from near white at 0
to the same depth at both ends, so equal magnitudes look equally strong whatever their
sign. The sequential palette runs from pale yellow to deep blue-violet. Colours outside
sRGB are brought in by lowering chroma (keeping lightness and hue), not by clipping.

A :class:`Scale` maps values to palette indices; NaN, +inf and -inf get their own colours,
which are on neither palette. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEPS = 256  # palette entries; indices STEPS, STEPS+1, STEPS+2 are NaN, +inf, -inf
NAN, POSINF, NEGINF = STEPS, STEPS + 1, STEPS + 2
SPECIAL_HEX = {NAN: "#111111", POSINF: "#f2b200", NEGINF: "#2ca02c"}
MASKED_HEX = "#c8c8c8"

_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65 reference white, XYZ
_XYZ_TO_RGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])


def _lab_to_linear(lab):
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    d = 6 / 29
    xyz = np.where(f > d, f ** 3, 3 * d * d * (f - 4 / 29)) * _WHITE
    return xyz @ _XYZ_TO_RGB.T


def _encode_gamma(lin):
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def lch_to_rgb(L, C, h) -> np.ndarray:
    """sRGB in [0, 1], shape (..., 3), for CIE LCh(ab) colours (hue in degrees).

    Out-of-gamut colours keep their lightness and hue and lose chroma until they fit."""
    L, C, h = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (L, C, h)))
    rad = np.radians(h)

    def linear(c):
        return _lab_to_linear(np.stack([L, c * np.cos(rad), c * np.sin(rad)], axis=-1))

    lo, hi = np.zeros_like(C), C.copy()
    inside = np.all((linear(hi) >= -1e-9) & (linear(hi) <= 1 + 1e-9), axis=-1)
    for _ in range(30):  # bisect the largest chroma that stays in gamut
        mid = (lo + hi) / 2
        ok = np.all((linear(mid) >= 0) & (linear(mid) <= 1), axis=-1)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    chroma = np.where(inside, C, lo)
    return _encode_gamma(linear(chroma))


def rgb_to_lab(rgb) -> np.ndarray:
    """CIELAB (D65) of sRGB colours given as uint8, shape (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.linalg.inv(_XYZ_TO_RGB).T / _WHITE
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def _xterm_rgb():
    levels = np.array([0, 95, 135, 175, 215, 255])
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    grey = np.repeat((8 + 10 * np.arange(24))[:, None], 3, axis=1)
    return np.concatenate([cube, grey]).astype(np.uint8)  # xterm colours 16..255


def xterm256(rgb) -> np.ndarray:
    """The nearest (in CIELAB) of the 240 fixed xterm colours, 16..255, for uint8 sRGB
    colours (..., 3). Colours 0-15 are left out: terminals theme them."""
    lab = rgb_to_lab(rgb)[..., None, :]
    dist = ((lab - rgb_to_lab(_xterm_rgb())) ** 2).sum(axis=-1)
    return dist.argmin(axis=-1) + 16


def _to_uint8(rgb):
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _diverging(n):
    t = np.linspace(-1.0, 1.0, n)
    s = np.abs(t)
    light, depth = 97.0, 30.0
    L = light - (light - depth) * s
    C = 64.0 * np.sin(np.pi / 2 * s) ** 1.2  # saturates early so small values show
    h = np.where(t < 0, 282.0, 35.0)
    return _to_uint8(lch_to_rgb(L, C, h))


def _sequential(n):
    s = np.linspace(0.0, 1.0, n)
    L = 97.0 - 75.0 * s
    C = 18.0 + 42.0 * np.sin(np.pi * s) ** 0.8 + 8 * s
    h = 100.0 + 200.0 * s  # pale yellow, green-teal, blue, violet
    return _to_uint8(lch_to_rgb(L, C, h))


def _hex(rgb):
    return np.array([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.reshape(-1, 3).tolist()])


def _with_special(lut):
    extra = np.array([[int(SPECIAL_HEX[k][i:i + 2], 16) for i in (1, 3, 5)]
                      for k in (NAN, POSINF, NEGINF)], dtype=np.uint8)
    return np.concatenate([lut, extra])


DIVERGING_RGB = _with_special(_diverging(STEPS))
SEQUENTIAL_RGB = _with_special(_sequential(STEPS))
DIVERGING_HEX = _hex(DIVERGING_RGB)
SEQUENTIAL_HEX = _hex(SEQUENTIAL_RGB)


def categorical(n: int) -> list[str]:
    """``n`` distinct line/bar colours of similar weight (hex), repeating after eight."""
    hues = [262, 40, 140, 75, 315, 200, 10, 105]
    light = [45, 52, 55, 70, 48, 58, 40, 80]
    rgb = _to_uint8(lch_to_rgb(light, [62, 62, 55, 70, 55, 45, 50, 75], hues))
    table = _hex(rgb).tolist()
    return [table[i % len(table)] for i in range(n)]


@dataclass(frozen=True)
class Scale:
    """A colour scale: ``lo``..``hi`` over the sequential palette, or ``-hi``..``hi``
    centred on white when ``diverging``."""

    lo: float
    hi: float
    diverging: bool = True

    @classmethod
    def fit(cls, values, diverging=True, vmin=None, vmax=None) -> Scale:
        """The scale for ``values``: symmetric about 0 over the largest finite magnitude
        when diverging, else finite min..max; ``vmin``/``vmax`` override the data."""
        a = np.asarray(values, dtype=np.float64)
        finite = a[np.isfinite(a)]
        lo = float(finite.min()) if vmin is None and finite.size else vmin
        hi = float(finite.max()) if vmax is None and finite.size else vmax
        lo = 0.0 if lo is None else float(lo)
        hi = 1.0 if hi is None else float(hi)
        if diverging:
            lim = max(abs(lo), abs(hi))
            lim = lim if lim > 0 and np.isfinite(lim) else 1.0
            return cls(-lim, lim, True)
        if not hi > lo:
            hi = lo + 1.0
        return cls(lo, hi, False)

    @property
    def hex_table(self) -> np.ndarray:
        return DIVERGING_HEX if self.diverging else SEQUENTIAL_HEX

    @property
    def rgb_table(self) -> np.ndarray:
        return DIVERGING_RGB if self.diverging else SEQUENTIAL_RGB

    def position(self, values) -> np.ndarray:
        """Where each value sits on the palette, 0..1 (clipped); NaN for non-finite values."""
        a = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            pos = np.clip((a - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        return np.where(np.isfinite(a), pos, np.nan)

    def index(self, values) -> np.ndarray:
        """Palette index of each value: 0..STEPS-1, or NAN / POSINF / NEGINF."""
        a = np.asarray(values, dtype=np.float64)
        pos = self.position(a)
        idx = np.rint(np.nan_to_num(pos) * (STEPS - 1)).astype(np.intp)
        idx = np.where(np.isnan(a), NAN, idx)
        idx = np.where(np.isposinf(a), POSINF, idx)
        return np.where(np.isneginf(a), NEGINF, idx)

    def hex(self, values) -> np.ndarray:
        return self.hex_table[self.index(values)]

    def rgb(self, values) -> np.ndarray:
        return self.rgb_table[self.index(values)]
