"""The layers rnncli computes, in numpy, as Keras computes them at inference.

Each layer is its weights plus ``call(x, mask) -> (y, mask)``. Names follow Keras:
``kernel`` (input_dim, units), ``recurrent_kernel`` (units, units), ``bias`` (units,).
Shapes: B = batch, T = timesteps, D = input features, H = units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import activations
from .errors import InputDataError, ModelFileError, UnsupportedLayerError


@dataclass
class Trace:
    """One SimpleRNN direction's arithmetic, per sample and step, in processing order.

    ``z = xw + hu + bias`` and ``h = activation(z)`` at unmasked steps; at masked
    steps ``h`` is what Keras outputs there (the previous output, or zeros).
    ``step_index[k]`` is the input timestep processed at step ``k`` (reversed for
    ``go_backwards``).
    """

    xw: np.ndarray  # (B, T, H)  x_t · kernel
    hu: np.ndarray  # (B, T, H)  h_{t-1} · recurrent_kernel
    bias: np.ndarray  # (H,)  zeros when use_bias=False
    z: np.ndarray  # (B, T, H)
    h: np.ndarray  # (B, T, H)
    mask: np.ndarray | None  # (B, T) bool in processing order, or None
    activation: str
    step_index: np.ndarray  # (T,)
    x: np.ndarray  # (B, T, D) the layer's input, in processing order
    kernel: np.ndarray  # (D, H), for per-feature terms x_{t,i} * kernel[i, j]

    def terms(self) -> np.ndarray:
        """Each input feature's share of ``xw``: (B, T, D, H), summing over D to ``xw``."""
        return self.x[..., :, None] * self.kernel


class Layer:
    """Base: a named Keras layer. Subclasses set ``class_name`` and implement ``call``."""

    class_name = "Layer"
    recurrent = False

    def __init__(self, name: str, config: dict | None = None):
        self.name = name
        self.config = dict(config or {})

    def weights(self) -> dict[str, np.ndarray]:
        """Weights by Keras name, in Keras' order."""
        return {}

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights().values()))

    def call(self, x, mask=None):
        raise NotImplementedError

    def __repr__(self):
        return f"<{self.class_name} {self.name!r}>"


# ---------------------------------------------------------------- recurrent


class SimpleRNN(Layer):
    """Keras ``SimpleRNN``: ``h_t = activation(x_t · kernel + bias + h_{t-1} · recurrent_kernel)``."""

    class_name = "SimpleRNN"
    recurrent = True

    def __init__(self, name, kernel, recurrent_kernel, bias=None, *, activation="tanh",
                 return_sequences=False, return_state=False, go_backwards=False,
                 zero_output_for_mask=False, stateful=False, keras_major=3, config=None):
        super().__init__(name, config)
        kernel = np.asarray(kernel)
        recurrent_kernel = np.asarray(recurrent_kernel)
        if kernel.ndim != 2:
            raise ModelFileError(
                f"layer {name!r}: kernel must be 2-D (input_dim, units), got shape {kernel.shape}")
        units = kernel.shape[1]
        if recurrent_kernel.shape != (units, units):
            raise ModelFileError(
                f"layer {name!r}: recurrent_kernel must be ({units}, {units}) to match kernel "
                f"{kernel.shape}, got {recurrent_kernel.shape}")
        if bias is not None:
            bias = np.asarray(bias)
            if bias.shape != (units,):
                raise ModelFileError(
                    f"layer {name!r}: bias must be ({units},) to match kernel {kernel.shape}, "
                    f"got {bias.shape}")
        self.kernel, self.recurrent_kernel, self.bias = kernel, recurrent_kernel, bias
        self.activation = activations.normalize(activation)
        self._act = activations.get(self.activation, keras_major)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.stateful = bool(stateful)

    @property
    def units(self) -> int:
        return self.kernel.shape[1]

    @property
    def input_dim(self) -> int:
        return self.kernel.shape[0]

    @property
    def use_bias(self) -> bool:
        return self.bias is not None

    @property
    def dtype(self):
        return self.kernel.dtype

    def weights(self):
        w = {"kernel": self.kernel, "recurrent_kernel": self.recurrent_kernel}
        if self.bias is not None:
            w["bias"] = self.bias
        return w

    def step(self, x_t, h_prev):
        """One step, as the equation reads: (B, D), (B, H) -> (B, H)."""
        z = x_t @ self.kernel + h_prev @ self.recurrent_kernel
        if self.bias is not None:
            z = z + self.bias
        return self._act(z)

    def scan(self, x, mask=None, initial_state=None, trace=False, keep=True):
        """Run over a whole sequence.

        x: (B, T, D); mask: (B, T) bool or None; initial_state: (B, H) or None.
        Returns (sequence (B, T, H) in Keras' order, final state (B, H), Trace or None);
        with ``keep=False`` (and no trace) the sequence is not kept (None): O(B x H) memory.
        """
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if x.ndim != 3 or x.shape[-1] != self.input_dim:
            raise InputDataError(
                f"layer {self.name!r} expects input of shape (batch, timesteps, {self.input_dim}), "
                f"got {x.shape}")
        B, T, _ = x.shape
        H = self.units
        order = np.arange(T)[::-1] if self.go_backwards else np.arange(T)
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        if mask is not None and mask.all():
            mask = None
        h = np.zeros((B, H), self.dtype) if initial_state is None else \
            np.array(initial_state, dtype=self.dtype)
        if h.shape != (B, H):
            raise InputDataError(
                f"layer {self.name!r}: initial state must have shape ({B}, {H}), got {h.shape}")
        from . import kernels

        seq, h, xw, hu, z = kernels.scan(
            x, self.kernel, self.recurrent_kernel, self.bias, self._act, self.activation, h,
            mask, self.zero_output_for_mask, trace, keep)
        tr = None
        if trace:
            bias = self.bias if self.bias is not None else np.zeros(H, self.dtype)
            tr = Trace(xw, hu, bias, z, seq, mask, self.activation, order, x, self.kernel)
        return seq, h, tr

    def call(self, x, mask=None, initial_state=None, trace=False, keep=True):
        seq, state, tr = self.scan(x, mask, initial_state, trace,
                                   keep=keep or self.return_sequences)
        y = seq if self.return_sequences else (seq[:, -1] if seq is not None else state)
        # Keras passes the input's mask on as it is, even when go_backwards returns the
        # sequence in reversed order (RNN.compute_mask); a layer stacked on it sees that.
        out_mask = mask if self.return_sequences else None
        return RecurrentOutput(y, state, seq, tr, out_mask)


@dataclass
class RecurrentOutput:
    y: np.ndarray
    state: np.ndarray | tuple  # (B, H), or (forward, backward) for Bidirectional
    hidden: np.ndarray  # full output sequence, Keras' order, merged for Bidirectional
    trace: object  # Trace, or {"forward": Trace, "backward": Trace}
    mask: np.ndarray | None
    extra: dict = field(default_factory=dict)

    def outputs(self, return_state):
        if not return_state:
            return [self.y]
        states = self.state if isinstance(self.state, tuple) else (self.state,)
        return [self.y, *states]


def merge(a, b, mode):
    if mode == "concat":
        return np.concatenate([a, b], axis=-1)
    if mode == "sum":
        return a + b
    if mode == "mul":
        return a * b
    if mode == "ave":
        return (a + b) / 2
    raise UnsupportedLayerError(f"unknown merge_mode {mode!r}; expected concat, sum, mul, ave or None")


class Bidirectional(Layer):
    """Keras ``Bidirectional(SimpleRNN)``: a forward and a go_backwards layer, merged."""

    class_name = "Bidirectional"
    recurrent = True

    def __init__(self, name, forward_layer: SimpleRNN, backward_layer: SimpleRNN,
                 merge_mode="concat", config=None):
        super().__init__(name, config)
        if merge_mode not in ("concat", "sum", "mul", "ave", None):
            raise UnsupportedLayerError(
                f"layer {name!r}: unknown merge_mode {merge_mode!r}; expected concat, sum, mul, ave or None")
        if forward_layer.input_dim != backward_layer.input_dim:
            raise ModelFileError(
                f"layer {name!r}: forward and backward kernels disagree on input size "
                f"({forward_layer.input_dim} vs {backward_layer.input_dim})")
        self.forward_layer, self.backward_layer = forward_layer, backward_layer
        self.merge_mode = merge_mode
        # Keras: inside Bidirectional, masked steps output zeros in the returned sequences.
        # (Without return_sequences Keras returns the last unmasked output: the final state.)
        for layer in (forward_layer, backward_layer):
            layer.zero_output_for_mask = True

    @property
    def return_sequences(self):
        return self.forward_layer.return_sequences

    @property
    def return_state(self):
        return self.forward_layer.return_state

    @property
    def units(self):
        u = self.forward_layer.units
        return 2 * u if self.merge_mode == "concat" else u

    @property
    def input_dim(self):
        return self.forward_layer.input_dim

    @property
    def dtype(self):
        return self.forward_layer.dtype

    @property
    def directions(self):
        return {"forward": self.forward_layer, "backward": self.backward_layer}

    def weights(self):
        w = {f"forward/{k}": v for k, v in self.forward_layer.weights().items()}
        w.update({f"backward/{k}": v for k, v in self.backward_layer.weights().items()})
        return w

    def call(self, x, mask=None, initial_state=None, trace=False, keep=True):
        init_f = init_b = None  # (keep is ignored: the merge needs both whole sequences)
        if initial_state is not None:
            initial_state = np.asarray(initial_state)
            hf = self.forward_layer.units
            if initial_state.shape[-1] != 2 * hf:
                raise InputDataError(
                    f"layer {self.name!r}: initial state for a Bidirectional layer must have "
                    f"{2 * hf} columns (forward then backward), got shape {initial_state.shape}")
            init_f, init_b = initial_state[..., :hf], initial_state[..., hf:]
        seq_f, st_f, tr_f = self.forward_layer.scan(x, mask, init_f, trace)
        seq_b, st_b, tr_b = self.backward_layer.scan(x, mask, init_b, trace)
        # The backward output sequence back in forward time, as Keras aligns it.
        full_f, full_b = seq_f, seq_b[:, ::-1]
        if self.return_sequences:
            yf, yb = full_f, full_b
        else:
            yf, yb = st_f, st_b
        if self.merge_mode is None:
            y, hidden = (yf, yb), None
        else:
            y, hidden = merge(yf, yb, self.merge_mode), merge(full_f, full_b, self.merge_mode)
        tr = {"forward": tr_f, "backward": tr_b} if trace else None
        out = RecurrentOutput(y, (st_f, st_b), hidden, tr,
                              mask if self.return_sequences else None)
        out.extra = {"forward": seq_f, "backward": seq_b}
        return out


# ---------------------------------------------------------------- the rest


class Dense(Layer):
    """Keras ``Dense`` (also the inner layer of ``TimeDistributed``): ``activation(x · kernel + bias)``."""

    class_name = "Dense"

    def __init__(self, name, kernel, bias=None, activation="linear", keras_major=3, config=None):
        super().__init__(name, config)
        self.kernel = np.asarray(kernel)
        if self.kernel.ndim != 2:
            raise ModelFileError(
                f"layer {name!r}: Dense kernel must be 2-D, got shape {self.kernel.shape}")
        self.bias = None if bias is None else np.asarray(bias)
        if self.bias is not None and self.bias.shape != (self.kernel.shape[1],):
            raise ModelFileError(
                f"layer {name!r}: Dense bias must be ({self.kernel.shape[1]},) to match kernel "
                f"{self.kernel.shape}, got {self.bias.shape}")
        self.activation = activations.normalize(activation)
        self._act = activations.get(self.activation, keras_major)

    @property
    def units(self):
        return self.kernel.shape[1]

    def weights(self):
        w = {"kernel": self.kernel}
        if self.bias is not None:
            w["bias"] = self.bias
        return w

    def call(self, x, mask=None):
        x = np.asarray(x, dtype=self.kernel.dtype)
        if x.shape[-1] != self.kernel.shape[0]:
            raise InputDataError(
                f"layer {self.name!r} expects {self.kernel.shape[0]} features, got shape {x.shape}")
        from .kernels import matmul_rows

        y = matmul_rows(x, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self._act(y), mask


class TimeDistributed(Layer):
    """Keras ``TimeDistributed(Dense)``: the inner layer applied at every timestep."""

    class_name = "TimeDistributed"

    def __init__(self, name, inner: Layer, config=None):
        super().__init__(name, config)
        self.inner = inner

    def weights(self):
        return self.inner.weights()

    def call(self, x, mask=None):
        y, _ = self.inner.call(x)
        return y, mask


class Embedding(Layer):
    """Keras ``Embedding``: integer ids (B, T) -> rows of ``embeddings`` (B, T, output_dim)."""

    class_name = "Embedding"

    def __init__(self, name, embeddings, mask_zero=False, config=None):
        super().__init__(name, config)
        self.embeddings = np.asarray(embeddings)
        self.mask_zero = bool(mask_zero)

    @property
    def input_dim(self):
        return self.embeddings.shape[0]

    def weights(self):
        return {"embeddings": self.embeddings}

    def call(self, x, mask=None):
        ids = np.asarray(x)
        if ids.dtype.kind == "f":
            if not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
                raise InputDataError(
                    f"layer {self.name!r} (Embedding) expects integer token ids, got non-integer "
                    f"values such as {ids[ids != np.round(ids)].ravel()[:1]}")
        elif ids.dtype.kind not in "iub":
            raise InputDataError(
                f"layer {self.name!r} (Embedding) expects integer token ids, got dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        bad = (ids < 0) | (ids >= self.input_dim)
        if bad.any():
            raise InputDataError(
                f"layer {self.name!r} (Embedding) expects token ids in 0..{self.input_dim - 1}, "
                f"got {ids[bad].ravel()[0]}")
        y = self.embeddings[ids]
        out_mask = (ids != 0) if self.mask_zero else mask
        return y, out_mask


class Masking(Layer):
    """Keras ``Masking``: a step whose features all equal ``mask_value`` is skipped."""

    class_name = "Masking"

    def __init__(self, name, mask_value=0.0, config=None):
        super().__init__(name, config)
        self.mask_value = mask_value

    def call(self, x, mask=None):
        x = np.asarray(x)
        keep = np.any(x != self.mask_value, axis=-1)
        return x * keep[..., None].astype(x.dtype), keep


class Identity(Layer):
    """Dropout, SpatialDropout1D, GaussianNoise, GaussianDropout, AlphaDropout, ActivityRegularization
    at inference: the input unchanged."""

    def __init__(self, name, class_name, config=None):
        super().__init__(name, config)
        self.class_name = class_name

    def call(self, x, mask=None):
        return x, mask


class Activation(Layer):
    class_name = "Activation"

    def __init__(self, name, activation, keras_major=3, config=None):
        super().__init__(name, config)
        self.activation = activations.normalize(activation)
        self._act = activations.get(self.activation, keras_major)

    def call(self, x, mask=None):
        return self._act(np.asarray(x)), mask


class Flatten(Layer):
    class_name = "Flatten"

    def call(self, x, mask=None):
        x = np.asarray(x)
        return x.reshape(x.shape[0], -1), None


class Op(Layer):
    """An operation Keras records as a layer of its own in functional configs
    (``NotEqual``, ``Equal``, ``Any``, ``All``, ``Cast``, ``Add``, ``Concatenate`` ...).
    Called with the node's positional args and kwargs."""

    def __init__(self, name, class_name, config=None):
        super().__init__(name, config)
        self.class_name = class_name

    def call(self, *args, **kwargs):
        cfg = {**self.config, **kwargs}
        kind = self.class_name
        if kind in ("NotEqual", "Equal", "Greater", "Less", "GreaterEqual", "LessEqual"):
            a, b = args
            fn = {"NotEqual": np.not_equal, "Equal": np.equal, "Greater": np.greater,
                  "Less": np.less, "GreaterEqual": np.greater_equal,
                  "LessEqual": np.less_equal}[kind]
            return fn(a, b)
        if kind in ("Any", "All"):
            fn = np.any if kind == "Any" else np.all
            return fn(args[0], axis=_axis(cfg.get("axis")), keepdims=bool(cfg.get("keepdims", False)))
        if kind == "Cast":
            return np.asarray(args[0]).astype(_dtype_name(cfg.get("dtype", "float32")))
        if kind in ("Add", "Multiply", "Subtract", "Maximum", "Minimum", "Average"):
            xs = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
            fn = {"Add": np.add, "Multiply": np.multiply, "Subtract": np.subtract,
                  "Maximum": np.maximum, "Minimum": np.minimum}.get(kind)
            if kind == "Average":
                return sum(xs) / len(xs)
            out = xs[0]
            for v in xs[1:]:
                out = fn(out, v)
            return out
        if kind == "Concatenate":
            xs = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
            return np.concatenate(xs, axis=cfg.get("axis", -1))
        raise UnsupportedLayerError(f"layer {self.name!r}: rnncli cannot compute {kind}")


OP_CLASSES = {"NotEqual", "Equal", "Greater", "Less", "GreaterEqual", "LessEqual", "Any", "All",
              "Cast", "Add", "Multiply", "Subtract", "Maximum", "Minimum", "Average", "Concatenate"}


def _axis(axis):
    if isinstance(axis, list):
        return tuple(axis)
    return axis


def _dtype_name(d):
    if isinstance(d, dict):
        d = d.get("config", {}).get("name", "float32")
    return {"bool": np.bool_}.get(d, d)


class Unsupported(Layer):
    """A layer rnncli loads (so the model can be inspected) but cannot compute."""

    def __init__(self, name, class_name, reason, config=None, weights=None):
        super().__init__(name, config)
        self.class_name = class_name
        self.reason = reason
        self._weights = weights or {}

    def weights(self):
        return self._weights

    def call(self, *args, **kwargs):
        raise UnsupportedLayerError(self.reason)


IDENTITY_CLASSES = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
                    "GaussianDropout", "AlphaDropout", "ActivityRegularization",
                    "PassThrough"}  # (PassThrough: a weightless layer of a file with no config)
