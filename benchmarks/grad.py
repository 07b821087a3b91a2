"""Gradient time against forward time: ``model.gradients`` on the shapes of
benchmarks/forward.py (a SimpleRNN returning sequences), float32.

    python benchmarks/grad.py            # every shape, prints a table
    python benchmarks/grad.py --quick    # the first three shapes, fewer rounds

Times are medians over interleaved rounds (forward.py's interleaved_medians: each round
runs every contender in turn, so a noisy shared machine slows all of them alike).
"forward" is ``model.run(x, trace=False)``; "grad mse" is ``model.gradients(x, y,
"mse", jacobian=False)`` against a target of the output's shape (the loss on every
step's output: a (B, T, H) loss); "grad of" is ``of="output"`` (one step's output,
no loss: the backward pass through time alone). The Jacobian norms, O(B·T·H³), are
timed apart on the smaller shapes.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from forward import SHAPES, interleaved_medians, machine  # noqa: E402

from rnncli.core.model import Model  # noqa: E402
from rnncli.core.simple_rnn import SimpleRNN  # noqa: E402
from rnncli.keras.random import random_weights  # noqa: E402


def contenders(shape, dtype=np.float32, jacobian=False):
    B, T, D, H = shape
    k, u, b = random_weights(0, H, D, dtype=dtype)
    b = (np.random.default_rng(1).normal(size=H) * 0.1).astype(dtype)
    model = Model.chain("m", [SimpleRNN("rnn", k, u, b, return_sequences=True)])
    x = np.random.default_rng(2).normal(size=(B, T, D)).astype(dtype)
    y = np.random.default_rng(3).normal(size=(B, T, H)).astype(dtype) * 0.1
    runs = {"forward": lambda: model.run(x, trace=False),
            "grad mse": lambda: model.gradients(x, y, "mse", jacobian=False),
            "grad of": lambda: model.gradients(x, of="output", jacobian=False)}
    if jacobian:
        runs["grad + jacobian"] = lambda: model.gradients(x, of="output", jacobian=True)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shape", action="append", help="B,T,D,H to run instead of the set")
    args = ap.parse_args()
    shapes = SHAPES[:3] if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape]
    lines = ["| shape (B, T, D, H) | forward ms | grad mse ms | ratio | grad of ms | ratio "
             "| + jacobian ms |", "|---|---|---|---|---|---|---|"]
    for shape in shapes:
        B, T, D, H = shape
        runs = contenders(shape, jacobian=B * T * H ** 3 <= 2e9)
        for fn in runs.values():  # compile and warm up (numba, page faults)
            fn()
        t = interleaved_medians(runs, rounds=2 if args.quick else 5)
        jac = f"{t['grad + jacobian'] * 1e3:,.1f}" if "grad + jacobian" in t else "–"
        lines.append(f"| {shape} | {t['forward'] * 1e3:,.1f} | {t['grad mse'] * 1e3:,.1f} | "
                     f"{t['grad mse'] / t['forward']:.2f} | {t['grad of'] * 1e3:,.1f} | "
                     f"{t['grad of'] / t['forward']:.2f} | {jac} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    print(f"\nfloat32. Machine: {machine()}.")


if __name__ == "__main__":
    main()
