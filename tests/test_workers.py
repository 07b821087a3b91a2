"""The row-block job threads claim blocks from: a Ctrl-C in the calling thread never
leaves the scan waiting for ever."""

import itertools
import threading
import time

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
