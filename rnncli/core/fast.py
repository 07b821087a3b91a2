"""A compiled recurrence loop (numba), for long sequences with small batches.

With numpy, each timestep costs a few microseconds of call overhead whatever its size,
which dominates when batch x units is small and the sequence long. This loop runs
the same arithmetic, ``z = (x·W + b) + h·U`` then ``h = f(z)``, in machine code
(rnncli/core/_numba_kernels.py, cached on disk after the first compilation).

Two things differ from the numpy path by a few float32 ulps, never more: the dot
product sums in a fixed order (BLAS may block it differently), and float32 ``tanh``
is the rational approximation TensorFlow itself uses on CPUs (Eigen's, max error
4e-7) because libm's scalar tanhf would cost more than the rest of the step. Tests
check both paths agree to 1e-6 and both match Keras' numbers to 1e-5.

numba is optional (``pip install 'rnncli[fast]'``); without it, or with
``RNNCLI_ENGINE=numpy`` (or ``Model.run(engine="numpy")``), the numpy path runs;
``numba`` forces this one.
"""

from __future__ import annotations

import importlib.util

ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
# In a one-shot process (the CLI) importing numba and loading its cached code costs about
# 0.3 s, which numpy's per-step overhead (~2.5 us) only exceeds past ~100k steps.
ONE_SHOT_MIN_STEPS = 100_000


def available(engine) -> bool:
    return engine.kind != "numpy" and importlib.util.find_spec("numba") is not None


def worth_it(T: int, B: int, H: int, itemsize: int = 4, engine=None) -> bool:
    """The compiled loop wins when steps are many and each step's product is small (the
    per-call overhead of numpy and BLAS dominates); big batches go to BLAS. Measured on
    2 cores (docs/performance.md): the crossover is near batch x units = 256 in float32
    (1.3x faster at (8, 32), 0.65x at (16, 32)) and 64 in float64 (where libm's tanh is
    the slow part: 0.8x at 128). ``engine``: an rnncli.core.engine.Engine."""
    from .engine import as_engine

    engine = as_engine(engine)
    if not available(engine):
        return False
    if engine.kind == "numba":
        return True
    return T >= (ONE_SHOT_MIN_STEPS if engine.one_shot else 512) and \
        B * H <= (256 if itemsize <= 4 else 64)


def simple_rnn_recurrence(cell, xwb, states, out, terms=None):
    """A SimpleRNN cell's steps over a chunk: ``xwb`` (T, B, H) holds x·W + b; fills
    ``out["h"]`` (T, B, H) and, when given, ``terms["hu"]``, ``terms["z"]``. Returns the
    final states."""
    import numpy as np

    from ._numba_kernels import KERNELS

    dtype = xwb.dtype
    traced = terms is not None
    kernel = KERNELS[dtype == np.float32, traced]
    hu, z = (terms["hu"], terms["z"]) if traced else (np.empty((0, 0, 0), dtype),) * 2
    h = kernel(np.ascontiguousarray(xwb), np.ascontiguousarray(cell.recurrent_kernel, dtype),
               np.array(states[0], dtype=dtype), out["h"], ACTIVATIONS.index(cell.activation),
               hu, z)
    return (h,)


def simple_rnn_backward(job):
    """A SimpleRNN's backward time loop, compiled (``job``: rnncli.core.bptt._Steps over
    every row, no mask): fills ``job.hidden`` and ``job.dxp``, leaves dL/dh_0 in
    ``job.g``."""
    import numpy as np

    from ._numba_kernels import backward

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
