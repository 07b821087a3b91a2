"""Random SimpleRNN weights from a seed, with Keras' default initializers.

``kernel``: glorot_uniform, U(-l, l) with l = sqrt(6 / (fan_in + fan_out));
``recurrent_kernel``: orthogonal (QR of a standard-normal matrix, signs fixed so
the diagonal of R is positive); ``bias``: zeros. Values come from numpy's PCG64
stream through ``random()`` only (normals by Box-Muller here, not numpy's
ziggurat), so a seed gives the same weights on every machine and numpy version.
"""

from __future__ import annotations

import numpy as np

from .. import limits
from ..core.model import InputSpec, Model
from ..core.rnn import RNN
from ..core.settings import apply_settings
from ..errors import UsageError


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


def orthogonal(rng, n, blocks=1, gain=1.0):
    """(n, blocks·n) with orthonormal rows, as Keras' Orthogonal initializer of that shape
    (QR of a tall standard-normal matrix, signs fixed so diag(R) > 0, transposed)."""
    a = standard_normal(rng, (blocks * n, n))  # (max(rows, cols), min(rows, cols))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return gain * (q.T if blocks > 1 else q)


def random_weights(seed: int, units: int, input_dim: int, use_bias=True, dtype="float32",
                   gates=1, forget_bias=False, bias_rows=1):
    """kernel (input_dim, gates·units) glorot_uniform, recurrent_kernel (units, gates·units)
    orthogonal (a block per gate, as Keras' orthogonal of an (units, gates·units) matrix),
    bias zeros ((gates·units,), or (2, gates·units) for a reset_after GRU), with LSTM's
    unit_forget_bias (the f block 1)."""
    if units < 1 or input_dim < 1:
        raise ValueError(f"units and input_dim must be positive, got {units} and {input_dim}")
    rng = np.random.Generator(np.random.PCG64(seed))
    w = [glorot_uniform(rng, input_dim, gates * units), orthogonal(rng, units, gates)]
    if use_bias:
        bias = np.zeros((bias_rows, gates * units) if bias_rows > 1 else gates * units)
        if forget_bias:
            bias[units:2 * units] = 1.0
        w.append(bias)
    return [a.astype(dtype) for a in w]


def random_model(seed: int, units: int, input_dim: int, *, activation="tanh", use_bias=True,
                 dtype="float32", overrides=None, cell="simple_rnn") -> Model:
    """A one-layer model (``cell``: simple_rnn, lstm or gru, returning sequences) with
    seeded Keras-default weights."""
    from ..core.cells import registry
    from ..keras.build import snake_case

    classes = {snake_case(k): v for k, v in registry().items()}
    if cell not in classes:
        raise UsageError(f"--cell {cell}: expected one of {', '.join(classes)}")
    cell_type, _ = classes[cell]
    gates = len(cell_type.gates) or 1
    limits.check_bytes(4 * (input_dim + units + 2) * gates * units,
                       f"--units {units}: the weights would take", of_file=False)
    weights = random_weights(seed, units, input_dim, use_bias, dtype, gates=gates,
                             forget_bias=cell == "lstm",
                             bias_rows=2 if cell == "gru" else 1)
    layer = RNN(cell, cell_type.from_config(cell, {"activation": activation}, weights),
                return_sequences=True)
    source = {"path": None, "format": "random", "title": "random weights from a seed",
              "keras_version": "", "has_config": True, "seed": seed}
    model = Model.chain(f"random_seed{seed}", [layer], source=source,
                        input_spec=InputSpec("input", (None, None, input_dim), str(dtype)))
    apply_settings(model, overrides)
    return model
