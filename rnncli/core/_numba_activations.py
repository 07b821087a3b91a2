"""The activations the compiled loops compute (rnncli/core/_numba_kernels.py and
_numba_split.py), value by value in plain arithmetic that LLVM vectorizes once inlined.

float32: tanh and sigmoid (as tanh(z/2)/2 + 1/2) are Eigen's rational tanh, which
TensorFlow uses on CPUs (max error 4e-7). float64: tanh and sigmoid from e^x - 1 computed
here (``expm1_64``: x = n·ln 2 + r, e^r - 1 by its Taylor series, 2^n from its bits),
within 3 ulp of libm's, which numba calls a value at a time.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# Eigen's float32 tanh: odd/even polynomials on [-7.9053, 7.9053], as TensorFlow uses.
A1, A3, A5, A7 = 4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, \
    5.12229709037114e-08
A9, A11, A13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
B0, B2, B4, B6 = 4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, \
    1.19825839466702e-06
CLAMP = 7.90531110763549805

# Activation codes (rnncli.core.fast.CODES).
TANH, RELU, SIGMOID, LINEAR, HARD_SIGMOID, HARD_SIGMOID_K2 = range(6)

# e^x - 1 for float64 (expm1_64): Cody-Waite's two-part ln 2 (n·LN2_HI is exact for
# |n| < 2^11), and 1/k! for k = 2 .. 13 (the series' remainder on |r| <= ln2/2 is 4e-18
# of its value).
LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
EXP_MAX = 708.0  # 2^n stays a normal number; beyond, e^x is clamped (sigmoid: 1 or ~0)
F2, F3, F4, F5, F6, F7 = 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040
F8, F9, F10, F11, F12, F13 = 1 / 40320, 1 / 362880, 1 / 3628800, 1 / 39916800, \
    1 / 479001600, 1 / 6227020800


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 ``bits`` (a bitcast, which vectorizes)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@numba.njit(nogil=True, error_model="numpy")
def expm1_64(x):
    """e^x - 1, x clamped to +-EXP_MAX (NaN stays NaN)."""
    x = EXP_MAX if x > EXP_MAX else x
    x = -EXP_MAX if x < -EXP_MAX else x
    n = math.floor(x * LOG2E + 0.5)
    r = (x - n * LN2_HI) - n * LN2_LO
    p = r * F13 + F12
    p = p * r + F11
    p = p * r + F10
    p = p * r + F9
    p = p * r + F8
    p = p * r + F7
    p = p * r + F6
    p = p * r + F5
    p = p * r + F4
    p = p * r + F3
    p = p * r + F2
    p = (p * r) * r + r  # e^r - 1
    s = _f64_from_bits((np.int64(n) + 1023) << 52)  # 2^n
    return s * p + (s - 1.0)


@numba.njit(nogil=True, error_model="numpy")
def tanh64(z):
    """tanh z = e / (e + 2), e = e^(2|z|) - 1, with z's sign (|z| past 20: +-1)."""
    a = abs(z)
    a = 20.0 if a > 20.0 else a
    e = expm1_64(2.0 * a)
    return math.copysign(e / (e + 2.0), z)



@numba.njit(nogil=True, error_model="numpy")
def tanh32(z):
    f = np.float32
    x = min(max(z, f(-CLAMP)), f(CLAMP))
    x2 = x * x
    p = x2 * f(A13) + f(A11)
    p = x2 * p + f(A9)
    p = x2 * p + f(A7)
    p = x2 * p + f(A5)
    p = x2 * p + f(A3)
    p = x2 * p + f(A1)
    p = x * p
    q = x2 * f(B6) + f(B4)
    q = x2 * q + f(B2)
    q = x2 * q + f(B0)
    return z if abs(z) < f(0.0004) else p / q


@numba.njit(nogil=True, error_model="numpy")
def activate32(z, act):
    """Activation ``act`` of a float32 z, in float32. tanh and sigmoid are Eigen's rational
    tanh (sigmoid(z) = tanh(z/2)/2 + 1/2): plain arithmetic, which vectorizes."""
    f = np.float32
    if act == TANH:
        return tanh32(z)
    if act == RELU:
        return z if z > 0 else z * f(0)
    if act == SIGMOID:
        return tanh32(z * f(0.5)) * f(0.5) + f(0.5)
    if act == HARD_SIGMOID:  # Keras 3: relu6(x + 3) / 6, as rnncli computes it
        return min(max(z / f(6) + f(0.5), f(0)), f(1))
    if act == HARD_SIGMOID_K2:
        return min(max(f(0.2) * z + f(0.5), f(0)), f(1))
    return z


@numba.njit(nogil=True, error_model="numpy")
def activate64(z, act):
    """Activation ``act`` of a float64 z: tanh and sigmoid from ``expm1_64``, plain
    arithmetic that vectorizes (libm's, a call a value, took most of a float64 gated
    step)."""
    if act == TANH:
        return tanh64(z)
    if act == RELU:
        return z if z > 0 else z * 0.0
    if act == SIGMOID:
        return 1.0 / (2.0 + expm1_64(-z))
    if act == HARD_SIGMOID:
        return min(max(z / 6.0 + 0.5, 0.0), 1.0)
    if act == HARD_SIGMOID_K2:
        return min(max(0.2 * z + 0.5, 0.0), 1.0)
    return z


@numba.njit(inline="always")
def activate_range(a, lo, hi, act, activate):
    """a[lo:hi] = act(a[lo:hi]): one loop per activation, so each is free of branches on
    ``act`` and vectorizes, over a view of its own (with the bounds inside the loop, LLVM
    left the loops over a gated cell's first blocks scalar: 4x slower per value)."""
    v = a[lo:hi]
    n = v.shape[0]
    if act == TANH:
        for j in range(n):
            v[j] = activate(v[j], TANH)
    elif act == SIGMOID:
        for j in range(n):
            v[j] = activate(v[j], SIGMOID)
    elif act == RELU:
        for j in range(n):
            v[j] = activate(v[j], RELU)
    elif act == HARD_SIGMOID:
        for j in range(n):
            v[j] = activate(v[j], HARD_SIGMOID)
    elif act == HARD_SIGMOID_K2:
        for j in range(n):
            v[j] = activate(v[j], HARD_SIGMOID_K2)
