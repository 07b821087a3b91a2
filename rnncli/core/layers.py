"""The layers around the recurrent ones, in numpy, as Keras computes them at inference.

Each layer is its weights plus ``call(x, mask) -> (y, mask)``. Names follow Keras:
``kernel`` (input_dim, units), ``bias`` (units,). Shapes: B = batch, T = timesteps,
D = input features. The recurrent layers are in rnncli/core/rnn.py.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError, ModelFileError, UnsupportedLayerError
from . import activations
from .layer import Layer

# ---------------------------------------------------------------- the rest


class Dense(Layer):
    """Keras ``Dense`` (also the inner layer of ``TimeDistributed``): ``activation(x · kernel + bias)``."""

    class_name = "Dense"
    settable = ("activation",)

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
        self.keras_major = keras_major
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
        from .engine import matmul_rows

        y = matmul_rows(x, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self._act(y), mask


class TimeDistributed(Layer):
    """Keras ``TimeDistributed(Dense)``: the inner layer applied at every timestep."""

    class_name = "TimeDistributed"
    settable = ("activation",)

    def __init__(self, name, inner: Layer, config=None):
        super().__init__(name, config)
        self.inner = inner

    def configure(self, key, value):
        self.inner.configure(key, value)

    def weights(self):
        return self.inner.weights()

    def call(self, x, mask=None):
        y, _ = self.inner.call(x)
        return y, mask


class Embedding(Layer):
    """Keras ``Embedding``: integer ids (B, T) -> rows of ``embeddings`` (B, T, output_dim)."""

    class_name = "Embedding"
    settable = ("mask_zero",)

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
    settable = ("mask_value",)

    def __init__(self, name, mask_value=0.0, config=None):
        super().__init__(name, config)
        self.mask_value = float(mask_value)

    def call(self, x, mask=None):
        x = np.asarray(x)
        keep = np.any(x != self.mask_value, axis=-1)
        return x * keep[..., None].astype(x.dtype), keep


class SequenceLengths(Layer):
    """Each sequence's length, stored in the file (ONNX ``sequence_lens``): the steps past
    it are masked, so recurrent layers carry their state there and output zeros (as ONNX
    does; the layers after it need ``zero_output_for_mask``)."""

    class_name = "SequenceLengths"

    def __init__(self, name, lengths, config=None):
        super().__init__(name, config)
        self.lengths = np.asarray(lengths, np.int64).reshape(-1)

    def call(self, x, mask=None):
        x = np.asarray(x)
        B, T = x.shape[:2]
        if B != len(self.lengths):
            raise InputDataError(
                f"layer {self.name!r}: the file stores the lengths of {len(self.lengths)} "
                f"sequences; expected a batch of {len(self.lengths)}, got {B}")
        if self.lengths.min(initial=1) < 1 or self.lengths.max(initial=0) > T:
            raise InputDataError(
                f"layer {self.name!r}: stored sequence lengths {self.lengths.tolist()} must "
                f"be 1 to {T} (the input's timesteps)")
        keep = np.arange(T) < self.lengths[:, None]
        return x, keep if mask is None else (np.asarray(mask, bool) & keep)


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
    settable = ("activation",)

    def __init__(self, name, activation, keras_major=3, config=None):
        super().__init__(name, config)
        self.keras_major = keras_major
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


# Layers that pass values through at inference; in weights-only files they are told by
# their names (Keras' snake_case of the class).
IDENTITY_CLASSES = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
                    "GaussianDropout", "AlphaDropout", "ActivityRegularization"}

