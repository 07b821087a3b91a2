"""The row-block job threads claim blocks from: a Ctrl-C in the calling thread never
leaves the scan waiting for ever."""

import itertools
import threading
import time

import pytest

from rnncli.core.workers import POOL, Job


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
    return sorted(finished), int(job.all_finished[0])


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
