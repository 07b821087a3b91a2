"""Terminal heatmaps: widths, the 80x40 promise, colour systems, the text ramp, the legend."""

import io
import math
import re

import numpy as np
import pytest
from rich.console import Console

from rnncli.errors import InputDataError
from rnncli.present.heatmap import color_system_of, heatmap_lines, heatmap_renderable


def walk(units=64, steps=1000, seed=0):
    rng = np.random.default_rng(seed)
    return np.tanh(0.2 * np.cumsum(rng.normal(0, 0.25, (units, steps)), axis=1))


def printed(renderable, system, width=200):
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=system, force_terminal=system is not None,
            no_color=system is None, legacy_windows=False).print(renderable)
    return buf.getvalue()


@pytest.mark.parametrize("width", [40, 80, 120])
@pytest.mark.parametrize("system", ["truecolor", "256", "standard", None])
def test_never_wider_than_asked(width, system):
    text = heatmap_renderable(walk(), title="h" * 200, width=width, color_system=system,
                              masked_steps=np.arange(1000) > 900)
    lines = printed(text, None, width=400).rstrip("\n").split("\n")
    assert max(len(s) for s in lines) <= width
    assert all(len(s) <= width for s in heatmap_lines(walk(), width, title="x" * 300))


def test_thousand_steps_sixty_four_units_fit_one_80x40_screen():
    colour = printed(heatmap_renderable(walk(), title="h_t", width=80, height=40,
                                        color_system="truecolor"), None, 400).rstrip("\n")
    assert len(colour.split("\n")) <= 40
    assert "2 units per line" in colour
    plain = heatmap_lines(walk(), 80, title="h_t", height=40)
    assert len(plain) <= 40 and max(map(len, plain)) <= 80
    assert "2 units per line (mean)" in "\n".join(plain)


def test_legend_says_how_steps_are_pooled():
    lines = heatmap_lines(walk(), 80)
    label_w = len("h60") + 1
    k = math.ceil(1000 / (80 - label_w))
    axis = next(i for i, s in enumerate(lines) if s.startswith("t "))
    assert axis == 64 and f" {k * 5} " in lines[axis] + " "  # step numbers every 5 columns
    legend = "\n".join(lines[axis + 1:])
    assert f"1 column = {k} steps (mean)" in legend
    assert "64 units, 1000 steps" in legend and re.search(r"min -?[\d.]+ max [\d.]+", legend)
    assert f"1 column = {k} steps (largest |value|)" in "\n".join(
        heatmap_lines(walk(), 80, pool="maxabs")[axis + 1:])


def test_text_ramp_without_colour():
    a = np.array([[1.0, -1.0, 0.0, 0.5, np.nan, 1.0, np.inf, -np.inf]])
    line = heatmap_lines(a, 40, masked_steps=[0, 0, 0, 0, 0, 1, 0, 0])[0]
    assert line == "h0 @# o?/><"
    seq = heatmap_lines(np.array([[0.0, 5.0, 10.0]]), 40, diverging=False)[0]
    assert seq == "h0  +@"
    out = printed(heatmap_renderable(walk(8, 50), width=60, color_system=None), None)
    assert "\x1b[" not in out and "▀" not in out
    assert set("".join(out.split("\n")[:8])[3:]) <= set(" .oO@,xX#h0123456789")


def test_pooled_columns_show_the_group_mean():
    # 20 steps in 10 columns: (1, -1) averages to 0 -> blank; (1, 1) stays 1 -> "@"
    a = np.array([[1.0, -1.0] * 5 + [1.0, 1.0] * 5])
    lines = heatmap_lines(a, 13, scale=1.0)
    assert lines[0] == "h0      @@@@@"
    assert "1 column = 2 " in lines  # the legend, cut at 13 characters
    assert heatmap_lines(a, 13, scale=1.0, pool="maxabs")[0] == "h0 @@@@@@@@@@"
    with pytest.raises(InputDataError, match="at least 8"):
        heatmap_lines(a, 5)


def test_colour_systems():
    a = walk(6, 30)
    true = printed(heatmap_renderable(a, width=60, color_system="truecolor"), "truecolor")
    assert "▀" in true and "\x1b[38;2;" in true and "48;2;" in true
    eight = printed(heatmap_renderable(a, width=60, color_system="256"), "256")
    assert "▀" in eight and "38;5;" in eight and "38;2;" not in eight
    # xterm 0-15 are themed by the terminal: never used for the map
    used = {int(n) for n in re.findall(r"[34]8;5;(\d+)", eight)}
    assert used and min(used) >= 16
    std = printed(heatmap_renderable(a, width=60, color_system="standard"), "standard")
    assert "▀" not in std and re.search(r"\x1b\[3[14]m", std)


def test_colour_legend_has_gradient_scale_and_specials():
    a = walk(4, 20)
    a[1, 3] = np.nan
    out = printed(heatmap_renderable(a, width=80, color_system="truecolor",
                                     masked_steps=np.arange(20) > 15, scale=2.0), None)
    assert "-2 ████████████████ 2" in out
    assert "1 NaN" in out and "masked" in out


def test_bad_input():
    with pytest.raises(InputDataError, match="units, steps"):
        heatmap_lines(np.zeros(3), 80)
    with pytest.raises(InputDataError, match="one per step"):
        heatmap_lines(np.zeros((2, 3)), 80, masked_steps=[True])
    with pytest.raises(InputDataError, match="color_system"):
        heatmap_renderable(np.zeros((2, 3)), color_system="rgb")


def test_color_system_of_a_console():
    assert color_system_of(Console(file=io.StringIO(), no_color=True, force_terminal=True,
                                   color_system="truecolor")) is None
    assert color_system_of(Console(file=io.StringIO(), force_terminal=True,
                                   color_system="256")) == "256"
