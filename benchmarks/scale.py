"""Throughput and memory of ``rnncli export -o NAME.zarr`` with 1 and 2 Dask workers.

    pip install -e '.[dask]'
    python benchmarks/scale.py               # the numbers in docs/scale.md (a few minutes)
    python benchmarks/scale.py --quick       # a smaller input, one run each

A random SimpleRNN (64 units) runs on N random sequences of 100 steps x 32 features read
from a memory-mapped .npy; ``--what hidden,state`` is exported (the issue's "hidden
states for millions of sequences"). Each configuration runs ``--repeats`` times and the
median is reported, every configuration running once per round; a LocalCluster
(127.0.0.1, one thread and one BLAS thread per worker) is started once per worker count,
warmed up with a tiny export (a fresh worker's first task imports rnncli, zarr, ...), and
its start-up time is reported apart. CPU seconds are those of the processes doing the
work (the workers, or this process), which a busy shared machine inflates less than
wall time. Peak RSS is
sampled every 20 ms from each worker process (psutil) and is the largest seen in any run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import rnncli  # noqa: E402
from rnncli.dask import export_zarr  # noqa: E402
from rnncli.io.export import export_results  # noqa: E402
from rnncli.io.zarr_export import local_cluster  # noqa: E402

MB = 1e6


class PeakRSS:
    """The largest RSS of each of ``pids`` while inside, sampled every 20 ms."""

    def __init__(self, pids):
        import psutil

        self.procs = {p: psutil.Process(p) for p in pids}
        self.peak = dict.fromkeys(pids, 0)
        self.stop = threading.Event()

    def _sample(self):
        while not self.stop.is_set():
            for pid, proc in self.procs.items():
                try:
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
                except Exception:  # a worker restarting
                    pass
            self.stop.wait(0.02)

    def _cpu(self):
        total = 0.0
        for proc in self.procs.values():
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except Exception:
                pass
        return total

    def __enter__(self):
        self.cpu0 = self._cpu()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.cpu = self._cpu() - self.cpu0  # CPU seconds these processes used inside


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def make_input(folder, n, T, D):
    src = os.path.join(folder, f"x{n}.npy")
    x = np.lib.format.open_memmap(src, "w+", np.float32, (n, T, D))
    rng = np.random.default_rng(0)
    for i in range(0, n, 2000):
        x[i:i + 2000] = rng.standard_normal((min(2000, n - i), T, D), np.float32)
    x.flush()
    return src


def child(config, src, target, chunk):
    """Run one local export in a fresh process; (seconds, peak RSS, CPU seconds) of it."""
    out = subprocess.run([sys.executable, __file__, "--child", config, src, target,
                          str(chunk or 0)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_main(config, src, target, chunk):
    import resource

    import dask.array  # noqa: F401  imported before timing, as warm workers have them
    import zarr  # noqa: F401

    model = rnncli.random_model(0, 64, 32)
    t0, c0 = time.perf_counter(), time.process_time()
    if config == "npz":
        export_results(model, np.load(src, mmap_mode="r"), target + ".npz", "npz",
                       what="hidden,state")
    else:
        export_zarr(model, src, target, what="hidden,state", batch_chunk=int(chunk) or None,
                    progress=False)
    print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def once(run, pids, folder):
    """(seconds, {pid: peak RSS}, bytes on disk, CPU seconds) of one run writing to a fresh
    target."""
    target = os.path.join(folder, "out.zarr")
    if pids is None:  # a child process measured itself
        r = run(target)
        seconds, peak, cpu = r["seconds"], {0: r["rss"]}, r["cpu"]
    else:
        with PeakRSS(pids) as mem:
            t0 = time.perf_counter()
            run(target)
            seconds = time.perf_counter() - t0
        peak, cpu = mem.peak, mem.cpu
    written = target if os.path.exists(target) else target + ".npz"
    disk = du(written) if os.path.isdir(written) else os.path.getsize(written)
    shutil.rmtree(target, ignore_errors=True)
    if os.path.exists(target + ".npz"):
        os.unlink(target + ".npz")
    return seconds, peak, disk, cpu


def summarize(label, times, peaks, disk, cpus, n, in_bytes, out_bytes, extra=None):
    t = statistics.median(times)
    cpu = statistics.median(cpus)
    row = {"config": label, "median_s": round(t, 2), "runs_s": [round(x, 2) for x in times],
           "seq_per_s": round(n / t), "cpu_s": round(cpu, 2),
           "seq_per_cpu_s": round(n / cpu), "in_MB_per_s": round(in_bytes / t / MB),
           "out_MB_per_s": round(out_bytes / t / MB),
           "peak_rss_MB": sorted(round(p / MB) for p in peaks.values()),
           "disk_MB": round(disk / MB), **(extra or {})}
    print(json.dumps(row), flush=True)
    return row


def start_cluster(workers):
    from distributed import Client

    t0 = time.perf_counter()
    cluster = local_cluster(workers)
    client = Client(cluster)
    return cluster, client, time.perf_counter() - t0


def throughput(args, model, folder, n, repeats):
    """Every configuration once per round, rounds repeated: a busy shared machine slows
    them alike, and the medians compare."""
    T, D, H = 100, 32, 64
    src = make_input(folder, n, T, D)
    in_bytes, out_bytes = n * T * D * 4, n * (T + 1) * H * 4
    print(json.dumps({"n": n, "T": T, "D": D, "units": H, "input_MB": in_bytes / MB,
                      "output_MB": out_bytes / MB, "cpus": os.cpu_count()}), flush=True)
    what = "hidden,state"
    configs, clusters = [], []
    for config in args.configs.split(","):
        if config in ("npz", "threads"):  # each run a fresh process, as the CLI is
            label = {"npz": "single process, .npz (today)",
                     "threads": "threads of one process, .zarr"}[config]
            configs.append((label, None, {}, lambda t, c=config: child(c, src, t, args.chunk)))
        else:
            cluster, client, start = start_cluster(int(config))
            clusters.append((cluster, client))
            pids = list(client.run(os.getpid).values())
            # warm up: the first task in a fresh worker imports rnncli, numpy, zarr
            export_zarr(model, np.zeros((4, 100, 32), np.float32), os.path.join(
                folder, "warm.zarr"), scheduler=client, force=True, progress=False)
            configs.append((f"{config} worker(s), .zarr", pids,
                            {"cluster_start_s": round(start, 2)},
                            lambda t, c=client: export_zarr(model, src, t, what=what,
                                                            scheduler=c,
                                                            batch_chunk=args.chunk,
                                                            progress=False)))
    results = {c[0]: ([], {}, 0, []) for c in configs}
    with PeakRSS([os.getpid()]) as mem:
        time.sleep(0.3)
    print(json.dumps({"idle_rss_MB_of_this_process": round(mem.peak[os.getpid()] / MB)}))
    try:
        for _ in range(repeats):
            print(json.dumps({"load_average": os.getloadavg()}), flush=True)
            for label, pids, _, run in configs:
                seconds, peak, disk, cpu = once(run, pids, folder)
                times, peaks, _, cpus = results[label]
                times.append(seconds)
                cpus.append(cpu)
                for pid, p in peak.items():
                    peaks[pid] = max(peaks.get(pid, 0), p)
                results[label] = (times, peaks, disk, cpus)
    finally:
        for cluster, client in clusters:
            client.close()
            cluster.close()
    os.unlink(src)
    return [summarize(label, *results[label], n, in_bytes, out_bytes, extra)
            for label, _, extra, _ in configs]


def memory(args, model, folder):
    """Peak RSS of 2 workers for two dataset sizes and two chunk sizes."""
    rows = []
    cluster, client, _ = start_cluster(2)
    try:
        pids = list(client.run(os.getpid).values())
        with PeakRSS(pids) as mem:
            time.sleep(0.5)
        idle = mem.peak
        print(json.dumps({"idle_worker_rss_MB": sorted(round(p / MB) for p in idle.values())}))
        for n in (10000, 40000):
            src = make_input(folder, n, 100, 32)
            for chunk in (256, 1024):
                seconds, peak, _, _ = once(lambda t, s=src, c=chunk: export_zarr(
                    model, s, t, what="hidden,state", scheduler=client, batch_chunk=c,
                    progress=False), pids, folder)
                row = {"n": n, "input_MB": round(n * 100 * 32 * 4 / MB), "batch_chunk": chunk,
                       "chunk_results_MB": round(chunk * 101 * 64 * 4 / MB, 1),
                       "seconds": round(seconds, 2),
                       "peak_rss_MB": sorted(round(p / MB) for p in peak.values())}
                print(json.dumps(row), flush=True)
                rows.append(row)
            os.unlink(src)
    finally:
        client.close()
        cluster.close()
    return rows


def main():
    if sys.argv[1:2] == ["--child"]:
        child_main(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=None, help="samples per chunk")
    ap.add_argument("--configs", default="npz,threads,1,2")
    ap.add_argument("--memory", action="store_true", help="also peak RSS vs input and chunk")
    args = ap.parse_args()
    n, repeats = (4000, 1) if args.quick else (args.n, args.repeats)
    model = rnncli.random_model(0, 64, 32)
    folder = tempfile.mkdtemp(prefix="rnncli-scale-")
    try:
        rows = throughput(args, model, folder, n, repeats)
        if args.memory:
            rows += memory(args, model, folder)
        print(json.dumps(rows))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
