"""Keras' ``SimpleRNN``: ``h_t = activation(x_t·kernel + bias + h_{t-1}·recurrent_kernel)``.

Shapes: kernel (input_dim, units), recurrent_kernel (units, units), bias (units,).
"""

from __future__ import annotations

import numpy as np

from . import activations
from .cell import Cell
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


class SimpleRNN(RNN):
    """A SimpleRNN layer from its weights, as ``keras.layers.SimpleRNN``."""

    def __init__(self, name, kernel, recurrent_kernel, bias=None, *, activation="tanh",
                 keras_major=3, **options):
        cell = SimpleRNNCell(kernel, recurrent_kernel, bias, activation=activation,
                             keras_major=keras_major, name=name)
        super().__init__(name, cell, **options)
