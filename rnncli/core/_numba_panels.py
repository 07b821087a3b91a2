"""h·U and x·W for the compiled loops (rnncli/core/_numba_kernels.py, _numba_split.py): a
register-blocked product over a kernel packed once per scan, and x·W + b of a few steps
at once (numba; imported only with the kernels).

Why not BLAS: each step's h·U is a small product (a block of rows times U), and BLAS
copies U into its panels on every call, which at 8-64 rows costs as much as the product
itself; numpy's OpenBLAS also picks its AVX2 kernels on CPUs it doesn't know (an AMD EPYC
with AVX-512 here). Packing U once and reading it panel by panel, with the products of
``ROWS`` rows kept in vector registers, runs at about twice OpenBLAS's single-threaded
rate on its own big sgemm (benchmarks/forward.py; docs/performance.md).

The layout: U (H, P) becomes ``panels`` (P' / NR, H, NR), P' = P rounded up to NR
columns (zeros beyond P); panel p holds U's columns p·NR .. p·NR + NR, row after row.
For a group of up to ``ROWS`` rows, :func:`panel_product` keeps ``rows x NR``
accumulators in registers and adds h[b, i]·U[i, j] for i = 0, 1, .., H-1, one fused
multiply-add each. Every number is that sequence for its own row and column: the same
bits whatever the rows beside it, the block it is in, or the thread that runs it.

The product is written as LLVM vector code (an ``@intrinsic``) because numba's loops
left the accumulators in memory (5 GFLOP/s against 230 here). Vector lengths follow the
CPU numba compiles for: 64-byte vectors with AVX-512 (8 rows x 2 vectors: 16 of its 32
registers), 32-byte ones otherwise (4 rows x 2 vectors of 16 registers). Kernels that
inline this module keep a hash of its source in their closures (``source_stamp``), so
numba's disk cache follows its edits.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _has_avx512() -> bool:
    """Whether numba compiles for AVX-512: its own view of the CPU's features, which
    NUMBA_ENABLE_AVX=0 (numba's default on some CPUs) strips of every AVX one."""
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    if config.CPU_FEATURES is not None:
        features = config.CPU_FEATURES
    elif config.CPU_NAME not in (None, "host"):
        return False
    else:
        features = get_host_cpu_features()
    return "+avx512f" in features.split(",")  # not +avx512fp16 and the like


VECTOR_BYTES = 64 if _has_avx512() else 32
ROWS = 8 if VECTOR_BYTES == 64 else 4  # rows a group computes at once
VECTORS = 2  # vectors of columns a panel is wide


def source_stamp(*modules: str) -> str:
    """A hash of these modules' source files (names in this package), for compiled kernels
    to keep in their closures: numba's disk cache keys a function on its own bytecode and
    closure only, so a kernel that inlines code from another module would otherwise load
    stale machine code after that module changed."""
    import hashlib
    import os

    digest = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in modules:
        try:
            with open(os.path.join(here, name + ".py"), "rb") as f:
                digest.update(f.read())
        except OSError:  # no source (a build of .pyc only): the package's version then
            from .. import __version__

            digest.update(__version__.encode())
    return digest.hexdigest()


def panel_width(itemsize: int) -> int:
    """NR: the columns of a panel, for values of ``itemsize`` bytes."""
    return VECTORS * VECTOR_BYTES // itemsize


def packed_shape(H: int, P: int, itemsize: int) -> tuple:
    """The shape :func:`pack` gives U (H, P): (ceil(P / NR), H, NR)."""
    nr = panel_width(itemsize)
    return (-(-P // nr), H, nr)


def pack(u: np.ndarray, out: np.ndarray = None, columns: np.ndarray = None) -> np.ndarray:
    """U (H, P), or its ``columns`` (indices) in that order, as panels (ceil(P / NR), H,
    NR), zeros past the last column; into ``out`` when given (a fresh array costs a page
    fault every 4 KiB, more than the copy here)."""
    H = u.shape[0]
    P = u.shape[1] if columns is None else len(columns)
    count, _, nr = packed_shape(H, P, u.dtype.itemsize)
    if out is None:
        out = np.empty((count, H, nr), u.dtype)
    full = P // nr
    if columns is None:
        out[:full] = u[:, :full * nr].reshape(H, full, nr).transpose(1, 0, 2)
        tail = u[:, full * nr:]
    else:
        for p in range(full):
            c = columns[p * nr:(p + 1) * nr]
            adjacent = bool((np.diff(c) == 1).all())  # a slice of U (np.take was 50x slower)
            out[p] = u[:, c[0]:c[-1] + 1] if adjacent else u[:, c]
        tail = u[:, columns[full * nr:]]
    if count > full:
        out[full, :, :tail.shape[1]] = tail
        out[full, :, tail.shape[1]:] = 0
    return out


def _panel_product(rows, count=1, summing=False):
    """An intrinsic ``product(h, b0, n, panels, p, acc)``: acc[m, p·NR .. (p + count)·NR]
    = h[b0 + m]·U[:, those columns] for m < ``rows`` (rows past n repeat row b0 + n - 1,
    their results unused: acc has ``rows`` rows or more). ``count`` panels at once keep
    a few rows' chains of multiply-adds from waiting on each other.

    ``summing``: the backward pass's aᵀ·b (rnncli/core/_numba_products.py), a and b as
    2-D arrays whose rows may be apart, not pack's layout: ``h`` is a (K, M), row m of the
    product being a's column b0 + m, and ``panels`` is b (K, P), panel p its columns p·NR
    .. p·NR + NR (all within P); the products' sum is added to what acc holds."""

    @intrinsic
    def product(typingctx, h, b0, n, panels, p, acc):
        arrays = (h, panels, acc)
        if any(not isinstance(a, types.Array) or a.dtype != h.dtype for a in arrays) or \
                h.dtype not in (types.float32, types.float64) or \
                (panels.layout != "C" and not summing):
            return None  # a typing error: float32 or float64 arrays, panels as pack made them
        if summing and (h.ndim != 2 or panels.ndim != 2):
            return None

        def codegen(context, builder, sig, args):
            h_type, _, _, panels_type, _, acc_type = sig.args
            h_arr = context.make_array(h_type)(context, builder, args[0])
            panels_arr = context.make_array(panels_type)(context, builder, args[3])
            acc_arr = context.make_array(acc_type)(context, builder, args[5])
            b0, n, p = args[1], args[2], args[4]
            value = context.get_value_type(h_type.dtype)
            lanes = VECTOR_BYTES // (h_type.dtype.bitwidth // 8)
            vector = ir.VectorType(value, lanes)
            pointer = vector.as_pointer()
            index = ir.IntType(64)
            nr = VECTORS * lanes
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector] * 3),
                f"llvm.fma.v{lanes}f{h_type.dtype.bitwidth}")
            units = builder.extract_value(h_arr.shape, 0 if summing else 1)
            h_stride = builder.extract_value(h_arr.strides, 0)  # bytes
            acc_stride = builder.extract_value(acc_arr.strides, 0)
            byte = ir.IntType(8).as_pointer()
            element = h_arr.data.type

            def row_of(arr, stride, k):  # &arr[k, 0]: rows may be apart, columns adjacent
                start = builder.bitcast(arr.data, byte)
                return builder.bitcast(builder.gep(start, [builder.mul(k, stride)]), element)

            def const(v):
                return ir.Constant(index, v)

            def down(column, i):  # &a[i, m] from &a[0, m]: a's rows may be apart
                start = builder.bitcast(column, byte)
                return builder.bitcast(builder.gep(start, [builder.mul(i, h_stride)]), element)

            columns = [(q, v) for q in range(count) for v in range(VECTORS)]
            sums = [[cgutils.alloca_once(builder, vector) for _ in columns] for _ in range(rows)]
            for slot in (s for row in sums for s in row):
                builder.store(ir.Constant(vector, None), slot)
            column = builder.mul(p, const(nr))
            last = builder.sub(n, const(1))
            h_rows = []
            for m in range(rows):
                k = builder.select(builder.icmp_signed("<", const(m), n), const(m), last)
                h_rows.append(builder.gep(h_arr.data, [builder.add(b0, k)]) if summing else
                              row_of(h_arr, h_stride, builder.add(b0, k)))
            if summing:  # a row of b to the next; a panel is NR columns on
                u_step = builder.sdiv(builder.extract_value(panels_arr.strides, 0),
                                      const(h_type.dtype.bitwidth // 8))
                panel = builder.gep(panels_arr.data, [column])
            else:
                u_step = const(nr)
                panel = builder.gep(panels_arr.data, [builder.mul(column, units)])
            undef = ir.Constant(vector, ir.Undefined)
            broadcast = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            stride = const(nr) if summing else builder.mul(units, const(nr))  # panel to panel
            with cgutils.for_range(builder, units) as loop:
                i = loop.index
                u_row = builder.gep(panel, [builder.mul(i, u_step)])
                u = [builder.load(builder.bitcast(builder.gep(u_row, [
                    builder.add(builder.mul(const(q), stride), const(v * lanes))]),
                    pointer), align=4) for q, v in columns]
                for m in range(rows):
                    if summing:
                        hv = builder.load(down(h_rows[m], i))
                    else:
                        hv = builder.load(builder.gep(h_rows[m], [i]))
                    hv = builder.shuffle_vector(
                        builder.insert_element(undef, hv, ir.Constant(ir.IntType(32), 0)),
                        undef, broadcast)
                    for k, s in enumerate(sums[m]):
                        builder.store(builder.call(fma, [hv, u[k], builder.load(s)]), s)
            for m in range(rows):
                out = builder.gep(row_of(acc_arr, acc_stride, const(m)), [column])
                for k, (q, v) in enumerate(columns):
                    target = builder.bitcast(builder.gep(out, [const(q * nr + v * lanes)]),
                                             pointer)
                    found = builder.load(sums[m][k])
                    if summing:  # one sum of K products, then added: less rounding
                        found = builder.fadd(builder.load(target, align=4), found)
                    builder.store(found, target, align=4)
            return context.get_dummy_value()

        return types.void(h, b0, n, panels, p, acc), codegen

    return product


# (rows, panels at once): at least 8 chains of multiply-adds for few rows, 16 for 3-4
# (4 rows of 2 panels against 1: products alone 4-11% faster at 16-128 units; LSTM (4,
# 1000, 32, 64) one thread 1.30-1.52 against 1.38-1.58 us a step, 6 runs each, alternated)
_product_1 = _panel_product(1)
_product_1x4 = _panel_product(1, 4)
_product_2 = _panel_product(2)
_product_2x2 = _panel_product(2, 2)
_product_4 = _panel_product(4)
_product_4x2 = _panel_product(4, 2)
_product_rows = _panel_product(ROWS)


# Rows whose products are computed panel by panel before the next rows': each panel is
# read once per BLOCK rows rather than once per ROWS (U read 32 -> 4 times a step). Worth
# little here: LSTM (256, 50, 32, 256), 2 threads, 0.377-0.383 ms a step against
# 0.384-0.387 with BLOCK = ROWS; (256, 10, 32, 512) 1.32-1.36 against 1.33-1.39 (3 runs
# each, interleaved), where U comes from the shared cache at about the rate of the FMAs.
BLOCK = 8 * ROWS


@numba.njit(inline="always")
def panel_product(h, b0, b1, panels, acc, backward=False):
    """acc[b - b0, :P'] = h[b]·U for b in b0 .. b1 (at most BLOCK rows), U as ``pack``
    left it: panel by panel, and in each, ROWS rows at a time. h (N, H) and acc
    (b1 - b0 + ROWS rows or more, P') with adjacent columns (rows may be apart: h can
    be x[:, t, :]). ``backward``: the panels from the last to the first (the same
    numbers: a column's sum doesn't depend on when it is computed)."""
    n = b1 - b0
    count = panels.shape[0]
    if n == 1:
        group = 4
    elif n <= 4:
        group = 2
    else:
        group = 1
    whole = count - count % group
    groups = -(-count // group)  # the whole groups, then the panels past them
    for i in range(groups):
        if backward:
            i = groups - 1 - i
        p = i * group
        if p >= whole:  # the panels past the last whole group, one at a time
            for p1 in range(whole, count):
                if n == 1:
                    _product_1(h, b0, n, panels, p1, acc)
                elif n == 2:
                    _product_2(h, b0, n, panels, p1, acc)
                else:
                    _product_4(h, b0, n, panels, p1, acc)
        elif n == 1:
            _product_1x4(h, b0, n, panels, p, acc)
        elif n == 2:
            _product_2x2(h, b0, n, panels, p, acc)
        elif n <= 4:
            _product_4x2(h, b0, n, panels, p, acc)
        else:
            for g0 in range(b0, b1, ROWS):
                _product_rows(h, g0, min(ROWS, b1 - g0), panels, p, acc[g0 - b0:])


# A row or two's x·W + b, AHEAD steps at a time ahead of their recurrence, with the
# products of 8 steps at once in registers: a step's own product of one row is a few
# chains of multiply-adds, each waiting on the last, and where W and U outgrow the L1
# cache (48 KiB a core here) each step reads W again from L2 beside U. Same bits (each
# number is the same multiply-adds in the same order). One thread, 1000 steps, 32
# features: LSTM (1, ., ., 64) float32 0.80 -> 0.61 us a step, GRU 0.58 -> 0.47; with W
# and U in L1 too (session 12, 3 alternated runs): LSTM (1, ., ., 16) 0.161-0.174 ->
# 0.152-0.154, (1, ., ., 32) 0.27 -> 0.19-0.23, GRU (1, ., ., 16) 0.159-0.171 ->
# 0.135-0.142, (2, ., ., 16) 0.20-0.21 -> 0.16-0.17, SimpleRNN (1, ., ., 16) 0.114-0.117
# -> 0.100-0.105; LSTM (2, ., ., 16) and float64 LSTM (1-2, ., ., 16-32) within noise. At
# 4 rows 0.95-1.07x, so not there. The split loop (_numba_split.py) does the same for
# its parts.
AHEAD, AHEAD_ROWS = 32, 2


@numba.njit(inline="always")
def project_ahead(x, x0, t0, steps, kernel, bias, xw, row0, ahead, keep_xw):
    """ahead[b, s, :P'] = x[b, x0 + t0 + s]·W + b for s < steps (``xw``'s rows row0 + b,
    steps t0 + s, get x·W first with ``keep_xw``)."""
    P = bias.shape[0]
    for b in range(x.shape[0]):
        xb = x[b, x0 + t0:x0 + t0 + steps, :]
        rows = ahead[b]
        for g0 in range(0, steps, BLOCK):
            panel_product(xb, g0, min(steps, g0 + BLOCK), kernel, rows[g0:])
        for s in range(steps):
            if keep_xw:
                for j in range(P):
                    xw[t0 + s, row0 + b, j] = rows[s, j]
            for j in range(P):
                rows[s, j] += bias[j]
