"""rnncli's SimpleRNN forward (and trace) side by side with PyTorch, Keras and ONNX Runtime.

    pip install -e '.[bench]'            # torch, tensorflow-cpu, keras, onnx, onnxruntime
    python benchmarks/forward.py         # writes docs/performance.md
    python benchmarks/forward.py --quick # fewer shapes and repeats, prints only

Every peer runs the same weights on the same input on the CPU with the same thread count;
outputs must agree with rnncli's within 1e-5 (float32) before a time is reported. Times are
medians, in milliseconds, over rounds in which every contender runs in turn (see
interleaved_medians), so that a noisy shared machine slows all of them alike; "ratio" is
peer time / rnncli time (above 1: rnncli is faster). Peers that are not installed are
reported as such.
"""

from __future__ import annotations

import argparse
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

from rnncli.core.simple_rnn import SimpleRNN  # noqa: E402
from rnncli.keras.random import random_weights  # noqa: E402

SHAPES = [(1, 10000, 32, 64), (1, 100000, 8, 16), (8, 2000, 16, 32), (64, 100, 32, 128),
          (1024, 50, 64, 256)]
THREADS = os.cpu_count() or 1


def interleaved_medians(contenders, rounds=5, warmup_seconds=0.1, block_seconds=0.25,
                        max_block=50):
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
            repeat(fn, warmup_seconds)
            repeat(fn, block_seconds, times[name])
    return {name: statistics.median(v) for name, v in times.items()}


# ---------------------------------------------------------------- peers


def peer_torch(k, u, b, x):
    import torch

    torch.set_num_threads(THREADS)
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    rnn = torch.nn.RNN(k.shape[0], k.shape[1], batch_first=True, nonlinearity="tanh").to(dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(k.T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(u.T.copy()))
        rnn.bias_ih_l0.copy_(torch.from_numpy(b))
        rnn.bias_hh_l0.zero_()
    xt = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return rnn(xt)[0]

    return run, lambda: run().numpy()


def peer_keras(k, u, b, x):
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    dtype = "float64" if x.dtype == np.float64 else "float32"
    layer = keras.layers.SimpleRNN(k.shape[1], return_sequences=True, dtype=dtype)
    layer.build((None, None, k.shape[0]))
    layer.set_weights([k, u, b])
    fn = tf.function(lambda t: layer(t), jit_compile=False)
    xt = tf.constant(x)

    def run():
        return fn(xt)

    return run, lambda: run().numpy()


def peer_onnxruntime(k, u, b, x):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if x.dtype != np.float32:
        raise NotImplementedError("ONNX Runtime's CPU RNN kernel is float32 only")
    D, H = k.shape
    W = numpy_helper.from_array(k.T[None].copy(), "W")
    R = numpy_helper.from_array(u.T[None].copy(), "R")
    B = numpy_helper.from_array(np.concatenate([b, np.zeros_like(b)])[None], "B")
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y"], hidden_size=H,
                            activations=["Tanh"])
    graph = helper.make_graph(
        [node], "rnn", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, D])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], [W, R, B])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    del onnx

    xt = np.ascontiguousarray(x.transpose(1, 0, 2))  # its native (seq, batch, input) layout

    def run():
        return sess.run(None, {"X": xt})[0]

    # Y is (seq, num_directions, batch, hidden)
    return run, lambda: run()[:, 0].transpose(1, 0, 2)


PEERS = {"torch": peer_torch, "keras": peer_keras, "onnxruntime": peer_onnxruntime}


# ---------------------------------------------------------------- rnncli


def rnncli_runs(k, u, b, x):
    layer = SimpleRNN("rnn", k, u, b, return_sequences=True)
    return (lambda: layer.run(x).sequence), (lambda: layer.run(x, trace=True))


def sgemm(n=2048):
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    return (lambda: a @ a), 2 * n**3


def bench_shape(shape, dtype, peers, quick, with_sgemm=False):
    B, T, D, H = shape
    k, u, b = random_weights(0, H, D, dtype=dtype)
    b = (np.random.default_rng(1).normal(size=H) * 0.1).astype(dtype)
    x = np.random.default_rng(2).normal(size=(B, T, D)).astype(dtype)
    fwd, trace = rnncli_runs(k, u, b, x)
    reference = fwd()
    row = {"shape": shape, "dtype": np.dtype(dtype).name}
    contenders = {"rnncli": fwd, "trace": trace}
    for name in peers:
        try:
            run, result = PEERS[name](k, u, b, x)
            diff = float(np.max(np.abs(result() - reference)))
            tol = 1e-5 if dtype == np.float32 else 1e-9
            if diff > tol:
                row[name] = f"disagrees by {diff:.1e}"
                continue
            contenders[name] = run
        except ImportError:
            row[name] = "not installed"
        except NotImplementedError as e:
            row[name] = f"n/a ({e})"
    if with_sgemm:
        contenders["sgemm"], row["sgemm_flops"] = sgemm()
    row.update(interleaved_medians(contenders, rounds=2 if quick else 5))
    return row


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
    head = ["shape (B, T, D, H)", "dtype", "rnncli ms", "trace ms", "trace/forward"]
    for p in peers:
        head += [f"{p} ms", f"{p} ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["shape"]), r["dtype"], fmt_ms(r["rnncli"]), fmt_ms(r["trace"]),
                 f"{r['trace'] / r['rnncli']:.2f}"]
        for p in peers:
            cells += [fmt_ms(r[p]), fmt_ratio(r[p], r["rnncli"])]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--shape", action="append", help="B,T,D,H to run instead of the set")
    ap.add_argument("--output", default=os.path.join(ROOT, "docs", "performance.md"))
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    shapes = SHAPES[:3] if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape]
    rows = []
    for dtype in (np.float32, np.float64):
        for shape in shapes:
            row = bench_shape(shape, dtype, peers, args.quick,
                              with_sgemm=shape == SHAPES[-1] and dtype == np.float32)
            rows.append(row)
            print(row, flush=True)
    lines = [table(rows, peers), ""]
    lines.append(f"Machine: {machine()}; {THREADS} threads for every peer.")
    big = [r for r in rows if "sgemm" in r]
    if big:
        r = big[0]
        B, T, D, H = r["shape"]
        gflops = r["sgemm_flops"] / r["sgemm"] / 1e9
        flops = 2 * B * T * (D * H + H * H)
        lines.append(f"Single-precision matrix multiply on this machine, measured in the same "
                     f"rounds: {gflops:.1f} GFLOP/s (numpy, 2048x2048).")
        lines.append(f"{r['shape']} float32: {flops / r['rnncli'] / 1e9:.1f} GFLOP/s "
                     f"= {flops / r['rnncli'] / 1e9 / gflops:.0%} of that.")
    if not args.quick and not args.shape:
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
    if not args.quick and not args.shape:
        with open(args.output) as f:
            text = f.read()
        start, end = "<!-- bench:start -->\n", "\n<!-- bench:end -->"
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        with open(args.output, "w") as f:
            f.write(head + start + report + end + tail)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
