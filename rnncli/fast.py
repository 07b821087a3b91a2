"""A compiled recurrence loop (numba), for long sequences with small batches.

With numpy, each timestep costs a few microseconds of call overhead whatever its size,
which dominates when batch x units is small and the sequence long. This loop runs
the same arithmetic, ``z = (x·W + b) + h·U`` then ``h = f(z)``, in machine code.

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
_kernels: dict = {}


def engine() -> str:
    return os.environ.get("RNNCLI_ENGINE", "auto").lower()


def available() -> bool:
    return engine() != "numpy" and importlib.util.find_spec("numba") is not None


def worth_it(T: int, B: int, H: int, act_name: str, itemsize: int = 4) -> bool:
    """The compiled loop wins when steps are many and each step's product is small (the
    per-call overhead of numpy and BLAS dominates); big batches go to BLAS. Measured on
    2 cores (docs/performance.md): the crossover is near batch x units = 128 in float32
    and 64 in float64 (where libm's tanh is the slow part)."""
    if act_name not in ACTIVATIONS or not available():
        return False
    if engine() == "numba":
        return True
    return T >= 512 and B * H <= (128 if itemsize <= 4 else 64)


def _build():
    import math

    import numba
    import numpy as np

    # Eigen's float32 tanh: odd/even polynomials on [-7.9053, 7.9053], as TensorFlow uses.
    a1, a3, a5, a7 = 4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, \
        5.12229709037114e-08
    a9, a11, a13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
    b0, b2, b4, b6 = 4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, \
        1.19825839466702e-06
    clamp = 7.90531110763549805

    @numba.njit(inline="always")
    def tanh32(z):
        f = np.float32
        x = min(max(z, f(-clamp)), f(clamp))
        x2 = x * x
        p = x2 * f(a13) + f(a11)
        p = x2 * p + f(a9)
        p = x2 * p + f(a7)
        p = x2 * p + f(a5)
        p = x2 * p + f(a3)
        p = x2 * p + f(a1)
        p = x * p
        q = x2 * f(b6) + f(b4)
        q = x2 * q + f(b2)
        q = x2 * q + f(b0)
        return z if abs(z) < f(0.0004) else p / q

    def make(single, trace):
        # single, trace: constants at compile time, so each variant is its own tight loop
        @numba.njit(cache=True, nogil=True, error_model="numpy")
        def recurrence(xwb, u, h, out, act, hu_out, z_out):
            T, B, H = xwb.shape
            acc = np.empty(H, dtype=xwb.dtype)
            for t in range(T):
                for b in range(B):
                    for j in range(H):
                        acc[j] = 0
                    for i in range(H):
                        hi = h[b, i]
                        for j in range(H):
                            acc[j] += hi * u[i, j]
                    for j in range(H):
                        z = xwb[t, b, j] + acc[j]
                        if trace:
                            hu_out[t, b, j] = acc[j]
                            z_out[t, b, j] = z
                        if act == 0:
                            v = tanh32(z) if single else math.tanh(z)
                        elif act == 1:
                            v = z if z > 0 else z * 0
                        elif act == 2:
                            v = 1 / (1 + math.exp(-z))
                        else:
                            v = z
                        out[t, b, j] = v
                    for j in range(H):
                        h[b, j] = out[t, b, j]
            return h

        return recurrence

    return {(s, t): make(s, t) for s in (True, False) for t in (True, False)}


def recurrence(xwb, recurrent_kernel, h, out, act_name, hu=None, z=None):
    """Fill ``out`` (T, B, H) with the states, and ``hu``/``z`` (T, B, H) when given;
    ``xwb`` (T, B, H) holds x·W + b. Returns the final state (B, H)."""
    import numpy as np

    if not _kernels:
        _kernels.update(_build())
    dtype = xwb.dtype
    kernel = _kernels[dtype == np.float32, hu is not None]
    if hu is None:
        hu = z = np.empty((0, 0, 0), dtype)
    return kernel(np.ascontiguousarray(xwb), np.ascontiguousarray(recurrent_kernel, dtype),
                  np.array(h, dtype=dtype), out, ACTIVATIONS.index(act_name), hu, z)
