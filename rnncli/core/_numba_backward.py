"""rnncli's compiled backward loop through time for SimpleRNN (numba; optional, the
``fast`` extra). rnncli/core/bptt.py is the reference it must equal."""

import numba


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
