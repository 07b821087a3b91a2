"""Random SimpleRNN weights from a seed, with Keras' default initializers.

``kernel``: glorot_uniform, U(-l, l) with l = sqrt(6 / (fan_in + fan_out));
``recurrent_kernel``: orthogonal (QR of a standard-normal matrix, signs fixed so
the diagonal of R is positive); ``bias``: zeros. Values come from numpy's PCG64
stream through ``random()`` only (normals by Box-Muller here, not numpy's
ziggurat), so a seed gives the same weights on every machine and numpy version.
"""

from __future__ import annotations

import numpy as np

from .keras_config import Overrides, model_from_config
from .model import Model


def _uniform(rng, shape):
    return rng.random(shape)  # float64 in [0, 1): the stable part of numpy's Generator API


def glorot_uniform(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return (_uniform(rng, (fan_in, fan_out)) * 2 - 1) * limit


def standard_normal(rng, shape):
    n = int(np.prod(shape))
    m = (n + 1) // 2
    u1 = 1.0 - _uniform(rng, m)  # (0, 1]
    u2 = _uniform(rng, m)
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])[:n]
    return z.reshape(shape)


def orthogonal(rng, n, gain=1.0):
    q, r = np.linalg.qr(standard_normal(rng, (n, n)))
    q *= np.sign(np.diag(r))
    return gain * q


def random_weights(seed: int, units: int, input_dim: int, use_bias=True, dtype="float32"):
    """kernel (input_dim, units), recurrent_kernel (units, units), bias (units,)."""
    if units < 1 or input_dim < 1:
        raise ValueError(f"units and input_dim must be positive, got {units} and {input_dim}")
    rng = np.random.Generator(np.random.PCG64(seed))
    w = [glorot_uniform(rng, input_dim, units), orthogonal(rng, units)]
    if use_bias:
        w.append(np.zeros(units))
    return [a.astype(dtype) for a in w]


def random_model(seed: int, units: int, input_dim: int, *, activation="tanh", use_bias=True,
                 dtype="float32", overrides=None) -> Model:
    """A one-layer SimpleRNN model (returning sequences) with seeded Keras-default weights."""
    weights = random_weights(seed, units, input_dim, use_bias, dtype)
    cfg = {"name": "simple_rnn", "units": units, "activation": activation, "use_bias": use_bias,
           "return_sequences": True, "dtype": dtype}
    config = {"class_name": "Sequential", "config": {"name": f"random_seed{seed}", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, None, input_dim],
                                                "dtype": dtype, "name": "input"}},
        {"class_name": "SimpleRNN", "config": cfg}]}}
    source = {"path": None, "format": "random", "title": "random weights from a seed",
              "keras_version": "", "has_config": True, "seed": seed}
    return model_from_config(config, lambda i, n, c: weights, 3, Overrides(overrides),
                             source=source)
