"""The compiled (numba) path gives the plain path's numbers, and Keras' numbers."""

import os

import numpy as np
import pytest
from conftest import CASES, WITH_CONFIG, assert_outputs_match_keras

from rnncli.core import fast
from rnncli.core.simple_rnn import SimpleRNN
from rnncli.keras.random import random_weights

pytest.importorskip("numba")


@pytest.fixture
def engine(monkeypatch):
    def use(name):
        monkeypatch.setenv("RNNCLI_ENGINE", name)

    return use


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", fast.ACTIVATIONS)
@pytest.mark.parametrize("trace", [False, True])
def test_numba_matches_numpy(engine, dtype, act, trace):
    k, u, b = random_weights(4, 16, 3, dtype=dtype)
    b = b + dtype(0.05)
    u = u * dtype(0.9)  # contracting: rounding differences can't grow without bound
    layer = SimpleRNN("r", k, u, b, activation=act, return_sequences=True)
    x = np.random.default_rng(0).normal(size=(2, 700, 3)).astype(dtype)
    d0 = layer.run(x, trace=trace, engine="numpy")
    d1 = layer.run(x, trace=trace, engine="numba")
    seq0, h0, tr0 = d0.sequence, d0.states["h"], d0.trace
    seq1, h1, tr1 = d1.sequence, d1.states["h"], d1.trace
    # an ulp or so per step, as BLAS and the compiled loop sum in different orders
    tol = {"atol": 2e-6, "rtol": 1e-5} if dtype == np.float32 else {"atol": 1e-12, "rtol": 1e-11}
    np.testing.assert_allclose(seq1, seq0, **tol)
    np.testing.assert_allclose(h1, h0, **tol)
    if trace:
        for name in ("xw", "hu", "z", "h"):
            np.testing.assert_allclose(getattr(tr1, name), getattr(tr0, name), **tol)


def test_auto_picks_numba_only_for_long_small_problems(engine):
    from rnncli.core.engine import Engine

    engine("auto")
    assert fast.worth_it(10000, 1, 64)
    assert not fast.worth_it(100, 1, 64)  # short: not worth compiling for
    assert not fast.worth_it(50, 1024, 256)  # big batches: BLAS
    k, u, b = random_weights(4, 16, 3)
    assert SimpleRNN("r", k, u, b, activation="gelu").cell.compiled() is None  # not compiled
    # one input per process (the CLI): only where the saved time pays for importing numba
    once = Engine(one_shot=True)
    assert not fast.worth_it(10000, 1, 64, engine=once)
    assert fast.worth_it(200_000, 1, 64, engine=once)
    engine("numpy")
    assert not fast.worth_it(200_000, 1, 64)
    assert not fast.worth_it(200_000, 1, 64, engine=Engine("numpy"))


@pytest.mark.parametrize("case,fmt,path", [c for c in CASES if c.values[1] in WITH_CONFIG])
def test_numba_path_matches_keras(engine, case, fmt, path):
    engine("numba")
    assert_outputs_match_keras(case, path)
    assert os.environ["RNNCLI_ENGINE"] == "numba"
