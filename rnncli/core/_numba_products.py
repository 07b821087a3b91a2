"""The backward pass's large products, compiled (numba; imported only where the compiled
backward loops run): the weight gradients' aᵀ·b summed over every step and row, and
dL/dx = dz·Wᵀ, with the forward loop's register-blocked product
(rnncli/core/_numba_panels.py) in place of numpy's OpenBLAS, which picks its AVX2 kernels
on CPUs it does not know (half the AVX-512 rate here: 100-118 GFLOP/s single-threaded on
these products' shapes against the panels' 230-255).

:func:`gram` runs the panels' product in its ``summing`` form
(_numba_panels._panel_product): ROWS of a's columns are the rows of aᵀ, NR of b's adjacent
columns a panel, over a chunk of ``DEPTH`` rows of both (a panel's chunk, DEPTH x NR
numbers, 32 KiB in float32 with AVX-512: the L1 cache). With few columns of a it reads a
and b where they lie; from PACKED_FROM it copies a's chunk into groups of ROWS columns and
each of b's panels before its products (rows a few KiB apart crowd a few of the L1
cache's sets). Each chunk's sum is added to the result,
as BLAS adds its blocks' (rounding as BLAS's: one chain of N multiply-adds had 10x BLAS's
error at N = 12800). b's columns past its last whole panel go through a panel padded with
zeros. Numbers differ from BLAS's by rounding only (the sums run in another order).
"""

import numba
import numpy as np

from ._numba_borrowed import alive, borrowed
from ._numba_panels import BLOCK, ROWS, _panel_product, panel_product, panel_width, source_stamp

DEPTH = 256  # rows of a and b a chunk sums over
# a's columns from which a's chunk and b's panels are copied before use: read in place,
# rows 1-8 KiB apart fall in few sets of the L1 cache (aᵀ·b in one thread, float32,
# GFLOP/s in place -> packed: 640 rows, 256 x 1024: 129-145 -> 158-174; 2048 rows, 512 x
# 2048: 112 -> 178-187; 3200 rows, 64 x 256: 160-176 -> 97-113; 3000, 32 x 1024: 108-120
# -> 63-74)
PACKED_FROM = 128
_summed = _panel_product(ROWS, summing=True)


@numba.njit(inline="always")
def _copy_panel(b, k0, depth, start, width, panel):
    """panel[k, :width] = b[k0 + k, start:start + width] for k < depth, zeros after width:
    8 numbers at a time where the panel is full (NR is 8, 16 or 32: panel_width)."""
    nr = panel.shape[1]
    for k in range(depth):
        row, dst = b[k0 + k], panel[k]
        if width == nr:
            for v0 in range(0, nr, 8):
                for v in range(8):
                    dst[v0 + v] = row[start + v0 + v]
        else:
            for v in range(width):
                dst[v] = row[start + v]
            for v in range(width, nr):
                dst[v] = 0


def _kernels(stamp):
    """The products, keeping ``stamp`` (a hash of this module's, _numba_panels.py's and
    _numba_borrowed.py's source) in their closures, where numba's disk cache looks."""
    njit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @njit
    def gram(a, b, out, nr, q0, q1):
        """out[:, q0·NR .. q1·NR] += a (N, M)ᵀ·b (N, P) there (``nr``: NR, panel_width;
        panel q1 - 1 may be b's last, part-filled one)."""
        stamp  # noqa: B018 (in the closure: numba's cache key hashes it)
        N, M = a.shape
        P = b.shape[1]
        full = P // nr
        last = min(q1, -(-P // nr))  # panels q0 .. last, the one past ``full`` part-filled
        groups, whole = -(-M // ROWS), M - M % ROWS
        packed = M >= PACKED_FROM
        memory = (np.zeros((DEPTH, nr), b.dtype),
                  np.zeros((groups if packed else 0, DEPTH, ROWS), a.dtype),
                  np.zeros((ROWS, (full + 1) * nr), out.dtype),
                  np.zeros((M + ROWS, nr), out.dtype))
        one, a_packed, edge, ends = borrowed(memory)  # edge, ends: sums out can't hold
        a, b, out = borrowed((a, b, out))
        for k0 in range(0, N, DEPTH):
            depth = min(N, k0 + DEPTH) - k0
            for k in range(depth if packed else 0):  # a's chunk, ROWS columns a group
                row = a[k0 + k]
                for g in range(groups):
                    dst, start = a_packed[g, k], g * ROWS
                    if start + ROWS <= M:
                        for v in range(ROWS):
                            dst[v] = row[start + v]
                    else:
                        for v in range(M - start):
                            dst[v] = row[start + v]
            for q in range(q0, last):
                if packed or q >= full:  # b's panel q of the chunk, copied into ``one``
                    _copy_panel(b, k0, depth, q * nr, min(nr, P - q * nr), one)
                    panel, p = one[:depth], 0
                else:  # read in place
                    panel, p = b[k0:k0 + depth], q
                for g in range(groups):
                    rows, m0 = (a_packed[g, :depth], 0) if packed else (a[k0:k0 + depth], g * ROWS)
                    n = min(ROWS, M - g * ROWS)
                    if q < full and n == ROWS:
                        _summed(rows, m0, n, panel, p, out[g * ROWS:, q * nr - p * nr:])
                    elif q < full:
                        _summed(rows, m0, n, panel, p, edge[:, q * nr - p * nr:])
                    else:
                        _summed(rows, m0, n, panel, p, ends[g * ROWS:])
        for m in range(whole, M):
            for j in range(q0 * nr, min(last, full) * nr):
                out[m, j] = edge[m - whole, j]
        if last > full:
            for m in range(M):
                for v in range(P - full * nr):
                    out[m, full * nr + v] = ends[m, v]
        alive(memory)

    @njit
    def times_packed(d, panels, out):
        """out (N, D) = d (N, P)·W (P, D), W packed by _numba_panels.pack."""
        stamp  # noqa: B018
        N, D = out.shape
        acc = np.empty((BLOCK + ROWS, panels.shape[0] * panels.shape[2]), d.dtype)
        for r0 in range(0, N, BLOCK):
            r1 = min(N, r0 + BLOCK)
            panel_product(d, r0, r1, panels, acc)
            for r in range(r0, r1):
                for j in range(D):
                    out[r, j] = acc[r - r0, j]

    return gram, times_packed


_gram, times_packed = _kernels(source_stamp("_numba_panels", "_numba_products",
                                            "_numba_borrowed"))


def gram(a, b, out, q0=0, q1=None):
    """out = aᵀ·b for a (N, M), b (N, P), out (M, P), zeros on entry: C-contiguous, of one
    float dtype; or only its panels q0 .. q1 (columns q0·NR .. q1·NR, NR = panel_width):
    threads can share one product by its columns."""
    nr = panel_width(a.dtype.itemsize)
    _gram(a, b, out, nr, q0, -(-b.shape[1] // nr) if q1 is None else q1)
