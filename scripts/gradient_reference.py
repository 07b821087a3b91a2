"""Gradient reference cases for rnncli's tests: ``python scripts/make_reference.py
--gradients [OUT_DIR]`` (default ``tests/data/gradient_generated/``). Not run by CI.

Needs real Keras on TensorFlow (``pip install tensorflow-cpu keras`` in a separate
environment). Each case is a model file, an input, a target, a Keras loss, and what
``tf.GradientTape`` computed for the loss ``model.compile(loss=...)`` trains on
(``model.compute_loss``): the loss, dL/dx, every weight's gradient and, for the recurrent
layers a case names, dL/dh_t and ||dh_{T-1}/dh_t||_2 from stepping the layer's own cells
(the method of the shared gradient reference; SimpleRNN, LSTM, GRU, Bidirectional, masks).
``--gated`` makes the LSTM/GRU cases (``gated_cases``) into tests/data/gradient_gated/.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

OUT = None  # set by main()


def weight_names(model):
    """{id(variable): "<layer>/<weight>"}, Bidirectional "<layer>/forward/<weight>"."""
    names = {}
    for layer in model.layers:
        parts = [("forward/", layer.forward_layer), ("backward/", layer.backward_layer)] \
            if isinstance(layer, keras.layers.Bidirectional) else [("", layer)]
        for prefix, sub in parts:
            for w in sub.trainable_weights:
                names[id(w)] = f"{layer.name}/{prefix}{w.name}"
    return names


def layer_input(model, index, x):
    """What ``model.layers[index]`` takes (a Sequential model) and the Keras mask it gets
    (Masking, Embedding(mask_zero)), or None."""
    import tensorflow as tf

    u, mask = tf.convert_to_tensor(x), None
    for before in model.layers[:index]:
        u, mask = before(u), before.compute_mask(u, mask)
    return u, mask


def stepped_direction(rnn, u, mask, zero_output):
    """Step the cell of one direction (a keras RNN layer) as keras' rnn() does: a masked
    step carries every state, and its output is the previous output (zeros with
    ``zero_output``). Returns (the h state after every step, in processing order; the
    output sequence in processing order; the last output)."""
    import tensorflow as tf

    if rnn.go_backwards:
        u = u[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    B, T = u.shape[0], u.shape[1]
    n = 2 if isinstance(rnn, keras.layers.LSTM) else 1
    states = [tf.zeros((B, rnn.units), u.dtype) for _ in range(n)]
    out = tf.zeros((B, rnn.units), u.dtype)
    hs, outs = [], []
    for t in range(T):
        _, new = rnn.cell(u[:, t], states)
        new = list(new) if isinstance(new, (list, tuple)) else [new]
        if mask is None:
            states = new
            out = states[0]
        else:
            m = mask[:, t:t + 1]
            states = [tf.where(m, a, b) for a, b in zip(new, states)]
            out = tf.where(m, states[0], tf.zeros_like(out) if zero_output else out)
        hs.append(states[0])
        outs.append(out)
    return hs, tf.stack(outs, axis=1), outs[-1]


def stepped_hidden(model, index, x, y, loss_obj):
    """dL/dh_t and ||dh_{T-1}/dh_t||_2 of the recurrent layer at ``model.layers[index]``
    (SimpleRNN, LSTM, GRU, or a Bidirectional of one; a mask from the layers before it),
    stepping its cells and finishing the model with the layers after it (a Sequential
    model whose loss gets no mask). dL/dh_t is the gradient at the h state after step t,
    c held fixed for LSTM: at a masked step the carried state. Returns {direction ("" or
    "forward"/"backward"): (grad_hidden (B, T, H), jacobian_norm (B, T))}."""
    import tensorflow as tf

    layer = model.layers[index]
    u, mask = layer_input(model, index, x)
    with tf.GradientTape(persistent=True) as tape:
        if isinstance(layer, keras.layers.Bidirectional):
            seq = layer.return_sequences
            runs = {"forward": stepped_direction(layer.forward_layer, u, mask, seq),
                    "backward": stepped_direction(layer.backward_layer, u, mask, seq)}
            if seq:
                yf, yb = runs["forward"][1], runs["backward"][1][:, ::-1]
            else:
                yf, yb = runs["forward"][2], runs["backward"][2]
            out = {"concat": lambda: tf.concat([yf, yb], -1), "sum": lambda: yf + yb,
                   "mul": lambda: yf * yb, "ave": lambda: (yf + yb) / 2}[layer.merge_mode]()
        else:
            runs = {"": stepped_direction(layer, u, mask, layer.zero_output_for_mask)}
            out = runs[""][1] if layer.return_sequences else runs[""][2]
        assert mask is None or not layer.return_sequences, "the loss would need the mask"
        for after in model.layers[index + 1:]:
            out = after(out)
        np.testing.assert_allclose(out.numpy(), model(x).numpy(), atol=1e-5, rtol=1e-5)
        value = loss_obj(y, out)
    found = {}
    for d, (hs, _, _) in runs.items():
        grads = tape.gradient(value, hs)
        jac = [np.linalg.norm(tape.batch_jacobian(hs[-1], h).numpy(), 2, axis=(1, 2))
               for h in hs]
        found[d] = np.stack([g.numpy() for g in grads], axis=1), np.stack(jac, axis=1)
    return found


def gradient_case(name, model, x, y, loss, note, hidden_layers=()):
    import tensorflow as tf

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.save(os.path.join(d, "model.keras"))
    np.save(os.path.join(d, "input.npy"), x)
    np.save(os.path.join(d, "target.npy"), y)
    model.compile(loss=loss)  # the loss as training computes it: model.compute_loss

    def loss_obj(target, pred):
        return model.compute_loss(y=target, y_pred=pred)

    xt = tf.convert_to_tensor(x)
    floats = x.dtype.kind == "f"
    with tf.GradientTape() as tape:
        if floats:
            tape.watch(xt)
        value = loss_obj(y, model(xt, training=False))
    variables = model.trainable_weights
    grads = tape.gradient(value, ([xt] if floats else []) + variables)
    names = weight_names(model)
    expected = {"loss": float(value)}
    if floats:
        np.save(os.path.join(d, "expected_grad_input.npy"), grads[0].numpy())
        expected["grad_input"] = f"{name}/expected_grad_input.npy"
        grads = grads[1:]
    np.savez(os.path.join(d, "expected_grad_weights.npz"),  # (Embedding: IndexedSlices)
             **{names[id(v)]: tf.convert_to_tensor(g).numpy() for v, g in zip(variables, grads)})
    expected["grad_weights"] = f"{name}/expected_grad_weights.npz"
    for index in hidden_layers:
        layer = model.layers[index].name
        for direction, found in stepped_hidden(model, index, xt, y, loss_obj).items():
            key = f"{layer}/{direction}" if direction else layer
            file = f"{layer}_{direction}" if direction else layer
            for kind, a in zip(("grad_hidden", "jacobian_norm"), found):
                np.save(os.path.join(d, f"expected_{kind}_{file}.npy"), a)
                expected.setdefault(kind, {})[key] = f"{name}/expected_{kind}_{file}.npy"
    return {"name": name, "note": note, "model": f"{name}/model.keras",
            "input": f"{name}/input.npy", "target": f"{name}/target.npy", "loss": loss,
            "expected": expected}


def gradient_cases():
    """More gradient cases than the shared set: masks, merge modes, go_backwards, every
    loss, float64."""
    rng = np.random.default_rng(21)
    L = keras.layers
    x = rng.normal(size=(3, 7, 3)).astype("float32")
    xm = x.copy()
    xm[0, 5:] = 0.0
    xm[1, 0] = 0.0
    cases = []

    def seq(*layers, shape=(7, 3), dtype="float32"):
        return keras.Sequential([keras.Input(shape, dtype=dtype), *layers])

    keras.utils.set_random_seed(22)
    m = seq(L.SimpleRNN(4, activation="relu", go_backwards=True, name="rnn"),
            L.Dense(2, activation="sigmoid", name="head"))
    cases.append(gradient_case("backwards_relu_bce", m, x, rng.uniform(size=(3, 2)).astype(
        "float32"), "binary_crossentropy", "go_backwards relu -> Dense(sigmoid): logits", (0,)))
    for mode in ["concat", "sum", "mul", "ave"]:
        keras.utils.set_random_seed(23)
        m = seq(L.Masking(0.0), L.Bidirectional(L.SimpleRNN(4, return_sequences=True),
                                                merge_mode=mode, name="bidi"),
                L.TimeDistributed(L.Dense(2), name="td"))
        cases.append(gradient_case(f"masked_bidi_{mode}_mae", m, xm, rng.normal(
            size=(3, 7, 2)).astype("float32"), "mae", f"Masking -> Bidirectional({mode}) -> "
            f"TimeDistributed(Dense): the loss over unmasked steps"))
    keras.utils.set_random_seed(24)
    m = seq(L.SimpleRNN(5, return_sequences=True, name="rnn"),
            L.TimeDistributed(L.Dense(3, activation="softmax"), name="td"))
    cases.append(gradient_case("td_softmax_cce", m, x, np.eye(3, dtype="float32")[
        rng.integers(0, 3, size=(3, 7))], "categorical_crossentropy",
        "TimeDistributed(softmax): crossentropy on clipped probabilities", (0,)))
    keras.utils.set_random_seed(25)
    m = seq(L.SimpleRNN(4, name="rnn", dtype="float64"), L.Dense(3, name="head",
                                                                  dtype="float64"),
            dtype="float64")
    cases.append(gradient_case("float64_scce_clipped", m, x.astype("float64"), rng.integers(
        0, 3, size=(3,)), "sparse_categorical_crossentropy", "float64, a linear head read as "
        "probabilities: clipped to [1e-7, 1 - 1e-7] (Keras' loss computes in float32)", (0,)))
    keras.utils.set_random_seed(26)
    m = seq(L.SimpleRNN(4, name="rnn"), L.Dense(3, activation="softmax", name="head"))
    cases.append(gradient_case("dense_softmax_bce", m, x, rng.uniform(size=(3, 3)).astype(
        "float32"), "binary_crossentropy", "binary crossentropy on a softmax: TensorFlow "
        "takes the softmax's logits as sigmoid logits"))
    keras.utils.set_random_seed(27)
    m = seq(L.SimpleRNN(4, name="rnn"), L.Dense(3, activation="softmax", name="head"))
    k, b = m.get_layer("head").get_weights()
    m.get_layer("head").set_weights([k * 60, b])  # probabilities round to 0 and 1
    cases.append(gradient_case("saturated_softmax_cce", m, x, np.eye(3, dtype="float32")[
        [0, 1, 2]], "categorical_crossentropy", "a saturated Dense softmax: the logits "
        "keep the gradient where clipped probabilities would lose it"))
    keras.utils.set_random_seed(28)
    ids = np.array([[4, 9, 3, 0, 0, 0, 0], [7, 1, 1, 2, 0, 0, 0], [1, 2, 3, 4, 5, 6, 8]],
                   dtype="int32")
    m = seq(L.Embedding(10, 3, mask_zero=True, name="emb"),
            L.SimpleRNN(4, return_sequences=True, name="rnn"),
            L.TimeDistributed(L.Dense(3, activation="softmax"), name="td"),
            shape=(7,), dtype="int32")
    cases.append(gradient_case("embedding_masked_scce", m, ids, rng.integers(
        0, 3, size=(3, 7)), "sparse_categorical_crossentropy", "Embedding(mask_zero): the "
        "loss over unmasked tokens, a dense embeddings gradient"))
    keras.utils.set_random_seed(29)
    m = seq(*[L.SimpleRNN(3, activation=a, return_sequences=i < 3, name=f"rnn_{a}")
              for i, a in enumerate(["elu", "hard_sigmoid", "gelu", "selu"])],
            L.Dense(1, name="head"))
    cases.append(gradient_case("activations_stack_mse", m, x * 2, rng.normal(size=(3, 1)).astype(
        "float32"), "mse", "four stacked SimpleRNNs: elu, hard_sigmoid, gelu, selu",
        (0, 1, 2, 3)))
    keras.utils.set_random_seed(30)
    inp = keras.Input((7, 3))
    a = L.SimpleRNN(3, return_sequences=True, name="rnn_a")(inp)
    b = L.SimpleRNN(3, return_sequences=True, go_backwards=True, name="rnn_b")(inp)
    h = L.Concatenate(name="cat")([a, L.Add(name="add")([a, b])])
    m = keras.Model(inp, L.Dense(2, name="head")(L.Flatten(name="flat")(h)))
    cases.append(gradient_case("functional_concat_add", m, x, rng.normal(size=(3, 2)).astype(
        "float32"), "mse", "functional: two SimpleRNNs, Add and Concatenate, Flatten, Dense"))
    return cases


def random_biases(model, seed):
    """Every bias drawn at random (Keras starts them at zero: a zero bias hides a wrong
    bias gradient that depends on the bias)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        subs = [layer.forward_layer, layer.backward_layer] \
            if isinstance(layer, keras.layers.Bidirectional) else [layer]
        for sub in subs:
            for w in sub.trainable_weights:
                if w.name == "bias":
                    w.assign(w.numpy() + rng.normal(scale=0.5, size=w.shape).astype(w.dtype))
    return model


def gated_cases():
    """LSTM and GRU: GRU with the reset gate after and before the recurrent product, LSTM
    behind Masking and behind Embedding(mask_zero), Bidirectional LSTM and GRU; dL/dh_t
    and the Jacobian norms from stepping the cells."""
    rng = np.random.default_rng(41)
    L = keras.layers
    x = rng.normal(size=(3, 7, 3)).astype("float32")
    xm = x.copy()
    xm[0, 5:] = 0.0  # the last two steps masked
    xm[1, 0] = 0.0  # the first
    xm[2, 3] = 0.0  # one inside
    cases = []

    def seq(*layers, shape=(7, 3), dtype="float32", seed=0):
        return random_biases(keras.Sequential([keras.Input(shape, dtype=dtype), *layers]), seed)

    keras.utils.set_random_seed(42)
    m = seq(L.GRU(4, name="gru"), L.Dense(2, name="head"), seed=1)
    cases.append(gradient_case("gru_reset_after_mse", m, x, rng.normal(size=(3, 2)).astype(
        "float32"), "mse", "GRU(reset_after=True) -> Dense, random biases", (0,)))
    keras.utils.set_random_seed(43)
    m = seq(L.GRU(4, reset_after=False, return_sequences=True, name="gru"),
            L.TimeDistributed(L.Dense(3, activation="softmax"), name="td"), seed=2)
    cases.append(gradient_case("gru_reset_before_td_cce", m, x, np.eye(3, dtype="float32")[
        rng.integers(0, 3, size=(3, 7))], "categorical_crossentropy",
        "GRU(reset_after=False) -> TimeDistributed(softmax), random biases", (0,)))
    keras.utils.set_random_seed(44)
    m = seq(L.GRU(4, go_backwards=True, activation="relu", recurrent_activation="hard_sigmoid",
                  name="gru"), L.Dense(2, activation="sigmoid", name="head"), seed=3)
    cases.append(gradient_case("gru_backwards_relu_bce", m, x * 2, rng.uniform(
        size=(3, 2)).astype("float32"), "binary_crossentropy", "GRU(go_backwards, relu, "
        "hard_sigmoid gates) -> Dense(sigmoid)", (0,)))
    keras.utils.set_random_seed(45)
    m = seq(L.Masking(0.0), L.LSTM(4, name="lstm"), L.Dense(2, name="head"), seed=4)
    cases.append(gradient_case("masked_lstm_mse", m, xm, rng.normal(size=(3, 2)).astype(
        "float32"), "mse", "Masking -> LSTM -> Dense: masked steps first, inside and last",
        (1,)))
    keras.utils.set_random_seed(46)
    ids = np.array([[4, 9, 3, 0, 0, 0, 0], [0, 7, 1, 1, 2, 0, 0], [1, 2, 3, 4, 5, 6, 8]],
                   dtype="int32")
    m = seq(L.Embedding(10, 3, mask_zero=True, name="emb"), L.LSTM(4, name="lstm"),
            L.Dense(3, activation="softmax", name="head"), shape=(7,), dtype="int32", seed=5)
    cases.append(gradient_case("embedding_masked_lstm_scce", m, ids, rng.integers(
        0, 3, size=(3,)), "sparse_categorical_crossentropy", "Embedding(mask_zero) -> LSTM "
        "-> Dense(softmax)", (1,)))
    keras.utils.set_random_seed(47)
    m = seq(L.Bidirectional(L.LSTM(3, return_sequences=True), name="bilstm"),
            L.TimeDistributed(L.Dense(2), name="td"), seed=6)
    cases.append(gradient_case("bidi_lstm_concat_mse", m, x, rng.normal(size=(3, 7, 2)).astype(
        "float32"), "mse", "Bidirectional(LSTM, concat) -> TimeDistributed(Dense)", (0,)))
    keras.utils.set_random_seed(48)
    m = seq(L.Masking(0.0), L.Bidirectional(L.GRU(3), merge_mode="mul", name="bigru"),
            L.Dense(2, name="head"), seed=7)
    cases.append(gradient_case("masked_bidi_gru_mul_mse", m, xm, rng.normal(
        size=(3, 2)).astype("float32"), "mse", "Masking -> Bidirectional(GRU, mul), last "
        "outputs -> Dense", (1,)))
    return cases


def main(out, gated=False):
    """Write the cases (``gated``: those of :func:`gated_cases`) and their manifest."""
    import tensorflow as tf

    global OUT
    OUT = out
    os.makedirs(OUT, exist_ok=True)
    cases = gated_cases() if gated else gradient_cases()
    producer = {"keras": keras.__version__}
    if gated:
        producer.update({"tensorflow": tf.__version__, "script": "scripts/gradient_reference."
                         "py (python scripts/make_reference.py --gradients --gated)"})
    manifest = {"producer": producer,
                "tolerance": {"atol": 1e-5, "rtol": 1e-4}, "cases": cases}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(cases)} gradient cases to {OUT}")
