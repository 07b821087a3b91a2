"""Draw rnncli's pictures from synthetic RNN-like data (not run by CI).

    python scripts/picture_demo.py report.html [STEPS]   # the offline HTML report
    python scripts/picture_demo.py -              [STEPS]   # the terminal heatmap

The data: 64 units whose states are tanh of a random walk, a gradient norm that
vanishes going back in time beside a bound, and shares of x·W, h·U and b per step.
docs/img/report-heatmap.png is chromium's screenshot of the page with 300 steps;
docs/img/terminal-heatmap.png is an 80x40 terminal showing 1000 steps.
"""

import sys
import time

import numpy as np
from rich.console import Console

from rnncli.present.heatmap import color_system_of, heatmap_renderable
from rnncli.report import Page, heatmap, histogram, line_plot, stacked_bars


def data(steps):
    rng = np.random.default_rng(0)
    spread = np.linspace(0.3, 1.2, 64)[:, None]
    walk = 0.35 * np.cumsum(rng.normal(0, 0.2, size=(64, steps)), axis=1) * spread
    h = np.tanh(walk + rng.normal(0, 0.3, size=(64, 1))).astype(np.float32)
    h[5, min(40, steps - 1)] = np.nan
    mask = np.zeros(steps, bool)
    mask[-20:] = True
    back = np.arange(steps)[::-1]
    grad = 0.985 ** back * (1 + 0.2 * rng.random(steps))
    return h, mask, grad, rng


def page(steps):
    h, mask, grad, rng = data(steps)
    p = Page("rnncli report: demo (synthetic data)",
             subtitle=f"64 units × {steps} steps, tanh of a random walk")
    p.note("Synthetic data: a tanh of a random walk, and a gradient that vanishes.")
    p.section("Hidden state h_t", heatmap(h, title="h_t per unit and step", masked_cols=mask))
    bound = 1.5 * 0.993 ** np.arange(steps)[::-1]
    jac = 0.9 * (1 + 0.1 * rng.standard_normal(steps))
    p.section("Gradient norms", line_plot(
        {"‖dL/dh_t‖": grad, "bound γ^(T−t)": bound, "‖∂h_t/∂h_{t−1}‖": jac}, log_y=True,
        title="Gradient vanishes going back in time", x_label="t", y_label="norm",
        dashed=["bound γ^(T−t)"], bands={"‖dL/dh_t‖": (grad * 0.7, grad * 1.4)}))
    n = min(steps, 60)
    xw, hu, b = rng.random(n) * 2, rng.random(n), np.full(n, 0.3)
    total = xw + hu + b
    p.section("Where z comes from", stacked_bars(
        {"x·W": xw / total, "h·U": hu / total, "b": b / total},
        title="Share of x·W, h·U and b per step"))
    p.section("Distribution of h", histogram(h, title="All hidden values", x_label="h"))
    p.table([["units", 64], ["steps", steps], ["max |h|", float(np.nanmax(np.abs(h)))]],
            header=["what", "value"], heading="Summary")
    return p.render()


def main(argv):
    out = argv[1] if len(argv) > 1 else "-"
    steps = int(argv[2]) if len(argv) > 2 else (300 if out != "-" else 1000)
    if out == "-":
        h, mask, _, _ = data(steps)
        console = Console()
        console.print(heatmap_renderable(h, title="hidden state h_t (synthetic)",
                                         width=console.width, height=console.height,
                                         color_system=color_system_of(console),
                                         masked_steps=mask))
        return
    start = time.perf_counter()
    doc = page(steps)
    took = time.perf_counter() - start
    with open(out, "w", encoding="utf-8") as f:
        f.write(doc)
    print(f"{out}: {len(doc.encode()) / 1e6:.2f} MB, drawn in {took * 1000:.0f} ms")


if __name__ == "__main__":
    main(sys.argv)
