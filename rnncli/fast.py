"""A compiled recurrence loop (numba), for long sequences with small batches.

With numpy, each timestep costs a few microseconds of call overhead whatever its size,
which dominates when batch x units is small and the sequence long. This loop runs
the same arithmetic, ``z = (x·W + b) + h·U`` then ``h = f(z)``, in machine code
(rnncli/_numba_kernels.py, cached on disk after the first compilation).

Two things differ from the numpy path by a few float32 ulps, never more: the dot
product sums in a fixed order (BLAS may block it differently), and float32 ``tanh``
is the rational approximation TensorFlow itself uses on CPUs (Eigen's, max error
4e-7) because libm's scalar tanhf would cost more than the rest of the step. Tests
check both paths agree to 1e-6 and both match Keras' numbers to 1e-5.

numba is optional (``pip install 'rnncli[fast]'``); without it, or with
``RNNCLI_ENGINE=numpy``, the numpy path runs. ``RNNCLI_ENGINE=numba`` forces this one.
"""

from __future__ import annotations

import importlib.util
import os

ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
# In a one-shot process (the CLI) importing numba and loading its cached code costs about
# 0.3 s, which numpy's per-step overhead (~2.5 us) only exceeds past ~100k steps.
ONE_SHOT_MIN_STEPS = 100_000
one_shot = False  # the CLI sets this


def engine() -> str:
    return os.environ.get("RNNCLI_ENGINE", "auto").lower()


def available() -> bool:
    return engine() != "numpy" and importlib.util.find_spec("numba") is not None


def worth_it(T: int, B: int, H: int, act_name: str, itemsize: int = 4) -> bool:
    """The compiled loop wins when steps are many and each step's product is small (the
    per-call overhead of numpy and BLAS dominates); big batches go to BLAS. Measured on
    2 cores (docs/performance.md): the crossover is near batch x units = 256 in float32
    (1.3x faster at (8, 32), 0.65x at (16, 32)) and 64 in float64 (where libm's tanh is
    the slow part: 0.8x at 128)."""
    if act_name not in ACTIVATIONS or not available():
        return False
    if engine() == "numba":
        return True
    return T >= (ONE_SHOT_MIN_STEPS if one_shot else 512) and \
        B * H <= (256 if itemsize <= 4 else 64)


def recurrence(xwb, recurrent_kernel, h, out, act_name, hu=None, z=None):
    """Fill ``out`` (T, B, H) with the states, and ``hu``/``z`` (T, B, H) when given;
    ``xwb`` (T, B, H) holds x·W + b. Returns the final state (B, H)."""
    import numpy as np

    from ._numba_kernels import KERNELS

    dtype = xwb.dtype
    kernel = KERNELS[dtype == np.float32, hu is not None]
    if hu is None:
        hu = z = np.empty((0, 0, 0), dtype)
    return kernel(np.ascontiguousarray(xwb), np.ascontiguousarray(recurrent_kernel, dtype),
                  np.array(h, dtype=dtype), out, ACTIVATIONS.index(act_name), hu, z)
