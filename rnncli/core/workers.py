"""Threads that run row blocks for rnncli/core/engine.py and bptt.py: how many the
process may use, a pool kept for its lifetime, a job whose blocks they claim one after
another (so a thread whose core another process took simply claims fewer), and, while
another task is runnable, a compiled job's threads kept on different cores for the job
(``keep_apart``)."""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time

import numpy as np

QUOTA_SECONDS = 1.0  # how long a cgroup CPU quota read is trusted
_quota = [-QUOTA_SECONDS, None]  # [when read (time.monotonic()), cores it allows or None]


def cgroup_cores():
    """The cores a cgroup CPU quota allows this process (None: no quota), read at most
    once a QUOTA_SECONDS: opening the file (or failing to) took 5 us of every scan's 30."""
    now = time.monotonic()
    if now - _quota[0] >= QUOTA_SECONDS:
        cores = None
        try:
            with open("/sys/fs/cgroup/cpu.max") as f:
                quota, period = f.read().split()[:2]
            if quota != "max":
                cores = max(1, int(int(quota) // int(period)))
        except (OSError, ValueError):
            pass
        _quota[:] = [now, cores]
    return _quota[1]


_cpus = []  # the machine's CPU count, once: os.cpu_count() reads a file (5 us here)


def cpu_count() -> int:
    """The CPUs the machine has (os.cpu_count(), read once)."""
    if not _cpus:
        _cpus.append(os.cpu_count() or 1)
    return _cpus[0]


def thread_affinity():
    """The calling thread's CPU affinity (a frozenset), or None where it isn't known."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def affinity_cores() -> int:
    """The CPUs this process may run on: its affinity, or the machine's CPUs where that
    isn't known (not Linux)."""
    mask = thread_affinity()
    return cpu_count() if mask is None else len(mask)


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota."""
    cores = affinity_cores()
    quota = cgroup_cores()
    return max(1, cores if quota is None else min(cores, quota))


RUNNABLE_SECONDS = 1.0  # how long a count of runnable tasks stays worth comparing with
_runnable = [-RUNNABLE_SECONDS, 0]  # [when read (time.monotonic()), the count]


def runnable_now() -> int | None:
    """Tasks other than the caller runnable on the machine at this instant (the fourth
    field of /proc/loadavg, less the reader), or None where that isn't known (not Linux).
    About 2 us."""
    try:
        running = int(loadavg().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - 1)


_loadavg = []  # /proc/loadavg's descriptor, kept open, or None where it can't be opened


def _open_loadavg():
    try:
        return os.open("/proc/loadavg", os.O_RDONLY)
    except OSError:
        return None


def _read(fd) -> bytes:
    return os.pread(fd, 256, 0)


def loadavg() -> bytes:
    """/proc/loadavg as it is now: a read from the start of the file kept open (1 us here;
    opening it for every read took 8). OSError where there is no such file."""
    if not _loadavg:
        _loadavg.append(_open_loadavg())
    if _loadavg[0] is None:  # a new error each time: a kept one would gather tracebacks
        raise OSError("no /proc/loadavg")
    return _read(_loadavg[0])


def other_runnable() -> int | None:
    """Tasks other than the caller runnable now (``runnable_now``), but no more than the
    last count if that is under RUNNABLE_SECONDS old: a task that runs for a moment shows
    in one count, a busy process in every one (here, on quiet days, 4-15% of the counts
    taken before scans saw a task). Read only for scans of tenths of a millisecond or
    more."""
    others = runnable_now()
    if others is None:
        return None
    now = time.monotonic()
    last = _runnable[1] if now - _runnable[0] < RUNNABLE_SECONDS else others
    _runnable[:] = [now, others]
    return min(others, last)


def idle_cores() -> int:
    """Cores besides the caller's own that no other task needs now: the machine's less
    its other runnable tasks (all cores but ours where that count is unknown, or says
    nothing of the cores this process is pinned to). A helper of the pool on its way
    back to sleep after a scan shows in one count only. For work split into as many
    fixed parts as threads, where a thread whose core another process holds makes the
    scan wait; not for row blocks threads claim, which don't wait."""
    cores = cpu_count()
    pinned = affinity_cores() < cores
    others = None if pinned else other_runnable()  # the count is the whole machine's
    return cores - 1 if others is None else max(0, cores - 1 - others)


def threads() -> int:
    """Threads rnncli may run row blocks in: the cores it may use (affinity, cgroup quota),
    never more than BLAS would use (1 when BLAS's own threads can't be set: splitting would
    oversubscribe). Not fewer when other work keeps cores busy: row blocks never wait for
    each other, so under the scheduler's fair share every thread is more of the machine,
    and a thread slowed by another process just claims fewer blocks. Measured on 2 busy
    cores (6 other runnable threads): threads chosen from the run queue (one here) were
    1.3-3x slower than one per core from 64 rows up (docs/performance.md)."""
    if not _blas:  # imported here (blas reads affinity_cores): once, as it took 1.4 us
        from . import blas

        _blas.append(blas)
    return max(1, min(_blas[0].threads(), available_cores()))


_blas = []  # rnncli.core.blas, once threads() has imported it


# How long ``Job.wait`` spins for the helpers' last blocks before it blocks: reads of a
# counter, 0.25 ns each here (so ~100 us). A thread blocked in a lock woke 20-30 us after
# the last helper released it (this KVM guest's vCPU had halted), a tenth of a
# two-thread LSTM scan of 4 rows and 16 units (0.25 ms); spinning, it resumes at once.
SPIN_LOADS = 400_000


class Job:
    """Row blocks that threads claim one after another (each block runs once); ``wait``
    returns when every claimed block has finished, whether or not every thread it was
    offered to has woken up: a helper that a busy machine wakes late finds nothing left
    and costs nothing."""

    def __init__(self, run, edges, stop, spin=None):
        self.run, self.edges, self.stop = run, edges, stop
        self.claims = itertools.count()  # next() on it is atomic
        self.blocks = len(edges) - 1
        self.lock = threading.Lock()
        self.finished = 0
        self.running = 0  # helpers' blocks under way
        # held until every block has finished (a Lock: an Event and a Condition took 4 us
        # of a 30 us scan to make)
        self.done = threading.Lock()
        self.done.acquire()
        self.errors = []
        # spin: (wait, add) compiled without the GIL (rnncli/core/_numba_atomics.py:
        # wait_until, add); the helper that finishes the last block adds 1 to all_finished
        # after releasing done, inside ``add``: it holds no GIL when the waiter sees it (the
        # two then race for it, where a flag set from Python had the waiter find the
        # helper holding it and sleep)
        self.spin = spin
        self.all_finished = None if spin is None else np.zeros(1, np.int64)
        self.away = None  # the CPUs helpers keep to (``keep_apart``), or None: their own

    def work(self, helper=False):
        """Claim and run blocks until none is left (a helper thread: ``helper``; only the
        calling thread sees Ctrl-C, which may land anywhere in here)."""
        while True:
            i = next(self.claims)
            if i >= self.blocks:
                return
            if helper:
                with self.lock:
                    self.running += 1
            try:
                if not self.stop.is_set():
                    self.run(self.edges[i], self.edges[i + 1])
            except BaseException as e:  # re-raised in the calling thread
                self.errors.append(e)
                self.stop.set()
            finally:
                with self.lock:
                    self.finished += 1
                    if helper:
                        self.running -= 1
                    last = self.finished == self.blocks
                    if last:
                        self.done.release()
                if last and helper and self.spin is not None:
                    try:
                        self.spin[1](self.all_finished, 0, 1)
                    except Exception:  # the waiter's spin ends; it takes done, released
                        pass

    def wait(self, interruptible=True):
        """Until every block has finished; or, not interruptible (after a Ctrl-C in the
        calling thread, with ``stop`` set), until no helper is inside a block: a block
        the calling thread claimed when Ctrl-C came may never be counted, and helpers
        start no block once ``stop`` is set."""
        if interruptible:
            if self.spin is not None and self.finished < self.blocks:
                self.spin[0](self.all_finished, 0, 1, SPIN_LOADS)
            self.done.acquire()
            return
        self.stop.set()
        while self.running:
            try:
                time.sleep(0.001)
            except BaseException:  # a second Ctrl-C: the blocks are stopping already
                pass


def set_thread_affinity(cpus) -> bool:
    """Set the calling thread's CPU affinity; whether that worked."""
    try:
        os.sched_setaffinity(0, cpus)
        return True
    except (AttributeError, OSError, ValueError):
        return False


@functools.cache
def _getcpu():
    """libc's sched_getcpu, or None where there is none."""
    try:
        import ctypes

        getcpu = ctypes.CDLL(None).sched_getcpu
        getcpu.restype = ctypes.c_int
        getcpu.argtypes = []
        return getcpu
    except (OSError, AttributeError, TypeError):  # TypeError: Windows' CDLL(None)
        return None


def current_cpu() -> int | None:
    """The CPU the calling thread runs on now, or None where that isn't known."""
    getcpu = _getcpu()
    cpu = -1 if getcpu is None else getcpu()
    return cpu if cpu >= 0 else None


def can_keep_apart() -> bool:
    """Whether ``keep_apart`` can pin threads here: the calling thread's CPU can be read
    and threads' affinities set (Linux), and this process may run on two CPUs or more."""
    return _getcpu() is not None and hasattr(os, "sched_setaffinity") and \
        affinity_cores() > 1


def keep_apart(job):
    """Where another task is runnable now (``other_runnable``): pin the calling thread to
    the CPU it is on and have the job's helpers keep to the others (``job.away``), so
    that each of the job's threads shares a core with the other task rather than with
    each other. Returns the calling thread's affinity to ``restore`` after the job, or
    None (nothing pinned: a quiet machine, one CPU allowed, or no way to tell or set).

    Why: with one busy process on 2 cores, the scheduler put both of a two-thread
    scan's threads on one core in most calls (a woken helper goes to its waker's core)
    and left the busy process the other; the scan then had one core. LSTM (64, 5, 32,
    512) float32 beside a busy process, 2 runs of 5 rounds: 2.67-2.73 ms unpinned,
    1.63-1.68 pinned (1.42 quiet); (256, 20, 32, 128) 4.44-4.46 → 3.37-3.40."""
    if not other_runnable():
        return None
    cpu = current_cpu()
    mask = thread_affinity()
    if cpu is None or mask is None or cpu not in mask or len(mask) < 2:
        return None
    if not set_thread_affinity({cpu}):
        return None
    job.away = mask - {cpu}
    return mask


def restore(mask):
    """The calling thread's affinity back to ``mask`` (``keep_apart``'s), if it pinned."""
    if mask is not None:
        set_thread_affinity(mask)


class Pool:
    """Helper threads kept for the process's lifetime (daemons, idle in ``queue.get``
    between scans): starting threads for every scan costs more than short scans do, and on
    a busy machine a new thread may wait milliseconds for its first time slice."""

    def __init__(self):
        import queue

        self.queue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0

    def submit(self, job, helpers, apart=False):
        """Offer ``job`` to ``helpers`` threads; ``apart``: keep them off the calling
        thread's core while another task is runnable (``keep_apart``). Returns the
        calling thread's CPU affinity to restore once the job is done (``restore``), or
        None."""
        with self.lock:
            while self.threads < helpers:  # started before any pinning: they inherit it
                threading.Thread(target=self._serve, daemon=True,
                                 name=f"rnncli-{self.threads}").start()
                self.threads += 1
        mask = keep_apart(job) if apart else None
        try:
            for _ in range(helpers):
                self.queue.put(job)
        except BaseException:  # a Ctrl-C here: the caller never gets the mask back
            restore(mask)
            raise
        return mask

    def _serve(self):
        home = thread_affinity()  # this thread's own, restored for jobs not kept apart
        mask = home
        while True:
            job = self.queue.get()
            want = home if job.away is None else job.away
            if want is not None and want != mask and set_thread_affinity(want):
                mask = want
            job.work(helper=True)


POOL = Pool()
