"""Read an HDF5 file once in a throw-away child process, with a time limit.

Some damaged HDF5 files send the HDF5 C library into an endless loop (a shuffled global
heap, read as an attribute) or make it crash (segmentation fault): no Python handler can
stop either, so rnncli would hang or die. Before rnncli reads a file for real, a forked
child visits every group, reads every attribute and every dataset up to 16 MiB; if the
child crashes or does not finish in time (it is then killed), the file is reported as
damaged. Found by tests/test_bad_input.py's fuzz test. Without fork (Windows) the probe
is skipped.

The child never outlives its purpose: the parent kills it on every way out (an error,
Ctrl-C, ``kill``); on Linux it is also killed when the parent dies (even by SIGKILL), and
everywhere an alarm ends it soon after the time limit.
"""

from __future__ import annotations

import functools
import math
import os
import select
import signal
import sys
import warnings

from .. import signals
from ..errors import ModelFileError

TIMEOUT_SECONDS = float(os.environ.get("RNNCLI_HDF5_TIMEOUT", "10"))
MAX_PROBED_BYTES = 16 * 2**20
# Address space the child may add: a damaged heap or dataspace can make the HDF5 library
# allocate gigabytes for a 24 KB file (2 GB reading one weight_names attribute, found by
# tests/test_fuzz_models.py); walking a real file's structure takes a few MiB.
PROBE_MEMORY = 512 * 2**20


def _visit(f):
    import h5py

    def walk(group):
        for key in group.attrs:
            group.attrs[key]
        for key in group:
            link = group.get(key, getlink=True)
            if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
                continue
            obj = group[key]
            if isinstance(obj, h5py.Group):
                walk(obj)
            else:
                for k in obj.attrs:
                    obj.attrs[k]
                if obj.dtype.kind in "fiu" and not obj.is_virtual and not obj.external \
                        and obj.size * obj.dtype.itemsize <= MAX_PROBED_BYTES:
                    obj[()]

    walk(f)


@functools.lru_cache(maxsize=1)
def _linux_prctl():
    """libc's prctl on Linux (looked up in the parent: the child should not import), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PR_SET_PDEATHSIG = 1


def _child(source, w, prctl, parent: int, timeout: float):
    """Walk the file, report on ``w``, exit without cleanup (never returns)."""
    status = b"e"
    try:
        # A signal ends it at once, even inside the HDF5 library (one the parent ignores
        # stays ignored); the alarm ends it a little after the time limit, should the
        # parent be gone; on Linux it dies with the parent, even a parent killed by SIGKILL.
        for signum in signals.HANDLED:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(0)
        signal.alarm(int(math.ceil(timeout)) + 2)
        import faulthandler

        faulthandler.disable()  # a crash here is the finding, not something to print
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        _limit_memory()
        import h5py

        with h5py.File(source, "r") as f:
            _visit(f)
        status = b"k"
    except BaseException as e:  # noqa: BLE001 - the parent reads the file again and reports
        # a Python-level error: the real read will say what it is; an allocation over the
        # cap: the real read would take that memory, so the parent refuses the file
        status = b"m" if isinstance(e, MemoryError) or "allocation failed" in str(e) else b"k"
    finally:
        os.write(w, status)
        os._exit(0)


def _limit_memory():
    try:
        import resource

        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = size + PROBE_MEMORY
        if hard == resource.RLIM_INFINITY or cap < hard:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError, StopIteration):
        pass


def probe(source, where: str, timeout: float | None = None):
    """Raise ModelFileError when ``source`` (a path or file object) can't be walked in time."""
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    if not hasattr(os, "fork") or timeout <= 0:  # RNNCLI_HDF5_TIMEOUT=0: no probe
        return
    prctl, parent = _linux_prctl(), os.getpid()
    answer, ready, status, pid = b"", [], 0, None
    r, w = os.pipe()
    try:
        with signals.deferred(), warnings.catch_warnings():  # no moment with a child unknown
            # Python >= 3.12 warns about fork() beside threads (OpenBLAS starts some); the
            # child only reads one file with h5py and exits, so no lock another thread
            # holds matters.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
            if pid == 0:
                _child(source, w, prctl, parent, timeout)
        fd, w = w, None
        os.close(fd)
        signals.checkpoint("probing")
        ready, _, _ = select.select([r], [], [], timeout)
        answer = os.read(r, 1) if ready else b""
    finally:  # on every way out, Ctrl-C and kill included: no child left running
        for fd in (r, w):
            if fd is not None:
                os.close(fd)
        if pid and not answer:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if pid:
            _, status = os.waitpid(pid, 0)
    if not ready:
        raise ModelFileError(f"{where}: damaged HDF5 file: reading its structure did not finish "
                             f"in {timeout:g} s")
    if answer == b"m":
        raise ModelFileError(f"{where}: damaged HDF5 file: reading its structure needs more "
                             f"than {PROBE_MEMORY >> 20} MiB (a damaged heap or shape); refused")
    if not answer:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if sig == signal.SIGALRM:  # its own alarm: it did not finish in time either
            raise ModelFileError(f"{where}: damaged HDF5 file: reading its structure did not "
                                 f"finish in {timeout:g} s")
        name = signal.Signals(sig).name if sig else "an error"
        raise ModelFileError(f"{where}: damaged HDF5 file: reading it crashes the HDF5 library "
                             f"({name}); refused")
