"""Compiled recurrence loops (numba) for SimpleRNN, LSTM and GRU.

With numpy, each timestep costs a few microseconds of call overhead per call whatever its
size (an LSTM step is a dozen calls), which dominates when batch x units is small. These
loops run the same arithmetic, row by row, in machine code (rnncli/core/_numba_kernels.py,
cached on disk after the first compilation); they release the GIL, so the engine runs
them in row blocks on several threads as it does the numpy loop.

Two things differ from the numpy path by a few float32 ulps, never more: the dot
product sums in a fixed order (BLAS may block it differently), and float32 ``tanh``
(and ``sigmoid``, as tanh(z/2)/2 + 1/2) is the rational approximation TensorFlow itself
uses on CPUs (Eigen's, max error 4e-7), because libm's scalar tanhf/expf would cost more
than the rest of the step. Tests check both paths agree to about 1e-6 and both match
Keras' numbers to 1e-5.

numba is optional (``pip install 'rnncli[fast]'``); without it, or with
``RNNCLI_ENGINE=numpy`` (or ``Model.run(engine="numpy")``), the numpy path runs;
``numba`` forces this one.
"""

from __future__ import annotations

import importlib.util

import numpy as np

# Activations the kernels compute (their codes in _numba_kernels).
CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "linear": 3, "hard_sigmoid": 4}
ACTIVATIONS = tuple(CODES)
HARD_SIGMOID_K2 = 5
# In a one-shot process (the CLI) importing numba and loading its cached code costs about
# 0.3 s, which numpy's per-step overhead (~2.5 us) only exceeds past ~100k steps.
ONE_SHOT_MIN_STEPS = 100_000
# Shorter sequences take the numpy loop: their fixed costs dominate anyway, and their
# numbers are then those of the CLI's one-shot runs to the bit.
MIN_STEPS = 64


def available(engine) -> bool:
    return engine.kind != "numpy" and importlib.util.find_spec("numba") is not None


def code(name, keras_major=3):
    """The kernels' code for an activation, or None if they don't compute it."""
    if name == "hard_sigmoid" and keras_major < 3:
        return HARD_SIGMOID_K2
    return CODES.get(name)


def pack(cell):
    """The cell's recurrent kernel packed for the compiled loops' h·U (once per scan:
    rnncli/core/_numba_panels.py)."""
    from ._numba_panels import pack as pack_panels

    return pack_panels(np.asarray(cell.recurrent_kernel, cell.dtype))


TERMS = {"simple": ("hu", "z"), "lstm": ("hu", "z", "gate", "c_prev", "fc", "ig"),
         "gru": ("hu", "z", "gate", "reset_term", "keep", "update")}


def _recurrence(kind):
    def loop(cell, panels, xwb, states, out, terms=None, row0=0, mask=None, zero_out=False,
             prev=None):
        """A cell's steps over a chunk for a block of n rows: ``panels``, the cell's
        :func:`pack`; ``xwb`` (T, n, P) holds x·W + b; fills rows row0 .. row0 + n of
        ``out[state]`` (T, N, H) for each state and, when given, of the cell's ``terms``;
        ``mask`` (T, n) bool with ``prev`` (n, H), the previous outputs (updated).
        Returns the final states (n, H)."""
        from ._numba_kernels import KERNELS

        dtype = xwb.dtype
        H = cell.units
        traced = terms is not None
        empty = np.empty((0, 0, 0), dtype)
        t = tuple(terms[n] for n in TERMS[kind]) if traced else ()
        t = t + (empty,) * (6 - len(t))
        states = tuple(np.array(s, dtype=dtype) for s in states)
        outs = tuple(out[n] for n in cell.state_names)
        rb = getattr(cell, "recurrent_bias", None) if kind == "gru" else None
        rb = np.zeros(xwb.shape[2], dtype) if rb is None else np.ascontiguousarray(rb, dtype)
        if mask is None:
            mask, prev = np.empty((0, 0), bool), np.empty((0, H), dtype)
        ract = getattr(cell, "recurrent_activation", "linear")
        KERNELS[kind, dtype == np.float32, traced](
            xwb, panels, rb, states, outs, row0, code(cell.activation, cell.keras_major),
            code(ract, cell.keras_major), t, np.ascontiguousarray(mask), bool(zero_out),
            prev)
        return states

    loop.__name__ = loop.__qualname__ = f"{kind}_recurrence"
    return loop


simple_rnn_recurrence = _recurrence("simple")
lstm_recurrence = _recurrence("lstm")
gru_recurrence = _recurrence("gru")  # reset_after=True only


def worth_it(B: int, H: int, gates: int = 1, itemsize: int = 4) -> bool:
    """Whether the compiled loop beats numpy's for B rows of H units (``gates`` blocks in
    the kernel: LSTM 4, GRU 3), measured with benchmarks/choices.py on the grid of
    benchmarks/forward.py --grid (docs/performance.md). It wins wherever numpy's fixed cost
    per call, a few us, outweighs what BLAS saves over its plain loops, and, in float32,
    wherever a gated cell's dozen elementwise passes cost more than its one fused pass:

    - one or two rows always (numpy's one-row product even costs BLAS a copy of U every
      step), up to 4 rows while U is at most 2^18 values;
    - float32 SimpleRNN: up to 16 rows, or B x H^2 multiply-adds a step up to 2^15 (numpy
      needs 3 calls a step);
    - float32 LSTM and GRU: up to 64 rows, or up to 64 units at any batch (numpy's dozen
      passes over (B, 4H) arrays a step cost 2-4x the fused loop there: (256, 200, 32, 64)
      LSTM 66 -> 33 ms, GRU 96 -> 23 ms; (1024, 100, 32, 32) GRU 51 -> 17 ms), or 256 units
      and more (about 1.1x either way beyond); at 128 units numpy's loop was ahead;
    - float64: B x gates x H^2 up to 2^11 (SimpleRNN) or 2^14 (LSTM, GRU): libm's tanh and
      exp don't vectorize as float32's rational tanh does, numpy's do.
    """
    if B <= 2:
        return True
    per_step = gates * H * H
    if B <= 4 and per_step <= 2**18:
        return True
    if itemsize > 4:
        return B * per_step <= (2**11 if gates == 1 else 2**14)
    if gates == 1:
        return B <= 16 or B * per_step <= 2**15
    return B <= 64 or H <= 64 or H >= 256


def backward_worth_it(T: int, B: int, H: int, itemsize: int = 4, engine=None) -> bool:
    """Whether the compiled backward loop beats numpy's: many steps, each with a small
    product (measured on 2 cores: near batch x units = 256 in float32, 64 in float64).
    ``engine``: an rnncli.core.engine.Engine."""
    from .engine import as_engine

    engine = as_engine(engine)
    if not available(engine):
        return False
    if engine.kind == "numba":
        return True
    return T >= (ONE_SHOT_MIN_STEPS if engine.one_shot else 512) and \
        B * H <= (256 if itemsize <= 4 else 64)


def simple_rnn_backward(job):
    """A SimpleRNN's backward time loop, compiled (``job``: rnncli.core.bptt._Steps over
    every row, no mask): fills ``job.hidden`` and ``job.dxp``, leaves dL/dh_0 in
    ``job.g``."""

    from ._numba_backward import backward

    cell = job.cell
    dtype = cell.dtype
    has_out = job.g_out is not None
    g_out = np.ascontiguousarray(job.g_out) if has_out else np.zeros((0, 0, 0), dtype)
    g = np.ascontiguousarray(job.g[0])
    backward(g_out, has_out, np.ascontiguousarray(job.terms["z"]),
             np.ascontiguousarray(job.terms["h"]),
             np.ascontiguousarray(cell.recurrent_kernel.T, dtype), g, job.hidden, job.dxp,
             ACTIVATIONS.index(cell.activation), dtype.type(1))
    job.g[0][...] = g


def min_block_rows() -> int:
    """Fewest rows a thread's block of the compiled loop should have: one full group of
    rows (rnncli/core/_numba_panels.py: 8 with AVX-512, 4 without), as a group reads all
    of U every step and smaller ones reuse each value of U less (measured: LSTM (16, 200,
    32, 64) 11.0 us a step in one block, 15.6 in two threads of 2-row blocks)."""
    from ._numba_panels import ROWS

    return ROWS
