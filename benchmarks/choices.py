"""The evidence for rnncli's engine choices: each loop rnncli has, timed against the others.

    python benchmarks/choices.py                  # the grid of forward.py --grid, quiet
    python benchmarks/choices.py --loaded         # with one busy process beside it
    python benchmarks/choices.py --cells lstm --dtype float32 --batches 1,4 --units 64

For every point of the grid (batch x units, 32 features) it times, interleaved in rounds
(benchmarks/forward.py's interleaved_medians), the numpy loop and the compiled (numba)
loop, each in one thread and in row blocks on every core, and ``auto`` (what the engine
chooses), and prints each one's time over the best's. rnncli/core/engine.py's plan() and
rnncli/core/fast.py's worth_it() are set from these tables (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import forward as F  # noqa: E402

from rnncli.core import engine as E  # noqa: E402

OPTIONS = {"numpy:1": ("numpy", 1), "numpy:N": ("numpy", None), "numba:1": ("numba", 1),
           "numba:N": ("numba", None), "auto": ("auto", 0)}


def steps(cell, B, H, D=32, target=0.02):
    """Timesteps for about ``target`` seconds of rnncli: a few us a step plus the flops."""
    flops = 2 * B * F.GATES[cell] * H * (H + D)
    return int(min(20_000, max(2, F.nice(target / (3e-6 + flops / 15e9)))))


def runner(layer, x, kind, threads):
    cores = E.threads()
    engine = E.Engine(kind) if threads == 0 else \
        E.Engine(kind, threads=threads or max(2, cores))
    return lambda: layer.run(x, engine=engine)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="simple_rnn,lstm,gru")
    ap.add_argument("--dtype", default="float32,float64")
    ap.add_argument("--batches", default=",".join(map(str, F.GRID_BATCHES)))
    ap.add_argument("--units", default=",".join(map(str, F.GRID_UNITS)))
    ap.add_argument("--loaded", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--options", default=",".join(OPTIONS), help="which of " + ", ".join(OPTIONS))
    args = ap.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.loaded else None
    try:
        print(f"load {F.load()}; {'loaded' if busy else 'quiet'}; cores {E.threads()}")
        for cell in args.cells.split(","):
            for dtype in args.dtype.split(","):
                dt = np.dtype(dtype).type
                for B in map(int, args.batches.split(",")):
                    for H in map(int, args.units.split(",")):
                        measure(cell, dt, B, H, args.rounds, args.options.split(","))
        print(f"load {F.load()}")
    finally:
        if busy:
            busy.terminate()
            busy.wait()


def measure(cell, dt, B, H, rounds, options=tuple(OPTIONS)):
    D = 32
    T = steps(cell, B, H)
    k, u, b = F.make_weights(cell, D, H, dt)
    layer = F.rnncli_layer(cell, k, u, b)
    x = F.make_input(B, T, D, dt)
    fns = {name: runner(layer, x, *OPTIONS[name]) for name in options}
    for fn in fns.values():
        fn()
    t0 = time.perf_counter()
    ms = F.interleaved_medians(fns, rounds=rounds, warmup_seconds=0.03, block_seconds=0.08,
                               max_block=10)
    best = min(ms.values())
    winner = min(ms, key=ms.get)
    how = E.plan(layer.cell, B, T, None, None)
    chose = ("numba" if how.compiled else "numpy") + f":{how.threads}"
    print(f"{cell:10s} {np.dtype(dt).name} B={B:<5d} H={H:<4d} T={T:<6d} " +
          " ".join(f"{k} {v / best:5.2f}" for k, v in ms.items()) +
          f"  best {winner} {best * 1e3:.2f} ms; auto chose {chose}"
          f" ({time.perf_counter() - t0:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
