"""rnncli reproduces what real Keras computed, for every case in every file format.

The expected arrays were written by Keras 3.15 / tf-keras 2.21 (tests/data/*/manifest.json).
"""

import os

import numpy as np
import pytest
from conftest import CASES, WITH_CONFIG, load, ref_path

import rnncli

TOL = {"atol": 1e-5, "rtol": 1e-5}


def flat(state, prefix=""):
    """A layer's state ((B, H), or dicts by direction and state name) as {path: array}."""
    if isinstance(state, dict):
        return {k2: v2 for k, v in state.items() for k2, v2 in flat(v, f"{prefix}/{k}").items()}
    return {prefix: state}


@pytest.mark.parametrize("case,fmt,path", CASES)
def test_matches_keras(case, fmt, path):
    has_config = fmt in WITH_CONFIG
    overrides = None if has_config else dict(case.get("weights_only_overrides") or {})
    if overrides and fmt != "keras3_weights_h5":
        overrides.pop("layer_order", None)  # only Keras 3's weights files lose the order
    model = rnncli.load_model(path, overrides=overrides)
    x = load(case, case["input"])
    h0 = load(case, case["initial_state"]) if "initial_state" in case else None
    result = model.run(x, initial_state=h0)
    checked = 0
    if case.get("unsupported"):  # a layer rnncli can't compute: named, and the rest still runs
        assert result.outputs is None
        if has_config:  # (a weights-only file can't say where that layer sits)
            assert repr(case["unsupported"]) in result.output_error
    elif has_config:
        for key, rel in case["expected"].items():
            if key.startswith("output"):
                i = 0 if key == "output" else int(key.split("_")[1])
                np.testing.assert_allclose(result.outputs[i], load(case, rel), **TOL)
                checked += 1
        if checked:
            assert len(result.outputs) == checked
    for layer, rel in case["hidden"].items():
        expected = load(case, rel)
        assert result.hidden[layer].shape == expected.shape
        np.testing.assert_allclose(result.hidden[layer], expected, **TOL)
        checked += 1
    for layer, rel in case["expected"].get("cell", {}).items():  # LSTM cell state c, every step
        np.testing.assert_allclose(result.layers[layer].directions[""].sequences["c"],
                                   load(case, rel), **TOL)
        checked += 1
    for layer, dirs in case["expected"].get("directions", {}).items():
        got = result.layers[layer].directions
        np.testing.assert_allclose(got["forward"].sequence, load(case, dirs["forward"]), **TOL)
        # each direction's own sequence is in processing order: flip the backward one
        np.testing.assert_allclose(got["backward"].sequence[:, ::-1], load(case, dirs["backward"]), **TOL)
        checked += 1
    if not has_config and not checked:
        # Keras recorded only the model output here; the weights-only file must give the
        # same states as the full model file, whose output matches Keras above.
        with_config = next(f for f in case["files"] if f in WITH_CONFIG)
        full = rnncli.load_model(os.path.join(case["base"], case["files"][with_config]))
        reference = full.run(x, initial_state=h0)
        for layer, rec in reference.layers.items():
            got, want = flat(result.layers[layer].state), flat(rec.state)
            assert got.keys() == want.keys()
            for k in want:
                np.testing.assert_allclose(got[k], want[k], **TOL)
            checked += 1
    assert checked, "a case must compare at least one array"


def test_seed000_trace_is_the_notebooks_xw_plus_b():
    model = rnncli.load_model(ref_path("seed000_two_units", "model.keras"))
    x = np.load(ref_path("seed000_two_units", "input.npy"))
    tr = model.run(x).trace("simple_rnn")
    expected = np.load(ref_path("seed000_two_units", "expected_xw_plus_b.npy"))
    np.testing.assert_allclose(tr.xw + tr.bias, expected.reshape(tr.xw.shape), **TOL)
    # and z is that plus h_{t-1}·U, h is tanh(z)
    np.testing.assert_allclose(tr.z, tr.xw + tr.bias + tr.hu, atol=1e-6)
    np.testing.assert_allclose(tr.h, np.tanh(tr.z), atol=1e-6)


def test_seed000_notebook_numbers(seed000, ones_twos_threes):
    # Printed by the notebook on an older TF; Keras 3 agrees to 2e-7.
    out = seed000.run(ones_twos_threes).output[0]
    notebook = [[0.17312294, -0.601329], [0.6816086, -0.94566447], [0.92478275, -0.98611367]]
    np.testing.assert_allclose(out, notebook, atol=5e-7)


def test_seed004_relu_prints_keras_numbers():
    model = rnncli.load_model(ref_path("seed004_relu", "model.keras"))
    result = model.run(np.load(ref_path("seed004_relu", "input.npy")))
    np.testing.assert_allclose(result.output, [[6.445161, 2.715219]], rtol=1e-6)


def test_weights_only_files_say_defaults_were_assumed():
    model = rnncli.load_model(ref_path("seed004_relu", "model.weights.h5"))
    assert model.source["has_config"] is False
    assert any("assumed Keras' defaults" in n for n in model.notes)
    assert model.layers[0].activation == "tanh"
    relu = rnncli.load_model(ref_path("seed004_relu", "model.weights.h5"),
                             overrides={"activation": "relu"})
    assert relu.layers[0].activation == "relu"


def test_layer_names_come_from_the_file():
    model = rnncli.load_model(ref_path("bidirectional_masked", "model.weights.h5"))
    assert [la.name for la in model.layers] == ["masking", "bidi", "top", "dense"]
    model = rnncli.load_model(ref_path("stacked_softmax", "weights_k2.h5"))
    assert [la.name for la in model.recurrent_layers] == ["rnn_a", "rnn_b"]


def test_summary_counts_parameters_like_keras():
    model = rnncli.load_model(ref_path("seed001_dense_head", "model.keras"))
    assert [la.count_params() for la in model.layers] == [45, 12]
    assert model.count_params() == 57
