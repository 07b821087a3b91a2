"""Weights written by rnncli: read back by rnncli always, and by real Keras 3 where installed.

The Keras half is skipped when keras is not importable (CI never installs it); run it with
an environment that has tensorflow-cpu and keras.
"""

import os

import numpy as np
import pytest
from conftest import ref_path

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


keras = None
if os.environ.get("RNNCLI_SKIP_KERAS") != "1":
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras  # noqa: F811
    except ImportError:
        keras = None


@pytest.mark.skipif(keras is None, reason="keras is not installed")
@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("case,file", MODELS)
def test_keras_loads_what_rnncli_wrote(tmp_path, case, file, fmt):
    model, out, x = _written(tmp_path, case, file, fmt)
    k = keras.saving.load_model(out, compile=False)
    got = k.predict(x, verbose=0)
    got = got if isinstance(got, list) else [got]
    expected = np.load(ref_path(case, "expected_output.npy"))
    np.testing.assert_allclose(got[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(keras is None, reason="keras is not installed")
def test_keras_load_weights_and_random_models(tmp_path):
    model = rnncli.random_model(5, units=3, input_dim=4)
    out = str(tmp_path / "r.keras")
    export_weights(model, out, "keras")
    x = np.random.default_rng(1).normal(size=(2, 7, 4)).astype(np.float32)
    k = keras.saving.load_model(out, compile=False)
    np.testing.assert_allclose(k.predict(x, verbose=0), model.run(x).output, atol=1e-5)
    w = str(tmp_path / "r.weights.h5")
    export_weights(model, w, "weights.h5")
    k2 = keras.Sequential([keras.Input((None, 4)),
                           keras.layers.SimpleRNN(3, return_sequences=True)])
    k2.load_weights(w)
    np.testing.assert_allclose(k2.predict(x, verbose=0), model.run(x).output, atol=1e-5)
