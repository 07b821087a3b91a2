"""Gradient time against forward time: ``model.gradients`` on the shapes of
benchmarks/forward.py (a SimpleRNN returning sequences), float32; and with ``--grid``,
SimpleRNN, LSTM and GRU gradients beside PyTorch and Keras on forward.py's grid.

    python benchmarks/grad.py            # every shape, prints a table
    python benchmarks/grad.py --quick    # the first three shapes, fewer rounds
    python benchmarks/grad.py --grid     # the grid, quiet and loaded: docs/performance.md
    python benchmarks/grad.py --grid --cells lstm --batches 1,16 --units 16,64 --rounds 1

Times are medians over interleaved rounds (forward.py's interleaved_medians: each round
runs every contender in turn, so a noisy shared machine slows all of them alike).
"forward" is ``model.run(x, trace=False)``; "grad mse" is ``model.gradients(x, y,
"mse", jacobian=False)`` against a target of the output's shape (the loss on every
step's output: a (B, T, H) loss); "grad of" is ``of="output"`` (one step's output,
no loss: the backward pass through time alone). The Jacobian norms, O(B·T·H³), are
timed apart on the smaller shapes.

``--grid`` (benchmarks/grad_grid.py): batch in {1, 4, 16, 64, 256, 1024} x units in {16,
64, 256, 512}, 32 features, one layer returning sequences and "grad mse" on it, against
torch (forward, ``MSELoss``, ``torch.autograd.grad``) and Keras (a ``tf.function`` with a
``GradientTape``), each with the gradients of the input and of every weight, which must
agree with rnncli's (mapped back to Keras' layout) before a time is reported. ONNX
Runtime is left out: it has no backward pass here (onnxruntime-training is not
installed). Timesteps per point are forward.py's grid_steps for a third of its target
time (a gradient costs about three forward passes); rnncli's forward is timed in the same
rounds. ``--quiet``/``--loaded`` as in forward.py; float32 unless ``--dtype``.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import forward as F  # noqa: E402

from rnncli.core.model import Model  # noqa: E402


def model_for(cell, D, H, dtype, weights=None):
    """One ``cell`` layer returning sequences, named "rnn", on forward.py's weights."""
    k, u, b = weights or F.make_weights(cell, D, H, dtype)
    return Model.chain("m", [F.rnncli_layer(cell, k, u, b)])


def make_target(B, T, H, dtype):
    """The target of the mse loss: every step's output, (B, T, H)."""
    return np.random.default_rng(3).normal(size=(B, T, H)).astype(dtype) * 0.1


def contenders(shape, dtype=np.float32, jacobian=False):
    B, T, D, H = shape
    model = model_for("simple_rnn", D, H, dtype)
    x, y = F.make_input(B, T, D, dtype), make_target(B, T, H, dtype)
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
    ap.add_argument("--rounds", type=int, help="default 5 (--quick 2, --grid 3)")
    grid = ap.add_argument_group("--grid (benchmarks/grad_grid.py)")
    grid.add_argument("--grid", action="store_true", help="the batch x units grid, with peers")
    grid.add_argument("--peers", default="torch,keras")
    grid.add_argument("--cells", default="simple_rnn,lstm,gru")
    grid.add_argument("--dtype", default="float32", help="float32, float64 or both")
    grid.add_argument("--loaded", action="store_true", help="only with a busy process")
    grid.add_argument("--quiet", action="store_true", help="only without one")
    grid.add_argument("--batches", help="batches to run (default 1,4,16,64,256,1024)")
    grid.add_argument("--units", help="units to run (default 16,64,256,512)")
    grid.add_argument("--json", help="also write every measurement here")
    grid.add_argument("--output", default=os.path.join(os.path.dirname(HERE), "docs",
                                                       "performance.md"))
    args = ap.parse_args()
    if args.grid:
        import grad_grid

        return grad_grid.main(args)
    shapes = F.SHAPES[:3] if args.quick else F.SHAPES
    if args.shape:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape]
    lines = ["| shape (B, T, D, H) | forward ms | grad mse ms | ratio | grad of ms | ratio "
             "| + jacobian ms |", "|---|---|---|---|---|---|---|"]
    for shape in shapes:
        B, T, D, H = shape
        runs = contenders(shape, jacobian=B * T * H ** 3 <= 2e9)
        for fn in runs.values():  # compile and warm up (numba, page faults)
            fn()
        t = F.interleaved_medians(runs, rounds=args.rounds or (2 if args.quick else 5))
        jac = f"{t['grad + jacobian'] * 1e3:,.1f}" if "grad + jacobian" in t else "–"
        lines.append(f"| {shape} | {t['forward'] * 1e3:,.1f} | {t['grad mse'] * 1e3:,.1f} | "
                     f"{t['grad mse'] / t['forward']:.2f} | {t['grad of'] * 1e3:,.1f} | "
                     f"{t['grad of'] / t['forward']:.2f} | {jac} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    print(f"\nfloat32. Machine: {F.machine()}.")


if __name__ == "__main__":
    main()
