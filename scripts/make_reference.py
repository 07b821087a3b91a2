"""Make extra Keras reference cases for rnncli's tests (not run by CI).

Needs real Keras: ``pip install tensorflow-cpu keras tf-keras`` in a separate
environment. Writes model files, inputs and what Keras computed into
``tests/data/generated/`` with a ``manifest.json`` in the same schema as
``tests/data/keras_reference/manifest.json``:

    python scripts/make_reference.py [OUT_DIR]

Each case is small; every number in it comes from ``model.predict``.

    python scripts/make_reference.py --gradients [OUT_DIR]

writes gradient cases instead (default ``tests/data/gradient_generated/``), in the schema
of ``tests/data/gradient_reference/manifest.json``: the loss ``model.compile(loss=...)``
trains on and every gradient, from ``tf.GradientTape``.

    python scripts/make_reference.py --gradients --gated [OUT_DIR]

writes the LSTM and GRU gradient cases (default ``tests/data/gradient_gated/``).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

GRADIENTS = "--gradients" in sys.argv[1:]
GATED = "--gated" in sys.argv[1:]
ARGS = [a for a in sys.argv[1:] if a not in ("--gradients", "--gated")]
OUT = ARGS[0] if ARGS else os.path.join(
    os.path.dirname(__file__), "..", "tests", "data",
    ("gradient_gated" if GATED else "gradient_generated") if GRADIENTS else "generated")

ACTIVATIONS = ["tanh", "relu", "sigmoid", "hard_sigmoid", "linear", "elu", "selu", "softplus",
               "softsign", "swish", "silu", "gelu", "exponential", "leaky_relu", "relu6", "mish",
               "hard_silu", "log_sigmoid", "tanh_shrink", "hard_tanh", "celu"]


def save_case(name, model, x, note, extra_files=(), hidden_name=None, overrides=None):
    """Save ``model`` in every Keras 3 format with its input and Keras' outputs.

    ``overrides``: the --set values a weights-only file needs to match the config.
    """
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    files = {}
    model.save(os.path.join(d, "model.keras"))
    files["keras3_archive"] = f"{name}/model.keras"
    model.save_weights(os.path.join(d, "model.weights.h5"))
    files["keras3_weights_h5"] = f"{name}/model.weights.h5"
    model.save(os.path.join(d, "model_k3legacy.h5"))
    files["keras3_legacy_h5"] = f"{name}/model_k3legacy.h5"
    for k, v in extra_files:
        files[k] = f"{name}/{v}"
    np.save(os.path.join(d, "input.npy"), x)
    y = model.predict(x, verbose=0)
    ys = list(y) if isinstance(y, (list, tuple)) else [y]
    expected = {}
    for i, out in enumerate(ys):
        key = "output" if i == 0 else f"output_{i}"
        np.save(os.path.join(d, f"expected_{key}.npy"), out)
        expected[key] = f"{name}/expected_{key}.npy"
    if hidden_name:
        # The layer returns sequences, so its output is its hidden sequence.
        expected["hidden"] = {hidden_name: f"{name}/expected_output.npy"}
    case = {"name": name, "note": note, "files": files, "input": f"{name}/input.npy",
            "input_shape": list(x.shape), "input_dtype": str(x.dtype), "expected": expected}
    if overrides:
        case["weights_only_overrides"] = overrides
    return case


def initial_state_cases(x):
    """Layers called with initial_state (as the notebook's seed 003): the expected output is
    the layer's own call, since a saved model can't hold the state."""
    out = []
    rng = np.random.default_rng(14)
    for name, layer, h0 in [
        ("initial_state_backwards",
         keras.layers.SimpleRNN(3, go_backwards=True, return_sequences=True, name="rnn"),
         [rng.normal(size=(2, 3)).astype("float32")]),
        ("initial_state_bidi",
         keras.layers.Bidirectional(keras.layers.SimpleRNN(3, return_sequences=True),
                                    name="bidi"),
         [rng.normal(size=(2, 3)).astype("float32"), rng.normal(size=(2, 3)).astype("float32")]),
    ]:
        keras.utils.set_random_seed(15)
        m = keras.Sequential([keras.Input((5, 4)), layer])
        case = save_case(name, m, x, f"{name}: the layer called with initial_state (forward "
                         f"then backward, concatenated)")
        y = layer(x, initial_state=h0 if len(h0) > 1 else h0[0])
        d = os.path.join(OUT, name)
        np.save(os.path.join(d, "expected_output.npy"), np.asarray(y))
        np.save(os.path.join(d, "initial_state.npy"), np.concatenate(h0, axis=-1))
        case["initial_state"] = f"{name}/initial_state.npy"
        case["expected"] = {"output": f"{name}/expected_output.npy"}
        if "backwards" in name:
            case["weights_only_overrides"] = {"go_backwards": "true"}
        out.append(case)
    return out


def k2_functional(tf_keras, x):
    """A tf.keras functional model: its config records inbound nodes in Keras 2's form."""
    tf_keras.utils.set_random_seed(9)
    inp = tf_keras.Input((5, 4), name="x")
    masked = tf_keras.layers.Masking(0.0, name="mask")(inp)
    seq = tf_keras.layers.Bidirectional(
        tf_keras.layers.SimpleRNN(3, return_sequences=True), merge_mode="sum", name="bidi")(masked)
    last = tf_keras.layers.SimpleRNN(2, go_backwards=True, activation="relu", name="rnn2")(seq)
    out = tf_keras.layers.Dense(1, activation="sigmoid", name="head")(last)
    m = tf_keras.Model(inp, out)
    xk = x.copy()
    xk[1, 3:] = 0.0
    d = os.path.join(OUT, "k2_functional")
    os.makedirs(d, exist_ok=True)
    m.save(os.path.join(d, "model_k2.h5"))
    m.save_weights(os.path.join(d, "weights_k2.h5"))
    np.save(os.path.join(d, "input.npy"), xk)
    np.save(os.path.join(d, "expected_output.npy"), m.predict(xk, verbose=0))
    return {"name": "k2_functional", "note": "tf.keras functional: Masking -> "
            "Bidirectional(sum) -> SimpleRNN(relu, go_backwards) -> Dense(sigmoid)",
            "files": {"keras2_model_h5": "k2_functional/model_k2.h5",
                      "keras2_weights_h5": "k2_functional/weights_k2.h5"},
            "weights_only_overrides": {"bidi.merge_mode": "sum", "rnn2.activation": "relu",
                                       "rnn2.go_backwards": "true", "mask_value": "0"},
            "input": "k2_functional/input.npy", "input_shape": list(xk.shape),
            "input_dtype": "float32", "expected": {"output": "k2_functional/expected_output.npy"}}


def main():
    rng = np.random.default_rng(7)
    cases = []
    x = rng.normal(size=(2, 5, 4)).astype("float32")
    for act in ACTIVATIONS:
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((5, 4)),
                              keras.layers.SimpleRNN(3, activation=act, return_sequences=True,
                                                     name="rnn")])
        xa = x * 0.5 if act == "exponential" else x
        cases.append(save_case(f"act_{act}", m, xa, f"SimpleRNN activation={act}",
                               hidden_name="rnn", overrides={"activation": act}))
    xm = rng.normal(size=(3, 6, 3)).astype("float32")
    xm[0, 4:] = 0.0  # padded tail
    xm[1, 0] = 0.0  # masked first step
    for mode in ["concat", "sum", "mul", "ave", None]:
        keras.utils.set_random_seed(2)
        m = keras.Sequential([keras.Input((6, 3)), keras.layers.Masking(0.0),
                              keras.layers.Bidirectional(
                                  keras.layers.SimpleRNN(4, return_sequences=True),
                                  merge_mode=mode, name="bidi")])
        case = save_case(f"merge_{mode}", m, xm, f"Masking -> Bidirectional merge_mode={mode}",
                         hidden_name="bidi" if mode else None, overrides={"merge_mode": str(mode)})
        if mode is None:  # the two outputs are the directions' sequences, in input time order
            case["expected"]["directions"] = {"bidi": {
                "forward": case["expected"]["output"], "backward": case["expected"]["output_1"]}}
        cases.append(case)
    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((6, 3)),
                          keras.layers.Bidirectional(keras.layers.SimpleRNN(4, use_bias=False),
                                                     name="bidi"),
                          keras.layers.Dense(2, activation="softmax", name="head")])
    cases.append(save_case("bidi_no_bias", m, xm, "Bidirectional(SimpleRNN(use_bias=False)) -> "
                           "Dense(softmax)"))
    keras.utils.set_random_seed(4)
    m = keras.Sequential([keras.Input((5, 4), dtype="float64"),
                          keras.layers.SimpleRNN(3, return_sequences=True, dtype="float64",
                                                 name="rnn")])
    cases.append(save_case("float64", m, x.astype("float64"), "float64 dtype policy",
                           hidden_name="rnn"))
    keras.utils.set_random_seed(5)
    inp = keras.Input((6, 3), name="x")
    mask = keras.ops.any(keras.ops.not_equal(inp, 0.0), axis=-1)
    h = keras.layers.SimpleRNN(4, return_sequences=True, name="rnn", go_backwards=True)(inp, mask=mask)
    out = keras.layers.Dense(1, name="head")(keras.layers.Flatten()(h))
    m = keras.Model(inp, out)
    cases.append(save_case("functional_mask_ops", m, xm, "functional: NotEqual/Any mask ops "
                           "-> SimpleRNN(go_backwards) -> Flatten -> Dense",
                           overrides={"go_backwards": "true", "mask_value": "0"}))
    keras.utils.set_random_seed(6)
    inp = keras.Input((5, 4))
    seq, state = keras.layers.SimpleRNN(3, return_sequences=True, return_state=True,
                                        activation="relu", name="rnn")(inp)
    m = keras.Model(inp, [keras.layers.Dense(2, name="head")(state), seq])
    case = save_case("functional_two_outputs", m, x, "functional: return_state feeds a "
                     "Dense head, sequence as second output", overrides={"activation": "relu"})
    case["expected"]["hidden"] = {"rnn": case["expected"]["output_1"]}
    cases.append(case)
    keras.utils.set_random_seed(10)
    m = keras.Sequential([keras.Input((6, 3)), keras.layers.Masking(0.0),
                          keras.layers.SimpleRNN(4, go_backwards=True, return_sequences=True,
                                                 name="back"),
                          keras.layers.SimpleRNN(3, return_sequences=True, name="top")])
    case = save_case("stacked_after_backwards", m, xm, "Masking -> SimpleRNN(go_backwards, "
                     "return_sequences) -> SimpleRNN: which mask reaches the second layer",
                     hidden_name="top", overrides={"back.go_backwards": "true",
                                                   "back.return_sequences": "true",
                                                   "top.return_sequences": "true"})
    cases.append(case)
    keras.utils.set_random_seed(11)
    m = keras.Sequential([keras.Input((6, 3)), keras.layers.Masking(0.0),
                          keras.layers.Bidirectional(keras.layers.SimpleRNN(4), name="bidi"),
                          keras.layers.Dense(2, name="head")])
    cases.append(save_case("bidi_last_masked", m, xm, "Masking -> Bidirectional without "
                           "return_sequences (last unmasked outputs) -> Dense"))
    keras.utils.set_random_seed(12)
    inp = keras.Input((6, 3))
    out, state = keras.layers.SimpleRNN(4, return_state=True, name="rnn")(
        keras.layers.Masking(0.0)(inp))
    m = keras.Model(inp, [out, state])
    cases.append(save_case("masked_return_state", m, xm, "Masking -> SimpleRNN(return_state): "
                           "output and state after padded steps"))
    keras.utils.set_random_seed(13)
    ids = np.array([[5, 9, 3, 0, 0, 0], [7, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]], dtype="int32")
    m = keras.Sequential([keras.Input((6,), dtype="int32"),
                          keras.layers.Embedding(10, 3, mask_zero=True, name="emb"),
                          keras.layers.Bidirectional(keras.layers.SimpleRNN(2,
                                                                            return_sequences=True),
                                                     merge_mode="ave", name="bidi")])
    cases.append(save_case("embedding_bidi", m, ids, "Embedding(mask_zero) -> "
                           "Bidirectional(ave, return_sequences)", hidden_name="bidi",
                           overrides={"emb.mask_zero": "true", "merge_mode": "ave"}))
    cases += initial_state_cases(x)
    keras.utils.set_random_seed(16)
    inp = keras.Input((5, 4))
    seq = keras.layers.SimpleRNN(3, return_sequences=True, name="rnn")(inp)
    m = keras.Model(inp, keras.layers.Dense(1, name="head")(keras.layers.LSTM(2, name="lstm")(seq)))
    case = save_case("behind_an_lstm", m, x, "SimpleRNN -> LSTM -> Dense: rnncli can't compute "
                     "the LSTM but still shows the SimpleRNN")
    np.save(os.path.join(OUT, "behind_an_lstm", "expected_hidden_rnn.npy"),
            keras.Model(inp, seq).predict(x, verbose=0))
    case["expected"] = {"hidden": {"rnn": "behind_an_lstm/expected_hidden_rnn.npy"}}
    case["unsupported"] = "lstm"
    cases.append(case)
    # Keras 2 (tf.keras): hard_sigmoid is 0.2x + 0.5 there.
    try:
        import tf_keras

        tf_keras.utils.set_random_seed(8)
        m2 = tf_keras.Sequential([tf_keras.Input((5, 4)),
                                  tf_keras.layers.SimpleRNN(3, activation="hard_sigmoid",
                                                            return_sequences=True, name="rnn")])
        d = os.path.join(OUT, "k2_hard_sigmoid")
        os.makedirs(d, exist_ok=True)
        m2.save(os.path.join(d, "model_k2.h5"))
        m2.save_weights(os.path.join(d, "weights_k2.h5"))
        np.save(os.path.join(d, "input.npy"), x * 3)
        np.save(os.path.join(d, "expected_output.npy"), m2.predict(x * 3, verbose=0))
        cases.append({"name": "k2_hard_sigmoid", "note": "tf.keras hard_sigmoid (0.2x + 0.5)",
                      "files": {"keras2_model_h5": "k2_hard_sigmoid/model_k2.h5",
                                "keras2_weights_h5": "k2_hard_sigmoid/weights_k2.h5"},
                      "weights_only_overrides": {"activation": "hard_sigmoid"},
                      "input": "k2_hard_sigmoid/input.npy", "input_shape": [2, 5, 4],
                      "input_dtype": "float32",
                      "expected": {"output": "k2_hard_sigmoid/expected_output.npy",
                                   "hidden": {"rnn": "k2_hard_sigmoid/expected_output.npy"}}})
        cases.append(k2_functional(tf_keras, x))
    except ImportError:
        print("tf_keras not installed: skipping the Keras 2 cases", file=sys.stderr)
    manifest = {"producer": {"keras": keras.__version__}, "tolerance": {"atol": 1e-5, "rtol": 1e-5},
                "cases": cases}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    if GRADIENTS:
        from gradient_reference import main as main_gradients

        main_gradients(OUT, gated=GATED)
    else:
        main()
