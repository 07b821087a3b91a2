"""Atomic operations on an int64 array for compiled code that threads share (numba
intrinsics: LLVM's atomic load, add and compare-exchange), the claims of the loops split
by units built on them, and a bounded wait and an add that hold no GIL (imported only
with the compiled loops)."""

import numba
from numba import types
from numba.extending import intrinsic


def _check(counters):
    return isinstance(counters, types.Array) and counters.dtype == types.int64 and \
        counters.ndim == 1


@intrinsic
def atomic_load(typingctx, counters, i):
    """counters[i], read with acquire ordering."""
    if not _check(counters):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(arr.data, [args[1]]), "acquire", 8)

    return types.int64(counters, i), codegen


@intrinsic
def atomic_add(typingctx, counters, i, value):
    """counters[i] += value, atomically (acquire and release ordering)."""
    if not _check(counters):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        builder.atomic_rmw("add", builder.gep(arr.data, [args[1]]), args[2], "acq_rel")
        return context.get_dummy_value()

    return types.void(counters, i, value), codegen


@intrinsic
def compare_exchange(typingctx, counters, i, old, new):
    """counters[i] = new if it is old; whether it was."""
    if not _check(counters):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        pair = builder.cmpxchg(builder.gep(arr.data, [args[1]]), args[2], args[3],
                               "acq_rel", "acquire")
        return builder.extract_value(pair, 1)

    return types.boolean(counters, i, old, new), codegen


# The loops split by units (_numba_split.py, _numba_backward_split.py): their items'
# claims and waits.
SPIN = 200_000  # loads of the done counter before returning to Python to yield the core
DONE = 0  # counters[0]: items done; counters[1 + q]: the next step whose part q is free


@numba.njit(inline="always")
def claim(counters, parts, home, limit):
    """The next item (step·parts + part): of the earliest step with a part unclaimed, part
    ``home`` if that is one; -1 once every part of step ``limit`` - 1 is claimed."""
    while True:
        m = limit
        for q in range(parts):
            m = min(m, atomic_load(counters, 1 + q))
        if m >= limit:
            return -1
        if atomic_load(counters, 1 + home) == m and \
                compare_exchange(counters, 1 + home, m, m + 1):
            return m * parts + home
        for q in range(parts):
            if compare_exchange(counters, 1 + q, m, m + 1):
                return m * parts + q


@numba.njit(inline="always")
def next_item(counters, parts, home, limit, pending):
    """(item, ready): the item a thread runs next, ``pending`` (one it handed back) or a
    new ``claim``, and whether every item of the step before it is done. Item -1 (not
    ready): every item is claimed; ready False for an item: the wait for that step ran
    past SPIN loads, and the caller hands the item back (returns to Python, which yields
    the core and calls again with it)."""
    k = claim(counters, parts, home, limit) if pending < 0 else pending
    if k < 0:
        return k, False
    spins = 0
    while atomic_load(counters, DONE) < (k // parts) * parts:  # the step before
        spins += 1
        if spins > SPIN:
            return k, False
    return k, True


@numba.njit(cache=True, nogil=True)
def wait_until(counters, i, target, loads):
    """Whether counters[i] reaches ``target`` within ``loads`` reads of it, the GIL
    released meanwhile."""
    for _ in range(loads):
        if atomic_load(counters, i) >= target:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def add(counters, i, value):
    """counters[i] += value, atomically, the GIL released meanwhile: a thread waiting for
    it in wait_until finds the GIL free when it returns."""
    atomic_add(counters, i, value)
