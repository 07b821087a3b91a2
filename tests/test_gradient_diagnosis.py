"""Reading gradients (rnncli/core/diagnosis.py), the finite-difference check users run
(gradients.check), and the numbers the gradient tutorials quote."""

import os

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from test_gradients import MANIFEST, REF, inputs, rnn

import rnncli
from rnncli.core import diagnosis, gradients
from rnncli.core.layers import Masking
from rnncli.core.model import Model


def test_jacobian_norm_sits_under_its_bound():
    layer = rnn(H=5, return_sequences=True, scale=1.2)
    model = Model.chain("m", [Masking("mask", 0.0), layer])
    x = inputs(B=3, T=12, pad=True)
    g = model.gradients(x, of="output")
    d = model.run(x).layers["rnn"].directions[""]
    bound = diagnosis.jacobian_bound(layer.cell, 12, d.trace.mask)
    assert bound.shape == (3, 12)
    assert np.all(g["jacobian_norm/rnn"] <= bound * (1 + 1e-9))
    assert diagnosis.contraction(layer.cell) == pytest.approx(
        np.linalg.norm(layer.recurrent_kernel, 2))  # tanh: gamma = 1
    np.testing.assert_allclose(diagnosis.jacobian_bound(layer.cell, 3), [
        diagnosis.contraction(layer.cell) ** 2, diagnosis.contraction(layer.cell), 1])


def test_readings():
    case = next(c for c in MANIFEST["cases"] if c["name"] == "long_rnn_vanishing")
    model = rnncli.load_model(os.path.join(REF, case["model"]))
    g = model.gradients(np.load(os.path.join(REF, case["input"])),
                        np.load(os.path.join(REF, case["target"])))
    norms = np.linalg.norm(g["grad_hidden/long_rnn"][0], axis=-1)
    r = diagnosis.read(norms)
    first_low = max(t for t in range(30) if norms[t] < 1e-3 * norms[-1])
    assert r.kind == "vanishing" and r.steps == 29 - first_low
    assert str(r.steps) in r.text
    assert diagnosis.read([5.0, 2.0, 1.0]).kind == "healthy"
    assert diagnosis.read([1e4, 10.0, 1.0]) == diagnosis.Reading(
        "exploding", 2, 1e4, "exploding: above 1000x its last-step size 2 steps back")
    assert diagnosis.read([1.0, 0.0]).kind == "none"
    # a padded tail is not the last step: the last unmasked one is the reference
    r = diagnosis.read([1e-4, 0.5, 1.0, 0.0, 0.0], mask=[1, 1, 1, 0, 0])
    assert (r.kind, r.steps) == ("vanishing", 2)


def test_weight_summary_and_clipping():
    grads = {"grad/a/kernel": np.array([[3.0, -4.0]]), "grad/a/bias": np.array([0.5])}
    rows = diagnosis.weight_summary(grads, clip=1.0)
    assert rows[0] == {"name": "grad/a/kernel", "norm": 5.0, "largest": -4.0, "clip_scale": 0.2}
    assert rows[1]["clip_scale"] == 1.0
    assert diagnosis.global_clip_scale(grads, 1.0) == pytest.approx(1 / np.sqrt(25.25))


def test_check_finds_the_gradients_right_and_a_wrong_one_wrong():
    model = rnncli.load_model(os.path.join(REF, "seed001_mse", "model.keras"))
    x = np.load(os.path.join(REF, "seed001_mse", "input.npy"))
    y = np.load(os.path.join(REF, "seed001_mse", "target.npy"))
    g = model.gradients(x, y)
    report = gradients.check(model, x, g, y, n=6)
    assert len(report["entries"]) == 6
    assert report["max_relative_error"] < 1e-3  # float32 gradients against float64 differences
    bad = dict(g, **{k: v * 1.1 for k, v in g.items() if k.startswith("grad")})
    assert gradients.check(model, x, bad, y, n=6)["max_relative_error"] > 0.05
    assert model.layers[0].kernel.dtype == np.float32  # the model itself is untouched


def test_vanishing_tutorial_numbers():
    """docs/tutorials/vanishing_gradients.md: the numbers it quotes."""
    doc = open(os.path.join(ROOT, "docs", "tutorials", "vanishing_gradients.md")).read()
    model = rnncli.load_model(os.path.join(SAMPLES, "long_rnn_vanishing.keras"))
    x = np.load(os.path.join(SAMPLES, "long_rnn_vanishing_input.npy"))
    y = np.load(os.path.join(SAMPLES, "long_rnn_vanishing_target.npy"))
    cell = model.get_layer("long_rnn").cell
    U, K = cell.recurrent_kernel, cell.kernel

    def run():
        g = model.gradients(x, target=y, loss="mse")
        norms = np.linalg.norm(g["grad_hidden/long_rnn"][0], axis=-1)
        return g, norms, g["jacobian_norm/long_rnn"][0][[29, 20, 10, 0]]

    g, norms, jac = run()
    assert f"{float(g['loss']):.6f}" in doc
    np.testing.assert_allclose(norms[[29, 20, 10, 0]], [0.714, 0.0107, 0.000691, 1.28e-05],
                               rtol=5e-3)
    np.testing.assert_allclose(jac, [1, 0.118, 0.0148, 0.000134], rtol=5e-3)
    assert diagnosis.read(norms).text in doc
    assert diagnosis.contraction(cell) == pytest.approx(1.67, abs=5e-3)
    assert diagnosis.jacobian_bound(cell, 30)[0] == pytest.approx(2.9e6, rel=0.02)
    rho = max(abs(np.linalg.eigvals(U)))
    assert rho == pytest.approx(0.905, abs=5e-4)
    z = model.run(x).trace("long_rnn").z
    assert np.mean(1 - np.tanh(z) ** 2) == pytest.approx(0.73, abs=5e-3)
    cell.recurrent_kernel = U * np.float32(1.2 / rho)
    g, norms, jac = run()
    np.testing.assert_allclose(norms[[29, 20, 10, 0]], [0.640, 0.0699, 0.0210, 0.00148],
                               rtol=5e-3)
    np.testing.assert_allclose(jac, [1, 0.836, 0.498, 0.0286], rtol=5e-3)
    assert diagnosis.read(norms).text in doc and f"{float(g['loss']):.6f}" in doc
    cell.recurrent_kernel, cell.kernel = U, K * np.float32(0.5)
    assert diagnosis.read(run()[1]).text in doc


def test_seed004_tutorial_numbers():
    """docs/tutorials/seed004_relu.md: BPTT by hand, and model.gradients."""
    doc = open(os.path.join(ROOT, "docs", "tutorials", "seed004_relu.md")).read()
    model = rnncli.load_model(os.path.join(SAMPLES, "seed004_relu.keras"))
    x = np.load(os.path.join(SAMPLES, "seed004_input.npy"))
    g = model.gradients(x, target=np.ones((1, 2)), loss="mse")
    ref = os.path.join(REF, "seed004_relu_mse")
    np.testing.assert_allclose(g["grad_input"], np.load(os.path.join(ref, "expected_grad_input.npy")),
                               rtol=1e-6)
    U = model.get_layer("simple_rnn").recurrent_kernel
    h = model.run(x).hidden["simple_rnn"][0]
    dh1 = h[1] - 1
    dh0 = dh1 @ U.T
    np.testing.assert_allclose(g["grad_hidden/simple_rnn"][0], [dh0, dh1], rtol=1e-6)

    def shown(a):
        return ", ".join(str(np.float32(v)) if v else "0" for v in a)  # shortest float32 form

    for a in (dh1, dh0, g["grad/simple_rnn/bias"], *g["grad/simple_rnn/recurrent_kernel"],
              *g["grad/simple_rnn/kernel"], *g["grad_input"][0]):
        assert f"[{shown(a)}]" in doc, shown(a)
    assert f"{float(g['loss']):.6f}" in doc


def test_no_bound_says_why():
    from rnncli.core.gru import GRUCell
    from rnncli.core.simple_rnn import SimpleRNNCell

    rng = np.random.default_rng(0)
    tanh = SimpleRNNCell(rng.normal(size=(2, 3)), rng.normal(size=(3, 3)), activation="tanh")
    selu = SimpleRNNCell(rng.normal(size=(2, 3)), rng.normal(size=(3, 3)), activation="selu")
    gated = GRUCell(rng.normal(size=(2, 9)), rng.normal(size=(3, 9)))
    assert diagnosis.no_bound(tanh) is None
    assert "selu" in diagnosis.no_bound(selu)
    assert "gated" in diagnosis.no_bound(gated) and diagnosis.jacobian_bound(gated, 5) is None
