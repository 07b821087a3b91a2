"""Compiled backward loops through time (numba, rnncli/core/_numba_backward.py, and an
LSTM's split by units, _numba_backward_split.py): when they run, and how a bptt job's
arrays reach them. rnncli/core/bptt.py runs a cell's
``compiled_backward()`` where its ``worth_it`` says so, unmasked, in place of the numpy
steps; either way the job (bptt._Steps) ends with ``hidden``, ``dxp`` and ``g`` filled.
Wherever numba runs (``products_worth_it``), whichever time loop ran, the weight
gradients and dL/dx are compiled products too (:class:`Products`,
rnncli/core/_numba_products.py).
"""

from __future__ import annotations

import functools

import numpy as np

from .fast import ONE_SHOT_MIN_STEPS, available, code, packed, transposed

# How the LSTM/GRU loops have a gate's slope (one code a gate block): read from the numpy
# CellBackward's array (any activation), or from the gate's value y as TensorFlow's
# gradients compute it, in the loop (no (T, B, P) array of slopes made and read):
# sigmoid y(1 - y), tanh 1 - y², linear 1.
FROM_ARRAY, SIGMOID, TANH, LINEAR = range(4)
SLOPE_CODES = {"sigmoid": SIGMOID, "tanh": TANH, "linear": LINEAR}

# The activations SimpleRNN's loop backwards takes the slope of, by its codes (0, 1, ...);
# hard_sigmoid (either Keras') runs the numpy steps.
SIMPLE_RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")


def simple_rnn_backward(job, engine=None):
    """A SimpleRNN's backward time loop, compiled, over blocks of rows in threads as the
    forward loop runs them (``job``: rnncli.core.bptt._Steps over every row, no mask):
    fills ``job.hidden`` and ``job.dxp``, leaves dL/dh_0 in ``job.g``. Reads the states
    only (``z`` too for relu, whose slope needs it: the recorded trace has it then)."""
    from . import engine as _engine
    from ._numba_backward import KERNELS

    cell, c = job.cell, np.ascontiguousarray
    dtype, (T, B) = cell.dtype, job.dxp.shape[:2]
    act = SIMPLE_RNN_ACTIVATIONS.index(cell.activation)
    has_out = job.g_out is not None
    g_out = c(job.g_out) if has_out else np.zeros((0, 0, 0), dtype)
    h = c(job.states[0])
    z = c(job.terms["z"]) if act == SIMPLE_RNN_ACTIVATIONS.index("relu") else \
        np.zeros((1, 1, 1), dtype)
    panels = transposed(cell)[1]  # Uᵀ

    def rows(b0, b1):
        g = job.g[0][b0:b1].copy()
        KERNELS["simple_rnn"](b0, g_out, has_out, h, z, act, panels, g, job.hidden, job.dxp,
                              dtype.type(1))
        job.g[0][b0:b1] = g

    parts, edges = _engine.compiled_rows(B, _engine.compiled_threads(cell, B, T, engine))
    job.run_blocks(edges, parts, step_loop=rows, spin=True)


def worth_it(T: int, B: int, H: int, itemsize: int = 4, engine=None) -> bool:
    """Whether a compiled backward loop beats numpy's steps: wherever numba may run, in
    a one-shot process (the CLI) from ONE_SHOT_MIN_STEPS as the forward loop. Measured,
    numpy steps / compiled, on the grad grid's float32 shapes (benchmarks/grad.py --grid,
    one run): LSTM 0.90-1.56x, GRU 0.93-1.73x, most cells 1.1-1.5x; the few below 1
    within that run's noise. SimpleRNN's: see docs/performance.md."""
    from .engine import as_engine

    engine = as_engine(engine)
    if not available(engine):
        return False
    return engine.kind == "numba" or not engine.one_shot or T >= ONE_SHOT_MIN_STEPS


def gated_backward(job, engine=None):
    """An LSTM's or GRU's (reset_after) backward time loop, compiled, over blocks of rows
    in threads as the forward loop runs them (``job``: rnncli.core.bptt._Steps over every
    row, no mask). The cell's numpy CellBackward first computes what every step needs at
    once (the gates' slopes; LSTM's act(c) and its slope where the loop does not compute
    them; GRU's h·U_h + b_hh). An LSTM of a batch too small to split by rows has each
    step's units split across threads instead (planning.backward_split)."""
    from . import engine as _engine
    from . import planning
    from ._numba_backward import KERNELS

    cell, c = job.cell, np.ascontiguousarray
    dtype, (T, B) = cell.dtype, job.dxp.shape[:2]
    kind = cell.compiled().kind
    back = cell.backward(job.terms, job.states, job.initial)
    has_out = job.g_out is not None
    g_out = c(job.g_out) if has_out else np.zeros((0, 0, 0), dtype)
    gate = c(job.terms["gate"])
    slopes = np.array([SLOPE_CODES.get(cell.gate_activation(g), FROM_ARRAY)
                       for g in cell.gates], np.int64)
    if FROM_ARRAY in slopes:  # any activation: the numpy CellBackward's slopes
        slopes[:], slope = FROM_ARRAY, c(back.slope)
    else:  # from the gates' values, in the loop: no (T, B, P) array of them
        slope = np.zeros((1, 1, 1), dtype)
    if kind == "lstm":
        from ._numba_activations import activate32, activate64
        from ._numba_backward import IN_LOOP

        act = code(cell.activation, cell.keras_major)
        none = np.zeros((1, 1, 1), dtype)
        act, tc, dtc = (act, none, none) if act in IN_LOOP else (-1, c(back.tc), c(back.dtc))
        per_cell = (act, activate32 if dtype == np.float32 else activate64,
                    c(job.states[1]), c(job.initial[1]), tc, dtc)
    else:
        per_cell = (c(back.inner_h), back.found(0))
    args = (g_out, has_out, gate, slopes, slope, *per_cell)
    split = planning.backward_split(cell, B, T, engine)
    if split:
        return _split_units(job, split, args)
    kernel, panels = KERNELS[kind], transposed(cell)[1]  # Uᵀ

    def rows(b0, b1):
        g = [gi[b0:b1].copy() for gi in job.g]
        kernel(b0, *args, panels, *g, job.hidden, job.dxp, dtype.type(1))
        for i, gi in enumerate(g):
            job.g[i][b0:b1] = gi

    parts, edges = _engine.compiled_rows(B, _engine.compiled_threads(cell, B, T, engine))
    job.run_blocks(edges, parts, step_loop=rows, spin=True)


def _split_units(job, parts, args):
    """An LSTM's backward loop with each step's units split into ``parts`` items that as
    many threads claim, every row at once (rnncli/core/_numba_backward_split.py); ``args``
    the one-thread loop's, up to its packed Uᵀ."""
    from ._numba_backward_split import KERNELS
    from .split import claim_all

    cell = job.cell
    panels = packed(cell, parts).recurrent_transposed
    counters = np.zeros(1 + parts, np.int64)
    one = cell.dtype.type(1)
    gh, gc = job.g  # C-contiguous (B, H): updated in place

    def participant(home, _last):
        claim_all(job, functools.partial(KERNELS["lstm"], *args, panels, gh, gc, job.hidden,
                                         job.dxp, one, counters, parts, home))

    job.run_blocks(list(range(parts + 1)), parts, step_loop=participant, spin=True)


gated_backward.worth_it = simple_rnn_backward.worth_it = worth_it
gated_backward.reads_trace, simple_rnn_backward.reads_trace = True, False


def products_worth_it(multiply_adds: int, engine=None) -> bool:
    """Whether the backward pass's products run compiled (:class:`Products`) though its
    time loop is numpy's (masks; a SimpleRNN of many rows): wherever numba may run, in a
    one-shot process (the CLI) from fast.ONE_SHOT_MIN_PRODUCTS multiply-adds, which pay
    for importing numba there."""
    from .engine import as_engine
    from .fast import ONE_SHOT_MIN_PRODUCTS

    engine = as_engine(engine)
    if not available(engine):
        return False
    return engine.kind == "numba" or not engine.one_shot or \
        multiply_adds >= ONE_SHOT_MIN_PRODUCTS


class Products:
    """The backward pass's large products, compiled (rnncli/core/_numba_products.py), for
    bptt._products: ``gram(a, b)`` = aᵀ·b (what ``Cell.weight_gradients`` takes) and
    ``input_gradient(dxp, out)``: out = dxp·kernelᵀ, of 2-D arrays, each shared by
    ``threads`` threads (the engine's, rnncli/core/engine.py) where it is big enough:
    aᵀ·b by its columns (no sums of the threads' results to add), dxp·kernelᵀ by rows.
    Against numpy's single-threaded OpenBLAS on this machine's AVX-512 CPU (it picks AVX2
    kernels), one thread, float32: aᵀ·b 1.3-2.5x (1.4x at (640 rows)ᵀ x (640, 1024) of
    256 units, 2.0x at 3200 rows of 64 units), dxp·kernelᵀ 2-2.9x; float64 1.0-2.6x."""

    SHARED_MIN = 1 << 21  # multiply-adds from which a product is shared (~10 us of it)
    # b's panels from which aᵀ·b is compiled: narrower, BLAS's was as fast or faster (a
    # gradient's time, compiled against BLAS: SimpleRNN (1024, 100, 32, 16) 29 against 23
    # ms, GRU (1024, 50, 32, 16) 25 against 21; LSTM (1024, 50, 32, 16) 20 against 21)
    PANELS_MIN = 4

    def __init__(self, kernel_t, threads=1):
        self.kernel_t = kernel_t  # kernelᵀ packed (fast.transposed)
        self.threads = threads

    @classmethod
    def wide(cls, columns, dtype) -> bool:
        """Whether aᵀ·b of b's ``columns`` is compiled (else BLAS's)."""
        from ._numba_panels import panel_width

        return columns >= cls.PANELS_MIN * panel_width(np.dtype(dtype).itemsize)

    def gram(self, a, b):
        from ._numba_panels import panel_width
        from ._numba_products import gram

        dtype = np.result_type(a, b)
        if not self.wide(b.shape[1], dtype):
            return a.T @ b  # BLAS's
        a, b = np.ascontiguousarray(a, dtype), np.ascontiguousarray(b, dtype)
        out = np.zeros((a.shape[1], b.shape[1]), dtype)
        panels = -(-b.shape[1] // panel_width(dtype.itemsize))
        self._share(panels, a.size * b.shape[1], lambda q0, q1: gram(a, b, out, q0, q1))
        return out

    def input_gradient(self, dxp, out):
        from ._numba_products import times_packed

        dxp = np.ascontiguousarray(dxp)
        self._share(len(dxp), dxp.size * out.shape[1],
                    lambda r0, r1: times_packed(dxp[r0:r1], self.kernel_t, out[r0:r1]))

    def _share(self, n, work, fn):
        """fn(i0, i1) over 0 .. n, in parts for the threads where ``work`` is enough."""
        parts = min(self.threads, n) if work >= self.SHARED_MIN else 1
        if parts <= 1:
            return fn(0, n)
        from .bptt import _Chunks

        _Chunks(fn).run_blocks([n * i // parts for i in range(parts + 1)], parts, spin=True)
