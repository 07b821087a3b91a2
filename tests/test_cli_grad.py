"""`rnncli grad` (rnncli/cli_grad.py), run through a group like rnncli's own."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA

import rnncli
from rnncli.cli import cli
from rnncli.core.engine import Engine

CASE = os.path.join(DATA, "gradient_reference", "seed001_mse")
MODEL, X, Y = (os.path.join(CASE, f) for f in ("model.keras", "input.npy", "target.npy"))
def run(*args):
    return CliRunner().invoke(cli, ["grad", *args])


def test_table_shows_loss_steps_reading_and_weights():
    r = run(MODEL, "-i", X, "--target", Y, "--clip", "1")
    assert r.exit_code == 0, r.output
    assert "mse loss = 0.15525" in r.output
    assert "‖dL/dh_t‖" in r.output and "input saliency" in r.output
    assert "healthy: 0.0919x its last-step size 9 steps back" in r.output
    assert "simple_rnn/recurrent_kernel" in r.output
    with np.load(os.path.join(CASE, "expected_grad_weights.npz")) as w:  # TensorFlow's
        total = np.sqrt(sum(np.sum(w[k].astype(np.float64) ** 2) for k in w.files))
    assert f"global_clipnorm 1: every gradient x{1 / total:.3g}" in r.output


def test_npz_has_the_issues_names_and_the_apis_numbers(tmp_path):
    out = tmp_path / "grads.npz"
    r = run(MODEL, "-i", X, "--target", Y, "-o", str(out))
    assert r.exit_code == 0, r.output
    # the CLI's engine: one process per input, numpy's loop for a sequence this short
    g = rnncli.load_model(MODEL).gradients(np.load(X), np.load(Y),
                                           engine=Engine(one_shot=True))
    with np.load(out) as z:
        assert sorted(z.files) == sorted(g)
        assert {"loss", "grad_input", "grad/simple_rnn/kernel", "grad/dense/bias",
                "grad_hidden/simple_rnn", "jacobian_norm/simple_rnn"} <= set(z.files)
        for k in g:
            np.testing.assert_array_equal(z[k], g[k])
        assert z["loss"].shape == ()


def test_data_formats_on_stdout():
    r = run(MODEL, "-i", X, "--of", "output:1", "-f", "csv")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "name,sample,step,t,value"
    assert lines[1].startswith("grad_hidden_norm/simple_rnn,0,0,0,")
    assert any(line.startswith("grad_input_norm,0,9,9,") for line in lines)
    doc = json.loads(run(MODEL, "-i", X, "--target", Y, "-f", "json").output)
    assert doc["loss"] == pytest.approx(0.1552516520023346, rel=1e-6)
    assert doc["readings"]["simple_rnn"][0].startswith("healthy")


def test_npy_writes_one_named_array(tmp_path):
    out = tmp_path / "gi.npy"
    r = run(MODEL, "-i", X, "--target", Y, "-o", str(out), "--what", "grad_input")
    assert r.exit_code == 0, r.output
    expected = np.load(os.path.join(CASE, "expected_grad_input.npy"))
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5, rtol=1e-4)


def test_check_and_a_csv_target(tmp_path):
    target = tmp_path / "y.csv"
    target.write_text("0.5,-0.25\n")  # one row per sample for an output without steps
    r = run(MODEL, "-i", X, "--target", str(target), "--loss", "mae", "--check")
    assert r.exit_code == 0, r.output
    assert "mae loss = " in r.output
    err = float(r.output.split("largest relative error ")[1].split()[0])
    assert err < 1e-3



@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_and_their_check(cell):
    """LSTM and GRU layers go through `rnncli grad`; --check agrees (a random LSTM's
    recurrent kernel is a transpose: the check must perturb its float64 copy in place)."""
    r = run("--seed", "1", "--units", "4", "--cell", cell, "-i", X, "--of", "output", "--check")
    assert r.exit_code == 0, r.output
    err = float(r.output.split("largest relative error ")[1].split()[0])
    assert err < 1e-3


def test_usage_errors():
    r = run(MODEL, "-i", X)
    assert r.exit_code == 2 and "--target PATH" in r.output
    r = run(MODEL, "-i", X, "--target", Y, "--of", "output")
    assert r.exit_code == 2
    r = run(MODEL, "-i", X, "--of", "output:7")
    assert r.exit_code == 2 and \
        "unit 7 is out of range; the output has 2 units (0 to 1, or from -1 back)" in r.output
    r = run(MODEL, "-i", X, "--of", "output", "-f", "npy")
    assert r.exit_code == 2 and "--what" in r.output


def test_gated_table_explains_its_missing_bound_and_shows_only_its_samples():
    case = os.path.join(DATA, "gradient_gated", "gru_reset_after_mse")
    model, x, y = (os.path.join(case, f) for f in ("model.keras", "input.npy", "target.npy"))
    r = run(model, "-i", x, "--target", y, "--sample", "1")
    assert r.exit_code == 0, r.output
    assert "gru  sample 1" in r.output and "sample 0" not in r.output
    assert "bound –: a gated cell has none (docs/math.md)" in r.output
    expected = np.load(os.path.join(case, "expected_jacobian_norm_gru.npy"))  # TensorFlow's
    assert f"{expected[1, 0]:.5g}" in r.output


EMB = os.path.join(DATA, "gradient_gated", "embedding_masked_lstm_scce")
EMB_MODEL, EMB_Y = os.path.join(EMB, "model.keras"), os.path.join(EMB, "target.npy")
SCCE = ("--target", EMB_Y, "--loss", "sparse_categorical_crossentropy")


def _ids_csv(tmp_path):
    """The case's int token ids as a CSV (sample,token): they read back as floats."""
    x = np.load(os.path.join(EMB, "input.npy"))
    path = tmp_path / "ids.csv"
    path.write_text("sample,token\n" + "".join(f"{b},{v}\n" for b in range(x.shape[0])
                                               for v in x[b]))
    return str(path)


@pytest.mark.parametrize("source", ["npy", "csv"])
@pytest.mark.parametrize("fmt", ["table", "csv", "json", "npz"])
def test_every_format_works_on_an_embedding_model(tmp_path, source, fmt):
    """Token ids into an Embedding: no grad_input (they aren't differentiable), whether they
    come as ints (.npy) or floats (CSV); the weight gradients are TensorFlow's."""
    x = os.path.join(EMB, "input.npy") if source == "npy" else _ids_csv(tmp_path)
    out = tmp_path / f"g.{fmt}"
    r = run(EMB_MODEL, "-i", x, *SCCE, "-o", "-" if fmt == "table" else str(out))
    assert r.exit_code == 0, r.output
    assert "unexpected" not in r.output
    if fmt == "table":
        assert "input saliency: none (token ids into an Embedding aren't differentiable)" \
            in r.output
        assert "‖dL/dx_t‖" not in r.output
    elif fmt == "csv":
        text = out.read_text()
        assert "grad_input" not in text and "grad_hidden_norm/lstm,2,6,6," in text
    elif fmt == "json":
        doc = json.loads(out.read_text())
        assert "grad_input" not in doc["arrays"]
    else:
        with np.load(out) as z, np.load(os.path.join(EMB, "expected_grad_weights.npz")) as w:
            assert "grad_input" not in z.files
            np.testing.assert_allclose(z["grad/emb/embeddings"], w["emb/embeddings"],
                                       rtol=1e-4, atol=1e-6)


def test_sample_cuts_the_data_outputs(tmp_path):
    expected = np.load(os.path.join(EMB, "expected_grad_hidden_lstm.npy"))  # TensorFlow's
    r = run(EMB_MODEL, "-i", os.path.join(EMB, "input.npy"), *SCCE, "--sample", "2",
            "-f", "csv")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()[1:]
    assert lines and {ln.split(",")[1] for ln in lines} == {"2"}  # the input's index
    norm = [ln for ln in lines if ln.startswith("grad_hidden_norm/lstm,2,6,")][0]
    assert float(norm.split(",")[-1]) == pytest.approx(np.linalg.norm(expected[2, 6]),
                                                       rel=1e-4)
    r = run(EMB_MODEL, "-i", os.path.join(EMB, "input.npy"), *SCCE, "--sample", "0,2",
            "-f", "json")
    doc = json.loads(r.output)
    assert doc["samples"] == [0, 2]
    np.testing.assert_allclose(doc["arrays"]["grad_hidden/lstm"], expected[[0, 2]],
                               rtol=1e-4, atol=1e-5)
    out = tmp_path / "g.npz"
    r = run(EMB_MODEL, "-i", os.path.join(EMB, "input.npy"), *SCCE, "--sample", "1",
            "-o", str(out))
    assert r.exit_code == 0, r.output
    with np.load(out) as z, np.load(os.path.join(EMB, "expected_grad_weights.npz")) as w:
        np.testing.assert_allclose(z["grad_hidden/lstm"], expected[[1]], rtol=1e-4, atol=1e-5)
        # the loss and the weight gradients stay the whole batch's
        np.testing.assert_allclose(z["grad/head/bias"], w["head/bias"], rtol=1e-4, atol=1e-6)


def test_a_format_contradicting_the_extension_is_refused(tmp_path):
    r = run(MODEL, "-i", X, "--target", Y, "-f", "csv", "-o", str(tmp_path / "g.npz"))
    assert r.exit_code == 2 and "-f csv contradicts -o" in r.output, r.output
    assert not (tmp_path / "g.npz").exists()


def test_width_color_and_no_trailing_spaces():
    r = run(MODEL, "-i", X, "--target", Y, "--width", "60", "--color", "never")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines and all(ln == ln.rstrip() for ln in lines)
    assert max(len(ln) for ln in lines) <= 60
    r = run(MODEL, "-i", X, "--target", Y, "--color", "always")
    assert "\x1b[" in r.output


def test_a_class_id_out_of_range_says_what_the_output_holds(tmp_path):
    """sparse_categorical_crossentropy's class ids index the output's units: out of range,
    the message gives the range (for one unit, the loss 0/1 targets want)."""
    y = tmp_path / "ids.npy"
    np.save(y, np.ones((1, 10), int))  # a seeded SimpleRNN of 1 unit: (1, 10, 1) out
    r = run("--seed", "1", "--units", "1", "-i", X, "--target", str(y), "--loss",
            "sparse_categorical_crossentropy")
    assert r.exit_code != 0 and "target class id 1 is out of range; expected 0 for an output " \
        "of one unit (0/1 targets: --loss binary_crossentropy)" in r.output, r.output
    np.save(y, np.array([2]))  # MODEL's output: (1, 2)
    r = run(MODEL, "-i", X, "--target", str(y), "--loss", "sparse_categorical_crossentropy")
    assert r.exit_code != 0 and "target class id 2 is out of range; expected 0..1 for an " \
        "output of 2 classes" in r.output, r.output
