"""Keras' ``LSTM``: four gates from one product, a cell state c beside the output h.

    z = x·kernel + h_{t-1}·recurrent_kernel + bias        (4 blocks: i, f, c, o)
    i = σ(z_i)   f = σ(z_f)   g = tanh(z_c)   o = σ(z_o)   (σ: recurrent_activation)
    c_t = f⊙c_{t-1} + i⊙g        h_t = o⊙tanh(c_t)

Shapes: kernel (input_dim, 4·units), recurrent_kernel (units, 4·units), bias (4·units,).
``unit_forget_bias`` only initializes the forget bias to 1; it changes no computation.
"""

from __future__ import annotations

import functools

import numpy as np

from . import activations
from .cell import Cell, CellBackward, as_found, numpy_gram
from .gated import GatedCell, gate_slopes


class LSTMCell(GatedCell):
    class_name = "LSTM"
    state_names = ("h", "c")
    gates = ("i", "f", "c", "o")
    terms = ("hu", "z", "gate", "c_prev", "fc", "ig")
    term_titles = {"hu": "h·U", "z": "z", "c_prev": "c₋₁", "fc": "f⊙c₋₁", "ig": "i⊙g",
                   "c": "c", "h": "h"}
    state_columns = ("c_prev", "fc", "ig", "c", "h")

    def __init__(self, kernel, recurrent_kernel, bias=None, *, recurrent_activation="sigmoid",
                 unit_forget_bias=True, **kw):
        Cell.__init__(self, kernel, recurrent_kernel, bias, **kw)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.set_recurrent_activation(recurrent_activation)
        self.check_shapes(4)

    def trace_order(self):
        return ("xw", "hu", "bias", "z", "gate", "c_prev", "fc", "ig", "c", "h")

    def gate_activation(self, gate):
        return self.activation if gate == "c" else self.recurrent_activation

    def gate_title(self, gate):
        return "g" if gate == "c" else gate

    def equation(self, section=""):
        if section == "state":
            return f"c = f⊙c₋₁ + i⊙g,  h = o⊙{self.activation}(c)"
        return super().equation(section)

    def step(self, x_t, h_prev, c_prev):
        """One step, as the equations read: (B, D), (B, H), (B, H) -> (h, c)."""
        z = x_t @ self.kernel + h_prev @ self.recurrent_kernel
        if self.bias is not None:
            z = z + self.bias
        z_i, z_f, z_c, z_o = np.split(z, 4, axis=-1)
        i, f, o = self.ract(z_i), self.ract(z_f), self.ract(z_o)
        c = f * c_prev + i * self.act(z_c)
        return o * self.act(c), c

    def stepper(self, rows):
        from .engine import writer

        U, H, dtype = self.recurrent_kernel, self.units, self.dtype
        matmul, add, mul = np.matmul, np.add, np.multiply
        act, ract = writer(self.act), writer(self.ract)
        zbuf, gbuf = np.empty((rows, 4 * H), dtype), np.empty((rows, 4 * H), dtype)
        ig_buf = np.empty((rows, H), dtype)
        # Small steps: one call of the gates' activation on all four blocks (c's is then
        # overwritten) costs less than two calls' overhead.
        whole = rows * H <= 2**14

        def step(xp, states, new, terms=None):
            """z = (x·W + b) + h_prev·U; gates; c = f⊙c_prev + i⊙g; h = o⊙tanh(c)."""
            h_prev, c_prev = states
            h, c = new
            if terms is None:
                z = add(xp, matmul(h_prev, U, out=zbuf), out=zbuf)
                g = gbuf
            else:
                z = add(xp, matmul(h_prev, U, out=terms["hu"]), out=terms["z"])
                g = terms["gate"]
                terms["c_prev"][...] = c_prev
            if whole:
                ract(z, g)
            else:
                ract(z[:, :2 * H], g[:, :2 * H])
                ract(z[:, 3 * H:], g[:, 3 * H:])
            act(z[:, 2 * H:3 * H], g[:, 2 * H:3 * H])
            i, f, cand, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
            ig = mul(i, cand, out=ig_buf if terms is None else terms["ig"])
            mul(f, c_prev, out=c)
            if terms is not None:
                terms["fc"][...] = c
            add(c, ig, out=c)
            act(c, h)
            mul(o, h, out=h)

        return step

    def compiled(self):
        from . import fast

        codes = [fast.code(a, self.keras_major) for a in (self.activation,
                                                         self.recurrent_activation)]
        return fast.lstm_recurrence if None not in codes else None

    @classmethod
    def from_config(cls, name, cfg, weights, keras_major=3):
        kernel, recurrent_kernel, *bias = weights
        return cls(kernel, recurrent_kernel, bias[0] if bias else None,
                   activation=cfg.get("activation", "tanh"),
                   recurrent_activation=cfg.get("recurrent_activation", "sigmoid"),
                   unit_forget_bias=cfg.get("unit_forget_bias", True),
                   keras_major=keras_major, name=name)

    def config(self):
        return {**super().config(), "unit_forget_bias": self.unit_forget_bias}

    # ------------------------------------------------------------ gradients

    def backward(self, terms, states, initial):
        return LSTMBackward(self, terms, states, initial)

    def weight_gradients(self, x, dxp, states, initial, terms=None, gram=None):
        grads = super().weight_gradients(x, dxp, states, initial, terms, gram)
        gram, H = gram or numpy_gram, self.units
        h_prev = as_found(states[0], initial[0]).reshape(-1, H)
        # z = x·W + h_{k-1}·U + b: dL/dU = Σ_k h_{k-1}ᵀ·dz_k, dz being dL/d(x·W + b) too
        grads["recurrent_kernel"] = gram(h_prev, dxp.reshape(-1, dxp.shape[-1]))
        return {k: grads[k] for k in self.weights()}


class LSTMBackward(CellBackward):
    """The steps of an LSTM backwards, from g = (dL/dh_k, dL/dc_k):

        dc = dL/dc_k + dL/dh_k ⊙ o ⊙ act'(c_k)            (the total derivative of c_k)
        dz_i = dc ⊙ g ⊙ σ'(z_i)     dz_f = dc ⊙ c_{k-1} ⊙ σ'(z_f)
        dz_c = dc ⊙ i ⊙ act'(z_c)   dz_o = dL/dh_k ⊙ act(c_k) ⊙ σ'(z_o)
        dL/dc_{k-1} = dc ⊙ f        dL/dh_{k-1} = dz·Uᵀ      dL/d(x·W + b) = dz

    σ' and act' are TensorFlow's slopes (activations.derivative: Keras 2's hard_sigmoid
    where the file is Keras 2's)."""

    def __init__(self, cell, terms, states, initial):
        super().__init__(cell, terms, states, initial)
        self.UT = np.ascontiguousarray(cell.recurrent_kernel.T)
        self.buf = np.empty(states[1].shape[1:], cell.dtype)

    # every step's at once, when first read (the compiled loop computes its own where the
    # cell's activation is tanh, sigmoid or linear, and reads c_{k-1} from the states)
    @functools.cached_property
    def c_prev(self):  # c_{k-1}
        return self.terms["c_prev"] if "c_prev" in self.terms else self.found(1)

    @functools.cached_property
    def tc(self):  # act(c_k)
        return self.cell.act(self.states[1])

    @functools.cached_property
    def dtc(self):  # act'(c_k)
        cell = self.cell
        return activations.derivative(cell.activation, self.states[1], self.tc,
                                      cell.keras_major)

    @functools.cached_property
    def slope(self):
        """Each gate's slope at z, every step at once (the compiled loop backwards has
        sigmoid's and tanh's from the gates themselves, and reads no array of them)."""
        return gate_slopes(self.cell, self.terms)

    def _gates(self, k):
        H, g = self.cell.units, self.terms["gate"][k]
        return g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]

    def step(self, k, g, dxp):
        H = self.cell.units
        dh, dc_next = g
        i, f, cand, o = self._gates(k)
        s, c_prev = self.slope[k], self.c_prev[k]
        dc = dc_next + dh * o * self.dtc[k]
        np.multiply(dc * cand, s[:, :H], out=dxp[:, :H])
        np.multiply(dc * c_prev, s[:, H:2 * H], out=dxp[:, H:2 * H])
        np.multiply(dc * i, s[:, 2 * H:3 * H], out=dxp[:, 2 * H:3 * H])
        np.multiply(dh * self.tc[k], s[:, 3 * H:], out=dxp[:, 3 * H:])
        return np.matmul(dxp, self.UT, out=self.buf), dc * f

    def jacobian(self, k):
        """d(h_k, c_k)/d(h_{k-1}, c_{k-1}) (rows, 2H, 2H)."""
        H = self.cell.units
        i, f, cand, o = self._gates(k)
        s, c_prev = self.slope[k], self.c_prev[k]
        UT = self.UT  # (4H, H): dz_a/dh_{k-1,j} = U[j, a]
        # dc_k/dh_{k-1}[m, j] = Σ over i, f, c of (dc_k/dgate ⊙ slope)[m] · U[j, m]
        dc_dh = ((cand * s[:, :H])[:, :, None] * UT[None, :H]
                 + (c_prev * s[:, H:2 * H])[:, :, None] * UT[None, H:2 * H]
                 + (i * s[:, 2 * H:3 * H])[:, :, None] * UT[None, 2 * H:3 * H])
        slope_c = o * self.dtc[k]  # dh_k/dc_k, elementwise
        dh_dh = (self.tc[k] * s[:, 3 * H:])[:, :, None] * UT[None, 3 * H:] + \
            slope_c[:, :, None] * dc_dh
        J = np.zeros((len(f), 2 * H, 2 * H), self.cell.dtype)
        J[:, :H, :H] = dh_dh
        J[:, H:, :H] = dc_dh
        diag = np.arange(H)
        J[:, diag, H + diag] = slope_c * f
        J[:, H + diag, H + diag] = f
        return J
