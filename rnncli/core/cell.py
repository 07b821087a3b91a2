"""What a recurrent cell is to rnncli: one step of a recurrence, declared, not hard-wired.

A cell (as Keras' ``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``) owns its weights under
Keras' names and knows one step. It declares:

- ``state_names``: the states it carries from step to step, the output first
  (SimpleRNN ``("h",)``; LSTM ``("h", "c")``);
- ``gates``: the blocks of its kernels' columns, in Keras' order (LSTM ``i f c o``), or
  ``()`` when the kernel is one block;
- ``terms``: the arrays a traced step writes, each ``(rows, width)`` per step, by name.
  Every cell also has the engine's own terms: ``xw`` (x·kernel, no bias) and ``bias``
  (the bias added to it, static), and the output ``h``.

The engine (rnncli/core/engine.py) computes ``x·kernel + bias`` for many steps at once
(it has no recurrence in it) and calls the cell's ``stepper`` for the rest, one step at
a time; masks, ``go_backwards``, initial states and Bidirectional live in the layer
(rnncli/core/rnn.py), never in a cell.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, UnsupportedLayerError
from . import activations

ENGINE_TERMS = ("xw", "bias")  # written by the engine for every cell


def _frozen(a):
    """A read-only copy of ``a`` (None stays None): a cell's weights never change in
    place, so what is derived from them once (the compiled loop's packed weights,
    rnncli/core/fast.py) stays true. Assigning a new array to a weight is the way to
    change it."""
    if a is None:
        return None
    a = np.array(a)
    a.flags.writeable = False
    return a


def _weight(name):
    key = "_" + name
    return property(lambda self: self.__dict__[key],
                    lambda self, a: self.__dict__.__setitem__(key, _frozen(a)),
                    doc=f"Keras' ``{name}``, read-only (assign a new array to change it)")


class Cell:
    """Base class. Subclasses set the class attributes and implement ``stepper``."""

    class_name = "Cell"  # the Keras layer that runs this cell (SimpleRNN, LSTM, GRU)
    state_names: tuple = ("h",)
    gates: tuple = ()
    terms: tuple = ()  # names of the per-step arrays a traced step writes
    # what each term means, for captions and docs; the engine's own are added below
    term_titles: dict = {}
    kernel = _weight("kernel")
    recurrent_kernel = _weight("recurrent_kernel")
    bias = _weight("bias")

    def __init__(self, kernel, recurrent_kernel, bias=None, *, activation="tanh",
                 keras_major=3, name="cell"):
        self.name = name
        self.keras_major = keras_major
        kernel = np.asarray(kernel)
        recurrent_kernel = np.asarray(recurrent_kernel)
        if kernel.ndim != 2:
            raise ModelFileError(
                f"layer {name!r}: kernel must be 2-D (input_dim, units), got shape {kernel.shape}")
        self.kernel, self.recurrent_kernel = kernel, recurrent_kernel
        self.bias = bias
        self.set_activation(activation)

    def __setstate__(self, state):  # unpickled arrays are writeable again
        self.__dict__.update(state)
        for key in ("_kernel", "_recurrent_kernel", "_bias"):
            if state.get(key) is not None:
                state[key].flags.writeable = False

    # ------------------------------------------------------------ declared

    @property
    def units(self) -> int:
        return self.recurrent_kernel.shape[0]

    @property
    def input_dim(self) -> int:
        return self.kernel.shape[0]

    @property
    def dtype(self):
        return self.kernel.dtype

    @property
    def use_bias(self) -> bool:
        return self.bias is not None

    def weights(self) -> dict:
        """Weights by Keras name, in Keras' order."""
        w = {"kernel": self.kernel, "recurrent_kernel": self.recurrent_kernel}
        if self.bias is not None:
            w["bias"] = self.bias
        return w

    def term_width(self, term) -> int:
        """Columns of a term per step: units, or units per gate for the gate blocks."""
        return self.units * (len(self.gates) or 1) if term in self.gate_terms() else self.units

    def gate_terms(self) -> tuple:
        """Terms laid out as the kernel's gate blocks (split per gate in exports)."""
        return ("xw", "bias", "hu", "z", "gate")

    def static_terms(self) -> dict:
        """Trace terms that are the same at every step: the bias added to x·W (zeros
        without one), by name."""
        _, bias = self.input_projection()
        return {"bias": bias if bias is not None else
                np.zeros(self.kernel.shape[1], self.dtype)}

    def trace_order(self) -> tuple:
        """The trace's terms in the order tables and exports show them."""
        return ("xw", "bias", *self.terms, "h")

    def titles(self) -> dict:
        return {"xw": "x·W", "bias": "b", "h": "h", **self.term_titles}

    def check_shapes(self, blocks=1, bias_shapes=None):
        """Keras' shapes: kernel (D, blocks·H), recurrent_kernel (H, blocks·H), bias."""
        name, k, u = self.name, self.kernel, self.recurrent_kernel
        H = k.shape[1] // blocks
        if k.shape[1] % blocks or H == 0:
            raise ModelFileError(f"layer {name!r}: kernel of a {self.class_name} must be "
                                 f"(input_dim, {blocks}·units), got {k.shape}")
        if u.shape != (H, blocks * H):
            raise ModelFileError(f"layer {name!r}: recurrent_kernel must be {(H, blocks * H)} "
                                 f"to match kernel {k.shape}, got {u.shape}")
        shapes = bias_shapes or [(blocks * H,)]
        if self.bias is not None and self.bias.shape not in shapes:
            raise ModelFileError(
                f"layer {name!r}: bias must be {' or '.join(map(str, shapes))} to match "
                f"kernel {k.shape}, got {self.bias.shape}")

    @classmethod
    def from_config(cls, name, cfg: dict, weights: list, keras_major=3):
        """The cell of a Keras layer config and its weights in Keras' order."""
        kernel, recurrent_kernel, *bias = weights
        return cls(kernel, recurrent_kernel, bias[0] if bias else None,
                   activation=cfg.get("activation", "tanh"), keras_major=keras_major, name=name)

    @classmethod
    def from_weights(cls, name, weights: list, keras_major=3):
        """The cell of a weights-only file: Keras' defaults for everything else."""
        return cls.from_config(name, {}, weights, keras_major)

    # ------------------------------------------------------------ settings

    settable: tuple = ("activation",)  # what --set may change

    def configure(self, key, value):
        if key == "activation":
            self.set_activation(value)
        else:
            raise KeyError(key)

    def set_activation(self, name):
        self.activation = activations.normalize(name)
        self.act = activations.get(self.activation, self.keras_major)

    def config(self) -> dict:
        """The settings that shape the numbers (Keras' config keys)."""
        return {"units": self.units, "activation": self.activation, "use_bias": self.use_bias}

    def keras3(self) -> tuple[dict, list]:
        """(config, weights) for a Keras 3 file that computes this cell's numbers in Keras 3.

        Keras 2's hard_sigmoid, clip(0.2x + 0.5, 0, 1), is Keras 3's hard_sigmoid,
        clip(x/6 + 0.5, 0, 1), of 1.2x: the columns it acts on are written times 1.2
        (the same numbers, to float rounding of the scaled weights)."""
        cfg = {"units": self.units, "activation": self.activation, "use_bias": self.use_bias}
        weights = list(self.weights().values())
        if self.keras_major < 3 and self.activation == "hard_sigmoid":
            weights = [w * w.dtype.type(1.2) for w in weights]
        return cfg, weights

    def section_titles(self, section) -> dict:
        return self.titles()

    def equation(self, section="") -> str:
        """What a trace table's section computes, for its heading."""
        return f"z = x·W + h·U + b,  h = {self.activation}(z)"

    def trace_sections(self, trace) -> list:
        """How a trace reads as tables: [(section, {column: (B, T, H) array}, activation,
        value column)]. A one-block cell has one section, "", whose columns are the trace's
        terms in order; gated cells have one per gate and one for their states."""
        cols = {}
        for k in self.trace_order():
            if k in trace:
                a = trace[k]
                cols[k] = np.broadcast_to(a, trace["h"].shape) if a.ndim == 1 else a
        return [("", cols, self.activation, "h")]

    # ------------------------------------------------------------ computing

    def input_projection(self):
        """(kernel, bias or None): the part of a step with no recurrence in it,
        ``x·kernel + bias``, which the engine computes for many steps at once."""
        return self.kernel, self.bias

    def stepper(self, rows: int):
        """A function ``step(xp, states, new, terms)`` for blocks of ``rows`` rows.

        ``xp`` (rows, P) is ``x·kernel + bias`` for the step; ``states`` the previous
        states (rows, H) in ``state_names`` order; the step writes the new states into
        the arrays ``new`` and, when ``terms`` is a dict, each term's row into
        ``terms[name]``. Buffers live in the closure, one set per block of rows, so
        blocks can run in threads side by side.
        """
        raise NotImplementedError

    def compiled(self):
        """An optional compiled loop for long sequences (rnncli/core/fast.py), or None."""
        return None

    # ------------------------------------------------------------ gradients

    def backward(self, terms: dict, states: tuple, initial: tuple) -> CellBackward:
        """The reverse of ``stepper`` for a block of rows of a traced sequence
        (rnncli/core/bptt.py runs it). ``terms``: the trace, time-major (T, rows, width)
        by name, ``h`` included (the output: at masked steps not the cell's own, but those
        steps get no gradient); ``states``: each state after every step, (T, rows, H) in
        ``state_names`` order; ``initial``: the states before the first, (rows, H)."""
        raise UnsupportedLayerError(
            f"layer {self.name!r}: rnncli cannot yet compute gradients through a "
            f"{self.class_name}; expected a layer whose cell has a backward step")

    def backward_terms(self) -> tuple | None:
        """The trace terms :meth:`backward` needs besides ``h``, when they are none: the
        backward pass then records the forward pass untraced, keeping the states alone
        (rnncli/core/backprop.py); None: it needs the whole trace."""
        return None

    def backward_trace(self):
        """What the forward pass records for :meth:`backward` when it needs a trace:
        "full", all of it, written by the loop (it is all read at once; rnncli/core/gated.py
        may record less)."""
        return "full"

    def weight_gradients(self, x, dxp, states, initial, terms=None, gram=None) -> dict:
        """dL/d(every weight) by Keras name, from whole sequences: ``x`` (T, B, D), ``dxp``
        (T, B, P) dL/d(x·kernel + bias) as the backward steps wrote it, ``states`` and
        ``initial`` as for :meth:`backward`, ``terms`` the trace as :meth:`backward` takes
        it (for cells whose recurrent part needs more than dxp: GRU's reset gate). This
        gives ``kernel`` and ``bias``; a cell adds its recurrent weights. ``gram(a, b)``
        computes each aᵀ·b of 2-D arrays (None: numpy's ``a.T @ b``; the compiled
        backward pass passes its own, rnncli/core/fast_backward.py)."""
        flat = dxp.reshape(-1, dxp.shape[-1])
        grads = {"kernel": (gram or numpy_gram)(x.reshape(-1, x.shape[-1]), flat)}
        if self.bias is not None:
            grads["bias"] = flat.sum(axis=0)
        return grads

    def initial_states(self, rows: int) -> tuple:
        return tuple(np.zeros((rows, self.units), self.dtype) for _ in self.state_names)

    def __repr__(self):
        return f"<{type(self).__name__} {self.units} units>"


def as_found(sequence, initial):
    """A state as every step found it, (T, rows, H): ``initial`` (rows, H), then each
    step's of ``sequence`` (T, rows, H) but the last."""
    return np.concatenate([initial[None], sequence[:-1]])


def numpy_gram(a, b):
    """aᵀ·b, numpy's (BLAS): the weight gradients' products by default."""
    return a.T @ b


class CellBackward:
    """A cell's steps backwards over a block of rows: what ``Cell.backward`` returns.

    Made once per block, so a cell can compute what every step needs (its activations'
    slopes) in one vectorised pass before the time loop."""

    def __init__(self, cell, terms: dict, states: tuple, initial: tuple):
        self.cell, self.terms, self.states, self.initial = cell, terms, states, initial

    def prev(self, i: int, k: int):
        """State ``i`` as step ``k`` found it."""
        return self.states[i][k - 1] if k else self.initial[i]

    def found(self, i: int):
        """State ``i`` as every step found it, (T, rows, H): the initial one, then each
        step's."""
        return as_found(self.states[i], self.initial[i])

    def step(self, k: int, g: tuple, dxp) -> tuple:
        """Step ``k`` backwards: ``g`` is dL/d(the states step k made) (rows, H) each, to
        be read, not changed; writes dL/d(x·kernel + bias) at step k into ``dxp``
        (rows, P) and returns dL/d(the states step k started from)."""
        raise NotImplementedError

    def jacobian(self, k: int):
        """d(the states step k made)/d(the states it started from): (rows, S·H, S·H),
        states in ``state_names`` order, row = output, column = input."""
        raise NotImplementedError

    def left(self, q, k: int):
        """``q``·(the Jacobian of step k), q (rows, M, S·H): what the Jacobian norms
        (rnncli/core/jacobians.py) take at every step. A cell whose Jacobian has a
        structure overrides it to skip building the (rows, S·H, S·H) matrices."""
        return np.matmul(q, self.jacobian(k))
