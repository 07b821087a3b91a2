"""The layer math: the step equation, and identities Keras' semantics imply.

Numbers here are checked against the equation itself or against each other;
the Keras-made golden numbers are in test_keras_reference.py.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rnncli.core import activations
from rnncli.core.model import Model, Node, Ref
from rnncli.core.rnn import Bidirectional
from rnncli.core.simple_rnn import SimpleRNN
from rnncli.keras.random import random_weights


def rnn(seed=0, units=3, dim=2, **kw):
    k, u, b = random_weights(seed, units, dim)
    b = b + 0.1  # a non-zero bias
    return SimpleRNN("rnn", k, u, b, return_sequences=True, **kw)


def scan(layer, x, mask=None, trace=False):
    """(sequence, final h, trace) of one direction."""
    d = layer.run(x, mask, trace=trace)
    return d.sequence, d.states["h"], d.trace


def ys(result):
    """What a layer returns in Keras (its outputs without their masks)."""
    outs = [y for y, _ in result.outputs]
    return outs[0] if len(outs) == 1 else outs


def seqs(batch=2, steps=5, dim=2, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, steps, dim)).astype(np.float32)


def test_scan_is_the_step_equation_repeated():
    layer = rnn(activation="tanh")
    x = seqs()
    seq, state, tr = scan(layer, x, trace=True)
    h = np.zeros((2, 3), np.float32)
    for t in range(5):
        z = x[:, t] @ layer.kernel + h @ layer.recurrent_kernel + layer.bias
        np.testing.assert_allclose(tr.z[:, t], z, atol=1e-6)
        np.testing.assert_allclose(tr.hu[:, t], h @ layer.recurrent_kernel, atol=1e-6)
        h = np.tanh(z)
        np.testing.assert_allclose(seq[:, t], h, atol=1e-6)
        np.testing.assert_allclose(layer.cell.step(x[:, t], seq[:, t - 1] if t else 0 * h), h,
                                   atol=1e-6)
    np.testing.assert_allclose(state, h, atol=1e-6)


def test_fast_and_traced_paths_agree():
    for act in ("tanh", "relu", "sigmoid"):
        layer = rnn(activation=act)
        x = seqs(4, 30)
        fast, s1, _ = scan(layer, x, trace=False)
        slow, s2, tr = scan(layer, x, trace=True)
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(s1, s2)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 8), st.integers(0, 1000))
def test_go_backwards_is_the_reversed_input(batch, steps, seed):
    x = seqs(batch, steps, seed=seed)
    back = rnn(go_backwards=True)
    fwd = rnn()
    seq_b, state_b, _ = scan(back, x)
    seq_f, state_f, _ = scan(fwd, x[:, ::-1])
    np.testing.assert_allclose(seq_b, seq_f, atol=1e-6)  # Keras' order: processing order
    np.testing.assert_allclose(state_b, state_f, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(0, 5), st.integers(0, 1000))
def test_masked_tail_equals_truncated_sequence(keep, pad, seed):
    x = seqs(1, keep + pad, seed=seed)
    mask = np.zeros((1, keep + pad), bool)
    mask[:, :keep] = True
    layer = rnn()
    seq, state, _ = scan(layer, x, mask)
    seq_t, state_t, _ = scan(layer, x[:, :keep])
    np.testing.assert_allclose(state, state_t, atol=1e-6)
    # masked steps carry the last output forward (zero_output_for_mask=False)
    np.testing.assert_allclose(seq[:, keep:], np.repeat(seq_t[:, -1:], pad, axis=1), atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(0, 1000))
def test_batch_equals_each_sample_alone(batch, steps, seed):
    x = seqs(batch, steps, seed=seed)
    layer = rnn()
    seq, _, _ = scan(layer, x)
    for b in range(batch):
        np.testing.assert_allclose(seq[b:b + 1], scan(layer, x[b:b + 1])[0], atol=1e-6)


def bidi(mode):
    f, b = rnn(1), rnn(2, go_backwards=True)
    return Bidirectional("bidi", f, b, mode)


def test_bidirectional_merges_aligned_directions():
    x = seqs()
    yf, yb = ys(bidi(None).call(x))
    np.testing.assert_allclose(yb, scan(rnn(2), x[:, ::-1])[0][:, ::-1], atol=1e-6)
    for mode, fn in [("sum", np.add), ("mul", np.multiply), ("ave", lambda a, b: (a + b) / 2),
                     ("concat", lambda a, b: np.concatenate([a, b], -1))]:
        np.testing.assert_allclose(ys(bidi(mode).call(x)), fn(yf, yb), atol=1e-6)


def test_bidirectional_masked_steps_output_zeros():
    x = seqs(1, 4)
    mask = np.array([[True, True, False, False]])
    y = ys(bidi("concat").call(x, mask))
    assert np.all(y[:, 2:] == 0)
    assert np.any(y[:, :2] != 0)


def test_model_runs_a_chain_and_records_every_layer():
    a = rnn(1, units=3, dim=2)
    b = SimpleRNN("top", *random_weights(2, 4, 3))
    nodes = {("rnn", 0): Node(a, [Ref("in")]), ("top", 0): Node(b, [Ref("rnn")])}
    model = Model("m", [a, b], nodes, [Ref("in")], [Ref("top")])
    x = seqs()
    r = model.run(x)
    np.testing.assert_allclose(r.output, scan(b, scan(a, x)[0])[1], atol=1e-6)
    assert list(r.layers) == ["rnn", "top"]
    assert r.hidden["top"].shape == (2, 5, 4)


def test_activations_match_their_definitions():
    z = np.linspace(-6, 6, 49).astype(np.float32)
    sig = 1 / (1 + np.exp(-z.astype(np.float64)))
    np.testing.assert_allclose(activations.get("sigmoid")(z), sig, atol=1e-6)
    np.testing.assert_allclose(activations.get("hard_sigmoid", 3)(z), np.clip(z / 6 + 0.5, 0, 1))
    np.testing.assert_allclose(activations.get("hard_sigmoid", 2)(z), np.clip(0.2 * z + 0.5, 0, 1))
    np.testing.assert_allclose(activations.get("softplus")(z), np.log1p(np.exp(z)), rtol=1e-5)
    np.testing.assert_allclose(activations.get("swish")(z), z * sig, atol=1e-5)
    assert activations.get("gelu")(np.float32([0.0]))[0] == 0.0
    assert activations.normalize({"class_name": "function", "config": "relu"}) == "relu"


def test_final_state_only_keeps_no_sequence():
    layer = SimpleRNN("rnn", *random_weights(0, 3, 2))  # return_sequences=False
    x = seqs(2, 50)
    full = layer.call(x)
    lean = layer.call(x, keep=False)
    assert lean.hidden is None
    np.testing.assert_array_equal(ys(lean), ys(full))
    np.testing.assert_array_equal(lean.state, full.state)


def test_a_run_frees_its_arrays_without_the_cyclic_gc():
    # An export runs batch after batch: each batch's arrays must go when its result does.
    import gc
    import weakref

    layer = rnn()
    model = Model("m", [layer], {("rnn", 0): Node(layer, [Ref("in")])}, [Ref("in")],
                  [Ref("rnn")])
    gc.disable()
    try:
        result = model.run(seqs())
        hidden = weakref.ref(result.layers["rnn"].hidden)
        z = weakref.ref(result.trace("rnn").z)
        del result
        assert hidden() is None and z() is None
    finally:
        gc.enable()
