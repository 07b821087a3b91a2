"""The numpy loop: chunking and the batch split across threads change speed, never numbers."""

import os
import threading

import numpy as np
import pytest
from conftest import CASES, SAMPLES, WITH_CONFIG, assert_outputs_match_keras, assert_same_numbers

from rnncli.core import blas, workers
from rnncli.core import engine as kernels
from rnncli.core.simple_rnn import SimpleRNNCell


def problem(B=70, T=23, D=5, H=9, dtype=np.float32, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype(dtype)
    k = (rng.normal(size=(D, H)) * 0.5).astype(dtype)
    u = (rng.normal(size=(H, H)) * 0.9 / np.sqrt(H)).astype(dtype)  # radius about 0.9
    b = rng.normal(size=H).astype(dtype) if bias else None
    h0 = rng.normal(size=(B, H)).astype(dtype)
    mask = rng.random((B, T)) > 0.3
    return x, k, u, b, h0, mask


def run(x, k, u, b, h0, act="tanh", mask=None, zero_output_for_mask=False, trace=False,
        keep=True):
    """(sequence, final state, xw, hu, z) of a SimpleRNN cell's scan."""
    cell = SimpleRNNCell(k, u, b)
    if callable(act):  # a custom function, to see what the loop does with its errors
        cell.act = act
    else:
        cell.set_activation(act)
    s = kernels.scan(cell, x, (h0,), mask, zero_output_for_mask, trace, keep)
    terms = (s.terms["xw"], s.terms["hu"], s.terms["z"]) if trace else (None, None, None)
    return (s.sequences.get("h"), s.states[0], *terms)


@pytest.fixture
def split(monkeypatch):
    """Force the batch split into ``parts`` row blocks, whatever the problem's size."""
    def use(parts):
        monkeypatch.setattr(kernels, "SPLIT_MIN_VALUES", 0)
        monkeypatch.setattr(kernels, "MIN_ROWS", 1)
        monkeypatch.setattr(blas, "threads", lambda: parts)
    return use


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(kernels, "CHUNK_BYTES", 700)  # a few steps a chunk, uneven


@pytest.fixture(autouse=True)
def numpy_engine(monkeypatch):
    monkeypatch.setenv("RNNCLI_ENGINE", "numpy")


def assert_same(a, b):
    for p, q in zip(a, b):
        if p is None:
            assert q is None
        else:
            assert_same_numbers(p, q)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("trace", [False, True])
def test_split_and_chunks_give_identical_numbers(split, monkeypatch, dtype, act, masked, trace):
    x, k, u, b, h0, mask = problem(dtype=dtype)
    kw = {"mask": mask if masked else None, "trace": trace, "zero_output_for_mask": masked}
    whole = run(x, k, u, b, h0, act, **kw)
    monkeypatch.setattr(kernels, "CHUNK_BYTES", 700)
    chunked = run(x, k, u, b, h0, act, **kw)
    split(3)  # 70 rows: blocks of 23, 23, 24
    both = run(x, k, u, b, h0, act, **kw)
    assert_same(whole, chunked)
    assert_same(whole, both)


@pytest.mark.parametrize("masked", [False, True])
def test_final_state_without_keeping_the_sequence(split, small_chunks, masked):
    x, k, u, b, h0, mask = problem(bias=False)
    m = mask if masked else None
    seq, state, *_ = run(x, k, u, b, h0, mask=m)
    split(2)
    none, state2, *_ = run(x, k, u, b, h0, mask=m, keep=False)
    assert none is None
    assert_same_numbers(state2, state)
    if not masked:
        np.testing.assert_array_equal(state, seq[:, -1])


def test_trace_terms_add_up(split, small_chunks):
    x, k, u, b, h0, _ = problem()
    split(2)
    seq, state, xw, hu, z = run(x, k, u, b, h0, trace=True)
    np.testing.assert_allclose(xw, np.einsum("btd,dh->bth", x, k), rtol=1e-5, atol=1e-6)
    h_prev = np.concatenate([h0[:, None], seq[:, :-1]], axis=1)
    assert_same_numbers(hu[:, 3], h_prev[:, 3] @ u)
    np.testing.assert_array_equal(z, (xw + b) + hu)
    np.testing.assert_array_equal(seq, np.tanh(z))


def test_an_error_in_one_block_stops_the_others_and_reaches_the_caller(split):
    x, k, u, b, h0, _ = problem(B=64, T=200)
    calls = []

    def act(z):
        calls.append(threading.current_thread().name)
        if len(calls) == 5:
            raise FloatingPointError("boom")
        return np.tanh(z)

    split(2)
    found = blas.api()
    before = found[0][0]() if found else None
    with pytest.raises(FloatingPointError, match="boom"):
        run(x, k, u, b, h0, act)
    assert len(calls) < 50  # the other block stopped within a step or so, not after 200
    if found:
        assert found[0][0]() == before  # BLAS has its threads back


def test_empty_sequence(split):
    x, k, u, b, h0, _ = problem(T=0)
    split(2)
    seq, state, *_ = run(x, k, u, b, h0)
    assert seq.shape == (70, 0, 9)
    np.testing.assert_array_equal(state, h0)


def uses_openblas():
    blas_info = np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {})
    return "openblas" in str(blas_info.get("name", "")).lower()


@pytest.mark.skipif(not uses_openblas(), reason="numpy is not built with OpenBLAS here")
def test_openblas_threads_are_found_and_restored():
    get, _ = blas.api()[0]
    before = get()
    usable = min(before, len(os.sched_getaffinity(0)))
    assert blas.threads() == usable
    with blas.single_threaded():
        assert get() == 1
        with blas.single_threaded():  # nested (two scans at once)
            assert get() == 1
        assert get() == 1
        assert blas.threads() == usable  # what a split may use is what BLAS had
    assert get() == before


def test_threads_is_one_without_a_known_blas(monkeypatch):
    monkeypatch.setattr(blas, "_api", [])
    assert blas.threads() == 1
    with blas.single_threaded():
        pass
    assert kernels.split_parts(4096, 512) == 1


def test_only_big_steps_are_split(monkeypatch):
    monkeypatch.setattr(blas, "threads", lambda: 2)
    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    assert kernels.split_parts(1024, 256) == 2
    assert kernels.split_parts(64, 128) == 1  # 8k values a step: not worth threads
    monkeypatch.setattr(blas, "threads", lambda: 1)  # OPENBLAS_NUM_THREADS=1
    assert kernels.split_parts(1024, 256) == 1


def test_threads_follow_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(blas, "threads", lambda: 4)
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert workers.available_cores() in (1, 2, 3)  # a cgroup quota may cap it further
    monkeypatch.setattr(workers, "available_cores", lambda: 3)
    assert workers.threads() == 3
    assert kernels.split_parts(4096, 512) == 3
    monkeypatch.setattr(blas, "threads", lambda: 1)  # OPENBLAS_NUM_THREADS=1
    assert workers.threads() == 1


def test_a_cgroup_quota_caps_the_cores_and_is_read_once_a_second(monkeypatch):
    import builtins
    import io

    quota, reads, real_open, now = ["150000 100000\n"], [], builtins.open, [100.0]

    def fake_open(path, *args, **kw):
        if path == "/sys/fs/cgroup/cpu.max":
            reads.append(path)
            return io.StringIO(quota[0])
        return real_open(path, *args, **kw)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(workers.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(workers, "_quota", [-workers.QUOTA_SECONDS, None])
    assert workers.available_cores() == 1  # 1.5 cores
    quota[0] = "250000 100000\n"
    now[0] += workers.QUOTA_SECONDS / 2
    assert workers.available_cores() == 1 and len(reads) == 1  # trusted for a while
    now[0] += workers.QUOTA_SECONDS
    assert workers.available_cores() == 2 and len(reads) == 2


def test_idle_cores_count_other_tasks_that_stay_runnable(monkeypatch):
    """A task that runs for a moment (one count of /proc/loadavg) leaves the cores idle;
    one runnable in two counts in a row, or in a first count, takes one; without the
    file, or pinned to some cores (the count is the whole machine's), every core but the
    caller's is idle."""
    running, now = ["1"], [50.0]

    def fake_read(fd):
        assert fd == 99
        return f"0.50 0.60 0.70 {running[0]}/312 4242\n".encode()

    monkeypatch.setattr(workers, "_open_loadavg", lambda: None if running[0] is None else 99)
    monkeypatch.setattr(workers, "_read", fake_read)
    monkeypatch.setattr(workers, "_loadavg", [])
    monkeypatch.setattr(workers.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(workers, "_cpus", [2])
    cpus = [{0, 1}]
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: cpus[0], raising=False)
    monkeypatch.setattr(workers, "_runnable", [-workers.RUNNABLE_SECONDS, 0])

    def idle(count, after=0.001):
        running[0] = count
        now[0] += after
        return workers.idle_cores()

    assert idle("2") == 0  # a first count: another task runs
    assert idle("1") == 1
    assert idle("2") == 1  # a moment's task
    assert idle("2") == 0  # still there
    assert idle("1") == 1
    assert idle("2", after=2 * workers.RUNNABLE_SECONDS) == 0  # the last count is old
    monkeypatch.setattr(workers, "_loadavg", [])
    assert idle(None) == 1
    assert idle("2") == 1  # the file is not opened again
    cpus[0] = {1}
    assert idle("3") == 1


def test_a_machine_without_loadavg_keeps_no_caller_alive(monkeypatch):
    """Where /proc/loadavg can't be opened, each count raises a new error: one error kept
    and raised again gathers every caller's frame in its traceback, and with them their
    arrays (a scan's input and job), for the life of the process."""
    import gc
    import weakref

    monkeypatch.setattr(workers, "_open_loadavg", lambda: None)
    monkeypatch.setattr(workers, "_loadavg", [])
    monkeypatch.setattr(workers, "_cpus", [len(os.sched_getaffinity(0))])  # not pinned

    class Thing:
        pass

    def caller():
        thing = Thing()
        assert workers.idle_cores() == workers.cpu_count() - 1
        return weakref.ref(thing)

    refs = [caller() for _ in range(3)]
    gc.collect()
    assert [r() for r in refs] == [None] * 3


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="Linux's /proc/loadavg")
def test_runnable_count_is_read_afresh_from_the_file_kept_open():
    """/proc/loadavg stays open between counts, and each read shows the file as it is then:
    its last field, the newest process's id, moves when a process starts, and a busy
    process shows in the count of runnable tasks."""
    import subprocess
    import sys
    import time

    def seen(want):
        end = time.monotonic() + 5
        while time.monotonic() < end:
            if want(workers.runnable_now()):
                return True
            time.sleep(0.01)
        return False

    assert isinstance(workers.runnable_now(), int)
    newest = workers.loadavg().split()[4]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert workers.loadavg().split()[4] != newest
        assert seen(lambda n: n >= 1)
    finally:
        busy.kill()
        busy.wait()
    assert len(workers._loadavg) == 1 and isinstance(workers._loadavg[0], int)


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_final_state_only_needs_memory_independent_of_length(monkeypatch, engine):
    import tracemalloc

    if engine == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("RNNCLI_ENGINE", engine)
    # chunks of 64 KiB of x·W (256 steps here; 1024 in the compiled loop), so that 10,000
    # and 20,000 steps are dozens of chunks, as 100,000 are at the default 1 MiB
    monkeypatch.setattr(kernels, "CHUNK_BYTES", 2**16)
    x, k, u, b, h0, _ = problem(B=4, T=20_000, D=8, H=16)
    run(x[:, :10], k, u, b, h0)  # compiles, if it will

    def peak(T):
        tracemalloc.start()
        try:
            state = run(x[:, :T], k, u, b, h0, keep=False)[1]
            return tracemalloc.get_traced_memory()[1], state
        finally:
            tracemalloc.stop()

    short, _ = peak(10_000)
    long, state = peak(20_000)
    sequence = 4 * 10_000 * 16 * 4  # what keeping the shorter sequence alone would take
    assert long < 1.05 * short + 2**14  # twice the steps, no more memory
    assert short < sequence / 2
    np.testing.assert_array_equal(state, run(x, k, u, b, h0)[1])


@pytest.mark.parametrize("case,fmt,path", [c for c in CASES if c.values[1] in WITH_CONFIG])
def test_split_path_matches_keras(split, case, fmt, path):
    """Every Keras reference case, run with the batch split into blocks of single rows."""
    split(64)
    assert_outputs_match_keras(case, path)


@pytest.mark.parametrize("shape", [(32, 28, 32, 16), (64, 50, 16, 128), (300, 7, 8, 256)])
@pytest.mark.parametrize("trace", [False, True])
def test_a_samples_numbers_do_not_depend_on_its_batch(shape, trace):
    B, T, D, H = shape
    x, k, u, b, h0, mask = problem(B, T, D, H)
    for m in (None, mask):
        whole = run(x, k, u, b, h0, mask=m, trace=trace)
        for rows in ([3], [B - 1], [0, 5], [2, 0, 1]):
            part = run(x[rows], k, u, b, h0[rows], mask=None if m is None else m[rows],
                       trace=trace)
            for p, q in zip(part, whole):
                if p is not None:
                    assert_same_numbers(p, q[rows])


def test_a_dense_head_gives_one_sample_its_batch_numbers():
    import rnncli

    model = rnncli.load_model(os.path.join(SAMPLES, "seed001_dense_head.keras"))
    x = np.load(os.path.join(SAMPLES, "seed001_input.npy"))
    x = np.concatenate([x] * 4) + np.arange(4 * len(x))[:, None, None] * 0.01
    whole = model.run(x).output
    for i in range(len(x)):
        assert_same_numbers(model.run(x[i:i + 1]).output, whole[i:i + 1])


def test_an_openmp_openblas_is_left_alone(monkeypatch):
    from types import SimpleNamespace

    def fn(value):
        return lambda *args: value

    def lib(parallel, prefix="", suffix=""):
        return SimpleNamespace(**{f"{prefix}openblas_get_num_threads{suffix}": fn(2),
                                  f"{prefix}openblas_set_num_threads{suffix}": fn(None),
                                  f"{prefix}openblas_get_parallel{suffix}": fn(parallel)})

    assert blas._functions(lib(1, "scipy_", "64_"))[2] == 1  # numpy's wheels: pthreads
    assert blas._functions(SimpleNamespace()) is None  # not OpenBLAS
    libs = {"pthreads.so": lib(1), "openmp.so": lib(blas.OPENMP)}
    monkeypatch.setattr(blas.ctypes, "CDLL", lambda path: libs[path])
    monkeypatch.setattr(blas, "_candidates", lambda: ["pthreads.so"])
    assert len(blas._lookup()) == 1
    monkeypatch.setattr(blas, "_candidates", lambda: ["pthreads.so", "openmp.so"])
    assert blas._lookup() == []  # no split: it would oversubscribe
