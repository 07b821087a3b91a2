"""The backward pass's large products, compiled (numba; imported only where the compiled
backward loops run): the weight gradients' aᵀ·b summed over every step and row, and
dL/dx = dz·Wᵀ, with the forward loop's register-blocked product
(rnncli/core/_numba_panels.py) in place of numpy's OpenBLAS, which picks its AVX2 kernels
on CPUs it does not know (half the AVX-512 rate here: 100-118 GFLOP/s single-threaded on
these products' shapes against the panels' 230-255).

:func:`gram` reads a and b where they lie, nothing copied: the panels' product in its
``summing`` form (_numba_panels._panel_product) takes ROWS of a's columns as the rows
of aᵀ and NR of b's adjacent columns as a panel, over a chunk of ``DEPTH`` rows of both
(a panel's chunk, DEPTH x NR numbers, 32 KiB in float32 with AVX-512: the L1 cache);
each chunk's sum is added to the result, as BLAS adds its blocks' (rounding as BLAS's:
1 chain of N multiply-adds had 10x BLAS's error at N = 12800). b's columns past its last
whole panel are copied into one padded with zeros. Numbers differ from BLAS's by
rounding only (the sums run in another order).
"""

import numba
import numpy as np

from ._numba_borrowed import alive, borrowed
from ._numba_panels import BLOCK, ROWS, _panel_product, panel_product, panel_width, source_stamp

DEPTH = 256  # rows of a and b a chunk sums over
_summed = _panel_product(ROWS, summing=True)


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
        tail = P - full * nr
        whole = M - M % ROWS  # a's columns in whole groups: their sums go straight to out
        memory = (np.zeros((ROWS, (full + 1) * nr), out.dtype),
                  np.zeros((M + ROWS, nr), out.dtype), np.zeros((DEPTH, nr), b.dtype))
        edge, ends, last = borrowed(memory)  # the part group's sums; the last panel's; it
        a, b, out = borrowed((a, b, out))
        for k0 in range(0, N, DEPTH):
            a_rows, b_rows = a[k0:k0 + DEPTH], b[k0:k0 + DEPTH]
            for q in range(q0, min(q1, full)):
                for m0 in range(0, whole, ROWS):
                    _summed(a_rows, m0, ROWS, b_rows, q, out[m0:])
                if whole < M:
                    _summed(a_rows, whole, M - whole, b_rows, q, edge)
            if tail and q1 > full:  # the columns past the last whole panel: zeros after P
                depth = a_rows.shape[0]
                for k in range(depth):
                    for v in range(tail):
                        last[k, v] = b_rows[k, full * nr + v]
                for m0 in range(0, M, ROWS):
                    _summed(a_rows, m0, min(ROWS, M - m0), last[:depth], 0, ends[m0:])
        for m in range(whole, M):
            for j in range(q0 * nr, min(q1, full) * nr):
                out[m, j] = edge[m - whole, j]
        if tail and q1 > full:
            for m in range(M):
                for v in range(tail):
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
