"""ONNX models as rnncli models (rnncli.onnx.model) and written back (rnncli.onnx.writer).

Golden numbers: the reference models' expected arrays (ONNX Runtime), ONNX Runtime run
here on models built here (skipped where onnxruntime is not installed), Keras' expected
outputs for the Keras reference models, and PyTorch for graphs torch.onnx.export writes.
"""

import json
import os

import numpy as np
import pytest
from conftest import one_line, ort_run

import rnncli
from rnncli.core.model import Model
from rnncli.core.rnn import RNN
from rnncli.errors import InputDataError, ModelFileError, OutputError
from rnncli.onnx.graph import OnnxNode, read_onnx, write_onnx
from rnncli.onnx.model import framework_arrays
from rnncli.onnx.writer import write

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data", "torch_onnx")
MANIFEST = json.load(open(os.path.join(DATA, "manifest.json")))
ONNX_CASES = [c for c in MANIFEST["cases"] if c["name"].startswith("onnx_")]
TORCH_CASES = [c for c in MANIFEST["cases"] if c["name"].startswith("torch_")]
TOL = MANIFEST["tolerance"]
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def data(case, key):
    rel = case["input"] if key == "input" else case["expected"][key]
    return np.load(os.path.join(DATA, rel))






# --- the reference models ------------------------------------------------------------------


@pytest.mark.parametrize("case", ONNX_CASES, ids=lambda c: c["name"])
def test_reference_models_compute_what_onnx_runtime_computed(case):
    model = rnncli.load_model(os.path.join(DATA, case["files"]["onnx"]))
    result = model.run(data(case, "input"))
    arrays = framework_arrays(model, result)
    assert set(arrays) == set(case["expected"])
    for key, value in arrays.items():
        np.testing.assert_allclose(value, data(case, key), **TOL)
    y = data(case, "Y")  # [T, dirs, B, H] -> rnncli's (B, T, dirs·H)
    merged = y.transpose(2, 0, 1, 3).reshape(y.shape[2], y.shape[0], -1)
    np.testing.assert_allclose(result.output, merged, **TOL)
    assert model.source["framework"] == "onnx" and model.source["opset"] == 14
    assert any("time-major [T, B, features]" in n for n in model.notes)
    [layer] = model.layers
    assert layer.class_name == ("Bidirectional" if y.shape[1] == 2 else
                                {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}[
                                    case["name"].split("_")[1]])


# --- nodes built here, run by ONNX Runtime -------------------------------------------------

RNG = np.random.default_rng(7)
T, B, D, H = 5, 3, 3, 4


def single_node(tmp_path, op, direction="forward", *, bias=True, layout=0, extra=None,
                attrs=None, seed=0):
    """A model of one node: X a graph input [T, B, D] (layout 0) or [B, T, D]; returns the
    path, and the arrays it was built from."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    init = {"W": rng.normal(0, 0.7, (dirs, G * H, D)).astype(np.float32),
            "R": rng.normal(0, 0.7, (dirs, G * H, H)).astype(np.float32)}
    if bias:
        init["B"] = rng.normal(0, 0.5, (dirs, 2 * G * H)).astype(np.float32)
    inputs = ["X", "W", "R", "B" if bias else ""]
    for role, value in (extra or {}).items():
        k = {"sequence_lens": 4, "initial_h": 5, "initial_c": 6, "P": 7}[role]
        inputs += [""] * (k + 1 - len(inputs))
        inputs[k] = role
        init[role] = value
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    attributes = {"hidden_size": H, "direction": direction, **(attrs or {})}
    if layout:
        attributes["layout"] = 1
    path = tmp_path / f"{op}_{direction}.onnx"
    shape = [B, T, D] if layout else [T, B, D]
    write_onnx(path, [OnnxNode(op, inputs, outputs, attributes, "node")], init,
               [("X", shape)], [(o, None) for o in outputs])
    return path, init


def x_batch_first(seed=1):
    return np.random.default_rng(seed).normal(0, 1.5, (B, T, D)).astype(np.float32)


def check_against_ort(path, x, layout=0):
    want = ort_run(path, {"X": x if layout else x.transpose(1, 0, 2).copy()})
    model = rnncli.load_model(path)
    got = framework_arrays(model, model.run(x))
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], **TOL)
    return model


HS2 = {"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.2],
       "activation_beta": [0.5]}
VARIANTS = [
    ("RNN", "reverse", {}),
    ("RNN", "bidirectional", {"activations": ["Relu", "Softsign"]}),
    ("RNN", "forward", {"activations": ["Affine"], "activation_alpha": [1.0],
                        "activation_beta": [0.0]}),
    ("GRU", "forward", {"linear_before_reset": 0}),
    ("GRU", "bidirectional", {"linear_before_reset": 0, **HS2,
                              "activations": ["HardSigmoid", "Tanh"] * 2,
                              "activation_alpha": [0.2, 0.2], "activation_beta": [0.5, 0.5]}),
    ("GRU", "reverse", {"linear_before_reset": 1, "activations": ["HardSigmoid", "Softsign"],
                        "activation_alpha": [1 / 6], "activation_beta": [0.5]}),
    ("LSTM", "forward", {"activations": ["HardSigmoid", "Tanh", "Tanh"],
                         "activation_alpha": [0.2], "activation_beta": [0.5]}),
    ("LSTM", "reverse", {"activations": ["Sigmoid", "Elu", "Elu"], "activation_alpha": [1.0,
                                                                                         1.0]}),
    ("LSTM", "bidirectional", {"activations": ["Sigmoid", "LeakyRelu", "LeakyRelu"] * 2,
                               "activation_alpha": [0.2] * 4}),
    ("GRU", "forward", {"activations": ["Sigmoid", "Softplus"]}),
]


@pytest.mark.parametrize("op,direction,attrs", VARIANTS,
                         ids=[f"{o}-{d}-{'-'.join(a.get('activations', ['default'])[:3])}"
                              for o, d, a in VARIANTS])
def test_directions_activations_and_reset_modes_match_onnx_runtime(tmp_path, op, direction,
                                                                    attrs):
    check_against_ort(single_node(tmp_path, op, direction, attrs=attrs)[0], x_batch_first())


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_no_bias(tmp_path, op):
    model = check_against_ort(single_node(tmp_path, op, "bidirectional", bias=False)[0],
                              x_batch_first())
    assert not model.layers[0].forward_layer.use_bias


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_stored_sequence_lengths_match_onnx_runtime(tmp_path, op, direction):
    lens = np.array([5, 2, 3], np.int32)
    path, _ = single_node(tmp_path, op, direction, extra={"sequence_lens": lens})
    model = check_against_ort(path, x_batch_first())
    assert model.layers[0].class_name == "SequenceLengths"
    one_line(InputDataError, model.run, x_batch_first()[:2], match="a batch of 3")


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_stored_initial_states_match_onnx_runtime(tmp_path, op):
    dirs = 2
    extra = {"initial_h": RNG.normal(size=(dirs, B, H)).astype(np.float32)}
    if op == "LSTM":
        extra["initial_c"] = RNG.normal(size=(dirs, B, H)).astype(np.float32)
    path, _ = single_node(tmp_path, op, "bidirectional", extra=extra)
    model = check_against_ort(path, x_batch_first())
    layer = model.layers[0].forward_layer
    np.testing.assert_array_equal(layer.default_initial_state[0], extra["initial_h"][0])
    one_line(InputDataError, model.run, x_batch_first()[:2],
             match="initial state its file stores, for a batch of 3")
    given = model.run(x_batch_first(), initial_state=None).output  # the stored one
    zeros = tuple(np.zeros((B, H), np.float32) for _ in layer.state_names) * 2
    other = model.run(x_batch_first(), initial_state={model.layers[0].name: zeros}).output
    assert not np.allclose(given, other)


def test_zero_peepholes_are_accepted(tmp_path):
    path, _ = single_node(tmp_path, "LSTM", extra={"P": np.zeros((1, 3 * H), np.float32)})
    check_against_ort(path, x_batch_first())


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_layout_1_reads_as_layout_0_computes(tmp_path, op, direction):
    """ONNX Runtime runs only layout 0: the layout-1 file's numbers are the layout-0 node's,
    axes moved as the operator's definition says."""
    p0, _ = single_node(tmp_path, op, direction)
    x = x_batch_first()
    want = ort_run(p0, {"X": x.transpose(1, 0, 2).copy()})
    (tmp_path / "l1").mkdir()
    p1, _ = single_node(tmp_path / "l1", op, direction, layout=1)
    model = rnncli.load_model(p1)
    assert not any("time-major" in n for n in model.notes)
    got = framework_arrays(model, model.run(x))
    np.testing.assert_allclose(got["Y"], want["Y"].transpose(2, 0, 1, 3), **TOL)
    for k in ("Y_h", "Y_c")[: 2 if op == "LSTM" else 1]:
        np.testing.assert_allclose(got[k], want[k].transpose(1, 0, 2), **TOL)


# --- graphs around the nodes ---------------------------------------------------------------


def torch_export(module, x, path, opset=14):
    torch = pytest.importorskip("torch")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=False,
                          opset_version=opset, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch", 1: "time"}})
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _torch_net(kind, layers, bidirectional, head, last_step):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(3, 4, num_layers=layers, batch_first=True,
                                               bidirectional=bidirectional)
            self.head = torch.nn.Linear(4 if last_step else 4 * (1 + bidirectional), head)

        def forward(self, x):
            y, h = self.rnn(x)
            if last_step:
                h = h[0] if isinstance(h, tuple) else h
                return torch.softmax(self.head(h[-1]), dim=-1)
            return self.head(y)

    return Net().eval()


@pytest.mark.parametrize("kind,layers,bidi,last_step", [
    ("LSTM", 2, True, False), ("GRU", 1, False, True), ("LSTM", 2, False, True),
    ("RNN", 2, True, False)])
def test_graphs_torch_onnx_export_writes_compute_what_torch_computes(tmp_path, kind, layers,
                                                                      bidi, last_step):
    net = _torch_net(kind, layers, bidi, 2, last_step)
    x = x_batch_first()
    path = tmp_path / "torch.onnx"
    want = torch_export(net, x, path)
    model = rnncli.load_model(path)
    assert model.notes == []  # every operator was understood
    assert [la.class_name for la in model.layers] == \
        ["Bidirectional" if bidi else {"RNN": "SimpleRNN"}.get(kind, kind)] * layers + \
        (["Dense"] if last_step else ["TimeDistributed"])
    np.testing.assert_allclose(model.run(x).output, want, **TOL)
    np.testing.assert_allclose(ort_run(path, {"input": x})["output"], want, **TOL)


@pytest.mark.parametrize("opset", [7, 9, 11, 20])
def test_older_and_newer_opsets_torch_writes(tmp_path, opset):
    """Below opset 9 torch folds no constants: W, R, B come through Slice, Concat and
    Unsqueeze of the initializers, shapes through Cast, zeros from ConstantFill."""
    net = _torch_net("LSTM", 2, True, 2, last_step=False)
    x = x_batch_first()
    path = tmp_path / "torch.onnx"
    want = torch_export(net, x, path, opset)
    model = rnncli.load_model(path)
    assert model.notes == [] and model.source["opset"] == opset
    np.testing.assert_allclose(model.run(x).output, want, **TOL)


def test_what_rnncli_cannot_follow_is_skipped_and_named(tmp_path):
    net = _torch_net("RNN", 1, True, 2, last_step=True)  # h_n[-1]: the backward half only
    x = x_batch_first()
    path = tmp_path / "torch.onnx"
    torch_export(net, x, path)
    model = rnncli.load_model(path)
    [note] = model.notes
    assert "skipped operators Gather, Gemm, Softmax" in note
    assert model.run(x).output.shape == (B, T, 8)


def test_time_order_different_from_rnncli_s_is_told(tmp_path):
    model = rnncli.load_model(single_node(tmp_path, "GRU", "reverse")[0])
    assert any("opposite time order to rnncli's, which is in processing order" in n
               for n in model.notes)
    path, _ = single_node(tmp_path, "GRU", "forward")
    m = read_onnx(path)
    flip = [OnnxNode("Slice", ["Y", "s", "e", "a", "st"], ["Yr"])]
    init = {**m.initializers, "s": np.array([-1]), "e": np.array([-2**63]),
            "a": np.array([0]), "st": np.array([-1])}
    model = rnncli.load_model(_graph(tmp_path, m.nodes + flip, init, [("X", [T, B, D])],
                                     [("Yr", None)]))
    assert any("which is in input order" in n for n in model.notes)
    assert not any("skipped" in n for n in model.notes)


# --- refused, one line each ----------------------------------------------------------------


@pytest.mark.parametrize("op,attrs,extra,match", [
    ("LSTM", {"clip": 3.0}, None, "clips its cell inputs to ±3"),
    ("GRU", {"clip": 0.5}, None, "±0.5"),
    ("LSTM", {"input_forget": 1}, None, "input_forget=1"),
    ("LSTM", {}, {"P": np.ones((1, 3 * H), np.float32)}, "peephole weights P"),
    ("LSTM", {"activations": ["Sigmoid", "Tanh", "Relu"]}, None, "expected g = h"),
    ("RNN", {"activations": ["ThresholdedRelu"]}, None, "ThresholdedRelu (alpha=1)"),
    ("GRU", {"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.3]}, None,
     "HardSigmoid (alpha=0.3, beta=0.5) has no Keras equivalent"),
    ("RNN", {"activations": ["Tanh", "Tanh"]}, None, "2 activations; expected 1"),
])
def test_what_rnncli_does_not_compute_is_refused(tmp_path, op, attrs, extra, match):
    path, _ = single_node(tmp_path, op, attrs=attrs, extra=extra)
    one_line(ModelFileError, rnncli.load_model, path, match=match)


def _graph(tmp_path, nodes, init, inputs, outputs):
    path = tmp_path / "g.onnx"
    write_onnx(path, nodes, init, inputs, outputs)
    return path


def test_graphs_rnncli_cannot_read_are_refused(tmp_path):
    w = {"W": np.ones((1, 2, 3), np.float32), "R": np.ones((1, 2, 2), np.float32)}
    x = [("X", [T, B, 3])]
    rnn = OnnxNode("RNN", ["X", "W", "R"], ["Y"], {"hidden_size": 2}, "a")
    one_line(ModelFileError, rnncli.load_model,
             _graph(tmp_path, [OnnxNode("Relu", ["X"], ["Y"])], {}, x, [("Y", None)]),
             match="no RNN, LSTM or GRU node (operators: Relu)")
    one_line(ModelFileError, rnncli.load_model,
             _graph(tmp_path, [OnnxNode("RNN", ["X", "Wx", "R"], ["Y"], {"hidden_size": 2})],
                    {"R": w["R"]}, x + [("Wx", [1, 2, 3])], [("Y", None)]),
             match="its W ('Wx') is computed by the graph")
    twice = [rnn, OnnxNode("RNN", ["X", "W", "R"], ["Y2"], {"hidden_size": 2}, "b")]
    one_line(ModelFileError, rnncli.load_model, _graph(tmp_path, twice, w, x, [("Y2", None)]),
             match="which is not node 'a''s Y")
    lens = OnnxNode("RNN", ["X", "W", "R", "", "L"], ["Y"], {"hidden_size": 2})
    one_line(ModelFileError, rnncli.load_model,
             _graph(tmp_path, [lens], w, x + [("L", [B], 6)], [("Y", None)]),
             match="sequence_lens ('L') is computed or a graph input")
    negated = [OnnxNode("Neg", ["H0"], ["H"]),
               OnnxNode("RNN", ["X", "W", "R", "", "", "H"], ["Y"], {"hidden_size": 2})]
    one_line(ModelFileError, rnncli.load_model,
             _graph(tmp_path, negated, w, x + [("H0", [1, B, 2])], [("Y", None)]),
             match="initial_h ('H') is computed by the graph and not zeros")
    sideways = [OnnxNode("Transpose", ["X"], ["Xt"], {"perm": [0, 2, 1]}), rnn]
    rnn.inputs = ["Xt", "W", "R"]
    one_line(ModelFileError, rnncli.load_model,
             _graph(tmp_path, sideways, w, [("X", [T, 3, B])], [("Y", None)]),
             match="is not the graph's input")


def test_an_initial_state_given_as_a_graph_input_is_told(tmp_path):
    w = {"W": np.ones((1, 2, 3), np.float32), "R": np.ones((1, 2, 2), np.float32)}
    node = OnnxNode("RNN", ["X", "W", "R", "", "", "H0"], ["Y"], {"hidden_size": 2}, "a")
    path = _graph(tmp_path, [node], w, [("X", [T, B, 3]), ("H0", [1, B, 2])], [("Y", None)])
    model = rnncli.load_model(path)
    assert any("initial_h from the graph input 'H0'" in n for n in model.notes)


def test_skipped_operators_are_named(tmp_path):
    path, _ = single_node(tmp_path, "GRU")
    m = read_onnx(path)
    nodes = m.nodes + [OnnxNode("Neg", ["Y"], ["minus"]), OnnxNode("Abs", ["minus"], ["abs"])]
    path2 = _graph(tmp_path, nodes, m.initializers, [("X", [T, B, D])],
                   [("Y", None), ("abs", None)])
    model = rnncli.load_model(path2)
    assert any("skipped operators Abs, Neg" in n for n in model.notes)


# --- writing ONNX --------------------------------------------------------------------------

KERAS_SETS = {"lstm_gru_reference": ["lstm_dense", "gru_reset_after_state",
                                     "gru_reset_before_backwards", "mixed_stack"],
              "keras_reference": ["seed000_two_units", "seed001_dense_head", "seed004_relu",
                                  "stacked_softmax", "bidirectional_timedistributed"]}
KERAS_MODELS = [(s, n) for s, names in KERAS_SETS.items() for n in names]


def keras_case(ref, name):
    base = os.path.join(HERE, "data", ref)
    case = next(c for c in json.load(open(os.path.join(base, "manifest.json")))["cases"]
                if c["name"] == name)
    x = np.load(os.path.join(base, case["input"]))
    return os.path.join(base, name, "model.keras"), x, \
        np.load(os.path.join(base, case["expected"]["output"]))


@pytest.mark.parametrize("ref,name", KERAS_MODELS, ids=[n for _, n in KERAS_MODELS])
def test_written_onnx_runs_in_onnx_runtime_with_keras_numbers(tmp_path, ref, name):
    path, x, expected = keras_case(ref, name)
    model = rnncli.load_model(path)
    out = tmp_path / "m.onnx"
    write(model, str(out))
    got = ort_run(out, {"input": x.astype(np.float32)})
    np.testing.assert_allclose(got["output"], expected, **TOL)
    again = rnncli.load_model(out)
    assert again.notes == [] and [la.name for la in again.layers] == \
        [la.name for la in model.layers]
    np.testing.assert_allclose(again.run(x).output, expected, **TOL)
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_written_onnx_keeps_a_stored_initial_state(tmp_path):
    base = os.path.join(HERE, "data", "lstm_gru_reference", "lstm_initial_state")
    model = rnncli.load_model(os.path.join(base, "model.keras"))
    states = np.load(os.path.join(base, "initial_state.npz"))
    model.layers[0].default_initial_state = (states["h"], states["c"])
    out = tmp_path / "init.onnx"
    write(model, str(out))
    x = np.load(os.path.join(base, "input.npy"))
    expected = np.load(os.path.join(base, "expected_output.npy"))
    np.testing.assert_allclose(ort_run(out, {"input": x})["output"], expected, **TOL)
    np.testing.assert_allclose(rnncli.load_model(out).run(x).output, expected, **TOL)


def test_keras_2_hard_sigmoid_is_written_as_onnx_hard_sigmoid_0_2(tmp_path):
    base = os.path.join(HERE, "data", "lstm_gru_reference", "k2_lstm_hard_sigmoid")
    model = rnncli.load_model(os.path.join(base, "model_k2.h5"))
    out = tmp_path / "k2.onnx"
    write(model, str(out))
    [node] = read_onnx(out).recurrent_nodes
    assert node.attributes["activations"][0] == "HardSigmoid"
    assert node.attributes["activation_alpha"] == [pytest.approx(0.2)]
    x = np.load(os.path.join(base, "input.npy"))
    expected = np.load(os.path.join(base, "expected_output.npy"))
    np.testing.assert_allclose(ort_run(out, {"input": x})["output"], expected, **TOL)


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c["name"])
def test_torch_state_dicts_written_as_onnx_give_torch_numbers(tmp_path, case):
    model = rnncli.load_model(os.path.join(DATA, case["files"]["safetensors"]),
                              case["settings"])
    out = tmp_path / "t.onnx"
    write(model, str(out))
    x = data(case, "input")
    got = ort_run(out, {"input": x})
    np.testing.assert_allclose(got["output"], data(case, "sequence"), **TOL)
    # h_n is every node's Y_h, stacked
    h_n = np.concatenate([got[f"{la.name}/Y_h"] for la in model.layers])
    np.testing.assert_allclose(h_n, data(case, "h_n"), **TOL)
    again = rnncli.load_model(out)
    arrays = framework_arrays(again, again.run(x))
    np.testing.assert_allclose(np.concatenate([arrays[f"Y_h/{la.name}"] for la in
                                               again.layers]) if len(again.layers) > 1
                               else arrays["Y_h"], data(case, "h_n"), **TOL)


ROUND_TRIPS = ["lstm_dense", "gru_reset_after_state"]


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_keras_to_pytorch_to_onnx_to_keras_keeps_every_number(tmp_path, name):
    path, x, expected = keras_case("lstm_gru_reference", name)
    model = rnncli.load_model(path)
    for fmt in ("safetensors", "onnx", "keras"):
        out = str(tmp_path / f"m.{fmt}")
        from rnncli.models import write_weights

        write_weights(model, out)
        model = rnncli.load_model(out)
        np.testing.assert_allclose(model.run(x).output, expected, **TOL)
    assert model.source["format"] == "keras3_archive"


@pytest.mark.parametrize("name", ["mixed_stack", "gru_reset_before_backwards"])
def test_keras_to_onnx_to_keras_keeps_every_number(tmp_path, name):
    path, x, expected = keras_case("lstm_gru_reference", name)
    model = rnncli.load_model(path)
    for fmt in ("onnx", "keras"):
        out = str(tmp_path / f"m.{fmt}")
        write(model, out) if fmt == "onnx" else __import__(
            "rnncli.models", fromlist=["x"]).write_weights(model, out)
        model = rnncli.load_model(out)
        np.testing.assert_allclose(model.run(x).output, expected, **TOL)


def test_an_embedding_without_a_mask_is_a_gather(tmp_path):
    path, x, _ = keras_case("lstm_gru_reference", "embedding_bilstm_tagger")
    model = rnncli.load_model(path)
    model.layers[0].mask_zero = False
    out = tmp_path / "emb.onnx"
    write(model, str(out))
    got = ort_run(out, {"input": x.astype(np.int64)})["output"]
    np.testing.assert_allclose(got, model.run(x).output, **TOL)
    again = rnncli.load_model(out)
    assert again.takes_token_ids and again.layers[0].class_name == "Embedding"
    np.testing.assert_allclose(again.run(x).output, got, **TOL)


def test_stored_lengths_are_written_back(tmp_path):
    path, _ = single_node(tmp_path, "LSTM", "bidirectional",
                          extra={"sequence_lens": np.array([5, 2, 3], np.int32)})
    model = rnncli.load_model(path)
    out = tmp_path / "again.onnx"
    write(model, str(out))
    x = x_batch_first()
    np.testing.assert_allclose(ort_run(out, {"input": x})["output"], model.run(x).output, **TOL)


@pytest.mark.parametrize("ref,name,change,match", [
    ("keras_reference", "masking_backwards_sigmoid", None, "take lengths, not a per-step mask"),
    ("lstm_gru_reference", "embedding_bilstm_tagger", None, "mask_zero"),
    ("keras_reference", "bidirectional_timedistributed", ("merge_mode", "sum"), "merge_mode 'sum'"),
    ("keras_reference", "seed000_two_units", ("activation", "celu"), "activation 'celu'"),
    ("generated", "functional_two_outputs", None, "only a chain of layers"),
])
def test_models_onnx_cannot_hold_are_refused(tmp_path, ref, name, change, match):
    model = rnncli.load_model(os.path.join(HERE, "data", ref, name, "model.keras"))
    if change:
        model.recurrent_layers[0].configure(*change)
    one_line(OutputError, write, model, str(tmp_path / "x.onnx"), match=match)


def test_float64_models_are_written_as_double(tmp_path):
    model = rnncli.load_model(os.path.join(HERE, "data", "generated", "float64", "model.keras"))
    out = tmp_path / "f64.onnx"
    write(model, str(out))
    assert read_onnx(out).initializers[f"{model.layers[0].name}/W"].dtype == np.float64
    x = np.random.default_rng(0).normal(size=(2, 4, model.input_dim))
    np.testing.assert_array_equal(rnncli.load_model(out).run(x).output, model.run(x).output)


def test_default_initial_state_is_a_small_tested_core_addition():
    cell = RNN("r", __import__("rnncli.core.simple_rnn", fromlist=["x"]).SimpleRNNCell(
        np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)), return_sequences=True)
    model = Model.chain("m", [cell])
    x = np.zeros((3, 1, 2), np.float32)
    assert np.all(model.run(x).output == 0)
    cell.default_initial_state = (np.array([[0.5, -0.5]], np.float32),)  # batch 1: spread
    np.testing.assert_allclose(model.run(x).output[:, 0], np.tanh([[0.5, -0.5]] * 3))
    given = model.run(x, initial_state=np.zeros(2, np.float32)).output
    assert np.all(given == 0)  # a given state wins


@pytest.mark.parametrize("attrs, match", [
    ({"layout": 2}, "attribute layout is 2; expected 0 or 1"),
    ({"direction": "sideways"}, "attribute direction is 'sideways'"),
    ({"activations": "Tanh"}, "attribute activations is 'Tanh'; expected a list of names"),
    ({"clip": [1.0]}, "attribute clip is [1.0]; expected a float"),
    ({"linear_before_reset": 3}, "attribute linear_before_reset is 3"),
])
def test_attributes_of_the_wrong_type_are_one_line_errors(tmp_path, attrs, match):
    path, _ = single_node(tmp_path, "GRU", attrs=attrs)
    one_line(ModelFileError, rnncli.load_model, path, match=match)


def test_a_malformed_operator_around_the_nodes_is_skipped_not_a_crash(tmp_path):
    path, _ = single_node(tmp_path, "GRU")
    m = read_onnx(path)
    nodes = m.nodes + [OnnxNode("Transpose", ["Y"], ["T1"], {"perm": 5}),
                       OnnxNode("Reshape", ["Y", "W"], ["T2"])]
    model = rnncli.load_model(_graph(tmp_path, nodes, m.initializers, [("X", [T, B, D])],
                                     [("Y", None), ("T1", None), ("T2", None)]))
    assert any("skipped operators Reshape, Transpose" in n for n in model.notes)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_with_stored_lengths_and_states_are_torch_s(tmp_path, bidirectional):
    """A node with stored sequence_lens and initial_h is nn.RNN run on a packed sequence
    from h0: the gradients torch's autograd gives. The loss is Keras' mse of a masked
    output, the mean over the steps inside each length."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    dirs = 2 if bidirectional else 1
    rnn = torch.nn.RNN(D, H, batch_first=True, bidirectional=bidirectional)
    lens = np.array([5, 2, 3])
    h0 = torch.randn(dirs, B, H)
    x = x_batch_first()
    target = np.random.default_rng(3).normal(size=(B, T, dirs * H)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    packed = pack_padded_sequence(xt, torch.from_numpy(lens), batch_first=True,
                                  enforce_sorted=False)
    y, _ = rnn(packed, h0)
    y, _ = pad_packed_sequence(y, batch_first=True, total_length=T)
    inside = torch.from_numpy(np.arange(T) < lens[:, None]).float()
    per_step = ((y - torch.from_numpy(target)) ** 2).mean(-1)
    ((per_step * inside).sum() / inside.sum()).backward()
    sfx = ["", "_reverse"][:dirs]
    p = {k: v.detach().numpy() for k, v in rnn.named_parameters()}
    init = {"W": np.stack([p[f"weight_ih_l0{s}"] for s in sfx]),
            "R": np.stack([p[f"weight_hh_l0{s}"] for s in sfx]),
            "B": np.stack([np.concatenate([p[f"bias_ih_l0{s}"], p[f"bias_hh_l0{s}"]])
                           for s in sfx]),
            "L": lens.astype(np.int32), "H0": h0.numpy()}
    node = OnnxNode("RNN", ["X", "W", "R", "B", "L", "H0"], ["Y"],
                    {"hidden_size": H, "direction": ["forward", "bidirectional"][dirs - 1]})
    model = rnncli.load_model(_graph(tmp_path, [node], init, [("X", [T, B, D])],
                                     [("Y", None)]))
    np.testing.assert_allclose(model.run(x).output, y.detach().numpy(), **TOL)
    g = model.gradients(x, target=target, loss="mse")
    np.testing.assert_allclose(g["grad_input"], xt.grad.numpy(), **TOL)
    name = model.layers[1].name
    for s, d in zip(sfx, ("/forward", "/backward")[:dirs] if dirs == 2 else ("",)):
        np.testing.assert_allclose(g[f"grad/{name}{d}/recurrent_kernel"],
                                   rnn.get_parameter(f"weight_hh_l0{s}").grad.numpy().T, **TOL)
        np.testing.assert_allclose(g[f"grad/{name}{d}/bias"],
                                   rnn.get_parameter(f"bias_hh_l0{s}").grad.numpy(), **TOL)
