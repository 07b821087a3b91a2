"""rnncli's forward pass (and trace) side by side with PyTorch, Keras and ONNX Runtime:
SimpleRNN, LSTM and GRU.

Two traces are timed: ``trace``, ``layer.run(x, trace=True)``, whose terms are computed
when first read (rnncli/core/replay.py: the scan keeps only its states), and ``trace_all``,
every term written by the loop as it goes (``trace="full"``: what ``rnncli trace`` and
exports of the trace run, since they read every term). Beside them in the grid,
``write``: numpy writing as many numbers as ``trace_all`` keeps into fresh memory
(``np.ones``, one block as the scan's), nothing computed: what writing the trace costs on
its own, in the same rounds.

    pip install -e '.[bench,fast]'       # torch, tensorflow-cpu, keras, onnx, onnxruntime
    python benchmarks/forward.py         # five shapes, three cells: writes docs/performance.md
    python benchmarks/forward.py --quick # fewer shapes and rounds, prints only
    python benchmarks/forward.py --grid  # batch x units grid, quiet and loaded (tens of minutes)
    python benchmarks/forward.py --grid --cells lstm --dtype float32 --loaded

Every peer runs the same weights on the same input on the CPU with the same thread count
(Keras in a ``tf.function``); its output must agree with rnncli's within 1e-5 (float32,
1e-9 float64) before a time is reported. Weights are mapped gate by gate: Keras orders an
LSTM's blocks i, f, c, o and a GRU's z, r, h; torch i, f, g, o and r, z, n (a GRU with
Keras' reset_after=True is torch's GRU, b_ih + b_hh); ONNX i, o, f, c and z, r, h
(linear_before_reset=1). Times are medians, in milliseconds, over rounds in which every
contender runs in turn (see interleaved_medians), so that a noisy shared machine slows all
of them alike; "ratio" is peer time / rnncli time (above 1: rnncli is faster).

``--grid``: batch in {1, 4, 16, 64, 256, 1024} x units in {16, 64, 256, 512}, 32 features,
the number of timesteps chosen per point (calibrated on the slowest contender) so a call
takes tens of milliseconds; run quiet and then with one busy process (a Python
``while True: pass`` at normal priority, started and stopped here): ``--loaded`` runs
only the loaded grid, ``--quiet`` only the quiet one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from rnncli.core import engine  # noqa: E402
from rnncli.core.gru import GRUCell  # noqa: E402
from rnncli.core.lstm import LSTMCell  # noqa: E402
from rnncli.core.rnn import RNN  # noqa: E402
from rnncli.core.simple_rnn import SimpleRNN  # noqa: E402
from rnncli.keras.random import random_weights  # noqa: E402

SHAPES = [(1, 10000, 32, 64), (1, 100000, 8, 16), (8, 2000, 16, 32), (64, 100, 32, 128),
          (1024, 50, 64, 256)]
GRID_BATCHES = (1, 4, 16, 64, 256, 1024)
GRID_UNITS = (16, 64, 256, 512)
GRID_FEATURES = 32
CELLS = ("simple_rnn", "lstm", "gru")
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
# Where each framework puts Keras' gate blocks (Keras: LSTM i f c o, GRU z r h).
TORCH_ORDER = {"simple_rnn": [0], "lstm": [0, 1, 2, 3], "gru": [1, 0, 2]}  # i f g o; r z n
ONNX_ORDER = {"simple_rnn": [0], "lstm": [0, 3, 1, 2], "gru": [0, 1, 2]}  # i o f c; z r h
THREADS = os.cpu_count() or 1


def settled(others=0, limit=0.5):
    """Wait (at most ``limit`` s) until no more than ``others`` tasks besides this one are
    runnable, two counts of /proc/loadavg in a row: the last contender's threads may spin
    after it returns (ONNX Runtime's for about 50 ms here), taking a core from whoever runs
    next. On systems without that file, return at once."""
    from rnncli.core.workers import runnable_now

    end, calm = time.perf_counter() + limit, 0
    while time.perf_counter() < end and calm < 2:
        count = runnable_now()
        if count is None:
            return
        calm = calm + 1 if count <= others else 0
        time.sleep(0.002)


def interleaved_medians(contenders, rounds=5, warmup_seconds=0.1, block_seconds=0.25,
                        max_block=50, settle=None):
    """Median time of each contender, measured in rounds: every round runs each one in turn,
    first untimed for ``warmup_seconds`` (at least once: this also outlasts the previous
    contender's threads spinning before they sleep, and settles caches and the allocator),
    then timed for ``block_seconds`` (at least once). On a shared, noisy machine all of
    them see the same conditions, so the ratios hold even when absolute times drift."""
    times = {name: [] for name in contenders}

    def repeat(fn, seconds, record=None):
        start = time.perf_counter()
        for _ in range(max_block):
            t0 = time.perf_counter()
            fn()
            if record is not None:
                record.append(time.perf_counter() - t0)
            if time.perf_counter() - start >= seconds:
                break

    for _ in range(rounds):
        for name, fn in contenders.items():
            if settle is not None:
                settle()
            repeat(fn, warmup_seconds)
            repeat(fn, block_seconds, times[name])
    return {name: statistics.median(v) for name, v in times.items()}


def blocks(a, order, gates):
    """``a``'s last axis, cut into ``gates`` blocks, in ``order``."""
    parts = np.split(a, gates, axis=-1)
    return np.concatenate([parts[i] for i in order], axis=-1)


# ---------------------------------------------------------------- peers
# Each takes (cell, kernel, recurrent_kernel, bias) in Keras' layout and returns
# call(x) -> output (B, T, H) as a numpy array, and a function that runs it without
# converting (what is timed).


def torch_rnn(cell, k, u, b, dtype):
    """``torch.nn.RNN``/``LSTM``/``GRU`` (batch_first) holding Keras-layout weights, mapped
    gate by gate (a bias of shape (2, g·H) is GRU's input and recurrent bias)."""
    import torch

    torch.set_num_threads(THREADS)
    g, order = GATES[cell], TORCH_ORDER[cell]
    D, H = k.shape[0], u.shape[0]
    cls = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    rnn = cls(D, H, batch_first=True).to(tdtype)
    b_ih, b_hh = (b[0], b[1]) if b.ndim == 2 else (b, np.zeros_like(b))
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(blocks(k, order, g).T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(blocks(u, order, g).T.copy()))
        rnn.bias_ih_l0.copy_(torch.from_numpy(blocks(b_ih, order, g)))
        rnn.bias_hh_l0.copy_(torch.from_numpy(blocks(b_hh, order, g)))
    return rnn


def peer_torch(cell, k, u, b, dtype):
    import torch

    rnn = torch_rnn(cell, k, u, b, dtype)

    def prepare(x):
        xt = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                return rnn(xt)[0]

        return run, lambda: run().numpy()

    return prepare


def keras_layer(cell, k, u, b, dtype):
    """A built Keras SimpleRNN/LSTM/GRU returning sequences, holding these weights; TF set
    to THREADS threads (once: TF takes it only before its first op)."""
    import keras
    import tensorflow as tf

    if not getattr(keras_layer, "configured", False):
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(THREADS)
        keras_layer.configured = True
    dt = "float64" if dtype == np.float64 else "float32"
    cls = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM,
           "gru": keras.layers.GRU}[cell]
    H, D = u.shape[0], k.shape[0]
    layer = cls(H, return_sequences=True, dtype=dt)
    layer.build((None, None, D))
    layer.set_weights([k, u, b])
    return layer


def peer_keras(cell, k, u, b, dtype):
    import tensorflow as tf

    layer = keras_layer(cell, k, u, b, dtype)
    dt, D = ("float64" if dtype == np.float64 else "float32"), k.shape[0]
    # one trace for every batch and length
    fn = tf.function(lambda t: layer(t), jit_compile=False,
                     input_signature=[tf.TensorSpec([None, None, D], dt)])

    def prepare(x):
        xt = tf.constant(x)

        def run():
            return fn(xt)

        return run, lambda: run().numpy()

    return prepare


def peer_onnxruntime(cell, k, u, b, dtype):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if dtype != np.float32:  # RNN and GRU load, LSTM says so only when run
        raise NotImplementedError("ONNX Runtime's CPU RNN, LSTM and GRU are float32 only")
    g, order = GATES[cell], ONNX_ORDER[cell]
    D, H = k.shape[0], u.shape[0]
    b_x, b_h = (b[0], b[1]) if b.ndim == 2 else (b, np.zeros_like(b))
    W = numpy_helper.from_array(blocks(k, order, g).T[None].copy(), "W")
    R = numpy_helper.from_array(blocks(u, order, g).T[None].copy(), "R")
    B = numpy_helper.from_array(
        np.concatenate([blocks(b_x, order, g), blocks(b_h, order, g)])[None], "B")
    op = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]
    attrs = {"hidden_size": H}
    if cell == "simple_rnn":
        attrs["activations"] = ["Tanh"]
    if cell == "gru":
        attrs["linear_before_reset"] = 1  # Keras' reset_after=True
    node = helper.make_node(op, ["X", "W", "R", "B"], ["Y"], **attrs)
    elem = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "rnn", [helper.make_tensor_value_info("X", elem, [None, None, D])],
        [helper.make_tensor_value_info("Y", elem, None)], [W, R, B])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])

    def prepare(x):
        xt = np.ascontiguousarray(x.transpose(1, 0, 2))  # its native (seq, batch, input) layout

        def run():
            return sess.run(None, {"X": xt})[0]

        # Y is (seq, num_directions, batch, hidden)
        return run, lambda: run()[:, 0].transpose(1, 0, 2)

    return prepare


PEERS = {"torch": peer_torch, "keras": peer_keras, "onnxruntime": peer_onnxruntime}


# ---------------------------------------------------------------- rnncli


def make_weights(cell, D, H, dtype):
    """Keras-layout weights, with a random bias (zeros would hide a bias mapped wrongly)."""
    g = GATES[cell]
    k, u, _ = random_weights(0, H, D, dtype=dtype, gates=g)
    shape = (2, g * H) if cell == "gru" else (g * H,)
    b = (np.random.default_rng(1).normal(size=shape) * 0.1).astype(dtype)
    return k, u, b


def rnncli_layer(cell, k, u, b):
    if cell == "simple_rnn":
        return SimpleRNN("rnn", k, u, b, return_sequences=True)
    cls = LSTMCell if cell == "lstm" else GRUCell
    return RNN("rnn", cls(k, u, b), return_sequences=True)


def rnncli_prepare(layer):
    def prepare(x):
        return (lambda: layer.run(x).sequences["h"]), (lambda: layer.run(x, trace=True)), \
            (lambda: layer.run(x, trace="full"))

    def numbers(x):
        """How many numbers ``trace="full"`` keeps: x·W and every term, and the states."""
        cell = layer.cell
        width = sum(cell.term_width(n) for n in ("xw", *cell.terms))
        return x.shape[0] * x.shape[1] * (width + cell.units * len(cell.state_names))

    def plan(x):
        """What rnncli's engine chooses for x now: loop, threads (blas: compiled h·U)."""
        how = engine.plan(layer.cell, x.shape[0], x.shape[1], None, None)
        kind = "numpy" if how.compiled is None else "numba"
        return f"{kind}:{how.threads}"

    prepare.plan, prepare.numbers = plan, numbers
    return prepare


def sgemm(n=2048):
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    return (lambda: a @ a), 2 * n**3


def flops(cell, B, T, D, H):
    return 2 * B * T * GATES[cell] * H * (D + H)


def needed_flops(cell, B, T, D, H):
    """The multiply-adds a scan from a zero state needs: the first step's h·U is zero
    (rnncli skips it; a peer that computes it does work the answer doesn't need). The
    rates against sgemm count these."""
    return 2 * B * GATES[cell] * H * (T * D + max(T - 1, 0) * H)


def make_input(B, T, D, dtype):
    return np.random.default_rng(2).normal(size=(B, T, D)).astype(dtype)


def setup(cell, D, H, dtype, peers):
    """rnncli's and the peers' ``prepare(x)`` functions, and notes for peers that can't run."""
    k, u, b = make_weights(cell, D, H, dtype)
    makers, notes = {"rnncli": rnncli_prepare(rnncli_layer(cell, k, u, b))}, {}
    for name in peers:
        try:
            makers[name] = PEERS[name](cell, k, u, b, dtype)
        except ImportError:
            notes[name] = "not installed"
        except NotImplementedError as e:
            notes[name] = f"n/a ({e})"
        except RuntimeError as e:
            notes[name] = f"failed ({e})"
    return makers, notes


def contenders_for(makers, notes, x):
    """{name: fn} to time, after checking every peer's output against rnncli's."""
    notes["plan"] = makers["rnncli"].plan(x)
    fwd, trace, trace_all = makers["rnncli"](x)
    reference = fwd()
    contenders = {"rnncli": fwd, "trace": trace, "trace_all": trace_all}
    tol = 1e-5 if x.dtype == np.float32 else 1e-9
    for name, prepare in makers.items():
        if name == "rnncli" or name in notes:
            continue
        run, result = prepare(x)
        diff = float(np.max(np.abs(result() - reference)))
        if diff > tol:
            notes[name] = f"disagrees by {diff:.1e}"
            continue
        contenders[name] = run
    return contenders


def bench_point(cell, shape, dtype, peers, rounds, with_sgemm=False, timing=None):
    B, T, D, H = shape
    makers, notes = setup(cell, D, H, dtype, peers)
    contenders = contenders_for(makers, notes, make_input(B, T, D, dtype))
    row = {"cell": cell, "shape": shape, "dtype": np.dtype(dtype).name, **notes}
    if with_sgemm:
        contenders["sgemm"], row["sgemm_flops"] = sgemm()
    row.update(interleaved_medians(contenders, rounds=rounds, **(timing or {})))
    return row


# ---------------------------------------------------------------- the grid

# warmup: ONNX Runtime's threads spin for about 50 ms after a call here, a core taken from
# whoever runs next (rnncli then gives its scan fewer threads: workers.idle_cores).
# max_block: calls of 0.1-1 ms are timed for 0.1 s a round too, not 20 calls (2-20 ms, less
# than a scheduler's time slice): LSTM (4, 1000, 32, 16) quiet, 8 runs of 5 rounds, ONNX
# Runtime's time over rnncli's 0.77-1.00 with 20, 1.03-1.06 with 200 (session 12)
GRID_TIMING = {"warmup_seconds": 0.08, "block_seconds": 0.1, "max_block": 200}
TARGET_SECONDS = 0.04  # a call of the slowest contender, roughly
STEP_SECONDS, PEER_FLOPS = 30e-6, 30e9  # the slowest peer's cost per step and its rate
MIN_STEPS, MAX_STEPS = 2, 100_000


def nice(n):
    """n rounded down to 1, 2 or 5 x a power of ten (reruns land on the same lengths)."""
    if n < 1:
        return 0
    p = 10 ** int(math.floor(math.log10(n)))
    return max(d * p for d in (1, 2, 5) if d * p <= n)


def grid_steps(cell, B, H, D=GRID_FEATURES, target=TARGET_SECONDS):
    """Timesteps for a grid point: about ``target`` seconds of the slowest peer, modelled as
    STEP_SECONDS a step (Keras' while loop, at batch 1) plus its multiply-adds at
    PEER_FLOPS. A formula, not a measurement, so that every run has the same shapes."""
    step = STEP_SECONDS + flops(cell, B, 1, D, H) / PEER_FLOPS
    return int(min(MAX_STEPS, max(MIN_STEPS, nice(target / step))))


def grid_point(cell, B, H, dtype, makers, notes, rounds, with_sgemm=False, busy=0):
    T = grid_steps(cell, B, H)
    notes = dict(notes)
    x = make_input(B, T, GRID_FEATURES, dtype)
    contenders = contenders_for(makers, notes, x)
    count = makers["rnncli"].numbers(x)  # trace_all's, written alone
    contenders["write"] = lambda: np.ones(count, dtype)
    row = {"cell": cell, "shape": (B, T, GRID_FEATURES, H), "dtype": np.dtype(dtype).name,
           **notes}
    if with_sgemm:
        contenders["sgemm"], row["sgemm_flops"] = sgemm()
    row["load"] = load()
    row.update(interleaved_medians(contenders, rounds=rounds, settle=lambda: settled(busy),
                                   **GRID_TIMING))
    return row


class BusyProcess:
    """One ``while True: pass`` Python process at normal priority, for the loaded grid."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let it get going
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()


def load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def worst_peer(row, peers):
    """(ratio, peer) of the peer closest to (or ahead of) rnncli, or None."""
    ratios = [(row[p] / row["rnncli"], p) for p in peers if isinstance(row.get(p), float)]
    return min(ratios) if ratios else None


def grid_table(rows, peers, batches, units, what):
    """Rows batch, columns units: the worst peer's ratio (``what="ratio"``), a trace's
    time over forward's (``what="trace"`` or ``"trace_all"``), or trace_all's over
    forward's plus writing its numbers alone (``"trace_all/floor"``)."""
    by = {(r["shape"][0], r["shape"][3]): r for r in rows}
    head = "| batch \\ units | " + " | ".join(str(h) for h in units) + " |"
    lines = [head, "|---|" + "---|" * len(units)]
    for B in batches:
        cells = []
        for H in units:
            r = by.get((B, H))
            if r is None:
                cells.append("")
            elif what == "trace_all/floor":
                cells.append(f"{over_floor(r):.2f}" if "write" in r else "")
            elif what.startswith("trace"):
                cells.append(f"{r[what] / r['rnncli']:.2f}" if what in r else "")
            else:
                w = worst_peer(r, peers)
                cells.append("–" if w is None else f"{w[0]:.2f} {w[1]}")
        lines.append(f"| {B} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def over_floor(r):
    """trace_all's time over forward's plus that of writing its numbers alone: 1 where
    the loop's writes cost no more than numpy's fill of fresh memory and nothing overlaps,
    below 1 where they overlap the arithmetic."""
    return r["trace_all"] / (r["rnncli"] + r["write"])


PEER_ABBREV = {"torch": "torch", "keras": "keras", "onnxruntime": "ort"}
TRACE_GRIDS = [("trace", "trace (terms computed when read) / forward"),
               ("trace_all", "trace with every term written by the loop / forward"),
               ("trace_all/floor", "trace with every term written by the loop / (forward + "
                                   "writing its numbers alone, `write`)")]


def run_grid(args, peers, cells, dtypes):
    conditions = ["loaded"] if args.loaded else ["quiet"] if args.quiet else ["quiet", "loaded"]
    batches = [int(v) for v in args.batches.split(",")] if args.batches else GRID_BATCHES
    units = [int(v) for v in args.units.split(",")] if args.units else GRID_UNITS
    out, raw = [], []
    started = time.perf_counter()
    for condition in conditions:
        busy = BusyProcess() if condition == "loaded" else None
        if busy:
            busy.__enter__()
        try:
            for cell in cells:
                for dtype in dtypes:
                    rows = []
                    load_start = load()
                    for H in units:  # the same layers (and Keras' traced function) for
                        makers, notes = setup(cell, GRID_FEATURES, H, dtype, peers)
                        for B in batches:  # every batch
                            big = B == max(batches) and H == max(units) and dtype == np.float32
                            row = grid_point(cell, B, H, dtype, makers, notes, args.rounds, big,
                                             busy=1 if busy else 0)
                            row["condition"] = condition
                            rows.append(row)
                            raw.append(row)
                            print(json.dumps(_jsonable(row)), flush=True)
                    out.append((condition, cell, np.dtype(dtype).name, rows, load_start, load()))
        finally:
            if busy:
                busy.__exit__(None, None, None)
    elapsed = time.perf_counter() - started
    return out, raw, batches, units, elapsed


def _jsonable(row):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}


def grid_report(out, peers, batches, units, elapsed, rounds):
    abbrev = [PEER_ABBREV.get(p, p) for p in peers]
    lines = [f"Grid: batch (rows) x units (columns), {GRID_FEATURES} features, timesteps per "
             f"point chosen so the slowest contender's call takes roughly "
             f"{TARGET_SECONDS * 1e3:.0f} ms (grid_steps: at least {MIN_STEPS}); {THREADS} "
             f"threads for every peer; {rounds} rounds. Each cell: the "
             f"worst peer's time / rnncli's (above 1: rnncli ahead of every peer) and which "
             f"peer ({', '.join(f'{a}: {p}' for a, p in zip(abbrev, peers) if a != p)}). "
             f"Whole run: {elapsed / 60:.1f} min; load averages (1, 5, 15 min) at the start and "
             f"end of each grid.", ""]
    worst_all = []
    for condition, cell, dtype, rows, l0, l1 in out:
        tbl = grid_table(rows, peers, batches, units, "ratio")
        for p, a in PEER_ABBREV.items():
            tbl = tbl.replace(f" {p} |", f" {a} |")
        lines += [f"**{cell} {dtype}, {condition}** (load {l0} -> {l1})", "", tbl, ""]
        ws = [worst_peer(r, peers) for r in rows]
        worst_all += [(w[0], w[1], condition, cell, dtype, r["shape"]) for w, r in
                      zip(ws, rows) if w is not None]
    for what, title in TRACE_GRIDS:
        lines += [f"{title} on the same grids:", ""]
        for condition, cell, dtype, rows, _, _ in out:
            lines += [f"**{cell} {dtype}, {condition}**", "",
                      grid_table(rows, peers, batches, units, what), ""]
    if worst_all:
        below = sorted(w for w in worst_all if w[0] < 1)
        lines.append(f"Cells with a peer ahead of rnncli: {len(below)} of {len(worst_all)}." +
                     ("" if not below else " Worst: " + "; ".join(
                         f"{w[0]:.2f}x {w[1]} at {w[5]} {w[3]} {w[4]} {w[2]}"
                         for w in below[:8]) + "."))
    for what, title in TRACE_GRIDS[:2]:
        traces = [(r[what] / r["rnncli"], cell, dtype, condition, r["shape"])
                  for condition, cell, dtype, rows, _, _ in out for r in rows if what in r]
        if traces:
            t, over = max(traces), sum(1 for v in traces if v[0] > 2)
            lines.append(f"{title}: above 2 in {over} of {len(traces)} cells; "
                         f"largest {t[0]:.2f} at {t[4]} {t[1]} {t[2]} {t[3]}.")
    lines += floor_summary([r for *_, rows, _, _ in out for r in rows])
    for condition, cell, _, rows, _, _ in out:
        for r in rows:
            if "sgemm" in r:
                B, T, D, H = r["shape"]
                gf = r["sgemm_flops"] / r["sgemm"] / 1e9
                ours = needed_flops(cell, B, T, D, H) / r["rnncli"] / 1e9
                lines.append(f"{cell} {r['shape']} float32 {condition}: {ours:.1f} GFLOP/s, "
                             f"{ours / gf:.0%} of numpy's sgemm (2048x2048: {gf:.1f} GFLOP/s) "
                             f"in the same rounds.")
    return "\n".join(lines)


def floor_summary(rows):
    """What writing the numbers alone says of the cells where trace_all is above 2x
    forward: in how many it takes more than forward (2x would need the loop's writes to
    overlap its arithmetic) or more than 2x forward (then 2x can't be met by writing
    them into fresh memory), and trace_all over forward plus it."""
    rows = [r for r in rows if "write" in r and "trace_all" in r]
    above = [r for r in rows if r["trace_all"] / r["rnncli"] > 2]
    if not rows:
        return []
    floors = sorted((over_floor(r), r["cell"], r["dtype"], r["condition"], r["shape"])
                    for r in rows)
    worst = floors[-1]
    return [f"Writing trace_all's numbers alone (`write`: np.ones of as many, fresh memory) "
            f"took longer than forward in {sum(r['write'] > r['rnncli'] for r in above)} "
            f"and longer than 2x forward in {sum(r['write'] > 2 * r['rnncli'] for r in above)}"
            f" of the {len(above)} cells where trace_all is above 2x forward. trace_all / "
            f"(forward + write): median {statistics.median(f[0] for f in floors):.2f}, above "
            f"1.25 in {sum(f[0] > 1.25 for f in floors)} of {len(floors)} cells, largest "
            f"{worst[0]:.2f} at {worst[4]} {worst[1]} {worst[2]} {worst[3]}."]


def details_table(raw, peers):
    head = ["condition", "cell", "dtype", "shape (B, T, D, H)", "rnncli's loop", "rnncli ms",
            "trace ms", "trace_all ms", "write ms"]
    head += [f"{p} ms" for p in peers] + ["load at start"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in raw:
        cells = [r["condition"], r["cell"], r["dtype"], str(r["shape"]), r.get("plan", ""),
                 fmt_ms(r["rnncli"]), fmt_ms(r["trace"]), fmt_ms(r.get("trace_all", "–")),
                 fmt_ms(r.get("write", "–"))]
        cells += [fmt_ms(r.get(p, "–")) for p in peers] + [r.get("load", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- report


def process_latency(args, runs=11):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rnncli", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    out = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "rnncli", *args],
                         capture_output=True, text=True)
    rss_kb = int(out.stderr.strip().splitlines()[-1]) if out.returncode == 0 else None
    return statistics.median(times), rss_kb


def fmt_ms(v):
    return f"{v * 1e3:,.1f}" if isinstance(v, float) else v


def fmt_ratio(peer, ours):
    return f"{peer / ours:.2f}x" if isinstance(peer, float) else "–"


def table(rows, peers):
    head = ["cell", "shape (B, T, D, H)", "dtype", "rnncli ms", "trace ms", "trace/forward",
            "trace_all ms", "trace_all/forward"]
    for p in peers:
        head += [f"{p} ms", f"{p} ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["cell"], str(r["shape"]), r["dtype"], fmt_ms(r["rnncli"]), fmt_ms(r["trace"]),
                 f"{r['trace'] / r['rnncli']:.2f}", fmt_ms(r.get("trace_all", "–")),
                 f"{r['trace_all'] / r['rnncli']:.2f}" if "trace_all" in r else "–"]
        for p in peers:
            cells += [fmt_ms(r.get(p, "–")), fmt_ratio(r.get(p), r["rnncli"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def versions():
    found = []
    for mod in ("torch", "tensorflow", "keras", "onnxruntime", "numba"):
        try:
            found.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    return ", ".join(found)


def replace_between(path, marker, report):
    with open(path) as f:
        text = f.read()
    start, end = f"<!-- {marker}:start -->\n", f"\n<!-- {marker}:end -->"
    if start not in text:
        text = text.rstrip("\n") + f"\n\n{start}{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    with open(path, "w") as f:
        f.write(head + start + report + end + tail)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--cells", default=",".join(CELLS), help="simple_rnn,lstm,gru")
    ap.add_argument("--dtype", default="float32,float64")
    ap.add_argument("--shape", action="append", help="B,T,D,H to run instead of the set")
    ap.add_argument("--grid", action="store_true", help="the batch x units grid")
    ap.add_argument("--loaded", action="store_true", help="grid: only with a busy process")
    ap.add_argument("--quiet", action="store_true", help="grid: only without one")
    ap.add_argument("--batches", help="grid: batches to run (default 1,4,16,64,256,1024)")
    ap.add_argument("--units", help="grid: units to run (default 16,64,256,512)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--json", help="also write every measurement here")
    ap.add_argument("--output", default=os.path.join(ROOT, "docs", "performance.md"))
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    cells = [c for c in args.cells.split(",") if c]
    dtypes = [np.dtype(d).type for d in args.dtype.split(",") if d]
    head = f"Machine: {machine()}; {versions()}."
    if args.grid:
        # 5: at 3, cells within a few % of a peer flipped from run to run (session 10's
        # grid against a 9-round rerun of LSTM's 256-512 units)
        args.rounds = args.rounds or 5
        out, raw, batches, units, elapsed = run_grid(args, peers, cells, dtypes)
        report = "\n".join([grid_report(out, peers, batches, units, elapsed, args.rounds), "",
                            head, "",
                            "<details><summary>Every time (ms)</summary>", "",
                            details_table(raw, peers), "", "</details>"])
        print(report)
        if args.json:
            with open(args.json, "w") as f:
                json.dump([_jsonable(r) for r in raw], f)
        complete = list(batches) == list(GRID_BATCHES) and list(units) == list(GRID_UNITS) and \
            not args.loaded and not args.quiet and cells == list(CELLS) and len(dtypes) == 2
        if complete:
            replace_between(args.output, "grid", report)
        return
    rounds = args.rounds or (2 if args.quick else 5)
    shapes = SHAPES[:3] if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape]
    rows = []
    load_start = load()
    for cell in cells:
        for dtype in dtypes:
            for shape in shapes:
                row = bench_point(cell, shape, dtype, peers, rounds,
                                  with_sgemm=shape == SHAPES[-1] and dtype == np.float32)
                rows.append(row)
                print(json.dumps(_jsonable(row)), flush=True)
    lines = [table(rows, peers), ""]
    lines.append(f"{head} {THREADS} threads for every peer. Load average (1, 5, 15 min): "
                 f"{load_start} at the start, {load()} at the end.")
    for r in rows:
        if "sgemm" in r:
            B, T, D, H = r["shape"]
            gf = r["sgemm_flops"] / r["sgemm"] / 1e9
            ours = needed_flops(r["cell"], B, T, D, H) / r["rnncli"] / 1e9
            lines.append(f"{r['cell']} {r['shape']} float32: {ours:.1f} GFLOP/s = "
                         f"{ours / gf:.0%} of numpy's sgemm (2048x2048: {gf:.1f} GFLOP/s) "
                         f"measured in the same rounds.  ")
    full = not args.quick and not args.shape and cells == list(CELLS) and len(dtypes) == 2
    if full:
        sample = [os.path.join(ROOT, "sample_weights", "seed000_two_units.keras"), "-i",
                  os.path.join(ROOT, "sample_weights", "seed000_input.csv")]
        t_help, rss_help = process_latency(["--help"])
        t_fwd, rss_fwd = process_latency(["forward", *sample])
        lines += ["", "| whole process | median s | peak RSS MB |", "|---|---|---|",
                  f"| `rnncli --help` | {t_help:.3f} | {rss_help / 1024:.0f} |",
                  f"| `rnncli forward` on the two-unit sample | {t_fwd:.3f} | "
                  f"{rss_fwd / 1024:.0f} |"]
    report = "\n".join(lines)
    print(report)
    if full:
        replace_between(args.output, "bench", report)


if __name__ == "__main__":
    main()
