"""A cell is one module: a toy cell defined here alone runs through the model, the trace
tables and the export. And the gated cells' arithmetic holds as the equations say."""

import numpy as np
import pytest
from conftest import DATA
from hypothesis import given, settings
from hypothesis import strategies as st

import rnncli
from rnncli.core.cell import Cell
from rnncli.core.gru import GRUCell
from rnncli.core.lstm import LSTMCell
from rnncli.core.model import Model
from rnncli.core.rnn import RNN, Bidirectional
from rnncli.keras.random import random_weights


class LeakyCell(Cell):
    """A linear recurrence with a leak: h = (1 - a)·h_prev + a·(x·W + b + h_prev·U)."""

    class_name = "Leaky"
    terms = ("hu", "leak")
    term_titles = {"hu": "h·U", "leak": "(1-a)·h₋₁"}
    alpha = 0.25

    def gate_terms(self):
        return ()

    def stepper(self, rows):
        a = self.dtype.type(self.alpha)

        def step(xp, states, new, terms=None):
            (h_prev,) = states
            hu = h_prev @ self.recurrent_kernel
            leak = (1 - a) * h_prev
            new[0][...] = leak + a * (xp + hu)
            if terms is not None:
                terms["hu"][...] = hu
                terms["leak"][...] = leak

        return step


def leaky_model():
    k, u, b = random_weights(3, 4, 2)
    cell = LeakyCell(k, u, b + 0.1, activation="linear", name="leaky")
    return Model.chain("toy", [RNN("leaky", cell, return_sequences=True)])


def by_hand(model, x):
    cell = model.layers[0].cell
    h = np.zeros((x.shape[0], cell.units), x.dtype)
    out = []
    for t in range(x.shape[1]):
        h = (1 - cell.alpha) * h + cell.alpha * (x[:, t] @ cell.kernel + cell.bias
                                                 + h @ cell.recurrent_kernel)
        out.append(h)
    return np.stack(out, 1)


def test_a_toy_cell_runs_through_the_model_with_its_own_terms():
    model = leaky_model()
    x = np.random.default_rng(0).normal(size=(3, 6, 2)).astype(np.float32)
    result = model.run(x, trace=True)
    np.testing.assert_allclose(result.output, by_hand(model, x), rtol=1e-5, atol=1e-6)
    trace = result.trace("leaky")
    assert list(trace) == ["xw", "bias", "hu", "leak", "h"]
    np.testing.assert_allclose(trace["leak"][:, 1:], 0.75 * result.output[:, :-1], rtol=1e-6)


def test_a_toy_cell_shows_in_trace_tables_and_exports(tmp_path):
    from rnncli.io.export import export_results
    from rnncli.io.formats import write_trace
    from rnncli.present.views import Selection, trace_views

    model = leaky_model()
    x = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32)
    views = trace_views(model.run(x, trace=True), "leaky", Selection())
    import io

    buf = io.StringIO()
    write_trace(views, "csv", buf)
    header = buf.getvalue().splitlines()[0].split(",")
    assert header[5:10] == ["unit", "xw", "bias", "hu", "leak"]
    out = tmp_path / "toy.npz"
    export_results(model, x, str(out), "npz")
    with np.load(out) as z:
        assert {"hidden/leaky", "state/leaky", "xw/leaky", "hu/leaky", "leak/leaky",
                "bias/leaky"} <= set(z.files)
        np.testing.assert_allclose(z["hidden/leaky"], by_hand(model, x), rtol=1e-5, atol=1e-6)


def test_a_toy_cell_renders_as_a_table():
    from rich.console import Console

    from rnncli.present.render import trace_table
    from rnncli.present.views import Selection, trace_views

    model = leaky_model()
    x = np.ones((1, 3, 2), np.float32)
    view = trace_views(model.run(x, trace=True), "leaky", Selection())[0]
    console = Console(width=120, record=True, color_system=None)
    console.print(trace_table(view, model.layers[0], 0))
    text = console.export_text()
    assert "(1-a)·h₋₁" in text and "h·U" in text


def lstm_ref(case, name):
    import os

    return os.path.join(DATA, "lstm_gru_reference", case, name)


def lstm_gru_layers(seed, units=3, dim=2, **kw):
    k, u, b = random_weights(seed, units, dim, gates=4, forget_bias=True)
    rng = np.random.default_rng(seed)
    b = b + rng.normal(size=b.shape).astype(np.float32) * 0.3
    lstm = RNN("lstm", LSTMCell(k, u, b, name="lstm"), return_sequences=True, **kw)
    k, u, b = random_weights(seed + 1, units, dim, gates=3, bias_rows=2)
    b = b + rng.normal(size=b.shape).astype(np.float32) * 0.3
    gru = RNN("gru", GRUCell(k, u, b, name="gru"), return_sequences=True, **kw)
    return lstm, gru


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 4), st.integers(1, 7))
def test_gates_are_in_0_1_and_h_is_o_tanh_c(seed, batch, steps):
    lstm, gru = lstm_gru_layers(seed)
    x = np.random.default_rng(seed).normal(size=(batch, steps, 2)).astype(np.float32) * 2
    d = lstm.run(x, trace=True)
    tr = d.trace
    for name in ("i", "f", "o"):
        g = tr.per_gate("gate")[name]
        assert np.all((g >= 0) & (g <= 1))
    np.testing.assert_allclose(d.sequence, tr.per_gate("gate")["o"] * np.tanh(tr["c"]),
                               rtol=1e-5, atol=1e-6)
    gates = tr.per_gate("gate")
    np.testing.assert_allclose(tr["c"], gates["f"] * tr["c_prev"] + gates["i"] * gates["c"],
                               rtol=1e-5, atol=1e-6)
    dg = gru.run(x, trace=True)
    g = dg.trace.per_gate("gate")
    assert np.all((g["z"] >= 0) & (g["z"] <= 1)) and np.all((g["r"] >= 0) & (g["r"] <= 1))
    np.testing.assert_allclose(dg.sequence, dg.trace["keep"] + dg.trace["update"], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_engine_step_is_the_cells_equation(cell):
    layer = dict(zip(("lstm", "gru"), lstm_gru_layers(7)))[cell]
    x = np.random.default_rng(3).normal(size=(4, 9, 2)).astype(np.float32)
    d = layer.run(x)
    states = [np.zeros((4, 3), np.float32)] * len(layer.state_names)
    for t in range(9):
        out = layer.cell.step(x[:, t], *states)
        states = list(out) if isinstance(out, tuple) else [out]
        np.testing.assert_allclose(d.sequence[:, t], states[0], rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 500))
def test_masked_steps_carry_both_states(keep, pad, seed):
    lstm, gru = lstm_gru_layers(seed)
    x = np.random.default_rng(seed).normal(size=(1, keep + pad, 2)).astype(np.float32)
    mask = np.zeros((1, keep + pad), bool)
    mask[:, :keep] = True
    for layer in (lstm, gru):
        full, short = layer.run(x, mask), layer.run(x[:, :keep])
        for name in layer.state_names:
            np.testing.assert_allclose(full.states[name], short.states[name], atol=1e-6)
        np.testing.assert_allclose(full.sequence[:, keep:],
                                   np.repeat(short.sequence[:, -1:], pad, 1), atol=1e-6)
        if "c" in layer.state_names:
            np.testing.assert_allclose(full.sequences["c"][:, keep:],
                                       np.repeat(short.sequences["c"][:, -1:], pad, 1),
                                       atol=1e-6)


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
def test_a_bidirectional_lstm_returns_both_directions_states(mode):
    f, _ = lstm_gru_layers(1)
    b, _ = lstm_gru_layers(2, go_backwards=True)
    f.return_state = b.return_state = True
    layer = Bidirectional("bi", f, b, mode)
    x = np.random.default_rng(0).normal(size=(2, 5, 2)).astype(np.float32)
    out = layer.call(x)
    ys = [y for y, _ in out.outputs]
    n = 2 if mode is None else 1
    assert len(ys) == n + 4  # output(s), then h, c forward and h, c backward, as Keras
    np.testing.assert_array_equal(ys[n], out.directions["forward"].states["h"])
    np.testing.assert_array_equal(ys[n + 3], out.directions["backward"].states["c"])


def test_lstm_export_schema_names(tmp_path):
    from rnncli.io.export import export_results

    case = "embedding_bilstm_tagger"
    model = rnncli.load_model(lstm_ref(case, "model.keras"))
    x = np.load(lstm_ref(case, "input.npy"))
    out = tmp_path / "t.npz"
    export_results(model, x, str(out), "npz")
    with np.load(out) as z:
        names = set(z.files)
    for d in ("forward", "backward"):
        assert {f"state/bilstm/{d}/h", f"state/bilstm/{d}/c", f"cell/bilstm/{d}",
                f"hidden/bilstm/{d}"} <= names
        for g in "ifco":
            assert {f"gate/bilstm/{d}/{g}", f"z/bilstm/{d}/{g}", f"xw/bilstm/{d}/{g}",
                    f"hu/bilstm/{d}/{g}", f"bias/bilstm/{d}/{g}"} <= names
    assert "hidden/bilstm" in names and "mask/bilstm" in names


def test_initial_state_h_and_c_from_an_npz(tmp_path):
    from click.testing import CliRunner

    from rnncli.cli import cli

    case = "lstm_initial_state"
    r = CliRunner().invoke(cli, ["forward", lstm_ref(case, "model.keras"), "-i",
                                 lstm_ref(case, "input.npy"), "--initial-state",
                                 lstm_ref(case, "initial_state.npz"), "-f", "json"])
    assert r.exit_code == 0, r.stderr
    import json

    got = np.array(json.loads(r.stdout)["output"][0])
    np.testing.assert_allclose(got, np.load(lstm_ref(case, "expected_output.npy")), atol=1e-5)


@pytest.mark.parametrize("cell,gates", [("lstm", 4), ("gru", 3), ("simple_rnn", 1)])
def test_seeded_cells_have_keras_shapes(cell, gates):
    from rnncli.keras.random import random_model

    model = random_model(1, 4, 3, cell=cell)
    w = model.layers[0].weights()
    assert w["kernel"].shape == (3, gates * 4) and w["recurrent_kernel"].shape == (4, gates * 4)
    u = w["recurrent_kernel"].astype(np.float64)
    np.testing.assert_allclose(u @ u.T, np.eye(4), atol=1e-6)  # orthogonal rows, as Keras
    if cell == "lstm":
        np.testing.assert_array_equal(w["bias"][4:8], 1)  # unit_forget_bias
    if cell == "gru":
        assert w["bias"].shape == (2, 12)  # reset_after, Keras' default


def test_export_of_a_pytorch_model_adds_h_n_and_c_n(tmp_path):
    import os

    from rnncli.io.export import export_results

    case = os.path.join(DATA, "torch_onnx", "torch_lstm_2layer")
    model = rnncli.load_model(os.path.join(case, "model.pt"))
    x = np.load(os.path.join(case, "input.npy"))
    out = tmp_path / "t.npz"
    export_results(model, x, str(out), "npz")
    with np.load(out) as z:
        for name in ("h_n", "c_n"):
            np.testing.assert_allclose(z[name], np.load(os.path.join(case, f"expected_{name}.npy")),
                                       atol=1e-5, rtol=1e-5)
        assert "c/lstm_l0" not in z.files and "cell/lstm_l0" in z.files


def test_a_gru_names_its_pre_activations_apart_from_its_update_gate():
    """GRU's update gate is z: every gate section calls its pre-activation a, not a second
    z (beside the gate z, or read against the state update's z⊙h₋₁); an LSTM's gates
    keep z."""
    from rnncli.core.gru import GRUCell
    from rnncli.core.lstm import LSTMCell

    zero = np.zeros
    gru = GRUCell(zero((2, 6)), zero((2, 6)), zero((2, 6)))
    assert gru.section_titles("z")["z"] == "a" and gru.section_titles("z")["gate"] == "z"
    assert gru.equation("z").startswith("z = sigmoid(a),  a = x·W + h·U + b")
    assert [gru.section_titles(g)["z"] for g in gru.gates] == ["a", "a", "a"]
    assert gru.equation("r").startswith("r = sigmoid(a),  a = x·W + h·U + b")
    lstm = LSTMCell(zero((2, 8)), zero((2, 8)), zero(8))
    assert all(lstm.section_titles(g)["z"] == "z" for g in lstm.gates)
