"""Keras' ``SimpleRNN``: ``h_t = activation(x_t·kernel + bias + h_{t-1}·recurrent_kernel)``.

Shapes: kernel (input_dim, units), recurrent_kernel (units, units), bias (units,).
"""

from __future__ import annotations

import numpy as np

from . import activations
from .cell import Cell, CellBackward, as_found, numpy_gram
from .rnn import RNN


class SimpleRNNCell(Cell):
    class_name = "SimpleRNN"
    state_names = ("h",)
    terms = ("hu", "z")
    term_titles = {"hu": "h·U", "z": "z", "h": "h=f(z)"}

    def __init__(self, kernel, recurrent_kernel, bias=None, **kw):
        super().__init__(kernel, recurrent_kernel, bias, **kw)
        self.check_shapes()

    def trace_order(self):
        return ("xw", "hu", "bias", "z", "h")

    def gate_terms(self):
        return ()  # one block: every term is (rows, units)

    def step(self, x_t, h_prev):
        """One step, as the equation reads: (B, D), (B, H) -> (B, H)."""
        z = x_t @ self.kernel + h_prev @ self.recurrent_kernel
        if self.bias is not None:
            z = z + self.bias
        return self.act(z)

    def stepper(self, rows):
        U, matmul, add = self.recurrent_kernel, np.matmul, np.add
        activation = activations.writer(self.act)
        buf = np.empty((rows, self.units), self.dtype)

        def step(xp, states, new, terms=None):
            """z = (x·W + b) + h_prev·U;  h = activation(z)."""
            (h_prev,) = states
            if terms is None:
                z = add(xp, matmul(h_prev, U, out=buf), out=buf)
            else:
                z = add(xp, matmul(h_prev, U, out=terms["hu"]), out=terms["z"])
            activation(z, new[0])

        return step

    def compiled(self):
        from . import fast

        return fast.simple_rnn_recurrence \
            if fast.code(self.activation, self.keras_major) is not None else None


    def backward(self, terms, states, initial):
        return SimpleRNNBackward(self, terms, states, initial)

    def backward_terms(self):
        """tanh, sigmoid, linear: f'(z) from h alone, so the forward pass need not keep z
        and x·W (a third of the work of recording it, and two (B, T, H) arrays)."""
        key = activations.normalize(self.activation)
        return () if key in activations.OUTPUT_SLOPES else None

    def weight_gradients(self, x, dxp, states, initial, terms=None, gram=None):
        grads = super().weight_gradients(x, dxp, states, initial, terms, gram)
        gram, H = gram or numpy_gram, self.units
        h_prev = as_found(states[0], initial[0]).reshape(-1, H)
        # dL/dU = sum over steps of h_{k-1}ᵀ·dz_k, the first step from the initial state
        grads["recurrent_kernel"] = gram(h_prev, dxp.reshape(-1, H))
        return {k: grads[k] for k in self.weights()}

    def compiled_backward(self):
        """The compiled backward loop (rnncli/core/fast_backward.py), or None."""
        from . import fast_backward

        return fast_backward.simple_rnn_backward \
            if self.activation in fast_backward.SIMPLE_RNN_ACTIVATIONS else None


class SimpleRNNBackward(CellBackward):
    """The steps of a SimpleRNN backwards: with g = dL/dh_k,
    ``dz = g * f'(z_k)``, ``dL/dh_{k-1} = dz·Uᵀ``, ``dL/d(x·W + b) = dz``."""

    def __init__(self, cell, terms, states, initial):
        super().__init__(cell, terms, states, initial)
        h = terms["h"]
        self.z = terms.get("z", h)  # (a slope that reads h alone takes any z)
        self.UT = np.ascontiguousarray(cell.recurrent_kernel.T)
        self.buf = np.empty(h.shape[1:], cell.dtype)

    def slope(self, k):
        """f'(z_k), step by step: (rows, H) at a time stay in the cache, where the whole
        (T, rows, H) at once would be two more passes over memory."""
        c = self.cell
        return activations.derivative(c.activation, self.z[k], self.terms["h"][k],
                                      c.keras_major)

    def step(self, k, g, dxp):
        dz = np.multiply(g[0], self.slope(k), out=dxp)
        return (np.matmul(dz, self.UT, out=self.buf),)

    def jacobian(self, k):
        # dh_k/dh_{k-1}[b, i, j] = f'(z_k[b, i]) · U[j, i]
        return self.slope(k)[:, :, None] * self.UT[None]

    def left(self, q, k):
        # q·diag(f'(z_k))·Uᵀ: one matrix product for every row's q at once
        rows, M, H = q.shape
        scaled = (q * self.slope(k)[:, None, :]).reshape(rows * M, H)
        return np.matmul(scaled, self.UT).reshape(rows, M, H)


class SimpleRNN(RNN):
    """A SimpleRNN layer from its weights, as ``keras.layers.SimpleRNN``."""

    def __init__(self, name, kernel, recurrent_kernel, bias=None, *, activation="tanh",
                 keras_major=3, **options):
        cell = SimpleRNNCell(kernel, recurrent_kernel, bias, activation=activation,
                             keras_major=keras_major, name=name)
        super().__init__(name, cell, **options)
