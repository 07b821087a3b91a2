"""numba kernels for rnncli.core.fast (imported only when numba is installed and wanted).

Module-level functions so numba can cache their machine code on disk (cache=True):
the first call in a process then loads instead of compiling.
"""

import math

import numba
import numpy as np

# Eigen's float32 tanh: odd/even polynomials on [-7.9053, 7.9053], as TensorFlow uses.
A1, A3, A5, A7 = 4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, \
    5.12229709037114e-08
A9, A11, A13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
B0, B2, B4, B6 = 4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, \
    1.19825839466702e-06
CLAMP = 7.90531110763549805


@numba.njit(inline="always")
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


@numba.njit(inline="always")
def activate(z, act, single):
    if act == 0:
        return tanh32(z) if single else math.tanh(z)
    if act == 1:
        return z if z > 0 else z * 0
    if act == 2:
        return 1 / (1 + math.exp(-z))
    return z


@numba.njit(inline="always")
def run(xwb, u, h, out, act, hu_out, z_out, single, trace):
    """z = xwb[t] + h·U; h = act(z), over t; fills out (and hu_out, z_out if trace)."""
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
                out[t, b, j] = activate(z, act, single)
            for j in range(H):
                h[b, j] = out[t, b, j]
    return h


# Four specialisations (float32 or not, trace or not), constants folded at compile time.
@numba.njit(cache=True, nogil=True, error_model="numpy")
def run_f32(xwb, u, h, out, act, hu_out, z_out):
    return run(xwb, u, h, out, act, hu_out, z_out, True, False)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def run_f32_trace(xwb, u, h, out, act, hu_out, z_out):
    return run(xwb, u, h, out, act, hu_out, z_out, True, True)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def run_f64(xwb, u, h, out, act, hu_out, z_out):
    return run(xwb, u, h, out, act, hu_out, z_out, False, False)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def run_f64_trace(xwb, u, h, out, act, hu_out, z_out):
    return run(xwb, u, h, out, act, hu_out, z_out, False, True)


KERNELS = {(True, False): run_f32, (True, True): run_f32_trace,
           (False, False): run_f64, (False, True): run_f64_trace}


@numba.njit(cache=True, nogil=True, error_model="numpy")
def backward(g_out, has_out, z, h, ut, g, hidden, dxp, act, one):
    """The SimpleRNN time loop backwards (rnncli/core/bptt.py): from t = T-1 down,
    hidden[t] = g + g_out[t]; dxp[t] = hidden[t] * f'(z[t]); g = dxp[t]·Uᵀ (``ut`` is
    Uᵀ, contiguous, so the inner loop runs along a row as in ``run``). ``one``: 1 in the
    arrays' dtype, so float32 stays float32."""
    T, B, H = z.shape
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                gj = g[b, j] + g_out[t, b, j] if has_out else g[b, j]
                hidden[t, b, j] = gj
                hj = h[t, b, j]
                if act == 0:
                    dz = gj * (one - hj * hj)
                elif act == 1:
                    dz = gj if z[t, b, j] > 0 else gj * 0
                elif act == 2:
                    dz = gj * (hj * (one - hj))
                else:
                    dz = gj
                dxp[t, b, j] = dz
                g[b, j] = 0
            for j in range(H):
                dzj = dxp[t, b, j]
                for i in range(H):
                    g[b, i] += dzj * ut[j, i]
