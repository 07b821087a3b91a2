"""The gradient grid (``python benchmarks/grad.py --grid``): rnncli's ``Model.gradients``
beside PyTorch and Keras on benchmarks/forward.py's batch x units grid.

Every contender computes the mse loss of one SimpleRNN, LSTM or GRU layer returning
sequences (every step's output against a target) and its gradients with respect to the
input and every weight, from the same weights (forward.py's torch_rnn and keras_layer map
them gate by gate) and the same input and target:

- rnncli: ``model.gradients(x, y, "mse", jacobian=False)`` (it also returns dL/dh_t);
- torch: the module, ``MSELoss`` and ``torch.autograd.grad`` over the input and the four
  parameters, with ``torch.set_num_threads`` at rnncli's thread count;
- Keras: a ``tf.function`` (one trace for every shape) running the layer and Keras'
  ``MeanSquaredError`` under a ``GradientTape``, then ``tape.gradient`` of the input and
  the cell's kernel, recurrent_kernel and bias.

Before timing, each peer's loss and gradients (torch's mapped back to Keras' layout: a
gated cell's blocks reordered, the kernels transposed, bias_ih + bias_hh as Keras' bias)
must agree with rnncli's: for each array, max |peer - rnncli| <= TOLERANCE x max |rnncli|
(relative to the array's largest value, since a mean over B·T·H outputs makes the
gradients small with the grid's size). A peer that disagrees is reported, not timed.
ONNX Runtime has no backward pass here and is left out.
"""

from __future__ import annotations

import json
import time

import forward as F
import numpy as np
from grad import make_target, model_for

from rnncli.core import workers

GRAD_COST = 3  # a gradient costs about three forward passes (docs/performance.md)
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}
NAMES = ("loss", "grad_input", "kernel", "recurrent_kernel", "bias")
THREADS = workers.threads()  # rnncli's


def grad_steps(cell, B, H):
    """forward.py's timesteps for a third of its target: tens of ms for the slowest."""
    return F.grid_steps(cell, B, H, target=F.TARGET_SECONDS / GRAD_COST)


# ---------------------------------------------------------------- peers
# Each takes (cell, kernel, recurrent_kernel, bias) in Keras' layout and returns
# prepare(x, y) -> (run, result): run() computes the loss and every gradient (what is
# timed), result() returns them as numpy arrays in Keras' layout, by NAMES.


def grad_torch(cell, k, u, b, dtype):
    import torch

    rnn = F.torch_rnn(cell, k, u, b, dtype)
    torch.set_num_threads(THREADS)
    params = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0]
    g, back = F.GATES[cell], list(np.argsort(F.TORCH_ORDER[cell]))
    mse = torch.nn.MSELoss()

    def keras(a):  # torch's gate blocks (rows) -> Keras' (columns)
        return F.blocks(a.numpy().T, back, g)

    def prepare(x, y):
        xt, yt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(y)

        def run():
            loss = mse(rnn(xt)[0], yt)
            return loss, torch.autograd.grad(loss, [xt, *params])

        def result():
            loss, (gx, gk, gu, gb_ih, gb_hh) = run()
            bias = np.stack([keras(gb_ih), keras(gb_hh)]) if b.ndim == 2 else keras(gb_ih)
            return dict(zip(NAMES, [loss.detach().numpy(), gx.numpy(), keras(gk), keras(gu),
                                    bias]))

        return run, result

    return prepare


def grad_keras(cell, k, u, b, dtype):
    import keras
    import tensorflow as tf

    layer = F.keras_layer(cell, k, u, b, dtype)
    weights = [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias]
    dt, D, H = np.dtype(dtype).name, k.shape[0], u.shape[0]
    mse = keras.losses.MeanSquaredError(dtype=dt)  # its default, floatx, is float32

    @tf.function(jit_compile=False, input_signature=[tf.TensorSpec([None, None, D], dt),
                                                     tf.TensorSpec([None, None, H], dt)])
    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = mse(y, layer(x))
        return loss, tape.gradient(loss, [x, *weights])

    def prepare(x, y):
        xt, yt = tf.constant(x), tf.constant(y)

        def run():
            return step(xt, yt)

        def result():
            loss, grads = run()
            return dict(zip(NAMES, [t.numpy() for t in (loss, *grads)]))

        return run, result

    return prepare


PEERS = {"torch": grad_torch, "keras": grad_keras}


# ---------------------------------------------------------------- one point


def setup(cell, H, dtype, peers):
    """rnncli's model, the peers' ``prepare(x, y)``, and notes for peers that can't run."""
    weights = F.make_weights(cell, F.GRID_FEATURES, H, dtype)
    makers, notes = {}, {}
    for name in peers:
        try:
            makers[name] = PEERS[name](cell, *weights, dtype)
        except ImportError:
            notes[name] = "not installed"
        except RuntimeError as e:
            notes[name] = f"failed ({e})"
    return model_for(cell, F.GRID_FEATURES, H, dtype, weights), makers, notes


def disagreement(ours, theirs):
    """(error, name) of the array furthest from rnncli's: max |theirs - ours| over
    max |ours|."""
    errors = []
    for name in NAMES:
        a = np.asarray(ours[name if name in ("loss", "grad_input") else f"grad/rnn/{name}"])
        scale = max(float(np.max(np.abs(a))), np.finfo(a.dtype).tiny)
        errors.append((float(np.max(np.abs(np.asarray(theirs[name]) - a))) / scale, name))
    return max(errors)


def grid_point(cell, B, H, dtype, model, makers, notes, rounds):
    T = grad_steps(cell, B, H)
    x, y = F.make_input(B, T, F.GRID_FEATURES, dtype), make_target(B, T, H, dtype)
    row = {"cell": cell, "shape": (B, T, F.GRID_FEATURES, H), "dtype": np.dtype(dtype).name,
           **notes}
    ours = model.gradients(x, y, "mse", jacobian=False)
    contenders = {"rnncli": lambda: model.gradients(x, y, "mse", jacobian=False),
                  "forward": lambda: model.run(x, trace=False)}
    tol = TOLERANCE[row["dtype"]]
    for name, prepare in makers.items():
        run, result = prepare(x, y)
        error, what = disagreement(ours, result())
        row[f"{name} error"] = error
        if error > tol:
            row[name] = f"disagrees by {error:.1e} ({what})"
            continue
        contenders[name] = run
    row["load"] = F.load()
    row.update(F.interleaved_medians(contenders, rounds=rounds, **F.GRID_TIMING))
    return row


# ---------------------------------------------------------------- the grid


def run_grid(args, peers, cells, dtypes, batches, units):
    conditions = ["loaded"] if args.loaded else ["quiet"] if args.quiet else ["quiet", "loaded"]
    out, raw = [], []
    started = time.perf_counter()
    for condition in conditions:
        busy = F.BusyProcess() if condition == "loaded" else None
        if busy:
            busy.__enter__()
        try:
            for cell in cells:
                for dtype in dtypes:
                    rows, load_start = [], F.load()
                    for H in units:  # the same layers (and Keras' traced step) for every batch
                        model, makers, notes = setup(cell, H, dtype, peers)
                        for B in batches:
                            row = grid_point(cell, B, H, dtype, model, makers, notes,
                                             args.rounds)
                            row["condition"] = condition
                            rows.append(row)
                            raw.append(row)
                            print(json.dumps(F._jsonable(row)), flush=True)
                    out.append((condition, cell, np.dtype(dtype).name, rows, load_start,
                                F.load()))
        finally:
            if busy:
                busy.__exit__(None, None, None)
    return out, raw, time.perf_counter() - started


def grad_over_forward(rows, batches, units):
    """rnncli's gradient time over its forward time, per cell (forward.py's grid_table
    prints ``trace / rnncli``: given grad as "trace" and forward as "rnncli")."""
    as_trace = [{"shape": r["shape"], "trace": r["rnncli"], "rnncli": r["forward"]}
                for r in rows]
    return F.grid_table(as_trace, [], batches, units, "trace")


def grid_report(out, peers, batches, units, elapsed, rounds):
    tol = ", ".join(f"{v:g} {d}" for d, v in TOLERANCE.items())
    lines = [f"Grid: batch (rows) x units (columns), {F.GRID_FEATURES} features, timesteps "
             f"per point from forward.py's grid_steps for a third of its "
             f"{F.TARGET_SECONDS * 1e3:.0f} ms (a gradient costs about three forward passes), "
             f"so the slowest contender's call takes tens of ms (at least {F.MIN_STEPS} "
             f"steps); "
             f"{THREADS} threads for rnncli and torch, {F.THREADS} for Keras; {rounds} rounds. "
             f"Each cell: the worst peer's time / rnncli's for the mse loss and the gradients "
             f"of the input and every weight (above 1: rnncli ahead of every peer), and which "
             f"peer; every peer's arrays within {tol} of rnncli's largest value in each array "
             f"before it is timed. Whole run: {elapsed / 60:.1f} min; load averages (1, 5, 15 "
             f"min) at the start and end of each grid.", ""]
    worst_all = []
    for condition, cell, dtype, rows, l0, l1 in out:
        lines += [f"**{cell} {dtype}, {condition}** (load {l0} -> {l1})", "",
                  F.grid_table(rows, peers, batches, units, "ratio"), ""]
        worst_all += [(w[0], w[1], condition, cell, dtype, r["shape"]) for r in rows
                      if (w := F.worst_peer(r, peers)) is not None]
    lines += ["rnncli's gradient time / its forward time (`model.run(x, trace=False)`), "
              "in the same rounds:", ""]
    for condition, cell, dtype, rows, _, _ in out:
        lines += [f"**{cell} {dtype}, {condition}**", "",
                  grad_over_forward(rows, batches, units), ""]
    if worst_all:
        below = sorted(w for w in worst_all if w[0] < 1)
        lines.append(f"Cells with a peer ahead of rnncli: {len(below)} of {len(worst_all)}." +
                     ("" if not below else " Worst: " + "; ".join(
                         f"{w[0]:.2f}x {w[1]} at {w[5]} {w[3]} {w[4]} {w[2]}"
                         for w in below[:8]) + "."))
    disagree = [f"{p} at {r['shape']} {r['cell']} {r['dtype']} ({r[p]})"
                for _, _, _, rows, _, _ in out for r in rows for p in peers
                if str(r.get(p, "")).startswith("disagrees")]
    if disagree:
        lines.append("Not timed, disagreeing with rnncli: " + "; ".join(disagree) + ".")
    return "\n".join(lines)


def details_table(raw, peers):
    head = ["condition", "cell", "dtype", "shape (B, T, D, H)", "rnncli ms", "forward ms"]
    head += [f"{p} ms" for p in peers] + [f"{p} error" for p in peers] + ["load at start"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in raw:
        cells = [r["condition"], r["cell"], r["dtype"], str(r["shape"]), F.fmt_ms(r["rnncli"]),
                 F.fmt_ms(r["forward"])]
        cells += [F.fmt_ms(r.get(p, "–")) for p in peers]
        cells += [f"{r[f'{p} error']:.1e}" if f"{p} error" in r else "–" for p in peers]
        lines.append("| " + " | ".join(cells + [r.get("load", "")]) + " |")
    return "\n".join(lines)


def main(args):
    peers = [p for p in args.peers.split(",") if p]
    if set(peers) - set(PEERS):
        raise SystemExit(f"grad.py --grid: unknown peer(s) {', '.join(set(peers) - set(PEERS))}; "
                         f"expected some of {', '.join(PEERS)} (ONNX Runtime has no backward "
                         f"pass here)")
    cells = [c for c in args.cells.split(",") if c]
    dtypes = [np.dtype(d).type for d in args.dtype.split(",") if d]
    batches = [int(v) for v in args.batches.split(",")] if args.batches else F.GRID_BATCHES
    units = [int(v) for v in args.units.split(",")] if args.units else F.GRID_UNITS
    rounds = args.rounds = args.rounds or 3
    out, raw, elapsed = run_grid(args, peers, cells, dtypes, batches, units)
    report = "\n".join([
        grid_report(out, peers, batches, units, elapsed, rounds), "",
        f"Machine: {F.machine()}; {F.versions()}.", "",
        "<details><summary>Every time (ms), and each peer's largest difference from rnncli "
        "(relative to the array's largest value)</summary>", "",
        details_table(raw, peers), "", "</details>"])
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([F._jsonable(r) for r in raw], f)
    complete = list(batches) == list(F.GRID_BATCHES) and list(units) == list(F.GRID_UNITS) \
        and not args.loaded and not args.quiet and cells == list(F.CELLS) and \
        set(peers) == set(PEERS)
    if complete:
        F.replace_between(args.output, "grad-grid", report)
