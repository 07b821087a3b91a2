"""The Jacobian norms (rnncli/core/jacobians.py): some samples only, the cells' fast
products, and why gated cells get no bound (docs/math.md)."""

import numpy as np
import pytest

from rnncli.core import bptt, diagnosis, jacobians
from rnncli.core.gru import GRUCell
from rnncli.core.lstm import LSTMCell
from rnncli.core.model import Model
from rnncli.core.rnn import RNN
from rnncli.core.simple_rnn import SimpleRNN


def simple(H=5, D=3, seed=0, activation="tanh"):
    rng = np.random.default_rng(seed)
    return SimpleRNN("rnn", rng.normal(size=(D, H)), rng.normal(size=(H, H)) * 0.5,
                     rng.normal(size=H) * 0.1, activation=activation, return_sequences=True)


def lstm(H=4, D=3, seed=0, forget_bias=0.0, input_bias=0.0, scale=0.5):
    rng = np.random.default_rng(seed)
    b = rng.normal(size=4 * H) * 0.1
    b[:H] += input_bias
    b[H:2 * H] += forget_bias
    return RNN("lstm", LSTMCell(rng.normal(size=(D, 4 * H)) * scale,
                                rng.normal(size=(H, 4 * H)) * scale, b, name="lstm"),
               return_sequences=True)


def gru(H=4, D=3, seed=0, update_bias=0.0, scale=0.5):
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(2, 3 * H)) * 0.1
    b[0, :H] += update_bias
    return RNN("gru", GRUCell(rng.normal(size=(D, 3 * H)) * scale,
                              rng.normal(size=(H, 3 * H)) * scale, b, name="gru"),
               return_sequences=True)


def backward_of(layer, x):
    d = layer.run(x, trace=True)
    tr = d.trace
    terms = {k: bptt.time_major(tr[k]) for k in tr if np.ndim(tr[k]) == 3}
    zeros = layer.cell.initial_states(len(x))
    states = bptt._state_sequences(layer.cell, d, terms["h"], None, zeros)
    return layer.cell, terms, states, zeros


@pytest.mark.parametrize("make", [simple, lstm, gru])
def test_left_is_the_product_with_the_jacobian(make):
    cell, terms, states, zeros = backward_of(make(), np.random.default_rng(1).normal(
        size=(3, 6, 3)))
    back = cell.backward(terms, states, zeros)
    S, H = len(cell.state_names), cell.units
    q = np.random.default_rng(2).normal(size=(3, H, S * H))
    for k in range(1, 6):
        np.testing.assert_allclose(back.left(q, k), q @ back.jacobian(k), rtol=1e-12)


@pytest.mark.parametrize("make", [simple, lstm])
def test_some_samples_only(make):
    model = Model.chain("m", [make()])
    x = np.random.default_rng(3).normal(size=(7, 6, 3))
    everything = model.gradients(x, of="output")
    some = model.gradients(x, of="output", jacobian=[5, 1, -1])
    name = model.layers[0].name
    full, part = everything[f"jacobian_norm/{name}"], some[f"jacobian_norm/{name}"]
    np.testing.assert_allclose(part[[1, 5, 6]], full[[1, 5, 6]], rtol=1e-12)
    assert np.isnan(part[[0, 2, 3, 4]]).all()
    for k, v in everything.items():  # the rest is the same
        if not k.startswith("jacobian_norm"):
            np.testing.assert_array_equal(some[k], v)
    assert not any(k.startswith("jacobian_norm") for k in model.gradients(
        x, of="output", jacobian=False))


def test_blocks_in_threads_match_one_block():
    cell, terms, states, zeros = backward_of(simple(H=6), np.random.default_rng(4).normal(
        size=(40, 5, 3)))
    threaded = jacobians.jacobian_norms(cell, terms, states, zeros)
    back = cell.backward(terms, states, zeros)
    alone = jacobians.product_norms(back, 5, 40, 6, 1, cell.dtype)
    np.testing.assert_allclose(threaded, alone, rtol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_untraced_record_gives_the_traced_numbers(activation, monkeypatch):
    """A tanh SimpleRNN records its forward pass without a trace (f' from h alone)."""
    model = Model.chain("m", [simple(activation=activation)])
    x = np.random.default_rng(5).normal(size=(4, 6, 3))
    assert bptt.states_suffice(model.layers[0], x.shape, None) == (activation == "tanh")
    light = model.gradients(x, of="output")
    monkeypatch.setattr(bptt, "states_suffice", lambda *a, **k: False)
    full = model.gradients(x, of="output")
    for k, v in full.items():
        np.testing.assert_allclose(light[k], v, rtol=1e-12, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("make,kw", [(lstm, {"forget_bias": 6.0, "input_bias": -2.0}),
                                     (gru, {"update_bias": 8.0})])
def test_gated_cells_can_keep_the_gradient_forever(make, kw):
    """docs/math.md: no bound of the form beta^(T-1-t) with beta < 1 holds for a gated
    cell whatever its recurrent kernel's norm: with the forget gate (LSTM) or the update
    gate (GRU) near 1 the Jacobian norm over 200 steps stays far above any such bound
    with the SimpleRNN's gamma·||U|| (LSTM: a small input gate keeps c out of tanh's flat
    ends, where h would stop depending on it)."""
    layer = make(**kw, scale=0.2)
    x = np.random.default_rng(6).normal(size=(2, 200, 3))
    g = Model.chain("m", [layer]).gradients(x, of="output")
    jac = g[f"jacobian_norm/{layer.name}"]
    assert np.all(jac[:, 0] > 1e-4)
    # what the SimpleRNN bound would claim with the largest gate's kernel (gamma = 1)
    U = layer.cell.recurrent_kernel
    beta = max(np.linalg.norm(U[:, i:i + layer.units], 2) for i in
               range(0, U.shape[1], layer.units))
    assert beta < 1 and beta ** 199 < 1e-10
    assert diagnosis.jacobian_bound(layer.cell, 200) is None
