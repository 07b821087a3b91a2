"""Gradient reference cases for rnncli's tests: ``python scripts/make_reference.py
--gradients [OUT_DIR]`` (default ``tests/data/gradient_generated/``). Not run by CI.

Needs real Keras on TensorFlow (``pip install tensorflow-cpu keras`` in a separate
environment). Each case is a model file, an input, a target, a Keras loss, and what
``tf.GradientTape`` computed for the loss ``model.compile(loss=...)`` trains on
(``model.compute_loss``): the loss, dL/dx, every weight's gradient and, for plain
SimpleRNN layers, dL/dh_t and ||dh_{T-1}/dh_t||_2 from stepping the layer's own cell (the
method of the shared gradient reference, whose numbers it reproduces bit for bit).
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


def stepped_hidden(model, index, x, y, loss_obj):
    """dL/dh_t and ||dh_{T-1}/dh_t||_2 of the plain SimpleRNN at ``model.layers[index]``
    (no mask, not Bidirectional), stepping its cell and finishing the model with the
    layers after it (a Sequential model)."""
    import tensorflow as tf

    layer = model.layers[index]
    u = x
    for before in model.layers[:index]:
        u = before(u)
    u = tf.convert_to_tensor(u)
    if layer.go_backwards:
        u = u[:, ::-1]
    B, T = u.shape[0], u.shape[1]
    with tf.GradientTape(persistent=True) as tape:
        h = tf.zeros((B, layer.units), u.dtype)
        hs = []
        for t in range(T):
            h = layer.cell(u[:, t], [h])[0]
            hs.append(h)
        out = tf.stack(hs, axis=1) if layer.return_sequences else hs[-1]
        for after in model.layers[index + 1:]:
            out = after(out)
        value = loss_obj(y, out)
    grads = tape.gradient(value, hs)
    jac = [np.linalg.norm(tape.batch_jacobian(hs[-1], hs[t]).numpy(), 2, axis=(1, 2))
           for t in range(T)]
    return np.stack([g.numpy() for g in grads], axis=1), np.stack(jac, axis=1)


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
        gh, jn = stepped_hidden(model, index, xt, y, loss_obj)
        for kind, a in (("grad_hidden", gh), ("jacobian_norm", jn)):
            np.save(os.path.join(d, f"expected_{kind}_{layer}.npy"), a)
            expected.setdefault(kind, {})[layer] = f"{name}/expected_{kind}_{layer}.npy"
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


def main(out):
    global OUT
    OUT = out
    os.makedirs(OUT, exist_ok=True)
    cases = gradient_cases()
    manifest = {"producer": {"keras": keras.__version__},
                "tolerance": {"atol": 1e-5, "rtol": 1e-4}, "cases": cases}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(cases)} gradient cases to {OUT}")
