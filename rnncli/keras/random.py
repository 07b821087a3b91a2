"""Random SimpleRNN weights from a seed, with Keras' default initializers.

``kernel``: glorot_uniform, U(-l, l) with l = sqrt(6 / (fan_in + fan_out));
``recurrent_kernel``: orthogonal (QR of a standard-normal matrix, signs fixed so
the diagonal of R is positive); ``bias``: zeros. Values come from numpy's PCG64
stream through ``random()`` only (normals by Box-Muller here, not numpy's
ziggurat), so a seed gives the same weights on every machine and numpy version.
"""

from __future__ import annotations

import numpy as np

from ..core.model import InputSpec, Model
from ..core.rnn import RNN
from ..core.settings import apply_settings
from ..core.simple_rnn import SimpleRNNCell


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
    kernel, recurrent_kernel, *bias = random_weights(seed, units, input_dim, use_bias, dtype)
    cell = SimpleRNNCell(kernel, recurrent_kernel, bias[0] if bias else None,
                         activation=activation, name="simple_rnn")
    layer = RNN("simple_rnn", cell, return_sequences=True)
    source = {"path": None, "format": "random", "title": "random weights from a seed",
              "keras_version": "", "has_config": True, "seed": seed}
    model = Model.chain(f"random_seed{seed}", [layer], source=source,
                        input_spec=InputSpec("input", (None, None, input_dim), str(dtype)))
    apply_settings(model, overrides)
    return model
