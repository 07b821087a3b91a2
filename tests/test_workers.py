"""The row-block job threads claim blocks from: a Ctrl-C in the calling thread never
leaves the scan waiting for ever."""

import itertools
import os
import threading
import time

import pytest

from rnncli.core.workers import POOL, Job, current_cpu


class _ClaimsInterrupted:
    """A claim counter whose first claim in the calling thread is taken and then
    interrupted, as a Ctrl-C landing right after ``next()`` returns would."""

    def __init__(self):
        self.count = itertools.count()
        self.fired = False

    def __next__(self):
        i = next(self.count)
        if threading.current_thread() is threading.main_thread() and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return i


def test_a_claim_cut_short_by_ctrl_c_does_not_hang_the_wait():
    stop = threading.Event()
    ran = []
    job = Job(lambda b0, b1: (time.sleep(0.05), ran.append(b0)), [0, 1, 2, 3], stop)
    job.claims = _ClaimsInterrupted()
    POOL.submit(job, 1)
    try:
        job.work()
        job.wait()
        raise AssertionError("the claim was not interrupted")
    except KeyboardInterrupt:
        waiter = threading.Thread(target=job.wait, kwargs={"interruptible": False},
                                  daemon=True)
        waiter.start()
        waiter.join(5)
    assert not waiter.is_alive()  # it waited only for the helper's block under way
    assert job.running == 0 and stop.is_set()
    assert 0 not in ran  # the interrupted claim never ran


def _blocks_finished_by_wait(helper_seconds):
    """A job of two blocks with the compiled spinning wait: the calling thread's block is
    instant, the helper's takes ``helper_seconds``; what had finished when wait returned."""
    from rnncli.core import fast

    started, finished = threading.Event(), []

    def run(b0, b1):
        if threading.current_thread() is not threading.main_thread():
            started.set()
            time.sleep(helper_seconds)
        elif not started.wait(5):  # the helper has claimed the other block
            raise AssertionError("the helper never started")
        finished.append(b0)

    job = Job(run, [0, 1, 2], threading.Event(), fast.spin_wait())
    POOL.submit(job, 1)
    job.work()
    job.wait()
    done = sorted(finished)  # what had finished when wait returned
    # the helper adds to the count just after it releases the lock a blocked wait takes:
    # a waiter that spun past its loads may return before that add
    deadline = time.monotonic() + 5
    while job.all_finished[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    return done, int(job.all_finished[0])


def test_a_spinning_wait_returns_only_when_the_helpers_last_block_has_finished():
    """The calling thread waits for a helper's last block spinning, the GIL released,
    for about 0.1 ms (workers.SPIN_LOADS), then blocks: either way it returns when every
    block has run, and the helper's count says so."""
    pytest.importorskip("numba")
    assert _blocks_finished_by_wait(0.00002) == ([0, 1], 1)  # within the spin
    assert _blocks_finished_by_wait(0.05) == ([0, 1], 1)  # past it: the lock


def test_the_compiled_wait_sees_another_threads_add_and_gives_up_after_its_loads():
    pytest.importorskip("numba")
    import numpy as np

    from rnncli.core._numba_atomics import add, wait_until

    counters = np.zeros(2, np.int64)
    assert not wait_until(counters, 1, 1, 1000)  # nobody adds: it returns, False
    adder = threading.Timer(0.01, add, (counters, 1, 1))
    adder.start()
    assert wait_until(counters, 1, 1, 10**12)  # returns once the other thread added
    adder.join()
    assert counters.tolist() == [0, 1]


# ---- keeping a threaded call's threads on different cores (workers.keep_apart)

two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2
    or current_cpu() is None, reason="needs two CPUs this thread may run on and sched_getcpu")


def _affinities_in_blocks(busy, monkeypatch, fail=False):
    """A two-block job run as a scan's (engine's run_blocks) with another task runnable
    (``busy``) or not: each thread's CPU affinity inside its block, and the calling
    thread's after."""
    pytest.importorskip("numba")  # the compiled loops' wait: their jobs are kept apart
    from rnncli.core import engine, workers

    monkeypatch.setattr(workers, "other_runnable", lambda: busy)
    seen, both = {}, threading.Barrier(2, timeout=5)

    def run(b0, b1):
        seen[threading.current_thread() is threading.main_thread()] = os.sched_getaffinity(0)
        both.wait()  # each thread ran one block
        if fail:
            raise ValueError("a block failed")

    rows = engine._Rows.__new__(engine._Rows)
    rows.compiled, rows.stop = object(), threading.Event()
    rows.run_compiled = run
    before = os.sched_getaffinity(0)
    try:
        rows.run_blocks([0, 1, 2], 2)
    except ValueError:
        assert fail
    return seen[True], seen[False], os.sched_getaffinity(0), before


@two_cpus
def test_with_another_task_runnable_a_scans_threads_keep_to_different_cores(monkeypatch):
    caller, helper, after, before = _affinities_in_blocks(1, monkeypatch)
    assert len(caller) == 1 and caller < before  # pinned to the core it was on
    assert helper == before - caller  # the helper keeps off it
    assert after == before  # and the calling thread is given its affinity back


@two_cpus
def test_on_a_quiet_machine_nothing_is_pinned_and_a_pinned_helper_is_let_go(monkeypatch):
    _affinities_in_blocks(1, monkeypatch)  # the helper was kept apart last time
    caller, helper, after, before = _affinities_in_blocks(0, monkeypatch)
    assert caller == helper == after == before


@two_cpus
def test_a_failing_block_still_gives_the_calling_thread_its_affinity_back(monkeypatch):
    caller, _, after, before = _affinities_in_blocks(1, monkeypatch, fail=True)
    assert len(caller) == 1 and after == before
