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


def slope_bound(name, keras_major: int = 3) -> float | None:
    """The largest slope of an activation (gamma in ||dh_t/dh_{t-1}|| <= gamma * ||U||),
    or None where it is unbounded."""
    if name == "hard_sigmoid" and keras_major < 3:
        return 0.2
    return {"tanh": 1.0, "sigmoid": 0.25, "hard_sigmoid": 1 / 6, "linear": 1.0, "relu": 1.0,
            "relu6": 1.0, "softsign": 1.0, "hard_tanh": 1.0, "leaky_relu": 1.0,
            "elu": 1.0}.get(name)


# ---------------------------------------------------------------- derivatives
#
# f'(z) as TensorFlow's gradients compute it, from z (the input) and y = f(z) (the output,
# where it is cheaper). At a kink the slope is TensorFlow's: relu'(0) = 0 (ReluGrad passes
# the gradient where z > 0), relu6 and hard_sigmoid (a relu6 in Keras 3) only strictly
# inside, leaky_relu'(0) = 0.2 and elu'(0) = 1, clip_by_value (hard_tanh, Keras 2's
# hard_sigmoid) inclusive of its ends.


def _sig(z):
    return sigmoid(z)


def _gelu_slope(z, y):
    phi = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return 0.5 * (1 + _erf(z / np.sqrt(2).astype(z.dtype))) + z * phi


def _mish_slope(z, y):
    t = np.tanh(softplus(z))
    return t + z * (1 - t * t) * _sig(z)


def _step(cond, dtype, inside=1.0, outside=0.0):
    return np.where(cond, dtype.type(inside), dtype.type(outside))


DERIVATIVES = {
    "linear": lambda z, y: np.ones_like(z),
    "tanh": lambda z, y: 1 - y * y,
    "relu": lambda z, y: _step(z > 0, z.dtype),
    "sigmoid": lambda z, y: y * (1 - y),
    "hard_sigmoid": lambda z, y: _step((z > -3) & (z < 3), z.dtype, 1 / 6),
    "softplus": lambda z, y: _sig(z),
    "softsign": lambda z, y: 1 / np.square(1 + np.abs(z)),
    "elu": lambda z, y: np.where(z < 0, y + 1, z.dtype.type(1)),
    "selu": lambda z, y: np.where(z < 0, y + _SELU_SCALE * _SELU_ALPHA,
                                  z.dtype.type(_SELU_SCALE)),
    "swish": lambda z, y: _sig(z) * (1 + z * (1 - _sig(z))),
    "gelu": _gelu_slope,
    "exponential": lambda z, y: y,
    "leaky_relu": lambda z, y: _step(z > 0, z.dtype, 1.0, 0.2),
    "relu6": lambda z, y: _step((z > 0) & (z < 6), z.dtype),
    "hard_silu": lambda z, y: hard_sigmoid(z) + z * _step((z > -3) & (z < 3), z.dtype, 1 / 6),
    "mish": _mish_slope,
    "log_sigmoid": lambda z, y: _sig(-z),
    "tanh_shrink": lambda z, y: np.square(np.tanh(z)),
    "hard_tanh": lambda z, y: _step((z >= -1) & (z <= 1), z.dtype),
    "celu": lambda z, y: np.where(z > 0, z.dtype.type(1), np.exp(np.minimum(z, 0))),
}
# those whose slope reads y = f(z) alone (z may be any array of its shape and dtype)
OUTPUT_SLOPES = frozenset({"linear", "tanh", "sigmoid", "exponential"})
DERIVATIVES["silu"] = DERIVATIVES["swish"]
DERIVATIVES["hard_swish"] = DERIVATIVES["hard_silu"]
VECTOR = ("softmax", "log_softmax")  # not elementwise: see backward()


def derivative(name, z, y, keras_major: int = 3):
    """f'(z), elementwise, of an elementwise activation (as :func:`get` computes it) at z,
    given y = f(z). softmax and log_softmax are not elementwise: use :func:`backward`."""
    key = normalize(name)
    if key in VECTOR:
        raise UnsupportedLayerError(
            f"activation {key!r} is not elementwise; expected one whose slope is per value")
    if key == "hard_sigmoid" and keras_major < 3:
        return _step((z >= -2.5) & (z <= 2.5), z.dtype, 0.2)
    with np.errstate(over="ignore", invalid="ignore"):
        return DERIVATIVES[key](z, y).astype(z.dtype, copy=False)


def backward(name, g, z, y, keras_major: int = 3):
    """dL/dz from dL/dy = ``g`` through y = f(z) (the last axis for softmax)."""
    key = normalize(name)
    if key == "linear":
        return g
    if key == "softmax":
        return y * (g - np.sum(g * y, axis=-1, keepdims=True))
    if key == "log_softmax":
        return g - np.exp(y) * np.sum(g, axis=-1, keepdims=True)
    return g * derivative(key, z, y, keras_major)
