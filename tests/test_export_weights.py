"""Weights written by rnncli: read back by rnncli always, and by real Keras 3 where installed.

The Keras half is skipped when keras is not installed (CI never installs it); run it with
an environment that has tensorflow-cpu and keras. Keras runs in a process of its own
(tests/keras_predict.py), once for the whole module: imported here, TensorFlow would make
every later test that forks slower.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import HERE, ref_path

import rnncli
from rnncli.models import write_weights as export_weights

# (model file, input) pairs covering Sequential, Bidirectional, Embedding, masking, functional
MODELS = [
    ("seed000_two_units", "model_k2.h5"),
    ("seed001_dense_head", "model.keras"),
    ("stacked_softmax", "model_k2.h5"),
    ("bidirectional_timedistributed", "model_k3legacy.h5"),
    ("masking_backwards_sigmoid", "model_k2.h5"),
    ("embedding_masked_classifier", "model_k2.h5"),
    ("bidirectional_masked", "model.keras"),
    # LSTM and GRU; Keras 2's hard_sigmoid written for Keras 3 as hard_sigmoid of 1.2x
    ("../lstm_gru_reference/k2_lstm_hard_sigmoid", "model_k2.h5"),
    ("../lstm_gru_reference/mixed_stack", "model_k2.h5"),
    ("../lstm_gru_reference/embedding_bilstm_tagger", "model_k2.h5"),
    ("../lstm_gru_reference/gru_reset_before_backwards", "model_k2.h5"),
    ("../lstm_gru_reference/gru_reset_after_state", "model.keras"),
    ("seed002_batch_state", "model.keras"),
    ("seed002_batch_state", "model_k3legacy.h5"),  # functional, config without module keys
    ("seed004_relu", "model_k3legacy.h5"),
]
FORMATS = ["npz", "keras", "weights.h5", "h5"]


def _written(tmp_path, case, file, fmt):
    model = rnncli.load_model(ref_path(case, file))
    out = str(tmp_path / f"m.{fmt}")
    export_weights(model, out, fmt)
    x = np.load(ref_path(case, "input.npy"))
    return model, out, x


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case,file", MODELS)
def test_rnncli_reads_back_what_it_wrote(tmp_path, case, file, fmt):
    model, out, x = _written(tmp_path, case, file, fmt)
    again = rnncli.load_model(out)
    if fmt == "weights.h5":  # no config inside: Keras 3's arrays under the same names
        from rnncli.keras.writer import keras3_weights

        original = {la.name: keras3_weights(la) for la in model.layers if la.weights()}
        reloaded = {la.name: la.weights() for la in again.layers if la.weights()}
        assert original.keys() == reloaded.keys()
        for name, ws in original.items():
            assert ws.keys() == reloaded[name].keys()
            for k, w in ws.items():
                np.testing.assert_array_equal(reloaded[name][k], w)
        return
    np.testing.assert_allclose(again.run(x).output, model.run(x).output, atol=1e-6)


def test_random_model_as_keras_file(tmp_path):
    model = rnncli.random_model(3, units=4, input_dim=2)
    out = str(tmp_path / "r.keras")
    export_weights(model, out, "keras")
    x = np.random.default_rng(0).normal(size=(2, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(rnncli.load_model(out).run(x).output, model.run(x).output)


def _keras_importable():
    if os.environ.get("RNNCLI_SKIP_KERAS") == "1":
        return False
    try:
        return importlib.util.find_spec("keras") is not None
    except (ImportError, ValueError):
        return False


needs_keras = pytest.mark.skipif(not _keras_importable(), reason="keras is not installed")


@pytest.fixture(scope="module")
def keras_ran(tmp_path_factory):
    """Real Keras' predictions for every file below, from one process of its own
    (tests/keras_predict.py): {job name: output}; a job Keras failed is its error message."""
    d = tmp_path_factory.mktemp("keras")
    jobs, failed = [], {}
    for case, file in MODELS:
        for fmt in ("keras", "h5"):
            name = f"{case}/{file}/{fmt}"
            sub = d / f"{len(jobs)}"
            sub.mkdir()
            try:
                _, out, _ = _written(sub, case, file, fmt)
            except Exception as e:  # noqa: BLE001 - that case's test fails with it
                failed[name] = f"rnncli could not write it: {type(e).__name__}: {e}"
                continue
            jobs.append({"name": name, "model": out, "x": ref_path(case, "input.npy")})
    model, x = _random_model_and_input()
    np.save(d / "x.npy", x)
    export_weights(model, str(d / "r.keras"), "keras")
    export_weights(model, str(d / "r.weights.h5"), "weights.h5")
    jobs.append({"name": "random/keras", "model": str(d / "r.keras"), "x": str(d / "x.npy")})
    jobs.append({"name": "random/weights.h5", "x": str(d / "x.npy"),
                 "simple_rnn_weights": {"path": str(d / "r.weights.h5"), "units": 3,
                                        "input_dim": 4}})
    (d / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, os.path.join(HERE, "keras_predict.py"),
                        str(d / "jobs.json"), str(d / "out.npz")], env=env,
                       capture_output=True, text=True, timeout=600)
    if r.returncode == 3:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    with np.load(d / "out.npz") as z:
        ran = {k: z[k] for k in z.files}
    return ran | {f"{name}.error": error for name, error in failed.items()}


def predicted(keras_ran, name):
    """What Keras computed for a job (its error fails the test)."""
    if name + ".error" in keras_ran:
        pytest.fail(f"Keras could not run {name}: {keras_ran[name + '.error']}")
    return keras_ran[name]


def _random_model_and_input():
    model = rnncli.random_model(5, units=3, input_dim=4)
    x = np.random.default_rng(1).normal(size=(2, 7, 4)).astype(np.float32)
    return model, x


@needs_keras
@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("case,file", MODELS)
def test_keras_loads_what_rnncli_wrote(keras_ran, case, file, fmt):
    got = predicted(keras_ran, f"{case}/{file}/{fmt}")
    expected = np.load(ref_path(case, "expected_output.npy"))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


@needs_keras
def test_keras_load_weights_and_random_models(keras_ran):
    model, x = _random_model_and_input()
    np.testing.assert_allclose(predicted(keras_ran, "random/keras"), model.run(x).output,
                               atol=1e-5)
    np.testing.assert_allclose(predicted(keras_ran, "random/weights.h5"), model.run(x).output,
                               atol=1e-5)


def test_a_refused_state_dict_names_only_formats_that_can_hold_the_model(tmp_path):
    """A masked classifier refused as a state_dict was told 'write .onnx or .keras
    instead', and ONNX then refused it too (mask_zero): .onnx is named only where rnncli
    can write it."""
    from rnncli.errors import OutputError
    from rnncli.keras.random import random_model

    masked = rnncli.load_model(os.path.join(HERE, "..", "sample_weights",
                                            "masked_classifier.keras"))
    with pytest.raises(OutputError, match=r"mask_zero.*: write \.keras instead$"):
        export_weights(masked, str(tmp_path / "m.safetensors"))
    with pytest.raises(OutputError, match="mask_zero"):
        export_weights(masked, str(tmp_path / "m.onnx"))
    sigmoid = random_model(1, 2, 3, overrides={"activation": "sigmoid"})
    with pytest.raises(OutputError, match=r"nn\.RNN computes tanh or relu.*: write \.onnx or "
                                          r"\.keras instead$"):
        export_weights(sigmoid, str(tmp_path / "s.safetensors"))
    export_weights(sigmoid, str(tmp_path / "s.onnx"))
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(rnncli.load_model(str(tmp_path / "s.onnx")).run(x).output,
                               sigmoid.run(x).output, rtol=0, atol=1e-6)


def test_files_rnncli_wrote_say_so_in_summary(tmp_path):
    """summary called a converted file 'written by Keras 3.0.0': that is the oldest Keras
    that reads it; rnncli wrote it."""
    from click.testing import CliRunner

    from rnncli.cli import cli

    src = os.path.join(HERE, "..", "sample_weights", "seed000_two_units.keras")
    for ext in ("keras", "h5"):
        out = str(tmp_path / f"c.{ext}")
        assert CliRunner().invoke(cli, ["convert", src, "-o", out, "-q"]).exit_code == 0
        first = CliRunner().invoke(cli, ["summary", out, "--width", "200"]).output.splitlines()[0]
        assert first.endswith("written by rnncli for Keras 3.0.0 and later"), first
        assert "written by Keras" not in first, first
    first = CliRunner().invoke(cli, ["summary", src, "--width", "200"]).output.splitlines()[0]
    assert first.endswith("written by Keras 3.15.1"), first
