"""Keras' ``GRU``: an update gate z, a reset gate r and a candidate h̃, no cell state.

    x_z, x_r, x_h = x·kernel + b_x                         (3 blocks: z, r, h)
    z = σ(x_z + h_{t-1}·U_z + b_hz)      r = σ(x_r + h_{t-1}·U_r + b_hr)
    reset_after=True  (Keras' default; bias (2, 3·units): b_x, then b_h):
        h̃ = tanh(x_h + r⊙(h_{t-1}·U_h + b_hh))
    reset_after=False (Keras ≤ 2.2's default; bias (3·units,), no b_h):
        h̃ = tanh(x_h + (r⊙h_{t-1})·U_h)
    h_t = z⊙h_{t-1} + (1 - z)⊙h̃

Shapes: kernel (input_dim, 3·units), recurrent_kernel (units, 3·units).
"""

from __future__ import annotations

import functools

import numpy as np

from .cell import Cell, CellBackward, as_found, numpy_gram
from .gated import GatedCell, gate_slopes


class GRUCell(GatedCell):
    class_name = "GRU"
    state_names = ("h",)
    gates = ("z", "r", "h")
    terms = ("hu", "z", "gate", "reset_term", "keep", "update")
    term_titles = {"hu": "h·U", "z": "z", "reset_term": "r⊙(h·U+b)", "keep": "z⊙h₋₁",
                   "update": "(1-z)⊙h̃", "h": "h", "recurrent_bias": "b_h"}
    state_columns = ("reset_term", "keep", "update", "h")

    def __init__(self, kernel, recurrent_kernel, bias=None, *, recurrent_activation="sigmoid",
                 reset_after=True, **kw):
        Cell.__init__(self, kernel, recurrent_kernel, bias, **kw)
        self.reset_after = bool(reset_after)
        self.set_recurrent_activation(recurrent_activation)
        H3 = self.kernel.shape[1]
        self.check_shapes(3, [(2, H3)] if self.reset_after else [(H3,)])
        if not self.reset_after:
            self.term_titles = {**self.term_titles, "reset_term": "(r⊙h₋₁)·U"}

    @property
    def input_bias(self):
        if self.bias is None:
            return None
        return self.bias[0] if self.reset_after else self.bias

    @property
    def recurrent_bias(self):
        return self.bias[1] if self.bias is not None and self.reset_after else None

    def input_projection(self):
        return self.kernel, self.input_bias

    def static_terms(self):
        terms = super().static_terms()
        if self.recurrent_bias is not None:
            terms["recurrent_bias"] = self.recurrent_bias
        return terms

    def trace_order(self):
        return ("xw", "hu", "bias", "recurrent_bias", "z", "gate", "reset_term", "keep",
                "update", "h")

    def gate_terms(self):
        return ("xw", "bias", "recurrent_bias", "hu", "z", "gate")

    def term_width(self, term):
        return self.units if term in ("reset_term", "keep", "update") else 3 * self.units

    def gate_activation(self, gate):
        return self.activation if gate == "h" else self.recurrent_activation

    def gate_columns(self, gate):
        """z_h is x·W_h + b_h + the reset term; z and r add h·U and b_h as they are."""
        rb = ("recurrent_bias",) if self.recurrent_bias is not None else ()
        if gate == "h":
            return ("xw", "bias", "reset_term", "z", "gate")
        return ("xw", "hu", "bias", *rb, "z", "gate")

    def gate_title(self, gate):
        return "h̃" if gate == "h" else gate

    def equation(self, section=""):
        if section == "state":
            return "h = z⊙h₋₁ + (1-z)⊙h̃"
        if section == "h":
            reset = "r⊙(h·U+b)" if self.reset_after else "(r⊙h)·U"
            return f"h̃ = {self.activation}(x·W + b + {reset})"
        return super().equation(section)

    def step(self, x_t, h_prev):
        """One step, as the equations read: (B, D), (B, H) -> (B, H)."""
        H = self.units
        mx = x_t @ self.kernel
        if self.input_bias is not None:
            mx = mx + self.input_bias
        if self.reset_after:
            inner = h_prev @ self.recurrent_kernel
            if self.recurrent_bias is not None:
                inner = inner + self.recurrent_bias
        else:
            inner = h_prev @ self.recurrent_kernel[:, :2 * H]
        z = self.ract(mx[:, :H] + inner[:, :H])
        r = self.ract(mx[:, H:2 * H] + inner[:, H:2 * H])
        reset = r * inner[:, 2 * H:] if self.reset_after else \
            (r * h_prev) @ self.recurrent_kernel[:, 2 * H:]
        hh = self.act(mx[:, 2 * H:] + reset)
        return z * h_prev + (1 - z) * hh

    def stepper(self, rows):
        from .engine import writer

        U, H, dtype = self.recurrent_kernel, self.units, self.dtype
        rb, after = self.recurrent_bias, self.reset_after
        matmul, add, mul = np.matmul, np.add, np.multiply
        act, ract = writer(self.act), writer(self.ract)
        hu_buf, z_buf, g_buf = (np.empty((rows, 3 * H), dtype) for _ in range(3))
        inner_buf = np.empty((rows, 3 * H), dtype)
        r_buf, keep_buf = np.empty((rows, H), dtype), np.empty((rows, H), dtype)
        U_zr, U_h = U[:, :2 * H], U[:, 2 * H:]

        def step(xp, states, new, terms=None):
            """z, r = σ(x·W + b + h_prev·U + b_h); h̃ = tanh(x·W_h + b + reset term);
            h = z⊙h_prev + (1-z)⊙h̃."""
            (h_prev,) = states
            traced = terms is not None
            hu = terms["hu"] if traced else hu_buf
            zs = terms["z"] if traced else z_buf
            g = terms["gate"] if traced else g_buf
            if after:
                matmul(h_prev, U, out=hu)
                inner = hu if rb is None else add(hu, rb, out=inner_buf)
            else:
                matmul(h_prev, U_zr, out=hu[:, :2 * H])
                inner = hu
            add(xp[:, :2 * H], inner[:, :2 * H], out=zs[:, :2 * H])
            ract(zs[:, :2 * H], g[:, :2 * H])
            gz, r = g[:, :H], g[:, H:2 * H]
            reset = terms["reset_term"] if traced else r_buf
            if after:
                mul(r, inner[:, 2 * H:], out=reset)
            else:
                matmul(mul(r, h_prev, out=keep_buf), U_h, out=hu[:, 2 * H:])
                reset[...] = hu[:, 2 * H:]
            add(xp[:, 2 * H:], reset, out=zs[:, 2 * H:])
            act(zs[:, 2 * H:], g[:, 2 * H:])
            h = new[0]
            keep = mul(gz, h_prev, out=terms["keep"] if traced else keep_buf)
            update = np.subtract(1, gz, out=terms["update"] if traced else r_buf)
            mul(update, g[:, 2 * H:], out=update)
            add(keep, update, out=h)

        return step

    def compiled(self):
        from . import fast

        codes = [fast.code(a, self.keras_major) for a in (self.activation,
                                                         self.recurrent_activation)]
        return fast.gru_recurrence if self.reset_after and None not in codes else None

    @classmethod
    def from_config(cls, name, cfg, weights, keras_major=3):
        kernel, recurrent_kernel, *bias = weights
        b = bias[0] if bias else None
        reset_after = cfg.get("reset_after")
        if reset_after is None:  # a weights-only file: the bias shape tells
            reset_after = b is None or b.ndim == 2
        return cls(kernel, recurrent_kernel, b, activation=cfg.get("activation", "tanh"),
                   recurrent_activation=cfg.get("recurrent_activation", "sigmoid"),
                   reset_after=reset_after, keras_major=keras_major, name=name)

    def config(self):
        return {**super().config(), "reset_after": self.reset_after}

    # ------------------------------------------------------------ gradients

    def backward(self, terms, states, initial):
        return GRUBackward(self, terms, states, initial)

    def weight_gradients(self, x, dxp, states, initial, terms=None, gram=None):
        """dxp is dL/d(x·W + b_x); the recurrent side differs in the candidate's block:
        reset_after, dL/d(h·U_h + b_hh) = dz_h ⊙ r; before it, U_h multiplies r⊙h₋₁."""
        grads = super().weight_gradients(x, dxp, states, initial, terms, gram)
        gram, H = gram or numpy_gram, self.units
        h = states[0]
        h_prev = as_found(h, initial[0]).reshape(-1, H)
        r = terms["gate"][..., H:2 * H].reshape(-1, H)
        flat = dxp.reshape(-1, 3 * H)
        if self.reset_after:
            d_inner = flat.copy()
            d_inner[:, 2 * H:] *= r
            grads["recurrent_kernel"] = gram(h_prev, d_inner)
            if self.bias is not None:
                grads["bias"] = np.stack([flat.sum(axis=0), d_inner.sum(axis=0)])
        else:
            grads["recurrent_kernel"] = np.concatenate(
                [gram(h_prev, flat[:, :2 * H]), gram(r * h_prev, flat[:, 2 * H:])], axis=1)
        return {k: grads[k] for k in self.weights()}


class GRUBackward(CellBackward):
    """The steps of a GRU backwards, from g = dL/dh_k (z, r, h̃ the gates' values, s_*
    their slopes at z_*):

        dz_z = g ⊙ (h_{k-1} - h̃) ⊙ s_z        dz_h = g ⊙ (1 - z) ⊙ s_h
        reset_after:  dz_r = dz_h ⊙ (h_{k-1}·U_h + b_hh) ⊙ s_r
                      dL/dh_{k-1} = g ⊙ z + [dz_z, dz_r, dz_h ⊙ r]·Uᵀ
        before:       d(r⊙h) = dz_h·U_hᵀ,  dz_r = d(r⊙h) ⊙ h_{k-1} ⊙ s_r
                      dL/dh_{k-1} = g ⊙ z + d(r⊙h) ⊙ r + [dz_z, dz_r]·U_zrᵀ
        dL/d(x·W + b_x) = [dz_z, dz_r, dz_h]"""

    def __init__(self, cell, terms, states, initial):
        super().__init__(cell, terms, states, initial)
        H = cell.units
        U = cell.recurrent_kernel
        self.UT = np.ascontiguousarray(U.T)  # (3H, H)
        self.U_h = np.ascontiguousarray(U[:, 2 * H:])
        if cell.reset_after:  # h·U_h + b_hh, what r multiplies
            inner = terms["hu"][..., 2 * H:]
            rb = cell.recurrent_bias
            self.inner_h = inner if rb is None else inner + rb[2 * H:]
        self.buf = np.empty((terms["gate"].shape[1], 3 * H), cell.dtype)

    @functools.cached_property
    def slope(self):
        """Each gate's slope at z, every step at once (see LSTMBackward.slope)."""
        return gate_slopes(self.cell, self.terms)

    def _gates(self, k):
        H, g = self.cell.units, self.terms["gate"][k]
        return g[:, :H], g[:, H:2 * H], g[:, 2 * H:]

    def step(self, k, g, dxp):
        H = self.cell.units
        (dh,) = g
        zg, r, hh = self._gates(k)
        s, h_prev = self.slope[k], self.prev(0, k)
        np.multiply(dh * (h_prev - hh), s[:, :H], out=dxp[:, :H])
        dz_h = np.multiply(dh * (1 - zg), s[:, 2 * H:], out=dxp[:, 2 * H:])
        back = dh * zg
        if self.cell.reset_after:
            np.multiply(dz_h * self.inner_h[k], s[:, H:2 * H], out=dxp[:, H:2 * H])
            d_inner = self.buf
            d_inner[:, :2 * H] = dxp[:, :2 * H]
            np.multiply(dz_h, r, out=d_inner[:, 2 * H:])
            back += d_inner @ self.UT
        else:
            d_rh = dz_h @ self.UT[2 * H:]
            np.multiply(d_rh * h_prev, s[:, H:2 * H], out=dxp[:, H:2 * H])
            back += d_rh * r + dxp[:, :2 * H] @ self.UT[:2 * H]
        return (back,)

    def jacobian(self, k):
        """dh_k/dh_{k-1} (rows, H, H), row = output, column = input."""
        H = self.cell.units
        zg, r, hh = self._gates(k)
        s, h_prev = self.slope[k], self.prev(0, k)
        UT = self.UT  # dz_a/dh_{k-1,j} = U[j, a]
        dz_dh = s[:, :H, None] * UT[None, :H]
        if self.cell.reset_after:
            dr_dh = s[:, H:2 * H, None] * UT[None, H:2 * H]
            dhh = s[:, 2 * H:, None] * (self.inner_h[k][:, :, None] * dr_dh
                                        + r[:, :, None] * UT[None, 2 * H:])
        else:
            # d(r⊙h)_l/dh_j = r_l δ_lj + h_l s_r[l] U_r[j, l]
            A = (h_prev * s[:, H:2 * H])[:, :, None] * UT[None, H:2 * H]
            diag = np.arange(H)
            A[:, diag, diag] += r
            dhh = s[:, 2 * H:, None] * np.matmul(self.U_h.T[None], A)
        J = (h_prev - hh)[:, :, None] * dz_dh + (1 - zg)[:, :, None] * dhh
        diag = np.arange(H)
        J[:, diag, diag] += zg
        return J
