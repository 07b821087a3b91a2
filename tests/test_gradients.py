"""Gradients (model.gradients): TensorFlow's numbers for the gradient-reference cases, and
float64 central finite differences for every layer kind, activation and loss.

A finite-difference check perturbs entries of the input and of every weight in place and
compares (L(w + e) - L(w - e)) / 2e with the gradient, at points away from kinks."""

import json
import os

import numpy as np
import pytest
from conftest import DATA

import rnncli
from rnncli.core import activations, backprop, bptt, cells, losses
from rnncli.core.gradients import parse_of
from rnncli.core.gru import GRUCell
from rnncli.core.layers import (
    Activation,
    Dense,
    Embedding,
    Flatten,
    Identity,
    Masking,
    Op,
    TimeDistributed,
)
from rnncli.core.lstm import LSTMCell
from rnncli.core.model import ALL_OUTPUTS, Model, Node, Ref
from rnncli.core.rnn import RNN, Bidirectional
from rnncli.core.simple_rnn import SimpleRNN
from rnncli.errors import InputDataError, UnsupportedLayerError, UsageError

REF = os.path.join(DATA, "gradient_reference")
with open(os.path.join(REF, "manifest.json")) as f:
    MANIFEST = json.load(f)
TOL = MANIFEST["tolerance"]  # atol 1e-5, rtol 1e-4
# more cases from `python scripts/make_reference.py --gradients`, where made
GENERATED = os.path.join(DATA, "gradient_generated")
CASES = [(REF, c) for c in MANIFEST["cases"]]
# and the LSTM/GRU cases (`--gradients --gated`): dL/dh_t and Jacobian norms from TF too
GATED = os.path.join(DATA, "gradient_gated")
for folder in (GENERATED, GATED):
    if os.path.exists(os.path.join(folder, "manifest.json")):
        with open(os.path.join(folder, "manifest.json")) as f:
            CASES += [(folder, c) for c in json.load(f)["cases"]]
ELEMENTWISE = sorted(set(activations.ACTIVATIONS) - set(activations.VECTOR))
EPS = 1e-6


# ---------------------------------------------------------------- TensorFlow's numbers


def needs(case):
    """The cells a case needs beyond SimpleRNN (its LSTM cases run once LSTM lands)."""
    return "LSTM" if "lstm" in case["name"] else None


def has_backward(cell):
    from rnncli.core.cell import Cell

    found = cells.registry().get(cell)
    return found is not None and found[0].backward is not Cell.backward


@pytest.mark.parametrize("base,case", CASES, ids=[c["name"] for _, c in CASES])
def test_matches_tensorflow(base, case):
    cell = needs(case)
    if cell and not has_backward(cell):
        pytest.skip(f"rnncli's {cell} cell has no backward step yet")
    model = rnncli.load_model(os.path.join(base, case["model"]))
    x = np.load(os.path.join(base, case["input"]))
    y = np.load(os.path.join(base, case["target"]))
    g = model.gradients(x, target=y, loss=case["loss"])
    exp = case["expected"]
    tol = {"atol": TOL["atol"], "rtol": TOL["rtol"]}
    np.testing.assert_allclose(g["loss"], exp["loss"], **tol)
    assert g["loss"].shape == ()
    if "grad_input" in exp:
        np.testing.assert_allclose(g["grad_input"], np.load(os.path.join(base, exp["grad_input"])),
                                   **tol)
    else:
        assert "grad_input" not in g  # token ids have no gradient
    with np.load(os.path.join(base, exp["grad_weights"])) as w:
        assert {k for k in g if k.startswith("grad/")} == {f"grad/{k}" for k in w.files}
        for k in w.files:
            np.testing.assert_allclose(g[f"grad/{k}"], w[k], err_msg=k, **tol)
            assert g[f"grad/{k}"].dtype == w[k].dtype
    for kind in ("grad_hidden", "jacobian_norm"):
        for layer, rel in exp.get(kind, {}).items():
            np.testing.assert_allclose(g[f"{kind}/{layer}"], np.load(os.path.join(base, rel)),
                                       err_msg=f"{kind}/{layer}", **tol)


def test_long_rnn_vanishes_going_back():
    case = next(c for c in MANIFEST["cases"] if c["name"] == "long_rnn_vanishing")
    model = rnncli.load_model(os.path.join(REF, case["model"]))
    g = model.gradients(np.load(os.path.join(REF, case["input"])),
                        np.load(os.path.join(REF, case["target"])))
    norms = np.linalg.norm(g["grad_hidden/long_rnn"], axis=-1)
    jac = g["jacobian_norm/long_rnn"]
    np.testing.assert_allclose(jac[:, -1], 1, rtol=1e-6)
    assert np.all(norms[:, 0] < 1e-3 * norms[:, -1])
    assert np.all(jac[:, 0] < 1e-3)


# ---------------------------------------------------------------- finite differences


def rng(seed=0):
    return np.random.default_rng(seed)


def rnn(name="rnn", D=2, H=3, act="tanh", seed=0, scale=0.6, **kw):
    r = rng(seed)
    k, u, b = r.normal(size=(D, H)) * scale, r.normal(size=(H, H)) * scale * 0.7, \
        r.normal(size=H) * 0.2
    return SimpleRNN(name, k, u, b, activation=act, **kw)


def dense(name="head", D=3, U=2, act="linear", seed=1):
    r = rng(seed)
    return Dense(name, r.normal(size=(D, U)), r.normal(size=U) * 0.1, activation=act)


def bidi(mode, D=2, H=3, seqs=True, state=False, name="bidi"):
    f = rnn("f", D, H, seed=3, return_sequences=seqs, return_state=state)
    b = rnn("b", D, H, seed=4, return_sequences=seqs, return_state=state, go_backwards=True)
    return Bidirectional(name, f, b, mode)


def inputs(B=2, T=5, D=2, seed=5, pad=False):
    x = rng(seed).normal(size=(B, T, D))
    if pad:
        x[0, -2:] = 0  # a padded tail
        x[1, 0] = 0  # a masked first step
    return x


def targets_like(model, x, loss="mse", seed=6, initial_state=None):
    tape = backprop.record(model, x, initial_state)
    out = []
    for i in range(len(tape.outputs)):
        y = np.asarray(tape.output(i)[0])
        r = rng(seed + i)
        if loss == "sparse_categorical_crossentropy":
            out.append(r.integers(0, y.shape[-1], size=y.shape[:-1]))
        elif loss == "categorical_crossentropy":
            out.append(np.eye(y.shape[-1])[r.integers(0, y.shape[-1], size=y.shape[:-1])])
        elif loss == "binary_crossentropy":
            out.append(r.uniform(size=y.shape))
        else:
            out.append(r.normal(size=y.shape))
    return out if len(out) > 1 else out[0]


def weights_of(model):
    """Every weight array by its gradient's name (the arrays the layers compute with)."""
    return {f"grad/{la.name}/{k}": v for la in model.layers for k, v in la.weights().items()}


def check(model, x, target=None, loss="mse", of=None, initial_state=None, n=10, skip_x=None,
          rtol=2e-6, atol=1e-8):
    """Every gradient the model reports against central differences of its loss, on up to
    ``n`` random entries of the input and of each weight."""
    g = model.gradients(x, target, loss, of, initial_state, jacobian=False)

    def objective():
        return float(model.gradients(x, target, loss, of, initial_state, jacobian=False)["loss"])

    arrays = dict(weights_of(model))
    if x.dtype.kind == "f":
        arrays["grad_input"] = x
    checked = 0
    for name, a in arrays.items():
        # a cell's weights are read-only; writeable, they are packed afresh every scan
        a.flags.writeable = True
        flat = a.reshape(-1)
        picks = rng(len(name)).permutation(flat.size)[:n]
        for i in picks:
            if name == "grad_input" and skip_x is not None and skip_x.reshape(-1)[i]:
                continue
            old = flat[i]
            flat[i] = old + EPS
            up = objective()
            flat[i] = old - EPS
            down = objective()
            flat[i] = old
            fd = (up - down) / (2 * EPS)
            got = g[name].reshape(-1)[i]
            assert abs(got - fd) <= atol + rtol * max(abs(fd), 1e-3), \
                f"{name}[{i}]: gradient {got!r}, finite difference {fd!r}"
            checked += 1
    assert checked >= 3
    return g


@pytest.mark.parametrize("act", ELEMENTWISE)
def test_simple_rnn_each_activation(act):
    scale = 0.3 if act == "exponential" else 0.6
    model = Model.chain("m", [rnn(act=act, scale=scale, return_sequences=True)])
    x = inputs()
    check(model, x, targets_like(model, x))


@pytest.mark.parametrize("act", ELEMENTWISE + list(activations.VECTOR))
def test_dense_each_activation(act):
    model = Model.chain("m", [rnn(), dense(U=3, act=act)])
    x = inputs()
    check(model, x, targets_like(model, x))


@pytest.mark.parametrize("seqs", [True, False])
@pytest.mark.parametrize("backwards", [True, False])
def test_go_backwards_and_what_is_returned(seqs, backwards):
    model = Model.chain("m", [rnn(return_sequences=seqs, go_backwards=backwards),
                              dense(act="tanh")])
    x = inputs(T=6)
    check(model, x, targets_like(model, x))


@pytest.mark.parametrize("seqs", [True, False])
def test_masked_steps(seqs):
    model = Model.chain("m", [Masking("mask", 0.0), rnn(return_sequences=seqs, go_backwards=True),
                              dense(act="sigmoid")])
    x = inputs(pad=True)
    g = check(model, x, targets_like(model, x), skip_x=(x == 0))
    masked = np.all(x == 0, axis=-1)
    assert np.all(g["grad_input"][masked] == 0)  # a padded step gets no gradient


def test_masked_leading_steps_carry_a_given_initial_state():
    # The first steps are masked: the output there is zeros, the state the initial one.
    model = Model.chain("m", [Masking("mask", 0.0), rnn(return_sequences=True), dense()])
    x = inputs(pad=True)
    h0 = rng(9).normal(size=(2, 3))
    check(model, x, targets_like(model, x, initial_state=h0), initial_state=h0,
          skip_x=(x == 0))


def test_return_state():
    model = Model.chain("m", [rnn(return_sequences=True, return_state=True)])
    x = inputs()
    y = targets_like(model, x)
    assert isinstance(y, list) and len(y) == 2
    check(model, x, y)


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("seqs", [True, False])
def test_bidirectional_merge_modes(mode, seqs):
    model = Model.chain("m", [Masking("mask", 0.0), bidi(mode, seqs=seqs)])
    x = inputs(pad=True)
    g = check(model, x, targets_like(model, x), skip_x=(x == 0))
    assert {"grad_hidden/bidi/forward", "grad_hidden/bidi/backward"} <= set(g)


def test_bidirectional_return_state():
    model = Model.chain("m", [bidi("concat", seqs=False, state=True)])
    x = inputs()
    y = targets_like(model, x)
    assert len(y) == 3  # the merged output, then the forward and backward h
    check(model, x, y)


def test_embedding_mask_zero_tagger():
    ids = np.array([[5, 9, 3, 0, 0, 0], [7, 1, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    emb = Embedding("emb", rng(2).normal(size=(10, 2)), mask_zero=True)
    tags = TimeDistributed("tags", dense("inner", D=3, U=4, act="softmax"))
    model = Model.chain("m", [emb, bidi("ave"), tags])
    y = targets_like(model, ids, "sparse_categorical_crossentropy")
    g = check(model, ids, y, "sparse_categorical_crossentropy")
    assert "grad_input" not in g
    assert np.all(g["grad/emb/embeddings"][[8]] == 0)  # id 8 is never used


@pytest.mark.parametrize("loss,act,wrap", [
    ("mse", "linear", False), ("mae", "tanh", False),
    ("binary_crossentropy", "sigmoid", False), ("binary_crossentropy", "sigmoid", True),
    ("categorical_crossentropy", "softmax", False), ("categorical_crossentropy", "softmax", True),
    ("sparse_categorical_crossentropy", "softmax", False),
    ("sparse_categorical_crossentropy", "softmax", True),
])
def test_every_loss(loss, act, wrap):
    """Each loss on probabilities (wrap: TimeDistributed, which drops the logits) and,
    for crossentropies on a Dense softmax/sigmoid, on its logits."""
    head = dense(U=3, act=act)
    layers = [rnn(return_sequences=True), TimeDistributed("td", head) if wrap else head]
    model = Model.chain("m", layers)
    x = inputs()
    check(model, x, targets_like(model, x, loss), loss)


def test_activation_dropout_flatten():
    model = Model.chain("m", [rnn(return_sequences=True), Identity("drop", "Dropout"),
                              Activation("act", "softplus"), Flatten("flat"),
                              dense(D=15, U=2)])
    x = inputs()
    check(model, x, targets_like(model, x))


def graph(op, names=("a", "b"), **config):
    """x -> two SimpleRNNs -> an operation of both -> Dense."""
    a = rnn("a", seed=1, return_sequences=True)
    b = rnn("b", seed=2, return_sequences=True)
    o = Op("op", op, config=config)
    head = dense(D=6 if op == "Concatenate" else 3)
    layers = [a, b, o, head]
    nodes = {("a", 0): Node(a, [Ref("x")]), ("b", 0): Node(b, [Ref("x")]),
             ("op", 0): Node(o, [[Ref("a"), Ref("b")]]), ("head", 0): Node(head, [Ref("op")])}
    return Model("g", layers, nodes, [Ref("x")], [Ref("head", 0, ALL_OUTPUTS)])


@pytest.mark.parametrize("op", ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
                                "Concatenate"])
def test_merge_operations(op):
    model = graph(op)
    x = inputs()
    check(model, x, targets_like(model, x))


def test_initial_state_from_another_layer_gets_its_gradient():
    enc = rnn("enc", seed=1, return_state=True)
    dec = rnn("dec", seed=2, return_sequences=True)
    head = dense()
    nodes = {("enc", 0): Node(enc, [Ref("x")]),
             ("dec", 0): Node(dec, [Ref("x")], {"initial_state": [Ref("enc", 0, 1)]}),
             ("head", 0): Node(head, [Ref("dec")])}
    model = Model("encdec", [enc, dec, head], nodes, [Ref("x")], [Ref("head", 0, ALL_OUTPUTS)])
    x = inputs()
    g = check(model, x, targets_like(model, x))
    assert np.abs(g["grad/enc/recurrent_kernel"]).max() > 1e-3


def float64(model):
    """A loaded float32 model, its weights in float64 (finite differences need them)."""
    def cast(obj):
        for attr in ("kernel", "recurrent_kernel", "bias", "embeddings"):
            v = getattr(obj, attr, None)
            if isinstance(v, np.ndarray):
                setattr(obj, attr, v.astype(np.float64))
    for la in model.layers:
        if la.recurrent:
            for d in la.directions.values():
                cast(d.cell)
        else:
            cast(getattr(la, "inner", la))
    return model


@pytest.mark.parametrize("name", ["functional_mask_ops", "functional_two_outputs",
                                  "masked_return_state", "stacked_after_backwards",
                                  "bidi_last_masked", "embedding_bidi", "k2_functional"])
def test_keras_files(name):
    base = os.path.join(DATA, "generated", name)
    path = next(os.path.join(base, f) for f in ("model.keras", "model_k2.h5")
                if os.path.exists(os.path.join(base, f)))
    model = float64(rnncli.load_model(path))
    x = np.load(os.path.join(base, "input.npy"))
    x = x.astype(np.float64) if x.dtype.kind == "f" else x
    check(model, x, targets_like(model, x), skip_x=(x == 0) if x.dtype.kind == "f" else None)


@pytest.mark.parametrize("of", ["output", "output:1", "output:0@2", "output_1:2@-3"])
def test_of_one_output_unit(of):
    model = graph_two_outputs()
    x = inputs()
    g = check(model, x, of=of)
    tape = backprop.record(model, x)
    i, unit, step = parse_of(of)
    y = np.asarray(tape.output(i)[0])
    y = y[:, -1 if step is None else step] if y.ndim == 3 else y
    y = y if unit is None else y[..., unit]
    np.testing.assert_allclose(g["loss"], y.sum())


def graph_two_outputs():
    r = rnn(return_sequences=True)
    head = dense(U=2)
    nodes = {("rnn", 0): Node(r, [Ref("x")]), ("head", 0): Node(head, [Ref("rnn")])}
    return Model("two", [r, head], nodes, [Ref("x")], [Ref("head"), Ref("rnn")])


# ---------------------------------------------------------------- the hidden states


def test_grad_hidden_is_the_total_derivative():
    """dL/dh_t by finite differences of the loss as a function of h_t, stepping the cell
    from there (through every later step and output)."""
    layer = rnn(return_sequences=True)
    head = dense()
    model = Model.chain("m", [layer, head])
    x = inputs(B=1, T=5)
    y = targets_like(model, x)
    g = model.gradients(x, y)["grad_hidden/rnn"]
    seq = model.run(x).hidden["rnn"]

    def loss_from(t, h_t):
        hs = [*np.moveaxis(seq[:, :t], 1, 0), h_t]
        h = h_t
        for s in range(t + 1, x.shape[1]):
            h = layer.cell.step(x[:, s], h)
            hs.append(h)
        out = np.stack(hs, axis=1) @ head.kernel + head.bias
        return np.mean(np.mean((out - y) ** 2, axis=-1))

    for t in range(5):
        for i in range(3):
            e = np.zeros((1, 3))
            e[0, i] = EPS
            fd = (loss_from(t, seq[:, t] + e) - loss_from(t, seq[:, t] - e)) / (2 * EPS)
            np.testing.assert_allclose(g[0, t, i], fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backwards", [False, True])
def test_jacobian_norm_is_the_spectral_norm_of_the_product(backwards):
    """||dh_{T-1}/dh_t||_2 from a finite-difference Jacobian of h_{T-1} as a function of
    h_t (stepping the cell; masked steps carry the state)."""
    layer = rnn(H=4, return_sequences=True, go_backwards=backwards)
    model = Model.chain("m", [Masking("mask", 0.0), layer])
    x = inputs(B=2, T=6, pad=True)
    g = model.gradients(x, of="output")
    d = model.run(x).layers["rnn"].directions[""]
    tr = d.trace
    states = bptt._state_sequences(layer.cell, d, bptt.time_major(tr.h),
                                   np.asarray(tr.mask).T, (np.zeros((2, 4)),))
    xs, m = tr.x, np.asarray(tr.mask)
    T = 6
    for b in range(2):
        for t in range(T):
            def last(h, b=b, t=t):
                for s in range(t + 1, T):
                    if m[b, s]:
                        h = layer.cell.step(xs[b:b + 1, s], h[None])[0]
                return h
            h_t = states[0][t, b]
            J = np.stack([(last(h_t + e) - last(h_t - e)) / (2 * EPS)
                          for e in np.eye(4) * EPS], axis=1)
            np.testing.assert_allclose(g["jacobian_norm/rnn"][b, t], np.linalg.norm(J, 2),
                                       rtol=1e-6, atol=1e-10)


# ---------------------------------------------------------------- the rest


def test_losses_by_their_formulas():
    p = np.array([[0.2, 0.7, 0.1], [0.0, 0.5, 0.5]], np.float32)
    t = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    v = losses.compute("mse", p, t).value
    np.testing.assert_allclose(v, np.mean((p - t) ** 2), rtol=1e-6)
    v = losses.compute("mae", p, t).value
    np.testing.assert_allclose(v, np.mean(np.abs(p - t)), rtol=1e-6)
    # a zero probability is clipped to 1e-7: -log(1e-7) = 16.118
    v = losses.compute("categorical_crossentropy", p, t).value
    np.testing.assert_allclose(v, (-np.log(0.7) - np.log(1e-7)) / 2, rtol=1e-5)
    v = losses.compute("sparse_categorical_crossentropy", p, np.array([1, 0])).value
    np.testing.assert_allclose(v, (-np.log(0.7) - np.log(1e-7)) / 2, rtol=1e-5)
    bce = -(t * np.log(np.clip(p, 1e-7, 1 - 1e-7)) + (1 - t) * np.log(1 - np.clip(p, 1e-7, 1)))
    v = losses.compute("binary_crossentropy", p, t).value
    np.testing.assert_allclose(v, bce.mean(), rtol=1e-5)
    assert v.dtype == np.float32 and v.shape == ()


def test_masked_loss_is_the_mean_over_unmasked_steps():
    p = rng().normal(size=(2, 4, 3))
    t = rng(1).normal(size=(2, 4, 3))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
    v = losses.compute("mse", p, t, mask).value
    per_step = np.mean((p - t) ** 2, axis=-1)
    np.testing.assert_allclose(v, per_step[mask].mean(), rtol=1e-12)


def test_crossentropy_on_logits_keeps_a_saturated_softmax_learning():
    """TensorFlow takes a Dense softmax's logits: where the probability rounds to 0 (and
    is clipped), the gradient still flows; through TimeDistributed it does not."""
    z = np.array([[0.0, 200.0]])
    p = activations.softmax(z)
    t = np.array([[1.0, 0.0]])
    on_logits = losses.compute("categorical_crossentropy", p, t, logits=z)
    on_probs = losses.compute("categorical_crossentropy", p, t)
    assert on_logits.through_logits and not on_probs.through_logits
    np.testing.assert_allclose(on_logits.value, 200.0)
    np.testing.assert_allclose(on_logits.grad, [[-1.0, 1.0]])
    np.testing.assert_allclose(on_probs.value, -np.log(1e-7), rtol=1e-6)


def test_relu_slope_at_zero_is_kerass():
    z = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(activations.derivative("relu", z, np.maximum(z, 0)), [0, 0, 1])


def test_float32_models_compute_in_float32():
    model = rnncli.load_model(os.path.join(REF, "seed001_mse", "model.keras"))
    x = np.load(os.path.join(REF, "seed001_mse", "input.npy"))
    g = model.gradients(x, of="output:0")
    assert all(v.dtype == np.float32 for v in g.values())


def test_errors_name_what_was_expected():
    model = Model.chain("m", [rnn(), dense()])
    x = inputs()
    with pytest.raises(UsageError, match="either a target"):
        model.gradients(x)
    with pytest.raises(UsageError, match="unknown loss"):
        model.gradients(x, np.zeros((2, 2)), loss="hinge")
    with pytest.raises(InputDataError, match=r"target has shape \(2, 3\); expected \(2, 2\)"):
        model.gradients(x, np.zeros((2, 3)))
    with pytest.raises(InputDataError, match="out of range"):
        model.gradients(x, np.array([0, 2]), loss="sparse_categorical_crossentropy")
    with pytest.raises(UsageError, match="OUTPUT"):
        model.gradients(x, of="hidden")
    with pytest.raises(UsageError, match="no steps"):
        model.gradients(x, of="output@1")
    with pytest.raises(UsageError, match="unit 5"):
        model.gradients(x, of="output:5")


def test_a_layer_without_a_backward_step_says_so():
    """Every cell rnncli ships has a backward step; a cell without one is named."""
    from rnncli.core.cell import Cell
    from rnncli.core.simple_rnn import SimpleRNNCell

    assert all(has_backward(c) for c in ("SimpleRNN", "LSTM", "GRU"))

    class NoBackward(SimpleRNNCell):
        backward = Cell.backward

    r = rng(0)
    cell = NoBackward(r.normal(size=(2, 3)), r.normal(size=(3, 3)), name="odd")
    model = Model.chain("m", [RNN("odd", cell), dense()])
    with pytest.raises(UnsupportedLayerError, match="'odd'.*SimpleRNN"):
        model.gradients(inputs(), of="output")


def test_tape_forward_is_model_run():
    model = graph("Concatenate")
    x = inputs()
    tape = backprop.record(model, x)
    np.testing.assert_array_equal(tape.output(0)[0], model.run(x).output)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "linear"])
def test_compiled_backward_matches_numpy(act):
    pytest.importorskip("numba")
    model = Model.chain("m", [rnn(H=4, act=act, scale=0.5, return_sequences=True), dense(D=4)])
    x = inputs(B=2, T=600)
    y = targets_like(model, x)
    a = model.gradients(x, y, engine="numpy", jacobian=False)
    b = model.gradients(x, y, engine="numba", jacobian=False)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_compiled_simple_rnn_backward_reads_the_states_alone_but_for_relu(monkeypatch, act):
    """tanh's, sigmoid's and linear's slopes come from h: the forward pass records no
    trace for the compiled loop backwards; relu's needs z, which it records."""
    pytest.importorskip("numba")
    from rnncli.core import fast_backward

    seen = []
    original = fast_backward.simple_rnn_backward

    def spy(job, engine=None):
        seen.append(set(job.terms))
        return original(job, engine)

    spy.worth_it, spy.reads_trace = original.worth_it, original.reads_trace
    monkeypatch.setattr(fast_backward, "simple_rnn_backward", spy)
    model = Model.chain("m", [rnn(H=3, act=act, return_sequences=True), dense(D=3)])
    x = inputs(B=4, T=20)
    a = model.gradients(x, targets_like(model, x), engine="numba", jacobian=False)
    assert len(seen) == 1 and ("z" in seen[0]) == (act == "relu")
    b = model.gradients(x, targets_like(model, x), engine="numpy", jacobian=False)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("keras_major", [2, 3])
def test_compiled_backward_of_hard_sigmoid_matches_numpy(keras_major):
    """The compiled SimpleRNN loop backwards knows tanh, relu, sigmoid and linear; a
    hard_sigmoid SimpleRNN (Keras 3's or Keras 2's) runs the numpy steps, not a loop that
    takes its slope for 1."""
    pytest.importorskip("numba")
    layer = rnn(H=4, act="hard_sigmoid", scale=2.0, keras_major=keras_major,
                return_sequences=True)
    model = Model.chain("m", [layer, dense(D=4)])
    x = inputs(B=2, T=30) * 2
    y = targets_like(model, x)
    a = model.gradients(x, y, engine="numpy", jacobian=False)
    b = model.gradients(x, y, engine="numba", jacobian=False)
    assert 0 < np.abs(a["grad/rnn/kernel"]).max()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ract", ["sigmoid", "hard_sigmoid"])  # slopes from the gates, or read
# LSTM's act(c) and slope in the loop (tanh, sigmoid, linear), or read (hard_sigmoid)
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "linear", "hard_sigmoid"])
def test_compiled_gated_backward_matches_numpy(monkeypatch, kind, dtype, threads, ract, act):
    """LSTM's and GRU's compiled loop backwards (rnncli/core/fast_backward.py), over one
    block or several in threads, against the numpy steps: the same elementwise products
    in the same order, sums in another (BLAS's blocks against one after another)."""
    pytest.importorskip("numba")
    from rnncli.core import fast, fast_backward, planning

    monkeypatch.setattr(fast, "THREAD_SECONDS", -1.0)
    monkeypatch.setattr(planning, "threads", lambda: threads)
    monkeypatch.setattr(planning, "idle_cores", lambda: threads)  # fixed shares: idle cores
    monkeypatch.setattr(fast_backward.Products, "PANELS_MIN", 0)  # aᵀ·b compiled, not BLAS
    monkeypatch.setattr(fast_backward.Products, "SHARED_MIN", 0)  # and shared
    calls = []
    original = fast_backward.gated_backward

    def spy(job, engine=None):
        calls.append(job.dxp.shape)
        return original(job, engine)

    spy.worth_it = original.worth_it
    monkeypatch.setattr(fast_backward, "gated_backward", spy)
    r = rng(9)
    H, D, P = 5, 3, (4 if kind == "lstm" else 3) * 5
    weights = [r.normal(size=(D, P)) * 0.6, r.normal(size=(H, P)) * 0.4,
               r.normal(size=P if kind == "lstm" else (2, P)) * 0.2]
    weights = [w.astype(dtype) for w in weights]
    cell = LSTMCell(*weights, activation=act, recurrent_activation=ract) if kind == "lstm" \
        else GRUCell(*weights, activation=act, recurrent_activation=ract)
    head = Dense("head", r.normal(size=(H, 2)).astype(dtype), np.zeros(2, dtype))
    model = Model.chain("m", [RNN("rec", cell, return_sequences=True), head])
    x = inputs(B=19, T=40, D=D).astype(dtype)
    y = targets_like(model, x)
    h0 = [r.normal(size=(19, H)).astype(dtype) * 0.5 for _ in cell.state_names]
    a = model.gradients(x, y, engine="numpy", jacobian=False, initial_state=h0)
    assert not calls
    b = model.gradients(x, y, engine="numba", jacobian=False, initial_state=h0)
    assert calls == [(40, 19, P)]
    for k in a:  # a linear LSTM's numbers grow to 1e10 here: float32's error is relative
        scale = max(1.0, float(np.abs(a[k]).max()))
        tol = dict(rtol=1e-9, atol=1e-12) if dtype == np.float64 else \
            dict(rtol=2e-4, atol=2e-6 * scale)
        np.testing.assert_allclose(b[k], a[k], err_msg=k, **tol)


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("masked", [False, True])  # the time loop compiled, or numpy's
def test_where_numba_runs_the_backward_products_are_compiled(monkeypatch, kind, masked):
    """Where numba runs, the weight gradients' aᵀ·b and dL/dx are the compiled products
    (fast_backward.Products), whichever time loop ran (a mask keeps numpy's), within
    rounding of numpy's, which the numpy engine keeps."""
    pytest.importorskip("numba")
    from rnncli.core import fast_backward

    calls = []
    monkeypatch.setattr(fast_backward.Products, "PANELS_MIN", 0)  # compiled however narrow
    gram, input_gradient = fast_backward.Products.gram, fast_backward.Products.input_gradient
    monkeypatch.setattr(fast_backward.Products, "gram",
                        lambda self, a, b: calls.append("gram") or gram(self, a, b))
    monkeypatch.setattr(fast_backward.Products, "input_gradient", lambda self, d, out: (
        calls.append("dx"), input_gradient(self, d, out)))
    layer = {"simple_rnn": rnn, "lstm": lstm, "gru": gru}[kind](H=3, return_sequences=True)
    model = Model.chain("m", [Masking("mask", 0.0), layer, dense(D=3)] if masked else
                        [layer, dense(D=3)])
    x = inputs(B=6, T=40, pad=masked)
    y = targets_like(model, x)
    a = model.gradients(x, y, engine="numpy", jacobian=False)
    assert not calls
    b = model.gradients(x, y, engine="numba", jacobian=False)
    assert {"gram", "dx"} <= set(calls)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_a_one_shot_process_compiles_products_only_big_enough_to_pay_for_numba():
    pytest.importorskip("numba")
    from rnncli.core.fast import ONE_SHOT_MIN_PRODUCTS
    from rnncli.core.fast_backward import products_worth_it
    from rnncli.core.planning import Engine

    cli = Engine("auto", one_shot=True)
    assert not products_worth_it(ONE_SHOT_MIN_PRODUCTS - 1, cli)
    assert products_worth_it(ONE_SHOT_MIN_PRODUCTS, cli)
    assert products_worth_it(1, Engine("auto")) and products_worth_it(1, Engine("numba", True))
    assert not products_worth_it(2**40, Engine("numpy"))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("masked", [False, True])
def test_a_gates_only_trace_gives_the_whole_traces_gradients(monkeypatch, kind, masked):
    """With tanh and sigmoid, the compiled forward loop records for the backward pass only
    the gates (GRU: and h·U), not the 21 numbers a unit and step of an LSTM's trace: the
    same gradients and Jacobian norms, to the bit, as from the whole trace."""
    pytest.importorskip("numba")
    from rnncli.core.gated import GatedCell

    layer = (lstm if kind == "lstm" else gru)(H=4, return_sequences=True)
    model = Model.chain("m", [Masking("mask", 0.0), layer, dense(D=4)]) if masked else \
        Model.chain("m", [layer, dense(D=4)])
    x = inputs(B=5, T=30, pad=masked)
    y = targets_like(model, x)
    tape = backprop.record(model, x, engine="numba")
    call = next(c for c in tape.calls.values() if getattr(c, "result", None) is not None)
    recorded = set(call.result.directions[""].trace)
    assert recorded == ({"gate", "bias", "h", "c"} if kind == "lstm" else
                        {"hu", "gate", "bias", "recurrent_bias", "h"})
    lean = model.gradients(x, y, engine="numba", jacobian=True)
    monkeypatch.setattr(GatedCell, "backward_trace", lambda self: True)
    whole = model.gradients(x, y, engine="numba", jacobian=True)
    assert set(lean) == set(whole)
    for k in whole:
        np.testing.assert_array_equal(lean[k], whole[k], err_msg=k)


def test_rows_in_threads_give_the_same_gradients(monkeypatch):
    from rnncli.core import planning

    model = Model.chain("m", [Masking("mask", 0.0), bidi("mul", H=4), dense(D=4)])
    x = inputs(B=96, T=7, pad=True)
    y = targets_like(model, x)
    one = model.gradients(x, y)
    monkeypatch.setattr(planning, "SPLIT_MIN_VALUES", 1)  # split from the smallest batch
    if planning.split_parts(96, 4) == 1:
        pytest.skip("one core: rows never run in threads here")
    split = model.gradients(x, y)
    for k in one:
        np.testing.assert_allclose(split[k], one[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ---------------------------------------------------------------- LSTM and GRU
#
# TensorFlow's numbers for LSTM are the reference cases above (lstm_dense_mse,
# embedding_bilstm_tagger_scce) and tests/data/gradient_gated (GRU both ways, masked and
# Bidirectional LSTM/GRU); for every option of both, float64 finite differences.


def lstm(name="lstm", D=2, H=3, seed=0, scale=0.6, ract="sigmoid", act="tanh",
         keras_major=3, **kw):
    r = rng(seed)
    cell = LSTMCell(r.normal(size=(D, 4 * H)) * scale, r.normal(size=(H, 4 * H)) * scale * 0.7,
                    r.normal(size=4 * H) * 0.2, activation=act, recurrent_activation=ract,
                    keras_major=keras_major, name=name)
    return RNN(name, cell, **kw)


def gru(name="gru", D=2, H=3, seed=0, scale=0.6, reset_after=True, ract="sigmoid",
        keras_major=3, bias=True, **kw):
    r = rng(seed)
    b = r.normal(size=(2, 3 * H) if reset_after else 3 * H) * 0.2 if bias else None
    cell = GRUCell(r.normal(size=(D, 3 * H)) * scale, r.normal(size=(H, 3 * H)) * scale * 0.7,
                   b, recurrent_activation=ract, reset_after=reset_after,
                   keras_major=keras_major, name=name)
    return RNN(name, cell, **kw)


GATED = {"lstm": lstm, "gru": gru,
         "gru_reset_before": lambda name="gru", **kw: gru(name, reset_after=False, **kw)}


def cell_of(kind):
    return GATED[kind]


@pytest.mark.parametrize("kind", sorted(GATED))
@pytest.mark.parametrize("seqs", [True, False])
@pytest.mark.parametrize("backwards", [False, True])
def test_gated_cells(kind, seqs, backwards):
    model = Model.chain("m", [cell_of(kind)(return_sequences=seqs, go_backwards=backwards),
                              dense(act="tanh")])
    x = inputs(T=6)
    check(model, x, targets_like(model, x))


def test_gru_without_bias():
    for reset_after in (True, False):
        model = Model.chain("m", [gru(reset_after=reset_after, bias=False,
                                      return_sequences=True)])
        x = inputs()
        g = check(model, x, targets_like(model, x))
        assert "grad/gru/bias" not in g


@pytest.mark.parametrize("kind", sorted(GATED))
@pytest.mark.parametrize("seqs", [True, False])
def test_gated_masked_steps(kind, seqs):
    model = Model.chain("m", [Masking("mask", 0.0),
                              cell_of(kind)(return_sequences=seqs, go_backwards=True),
                              dense(act="sigmoid")])
    x = inputs(pad=True)
    g = check(model, x, targets_like(model, x), skip_x=(x == 0))
    assert np.all(g["grad_input"][np.all(x == 0, axis=-1)] == 0)


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("seqs", [True, False])
def test_bidirectional_lstm_merge_modes(mode, seqs):
    f = lstm("f", seed=3, return_sequences=seqs)
    b = lstm("b", seed=4, return_sequences=seqs, go_backwards=True)
    model = Model.chain("m", [Masking("mask", 0.0), Bidirectional("bidi", f, b, mode)])
    x = inputs(pad=True)
    g = check(model, x, targets_like(model, x), skip_x=(x == 0))
    assert {"grad_hidden/bidi/forward", "grad_hidden/bidi/backward",
            "grad/bidi/forward/recurrent_kernel", "grad/bidi/backward/bias"} <= set(g)


def test_bidirectional_gru_return_state():
    f = gru("f", seed=3, return_state=True)
    b = gru("b", seed=4, reset_after=False, return_state=True, go_backwards=True)
    model = Model.chain("m", [Bidirectional("bidi", f, b, "concat")])
    x = inputs()
    y = targets_like(model, x)
    assert len(y) == 3
    check(model, x, y)


@pytest.mark.parametrize("seqs", [True, False])
def test_lstm_return_state(seqs):
    model = Model.chain("m", [lstm(return_sequences=seqs, return_state=True)])
    x = inputs()
    y = targets_like(model, x)
    assert isinstance(y, list) and len(y) == 3  # the output, h, c
    check(model, x, y)
    # c alone: the gradient reaches everything through the cell state only
    check(model, x, of="output_2")


@pytest.mark.parametrize("kind", sorted(GATED))
def test_keras2_hard_sigmoid_gates(kind):
    """Keras 2's hard_sigmoid, clip(0.2x + 0.5, 0, 1), as the gates' activation: larger
    weights put some gates in the flat parts (slope 0) and some on the slope (0.2)."""
    model = Model.chain("m", [cell_of(kind)(ract="hard_sigmoid", keras_major=2, scale=2.0,
                                            return_sequences=True), dense()])
    x = inputs(T=6)
    tr = model.run(x).layers[model.layers[0].name].directions[""].trace
    z = np.asarray(tr["z"])[..., :model.layers[0].units]
    assert np.any(np.abs(z) > 2.5) and np.any(np.abs(z) < 2.5)  # both parts are used
    check(model, x, targets_like(model, x))


def test_lstm_initial_state_h_and_c():
    model = Model.chain("m", [Masking("mask", 0.0), lstm(return_sequences=True), dense()])
    x = inputs(pad=True)
    h0, c0 = rng(9).normal(size=(2, 3)), rng(10).normal(size=(2, 3))
    y = targets_like(model, x, initial_state=[h0, c0])
    check(model, x, y, initial_state=[h0, c0], skip_x=(x == 0))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gated_initial_state_from_another_layer(kind):
    """An encoder's final states start the decoder: dL/d(initial h, c) flows back into the
    encoder's weights (only through c for the ``c`` state)."""
    make = cell_of(kind)
    enc = make("enc", seed=1, return_state=True)
    dec = make("dec", seed=2, return_sequences=True)
    head = dense()
    n = len(enc.state_names)
    refs = [Ref("enc", 0, 1 + i) for i in range(n)]
    nodes = {("enc", 0): Node(enc, [Ref("x")]),
             ("dec", 0): Node(dec, [Ref("x")], {"initial_state": refs}),
             ("head", 0): Node(head, [Ref("dec")])}
    model = Model("encdec", [enc, dec, head], nodes, [Ref("x")], [Ref("head", 0, ALL_OUTPUTS)])
    x = inputs()
    g = check(model, x, targets_like(model, x))
    assert np.abs(g["grad/enc/recurrent_kernel"]).max() > 1e-3


@pytest.mark.parametrize("kind", sorted(GATED))
@pytest.mark.parametrize("backwards", [False, True])
def test_gated_jacobian_norm_is_the_spectral_norm_of_the_product(kind, backwards):
    """||dh_{T-1}/dh_t||_2 from a finite-difference Jacobian of h_{T-1} as a function of
    h_t, stepping the cell from (h_t, c_t) with c_t held (LSTM: TensorFlow's reference
    computes it so, lstm_dense_mse); masked steps carry the states."""
    layer = cell_of(kind)(H=4, return_sequences=True, go_backwards=backwards)
    model = Model.chain("m", [Masking("mask", 0.0), layer])
    x = inputs(B=2, T=6, pad=True)
    g = model.gradients(x, of="output")
    d = model.run(x).layers[layer.name].directions[""]
    tr = d.trace
    zeros = tuple(np.zeros((2, 4)) for _ in layer.state_names)
    states = bptt._state_sequences(layer.cell, d, bptt.time_major(tr.h),
                                   np.asarray(tr.mask).T, zeros)
    xs, m = tr.x, np.asarray(tr.mask)
    T = 6
    for b in range(2):
        for t in range(T):
            held = tuple(s[t, b] for s in states[1:])

            def last(h, b=b, t=t, held=held):
                st = (h, *held)
                for s in range(t + 1, T):
                    if m[b, s]:
                        out = layer.cell.step(xs[b:b + 1, s], *(v[None] for v in st))
                        st = tuple(v[0] for v in out) if isinstance(out, tuple) else (out[0],)
                return st[0]

            h_t = states[0][t, b]
            J = np.stack([(last(h_t + e) - last(h_t - e)) / (2 * EPS)
                          for e in np.eye(4) * EPS], axis=1)
            np.testing.assert_allclose(g[f"jacobian_norm/{layer.name}"][b, t],
                                       np.linalg.norm(J, 2), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("kind", sorted(GATED))
def test_gated_full_state_jacobian(kind):
    """Each step's Jacobian d(states)/d(previous states), every block (LSTM: h and c), from
    central differences of the cell's step."""
    layer = cell_of(kind)(H=3, return_sequences=True)
    cell = layer.cell
    x = inputs(B=2, T=4)
    d = layer.run(x, trace=True)
    tr = d.trace
    terms = {k: bptt.time_major(tr[k]) for k in tr if np.ndim(tr[k]) == 3}
    zeros = cell.initial_states(2)
    states = bptt._state_sequences(cell, d, terms["h"], None, zeros)
    back = cell.backward(terms, states, zeros)
    S, H = len(cell.state_names), 3
    for k in range(1, 4):
        J = back.jacobian(k)
        for b in range(2):
            prev = np.concatenate([s[k - 1, b] for s in states])

            def step(v, b=b, k=k):
                out = cell.step(x[b:b + 1, k], *(v[None, i * H:(i + 1) * H] for i in range(S)))
                out = out if isinstance(out, tuple) else (out,)
                return np.concatenate([o[0] for o in out])

            fd = np.stack([(step(prev + e) - step(prev - e)) / (2 * EPS)
                           for e in np.eye(S * H) * EPS], axis=1)
            np.testing.assert_allclose(J[b], fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind,act,ract", [("lstm", "tanh", "sigmoid"),
                                           ("lstm", "hard_sigmoid", "hard_sigmoid"),
                                           ("gru", "tanh", "sigmoid")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,threads", [(1, 2), (3, 3)])
def test_a_small_batch_s_gradients_are_the_same_whether_its_units_are_split_or_not(
        kind, act, ract, dtype, rows, threads):
    """A batch too small to split by rows records its forward pass with the units split
    across threads (rnncli/core/_numba_split.py, writing the gates), and an LSTM runs its
    backward loop so too (rnncli/core/_numba_backward_split.py: act(c) in the loop or
    read, slopes from the gates or read): every gradient is one thread's to the bit."""
    pytest.importorskip("numba")
    from rnncli.core import engine as E
    from rnncli.core import planning

    r = rng(5)
    H, D, P = 384, 3, (4 if kind == "lstm" else 3) * 384
    weights = [r.normal(size=(D, P)) * 0.3, r.normal(size=(H, P)) * 0.05,
               r.normal(size=P if kind == "lstm" else (2, P)) * 0.1]
    weights = [w.astype(dtype) for w in weights]
    cls = LSTMCell if kind == "lstm" else GRUCell
    cell = cls(*weights, activation=act, recurrent_activation=ract)
    model = Model.chain("m", [RNN("rec", cell, return_sequences=True)])
    x = inputs(B=rows, T=30, D=D).astype(dtype)
    y = targets_like(model, x)
    h0 = [r.normal(size=(rows, H)).astype(dtype) * 0.5 for _ in cell.state_names]
    split = E.Engine("numba", threads=threads)
    assert E.plan(cell, rows, 30, None, split, trace="gates").split == threads
    assert planning.backward_split(cell, rows, 30, split) == (threads if kind == "lstm" else 0)
    a = model.gradients(x, y, engine=E.Engine("numba", threads=1), jacobian=False,
                        initial_state=h0)
    b = model.gradients(x, y, engine=split, jacobian=False, initial_state=h0)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    numpy = model.gradients(x, y, engine="numpy", jacobian=False, initial_state=h0)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for k in a:
        np.testing.assert_allclose(b[k], numpy[k], rtol=tol, atol=tol, err_msg=k)
