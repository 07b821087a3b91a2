"""Compiled recurrence loops (numba) for SimpleRNN, LSTM and GRU.

With numpy, each timestep costs a few microseconds of call overhead per call whatever its
size (an LSTM step is a dozen calls), which dominates when batch x units is small. These
loops run the same arithmetic, row by row, in machine code (rnncli/core/_numba_kernels.py,
cached on disk after the first compilation); they release the GIL, so the engine runs
them in row blocks on several threads as it does the numpy loop.

Two things differ from the numpy path by a few ulps, never more: the dot product sums
in a fixed order (BLAS may block it differently), and the activations are the loop's own
(rnncli/core/_numba_activations.py): float32 ``tanh`` (and ``sigmoid``, as tanh(z/2)/2 +
1/2) is the rational approximation TensorFlow itself uses on CPUs (Eigen's, max error
4e-7), float64 ``tanh`` and ``sigmoid`` come from an e^x - 1 within 3 ulp, because
libm's, a call a value, would cost more than the rest of the step. Tests check both
paths agree (about 1e-6 in float32, 1e-11 in float64) and match Keras' numbers.

numba is optional (``pip install 'rnncli[fast]'``); without it, or with
``RNNCLI_ENGINE=numpy`` (or ``Model.run(engine="numpy")``), the numpy path runs;
``numba`` forces this one.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
import weakref

import numpy as np

# Activations the kernels compute (their codes in _numba_activations).
CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "linear": 3, "hard_sigmoid": 4}
ACTIVATIONS = tuple(CODES)
HARD_SIGMOID_K2 = 5
# In a one-shot process (the CLI) importing numba and loading its cached code costs about
# 0.4 s, which the compiled loop saves past ~100k steps (numpy's ~2.5 us a call) or
# ~2^32 multiply-adds of h·U (it saves ~0.1 ns of each: LSTM (256, 50, 32, 64) 0.47 ->
# 0.10 ms a step for 4.2M).
ONE_SHOT_MIN_STEPS = 100_000
ONE_SHOT_MIN_PRODUCTS = 2**32


@functools.cache
def _numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


def available(engine, kind=None) -> bool:
    """Whether the compiled loops may run for ``engine`` (``kind``: its kind, when the
    caller has read it already)."""
    return (kind or engine.kind) != "numpy" and _numba_installed()


def code(name, keras_major=3):
    """The kernels' code for an activation, or None if they don't compute it."""
    if name == "hard_sigmoid" and keras_major < 3:
        return HARD_SIGMOID_K2
    return CODES.get(name)


_cache = weakref.WeakKeyDictionary()  # cell -> (its weight arrays, {parts: Packed})
_cache_lock = threading.Lock()


def packed(cell, parts=0) -> Packed:
    """The cell's weights packed for the compiled loops, packed once and kept with the
    cell while its weight arrays are the same read-only arrays (rnncli/core/cell.py
    freezes them; assigning a new array packs again), as ONNX Runtime packs a model's
    weights once per session: packing an LSTM's U of 512 units took 0.95 ms of float32
    scans of 2.5-7 ms (1.9 ms split in two). A cell whose arrays are writeable is packed
    afresh every scan."""
    weights = (cell.kernel, cell.recurrent_kernel, cell.bias)
    if any(w is not None and w.flags.writeable for w in weights):
        return Packed(cell, parts)
    with _cache_lock:
        kept, by_parts = _cache.get(cell, (None, {}))
        if kept is None or any(a is not b for a, b in zip(kept, weights)):
            by_parts = {}
            _cache[cell] = (weights, by_parts)
        done = by_parts.get(parts)
    if done is None:  # packed outside the lock; two scans racing both pack, one is kept
        done = Packed(cell, parts)
        with _cache_lock:
            by_parts.setdefault(parts, done)
    return done


class Packed:
    """A cell's weights as the compiled loops read them, packed once per scan
    (rnncli/core/_numba_panels.py): ``kernel`` and ``recurrent_kernel`` in panels,
    ``bias`` (P,) the input bias (zeros for none) and ``recurrent_bias`` (P,) a GRU's
    (zeros for other cells); ``finite``: U holds no inf or nan. With ``parts``, for the
    loop split by units (rnncli/core/_numba_split.py): part q holds units q·H/parts ..
    (q + 1)·H/parts of every gate, each array stacked (parts, ...). Read-only once made:
    scans share it (``packed`` keeps it with the cell)."""

    def __init__(self, cell, parts=0):
        from ._numba_panels import pack, packed_shape

        dtype, H = cell.dtype, cell.units
        kernel, bias = cell.input_projection()
        kernel = np.asarray(kernel, dtype)
        u = np.asarray(cell.recurrent_kernel, dtype)
        P = kernel.shape[1]
        bias = np.zeros(P, dtype) if bias is None else np.asarray(bias, dtype)
        rb = getattr(cell, "recurrent_bias", None)
        rb = np.zeros(P, dtype) if rb is None else np.asarray(rb, dtype)
        self.parts = parts
        self._sources = (np.asarray(cell.kernel, dtype), u)  # for ``transposed``
        # a zero h's h·U is zero (the first step's, from a zero state, is skipped) only
        # where U holds no inf or nan (0·inf is nan)
        self.finite = bool(np.isfinite(u).all())
        if not parts:
            self.kernel = pack(kernel, np.empty(packed_shape(*kernel.shape, dtype.itemsize), dtype))
            self.recurrent_kernel = pack(u, np.empty(packed_shape(H, P, dtype.itemsize), dtype))
            # copies: the cell's read-only bias would make every kernel compile a second
            # signature (numba types read-only arrays apart) beside a bias-less cell's
            self.bias, self.recurrent_bias = np.array(bias, order="C"), np.array(rb, order="C")
            return
        size, gates = H // parts, P // H
        columns = [np.concatenate([np.arange(g * H + q * size, g * H + (q + 1) * size)
                                   for g in range(gates)]) for q in range(parts)]
        width = gates * size
        self.kernel = np.empty((parts, *packed_shape(kernel.shape[0], width, dtype.itemsize)),
                               dtype)
        self.recurrent_kernel = np.empty((parts, *packed_shape(H, width, dtype.itemsize)), dtype)
        for q, c in enumerate(columns):
            pack(kernel, self.kernel[q], c)
            pack(u, self.recurrent_kernel[q], c)
        self.bias = np.stack([bias[c] for c in columns])
        self.recurrent_bias = np.stack([rb[c] for c in columns])

    @functools.cached_property
    def recurrent_transposed(self):
        """Uᵀ's columns part by part (parts, ...), each part's units as ``recurrent_kernel``
        cuts them, packed for the backward loop split by units
        (rnncli/core/_numba_backward_split.py): made when a gradient first asks."""
        from ._numba_panels import pack, packed_shape

        u_t = np.ascontiguousarray(self._sources[1].T)
        size = u_t.shape[1] // self.parts
        out = np.empty((self.parts, *packed_shape(u_t.shape[0], size, u_t.itemsize)),
                       u_t.dtype)
        for q in range(self.parts):
            pack(u_t, out[q], np.arange(q * size, (q + 1) * size))
        return out

    @functools.cached_property
    def transposed(self):
        """(Wᵀ, Uᵀ) packed for the backward pass (rnncli/core/fast_backward.py: dL/dx =
        dz·Wᵀ, dL/dh_{k-1} = dz·Uᵀ), made when a gradient first asks: kept with the cell
        as the forward weights are (packing Uᵀ of 512 units cost 0.5-1 ms a gradient)."""
        return pack_transposed(*self._sources)


def pack_transposed(kernel, recurrent_kernel):
    """(kernelᵀ, recurrent_kernelᵀ), each packed in panels (rnncli/core/_numba_panels.py)."""
    from ._numba_panels import pack

    return tuple(pack(np.ascontiguousarray(w.T)) for w in (kernel, recurrent_kernel))


def transposed(cell):
    """The cell's (Wᵀ, Uᵀ) packed: kept with its packed weights where those are kept
    (``packed``), else packed now."""
    weights = (cell.kernel, cell.recurrent_kernel, cell.bias)
    if any(w is not None and w.flags.writeable for w in weights):  # packed() would repack
        return pack_transposed(np.asarray(cell.kernel, cell.dtype),
                               np.asarray(cell.recurrent_kernel, cell.dtype))
    return packed(cell).transposed


def _as_taken(x, dtype) -> bool:
    """Whether the kernels take x as it is: C-contiguous, of the cell's dtype, writeable
    (numba types a read-only array apart, so one would compile every kernel again: a
    memory-mapped .npy, an input read from stdin)."""
    return x.dtype == dtype and x.flags.c_contiguous and x.flags.writeable


def contiguous(x, dtype):
    """x as the kernels take it (one compiled signature instead of one per layout)."""
    return x if _as_taken(x, dtype) else np.array(x, dtype, order="C")


def input_chunk(x, t0, t1, dtype):
    """(inputs, where step t0 is in them) for the kernels' chunk of steps t0 .. t1: all of
    x when it is already as they take it, else a copy of the chunk alone (a copy of all
    of it would make a scan that keeps no sequence O(T) in memory)."""
    if _as_taken(x, dtype):
        return x, t0
    return np.array(x[:, t0:t1], dtype, order="C"), 0


@functools.cache
def _empty(dtype):
    """The kernels' stand-ins for arrays they are not given (an untraced scan's terms, no
    mask): of no size, so shared by every call and thread (nothing is written to them)."""
    return np.empty((0, 0, 0), dtype), np.empty((0, 0), bool)


def check_widths(x, states, packed, H):
    """The kernels read x's rows and h's as wide as the packed kernels' rows are, unchecked
    (rnncli/core/_numba_panels.py): a wider one would read past the panels."""
    if x.shape[2] != packed.kernel.shape[-2] or \
            any([s.shape[1] != H for s in states]):
        raise ValueError(f"inputs of width {x.shape[2]} and states of width "
                         f"{[s.shape[1] for s in states]}; the cell takes "
                         f"{packed.kernel.shape[-2]} and {H}")


GATE_TERMS = {"lstm": ("gate",), "gru": ("hu", "gate")}  # a "gates" trace
TERMS = {"simple": ("hu", "z"), "lstm": ("hu", "z", "gate", "c_prev", "fc", "ig"),
         "gru": ("hu", "z", "gate", "reset_term", "keep", "update")}


def _recurrence(kind):
    def loop(cell, packed, x, x0, states, out, xw=None, terms=None, row0=0, mask=None,
             zero_out=False, prev=None):
        """A cell's steps over a chunk for a block of n rows: ``packed``, the cell's
        :class:`Packed` weights; ``x`` (n, T', D) the inputs, the chunk's from step
        ``x0`` (best C-contiguous already: it is copied otherwise); fills rows row0 ..
        row0 + n of ``out[state]`` (T, N, H) for each state and, when given, of ``xw``
        (x·W, T, N, P) and the cell's ``terms`` (all of them, or, for LSTM and GRU, only
        what their backward pass reads: ``GATE_TERMS``); ``mask`` (T, n) bool with
        ``prev`` (n, H), the previous outputs (updated). Returns the final states (n, H)."""
        dtype = cell.dtype
        H = cell.units
        x = contiguous(x, dtype)
        if x0 + out[cell.state_names[0]].shape[0] > x.shape[1]:
            raise ValueError(f"{x.shape[1]} steps of input; the chunk needs steps {x0} .. "
                             f"{x0 + out[cell.state_names[0]].shape[0]}")
        traced = terms is not None and ("gates" if "z" not in terms else True)
        empty, no_mask = _empty(dtype)
        t = tuple(terms.get(n, empty) for n in TERMS[kind]) if traced else ()
        t = t + (empty,) * (6 - len(t))
        states = tuple(np.array(s, dtype=dtype) for s in states)
        check_widths(x, states, packed, H)
        outs = tuple(out[n] for n in cell.state_names)
        if mask is None:
            mask, prev = no_mask, np.empty((0, H), dtype)
        ract = getattr(cell, "recurrent_activation", "linear")
        _row_kernels()[kind, dtype == np.float32, traced](
            x, x0, packed.kernel, packed.bias, packed.recurrent_kernel, packed.recurrent_bias,
            states, outs, empty if xw is None else xw, row0,
            code(cell.activation, cell.keras_major), code(ract, cell.keras_major), t,
            np.ascontiguousarray(mask), bool(zero_out), prev,
            packed.finite and not np.count_nonzero(states[0]))
        return states

    loop.__name__ = loop.__qualname__ = f"{kind}_recurrence"
    loop.kind = kind
    return loop


simple_rnn_recurrence = _recurrence("simple")
lstm_recurrence = _recurrence("lstm")
gru_recurrence = _recurrence("gru")  # reset_after=True only


@functools.cache  # imported once: an import in a function took 1-4 us of each block's call
def _row_kernels():
    from ._numba_kernels import KERNELS

    return KERNELS


@functools.cache
def spin_wait():
    """(wait_until, add) of rnncli/core/_numba_atomics.py: how a thread that ran its share
    of compiled blocks waits for the helpers' last ones, and how they say they are done
    (rnncli/core/workers.py, Job)."""
    from ._numba_atomics import add, wait_until

    return wait_until, add


def worth_it(B: int, H: int, gates: int = 1, itemsize: int = 4) -> bool:
    """Whether the compiled loop beats numpy's for B rows of H units (``gates`` blocks in
    the kernel: LSTM 4, GRU 3). Measured on 2 cores (numpy loop time / compiled, at
    shapes of benchmarks/forward.py --grid, its number of steps; docs/performance.md):
    the compiled loop's products run at about twice OpenBLAS's rate here and its
    elementwise work is one pass (float64 tanh and exp included, since they are its own
    and vectorize: rnncli/core/_numba_activations.py), so it wins

    - up to 4 rows always (numpy's per-call cost dominates there);
    - LSTM and GRU everywhere (float32 2.0-7.6x, float64 1.2-62x);
    - SimpleRNN from 32 units (1.1-16x), or up to 256 rows in float32 (0.60x at (1024,
      200, 32, 16), where a panel of 32 columns is half padding) and 16 in float64
      (0.62-0.97x from 64 rows of 16 units).
    """
    if B <= 4 or gates > 1 or H >= 32:
        return True
    return B <= (256 if itemsize <= 4 else 16)


# One thread's cost of a compiled row step (ns): a fixed part, per multiply-add of x·W
# and h·U, per value of the kernel's width (activations, the cell's arithmetic), and per
# byte of W and U, read once a step per group of up to 64 rows (BLOCK). Fitted (least
# squares on relative error, within 30% of every point) to one thread's times of LSTM and
# GRU scans of 1-16 rows and 16-256 units, 32 features, on this 2-core EPYC, after the
# loops stopped counting references (scratch of session 9; 0.5x the last fit's times).
ROW_STEP_NS = {4: (54, 0.0080, 0.0, 0.0053), 8: (50, 0.0153, 0.84, 0.0063)}
# What running a scan in threads costs here, once: waking an idle vCPU and handing the GIL
# between blocks (measured one thread against two: 0.10-0.18 ms more than half the
# one-thread time, LSTM and GRU scans of 4-64 rows, 16-256 units, 10-1000 steps).
THREAD_SECONDS = 0.15e-3


def one_thread_seconds(B: int, T: int, D: int, H: int, gates: int = 1,
                       itemsize: int = 4) -> float:
    """About how long the compiled loop takes over (B, T, D) in one thread, H units."""
    fixed, per_mac, per_value, per_byte = ROW_STEP_NS[8 if itemsize > 4 else 4]
    P = gates * H
    weights = P * (D + H) * itemsize * per_byte / min(max(B, 1), 64)
    return B * T * (fixed + P * (D + H) * per_mac + P * per_value + weights) * 1e-9


@functools.cache  # a constant of the CPU: importing it took 1 us of every plan's 12
def min_block_rows() -> int:
    """Fewest rows a thread's block of the compiled loop should have: one full group of
    rows (rnncli/core/_numba_panels.py: 8 with AVX-512, 4 without), as a group reads all
    of U every step and smaller ones reuse each value of U less (measured: LSTM (16, 200,
    32, 64) 11.0 us a step in one block, 15.6 in two threads of 2-row blocks)."""
    from ._numba_panels import ROWS

    return ROWS


def split_parts(B: int, H: int, gates: int = 1, itemsize: int = 4, threads: int = 1) -> int:
    """Into how many parts (threads) the compiled loop splits each step's units, or 0
    (rnncli/core/_numba_split.py): batches of fewer than two row blocks whose steps are
    big enough to pay for the threads' wait on each other every step. Measured (time
    split in two / one thread's rows, 300-1000 steps, 32 features, 3 runs):

    - LSTM and GRU of up to 4 rows, from 384 gate columns in float32 (LSTM 128 units:
      0.67-0.79x; GRU 128: 0.75-0.82x, 256: 0.58x; at 64 units 0.84-1.01x quiet but
      behind ONNX Runtime with a busy process beside it, where a thread waits for the
      other every step: 0.73-0.80x in the grid, 0.94-1.00x unsplit; 1.3-1.9x slower at
      16-32 units) and from 128 in float64 (LSTM 32 units: 0.80-0.82x, GRU 64:
      0.66-0.69x; GRU 32: 1.03-1.13x);
    - from 5 rows to two row blocks (8 or 16), float32, from B x gates x H^2 = 2^19
      (LSTM (8, 128): 1.00x; (8, 64): 1.10x, GRU (8, 64): 1.64x), float64 from 2^16;
    - SimpleRNN from 2^21 (0.55-1.3x at 1 x 512, 1.4-1.9x at 8 x 512).
    """
    if threads < 2 or B >= 2 * min_block_rows():
        return 0
    if gates > 1 and B <= 4:
        enough = gates * H >= (128 if itemsize > 4 else 384)
    elif itemsize > 4:
        enough = B * gates * H * H >= 2**16
    else:
        enough = max(B, 2) * gates * H * H >= (2**19 if gates > 1 else 2**21)
    if not enough:
        return 0
    parts = threads
    while parts > 1 and H % parts:
        parts -= 1
    return parts if parts > 1 else 0
