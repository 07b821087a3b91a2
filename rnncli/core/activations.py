"""Keras activations by name, in numpy.

Keras 3 and Keras 2 (tf.keras) agree on every activation here except
``hard_sigmoid``: Keras 3 uses ``relu6(x + 3) / 6``, Keras 2 used
``clip(0.2 * x + 0.5, 0, 1)``. :func:`get` takes the Keras major version that
wrote the model.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedLayerError

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def linear(x):
    return x


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    # exp of a large negative x overflows harmlessly to inf -> 0.
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def hard_sigmoid(x):
    return np.clip(x / 6 + 0.5, 0, 1).astype(x.dtype, copy=False)


def hard_sigmoid_keras2(x):
    return np.clip(0.2 * x + 0.5, 0, 1).astype(x.dtype, copy=False)


def softplus(x):
    return np.logaddexp(x.dtype.type(0), x)


def softsign(x):
    return x / (1 + np.abs(x))


def elu(x):
    with np.errstate(over="ignore"):
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def selu(x):
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def swish(x):
    return x * sigmoid(x)


def _erf(x):
    return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)


def gelu(x):
    # Keras' default is the exact form (approximate=False).
    return 0.5 * x * (1 + _erf(x / np.sqrt(2).astype(x.dtype)))


def exponential(x):
    with np.errstate(over="ignore"):
        return np.exp(x)


def leaky_relu(x):
    return np.where(x > 0, x, 0.2 * x).astype(x.dtype, copy=False)


def relu6(x):
    return np.clip(x, 0, 6)


def hard_silu(x):
    return x * hard_sigmoid(x)


def mish(x):
    return x * np.tanh(softplus(x))


def log_sigmoid(x):
    return -softplus(-x)


def tanh_shrink(x):
    return x - np.tanh(x)


def hard_tanh(x):
    return np.clip(x, -1, 1)


def celu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x):
    s = x - x.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


ACTIVATIONS = {
    "linear": linear,
    "tanh": np.tanh,
    "relu": relu,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "softplus": softplus,
    "softsign": softsign,
    "elu": elu,
    "selu": selu,
    "swish": swish,
    "silu": swish,
    "gelu": gelu,
    "exponential": exponential,
    "leaky_relu": leaky_relu,
    "relu6": relu6,
    "hard_silu": hard_silu,
    "hard_swish": hard_silu,
    "mish": mish,
    "log_sigmoid": log_sigmoid,
    "tanh_shrink": tanh_shrink,
    "hard_tanh": hard_tanh,
    "celu": celu,
    "softmax": softmax,
    "log_softmax": log_softmax,
}

# Bounded activations and their bounds, for saturation flags in `trace`.
BOUNDS = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0),
          "softsign": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0)}


def normalize(name) -> str:
    """The canonical name of an activation as Keras stores it in a config.

    Keras writes a plain name ("tanh"); some versions wrap it in a dict
    ``{"class_name": "function", "config": "tanh"}``. ``None`` means linear.
    """
    if name is None:
        return "linear"
    if isinstance(name, dict):
        inner = name.get("config")
        if isinstance(inner, str) and name.get("class_name") in ("function", "builtins.function"):
            name = inner
        else:
            raise UnsupportedLayerError(
                f"activation {name.get('class_name')!r} is a custom object; expected one of "
                f"Keras' built-in activations ({', '.join(sorted(ACTIVATIONS))})"
            )
    if not isinstance(name, str):
        raise UnsupportedLayerError(f"activation must be a name, got {name!r}")
    key = name.lower()
    if key not in ACTIVATIONS:
        raise UnsupportedLayerError(
            f"unknown activation {name!r}; expected one of {', '.join(sorted(ACTIVATIONS))}"
        )
    return key


def get(name, keras_major: int = 3):
    """The numpy function for activation ``name`` as Keras ``keras_major`` computes it."""
    key = normalize(name)
    if key == "hard_sigmoid" and keras_major < 3:
        return hard_sigmoid_keras2
    return ACTIVATIONS[key]


def writer(fn):
    """``fn`` as ``write(z, out)``: numpy ufuncs write in place, other activations copy."""
    if isinstance(fn, np.ufunc):
        return lambda z, out: fn(z, out=out)

    def write(z, out):
        out[...] = fn(z)
        return out

    return write


def slope_bound(name) -> float | None:
    """The largest slope of an activation (gamma in ||dh_t/dh_{t-1}|| <= gamma * ||U||),
    or None where it is unbounded."""
    return {"tanh": 1.0, "sigmoid": 0.25, "hard_sigmoid": 1 / 6, "linear": 1.0, "relu": 1.0,
            "relu6": 1.0, "softsign": 1.0, "hard_tanh": 1.0, "leaky_relu": 1.0,
            "elu": 1.0}.get(name)
