"""Seeded random weights: Keras' default initializers, the same on every machine."""

import hashlib
import subprocess
import sys

import numpy as np

import rnncli
from rnncli.keras.random import random_weights


def test_keras_default_initializers():
    k, u, b = random_weights(7, 16, 5)
    limit = np.sqrt(6 / (5 + 16))  # glorot_uniform
    assert k.shape == (5, 16) and np.all(np.abs(k) <= limit) and np.abs(k).max() > 0.8 * limit
    np.testing.assert_allclose(u @ u.T, np.eye(16), atol=1e-5)  # orthogonal
    assert b.shape == (16,) and not b.any()  # zeros
    assert k.dtype == u.dtype == np.float32


def test_same_seed_same_weights_in_another_process():
    code = ("import hashlib; from rnncli.keras.random import random_weights;"
            "print(hashlib.sha256(b''.join(w.tobytes() for w in random_weights(3, 8, 4)))"
            ".hexdigest())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    here = hashlib.sha256(b"".join(w.tobytes() for w in random_weights(3, 8, 4))).hexdigest()
    assert here == other
    assert not np.array_equal(random_weights(3, 8, 4)[0], random_weights(4, 8, 4)[0])


def test_random_model_runs():
    model = rnncli.random_model(1, units=2, input_dim=5)
    assert model.source["format"] == "random"
    out = model.run(np.ones((1, 3, 5))).output
    assert out.shape == (1, 3, 2) and np.all(np.abs(out) < 1)
