"""numpy's BLAS thread count, and a way to run it single-threaded for a while.

A big batch runs fastest split across the cores, each thread running its own rows with a
single-threaded BLAS: the elementwise work (``+``, ``tanh``) is then parallel too, and the
threads never wait on each other between steps. numpy has no API for BLAS threads;
OpenBLAS has (``openblas_get_num_threads``/``openblas_set_num_threads``, with a prefix and
suffix in the builds numpy's wheels bundle). This module finds the OpenBLAS this process
has loaded and calls those two functions through ctypes. With another BLAS (MKL,
Accelerate), an OpenMP build of OpenBLAS, or none found, :func:`threads` is 1 and rnncli
does not split.

``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` set the thread count as usual: rnncli never
uses more threads than BLAS would.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading

from . import workers

OPENMP = 2  # what openblas_get_parallel() returns for an OpenMP build
_lock = threading.Lock()
_api = None  # [(get, set)] once looked up
_single = 0  # how many callers want BLAS single-threaded now
_saved = [1]


def _candidates():
    """Paths of OpenBLAS libraries: those mapped into this process (Linux), numpy's own
    first, else those bundled with numpy's wheel."""
    import numpy

    root = os.path.dirname(numpy.__file__)
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = "/" + line.rstrip("\n").partition("/")[2]
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    if not paths:
        for folder in (os.path.join(root, "..", "numpy.libs"), os.path.join(root, ".dylibs")):
            paths += sorted(glob.glob(os.path.join(folder, "*openblas*")))
    ours = os.path.dirname(root)
    return sorted(paths, key=lambda p: not os.path.realpath(p).startswith(
        (os.path.join(ours, "numpy.libs"), root)))


def _lookup():
    """[(get, set)] for every OpenBLAS loaded, numpy's first; [] if none, or if one is an
    OpenMP build (which takes each thread's own OpenMP thread count, out of reach of the
    global setting: splitting would oversubscribe the cores)."""
    found = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        functions = _functions(lib)
        if functions is None:
            continue
        get, put, parallel = functions
        if parallel == OPENMP:
            return []
        found.append((get, put))
    return found


def _functions(lib):
    """(get_num_threads, set_num_threads, get_parallel() or None) of an OpenBLAS library
    under any of the names its builds use, or None."""
    for prefix, suffix in [(p, s) for p in ("scipy_", "") for s in ("64_", "", "_64")]:
        get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
        put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
        if get is None or put is None:
            continue
        get.restype, get.argtypes = ctypes.c_int, []
        put.restype, put.argtypes = None, [ctypes.c_int]
        parallel = getattr(lib, f"{prefix}openblas_get_parallel{suffix}", None)
        if parallel is not None:
            parallel.restype, parallel.argtypes = ctypes.c_int, []
            parallel = parallel()
        return get, put, parallel
    return None


def api():
    """[(get, set)] of each OpenBLAS in this process, numpy's first; None if none."""
    global _api
    if _api is None:
        with _lock:
            if _api is None:
                _api = _lookup()
    return _api or None


def threads() -> int:
    """Threads numpy's BLAS would use (1 when its count can't be controlled)."""
    found = api()
    if found is None:
        return 1
    cores = workers.affinity_cores()
    # inside single_threaded(), what BLAS had before
    return max(1, min(_saved[0] if _single else found[0][0](), cores))


@contextlib.contextmanager
def single_threaded():
    """BLAS runs single-threaded inside (for this whole process: callers nest and overlap
    safely; the counts in force before the first one are restored after the last)."""
    global _single, _saved
    found = api()
    if found is None:
        yield
        return
    with _lock:
        if _single == 0:
            _saved = [get() for get, _ in found]
            for _, put in found:
                put(1)
        _single += 1
    try:
        yield
    finally:
        with _lock:
            _single -= 1
            if _single == 0:
                for (_, put), n in zip(found, _saved):
                    put(n)
