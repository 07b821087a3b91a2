"""PyTorch state_dicts as models (rnncli.torch.model) and written back (rnncli.torch.writer).

Golden numbers: what PyTorch computed for the reference cases (tests/data/torch_onnx), what
Keras computed for the Keras reference models, and torch itself where it is installed
(those tests are skipped otherwise). Damaged and unsupported state_dicts are built here.
"""

import json
import os

import numpy as np
import pytest
from conftest import one_line

import rnncli
from rnncli.errors import ModelFileError, OutputError, RnncliError
from rnncli.torch.model import framework_arrays
from rnncli.torch.pt import read_pt
from rnncli.torch.safetensors import read_safetensors, read_safetensors_file, write_safetensors
from rnncli.torch.writer import describe, state_dict, write

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data", "torch_onnx")
KERAS = os.path.join(HERE, "data", "lstm_gru_reference")
MANIFEST = json.load(open(os.path.join(DATA, "manifest.json")))
TORCH_CASES = [c for c in MANIFEST["cases"] if c["name"].startswith("torch_")]
FILES = [(c, fmt) for c in TORCH_CASES for fmt in c["files"]]
TOL = MANIFEST["tolerance"]


def data(case, key):
    rel = case["input"] if key == "input" else case["expected"][key]
    return np.load(os.path.join(DATA, rel))


def case_file(case, fmt="safetensors"):
    return os.path.join(DATA, case["files"][fmt])




# --- the reference cases ------------------------------------------------------------------


@pytest.mark.parametrize("case,fmt", FILES, ids=[f"{c['name']}/{f}" for c, f in FILES])
def test_reference_files_compute_what_torch_computed(case, fmt):
    model = rnncli.load_model(case_file(case, fmt), case["settings"])
    result = model.run(data(case, "input"))
    np.testing.assert_allclose(result.output, data(case, "sequence"), **TOL)
    arrays = framework_arrays(model, result)
    assert set(arrays) == {k for k in ("h_n", "c_n") if k in case["expected"]}
    for key, value in arrays.items():
        np.testing.assert_allclose(value, data(case, key), **TOL)
    assert model.source["framework"] == "pytorch"
    assert model.source["format"] == {"safetensors": "pytorch_safetensors",
                                      "torch_state_dict": "pytorch_pt"}[fmt]


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c["name"])
def test_layers_are_named_and_shaped_from_the_keys(case):
    model = rnncli.load_model(case_file(case), case["settings"])
    h_n = data(case, "h_n")
    [mod] = model.source["torch_modules"]
    layers = mod["num_layers"]
    dirs = 2 if mod["bidirectional"] else 1
    assert h_n.shape[0] == layers * dirs and mod["hidden_size"] == h_n.shape[-1]
    kind = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}[case["name"].split("_")[1]]
    assert [la.name for la in model.layers] == [f"{kind.lower().replace('simple', '')}_l{k}"
                                               for k in range(layers)]
    for la in model.layers:
        assert la.class_name == ("Bidirectional" if dirs == 2 else kind)
        assert la.cell.class_name == kind and la.return_sequences
    assert model.input_dim == data(case, "input").shape[-1]


def test_nonlinearity_is_assumed_tanh_and_said_so():
    case = next(c for c in TORCH_CASES if c["settings"].get("activation") == "relu")
    plain = rnncli.load_model(case_file(case))
    assert any("nonlinearity" in n and "--set activation=relu" in n for n in plain.notes)
    assert all(la.activation == "tanh" for la in plain.recurrent_layers)
    told = rnncli.load_model(case_file(case), {"activation": "relu"})
    assert not any("nonlinearity" in n for n in told.notes)
    # tanh is wrong for this file: the numbers show it
    assert not np.allclose(plain.run(data(case, "input")).output, data(case, "sequence"),
                           **TOL)


def test_the_note_names_the_constructor_and_batch_first():
    case = next(c for c in TORCH_CASES if c["name"] == "torch_lstm_2layer")
    model = rnncli.load_model(case_file(case, "torch_state_dict"))
    [note] = model.notes
    assert "nn.LSTM(input_size=4, hidden_size=6, num_layers=2, batch_first=True, " \
        "bidirectional=False)" in note and "batch-first" in note


def test_gates_come_out_in_keras_order():
    """PyTorch GRU r, z, n -> Keras z, r, h; LSTM i, f, g, o is Keras' i, f, c, o."""
    gru = next(c for c in TORCH_CASES if c["name"] == "torch_gru_bidi")
    sd = read_safetensors(case_file(gru))
    layer = rnncli.load_model(case_file(gru)).layers[0].forward_layer
    H = sd["weight_hh_l0"].shape[1]
    r, z, n = np.split(sd["weight_ih_l0"], 3)
    np.testing.assert_array_equal(layer.cell.kernel, np.concatenate([z, r, n]).T)
    np.testing.assert_array_equal(layer.cell.bias[1, :H], sd["bias_hh_l0"][H:2 * H])
    lstm = next(c for c in TORCH_CASES if c["name"] == "torch_lstm_2layer")
    sd = read_pt(case_file(lstm, "torch_state_dict"))
    layer = rnncli.load_model(case_file(lstm)).layers[1]
    np.testing.assert_array_equal(layer.cell.recurrent_kernel, sd["weight_hh_l1"].T)
    np.testing.assert_allclose(layer.cell.bias, sd["bias_ih_l1"] + sd["bias_hh_l1"])


# --- state_dicts PyTorch itself writes -----------------------------------------------------


def torch_module(kind="LSTM", layers=1, bidirectional=False, bias=True, head=None, seed=0,
                 **kw):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    rnn = getattr(torch.nn, kind)(3, 4, num_layers=layers, bidirectional=bidirectional,
                                  bias=bias, batch_first=True, **kw)
    if head is None:
        return rnn.eval()

    class WithHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn
            self.head = torch.nn.Linear(4 * (1 + bidirectional), head)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    return WithHead().eval()


def run_torch(module, x):
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return out if not isinstance(out, tuple) else out


def save(module, path):
    torch = pytest.importorskip("torch")
    if str(path).endswith(".pt"):
        torch.save(module.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return str(path)


@pytest.mark.parametrize("kind,layers,bidi,bias,ext", [
    ("LSTM", 2, True, True, ".pt"), ("GRU", 2, False, True, ".safetensors"),
    ("GRU", 1, True, False, ".pt"), ("RNN", 3, True, True, ".safetensors"),
    ("LSTM", 1, False, False, ".safetensors")])
def test_torch_modules_compute_what_torch_computes(tmp_path, kind, layers, bidi, bias, ext):
    module = torch_module(kind, layers, bidi, bias)
    path = save(module, tmp_path / f"m{ext}")
    x = np.random.default_rng(1).normal(size=(3, 6, 3)).astype(np.float32)
    y, state = run_torch(module, x)
    h_n, c_n = state if kind == "LSTM" else (state, None)
    model = rnncli.load_model(path)
    result = model.run(x)
    np.testing.assert_allclose(result.output, y.numpy(), **TOL)
    arrays = framework_arrays(model, result)
    np.testing.assert_allclose(arrays["h_n"], h_n.numpy(), **TOL)
    if c_n is not None:
        np.testing.assert_allclose(arrays["c_n"], c_n.numpy(), **TOL)
    assert model.source["torch_modules"][0]["bias"] is bias


def test_a_linear_head_is_applied_at_every_step_and_named(tmp_path):
    module = torch_module("GRU", 1, True, head=2)
    path = save(module, tmp_path / "m.pt")
    x = np.random.default_rng(2).normal(size=(2, 5, 3)).astype(np.float32)
    model = rnncli.load_model(path)
    assert [la.name for la in model.layers] == ["rnn_l0", "head"]
    assert model.layers[1].class_name == "TimeDistributed"
    assert any("head.weight (2, 8)" in n and "every step" in n for n in model.notes)
    np.testing.assert_allclose(model.run(x).output, run_torch(module, x).numpy(), **TOL)


def test_chained_modules_and_an_embedding(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(7, 3)
            self.encoder = torch.nn.GRU(3, 4, batch_first=True)
            self.decoder = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)

        def forward(self, ids):
            y, _ = self.encoder(self.embedding(ids))
            return self.decoder(y)

    net = Net().eval()
    path = save(net, tmp_path / "net.safetensors")  # keys in alphabetical order
    ids = np.array([[1, 2, 3, 4], [6, 5, 0, 2]])
    with torch.no_grad():
        y, (h_n, c_n) = net(torch.from_numpy(ids))
    model = rnncli.load_model(path)
    assert [la.name for la in model.layers] == ["embedding", "encoder_l0", "decoder_l0"]
    assert model.takes_token_ids
    result = model.run(ids)
    np.testing.assert_allclose(result.output, y.numpy(), **TOL)
    arrays = framework_arrays(model, result)
    assert set(arrays) == {"h_n/encoder", "h_n/decoder", "c_n/decoder"}
    np.testing.assert_allclose(arrays["c_n/decoder"], c_n.numpy(), **TOL)


def test_proj_size_is_refused_in_one_line(tmp_path):
    module = torch_module("LSTM", 1, proj_size=2)
    path = save(module, tmp_path / "proj.pt")
    one_line(ModelFileError, rnncli.load_model, path, match="proj_size (weight_hr_l0 (2, 4))")


def _sd(**overrides):
    rng = np.random.default_rng(0)
    sd = {"weight_ih_l0": rng.normal(size=(12, 3)), "weight_hh_l0": rng.normal(size=(12, 4)),
          "bias_ih_l0": np.zeros(12), "bias_hh_l0": np.zeros(12)}  # an nn.GRU(3, 4)
    sd = {k: v.astype(np.float32) for k, v in sd.items()}
    sd.update(overrides)
    return {k: v for k, v in sd.items() if v is not None}


@pytest.mark.parametrize("tensors, match", [
    ({"fc.weight": np.ones((2, 3), np.float32)}, "no nn.RNN, nn.LSTM or nn.GRU parameters"),
    (_sd(weight_hh_l0=np.ones((10, 4), np.float32), weight_ih_l0=np.ones((10, 3), np.float32),
         bias_ih_l0=None, bias_hh_l0=None), "expected (H, H) for nn.RNN"),
    (_sd(bias_hh_l0=None), "expected bias_hh, bias_ih, weight_hh, weight_ih"),
    (_sd(weight_ih_l1=np.ones((12, 2), np.float32), weight_hh_l1=np.ones((12, 4), np.float32),
         bias_ih_l1=np.ones(12, np.float32), bias_hh_l1=np.ones(12, np.float32)),
     "weight_ih_l1 is float32 (12, 2); expected float (12, 4)"),
    (_sd(weight_ih_l0=np.ones((12, 3), np.int32)), "expected float (12, 3)"),
    ({**_sd(), **{f"b.{k}": v for k, v in _sd().items()}}, "sizes don't chain"),
    ({"weight_ih_l0_reverse": np.ones((2, 3), np.float32)}, "has no weight_hh_l0"),
])
def test_bad_state_dicts_are_one_line_errors(tmp_path, tensors, match):
    path = str(tmp_path / "bad.safetensors")
    write_safetensors(path, tensors)
    one_line(ModelFileError, rnncli.load_model, path, match=match)


def test_keys_it_does_not_use_are_named(tmp_path):
    path = str(tmp_path / "m.safetensors")
    write_safetensors(path, {**_sd(), "norm.weight": np.ones(4, np.float32),
                             "norm.running_mean": np.zeros(4, np.float32)})
    model = rnncli.load_model(path)
    assert any("ignored norm.running_mean, norm.weight" in n for n in model.notes)


# --- writing state_dicts -------------------------------------------------------------------


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c["name"])
def test_written_state_dicts_are_what_torch_saved(tmp_path, case):
    """The same keys and shapes; the same arrays (RNN/LSTM biases: the same sum)."""
    model = rnncli.load_model(case_file(case), case["settings"])
    out = str(tmp_path / "w.safetensors")
    write(model, out)
    from safetensors.numpy import load_file

    written, original = load_file(out), read_safetensors(case_file(case))
    assert {k: v.shape for k, v in written.items()} == {k: v.shape for k, v in original.items()}
    for k, v in written.items():
        if k.startswith("bias_") and "gru" not in case["name"]:
            other = k.replace("bias_ih", "bias_hh") if "ih" in k else k.replace("bias_hh",
                                                                                 "bias_ih")
            if "ih" in k:
                np.testing.assert_allclose(v + written[other], original[k] + original[other],
                                           rtol=1e-6)
        else:
            np.testing.assert_array_equal(v, original[k])
    again = rnncli.load_model(out)  # the activation travels in the metadata
    np.testing.assert_allclose(again.run(data(case, "input")).output, data(case, "sequence"),
                               **TOL)


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c["name"])
def test_torch_loads_what_is_written_strictly_into_what_describe_prints(tmp_path, case):
    torch = pytest.importorskip("torch")
    model = rnncli.load_model(case_file(case), case["settings"])
    out = str(tmp_path / "w.safetensors")
    write(model, out)
    line = describe(model)
    mod = model.source["torch_modules"][0]
    cls = mod["class"].split(".")[1]
    kw = {"nonlinearity": "relu"} if case["settings"].get("activation") == "relu" else {}
    expected = (f"nn.{cls}(input_size={mod['input_size']}, hidden_size={mod['hidden_size']}, "
                f"num_layers={mod['num_layers']}"
                + (", nonlinearity='relu'" if kw else "") +
                f", batch_first=True, bidirectional={mod['bidirectional']})")
    assert line == expected
    module = getattr(torch.nn, cls)(mod["input_size"], mod["hidden_size"], mod["num_layers"],
                                    batch_first=True, bidirectional=mod["bidirectional"], **kw)
    from safetensors.torch import load_file

    module.load_state_dict(load_file(out), strict=True)
    with torch.no_grad():
        y, _ = module(torch.from_numpy(data(case, "input")))
    np.testing.assert_allclose(y.numpy(), data(case, "sequence"), **TOL)


KERAS_WRITABLE = ["lstm_dense", "gru_reset_after_state", "lstm_initial_state"]


@pytest.mark.parametrize("name", KERAS_WRITABLE)
def test_keras_models_written_as_state_dicts_keep_keras_numbers(tmp_path, name):
    model = rnncli.load_model(os.path.join(KERAS, name, "model.keras"))
    x = np.load(os.path.join(KERAS, name, "input.npy"))
    expected = np.load(os.path.join(KERAS, name, "expected_output.npy"))
    if name == "lstm_initial_state":
        expected = model.run(x).output  # (Keras' expected output used an initial state)
    out = str(tmp_path / "k.safetensors")
    write(model, out)
    again = rnncli.load_model(out)
    np.testing.assert_allclose(again.run(x).output, expected, **TOL)
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    sd = load_file(out)
    rnn_keys = {k.split(".", 1)[-1]: v for k, v in sd.items() if "_l" in k}
    rnn = model.layers[0]
    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[rnn.class_name]
    module = cls(rnn.input_dim, rnn.units, batch_first=True)
    module.load_state_dict(rnn_keys, strict=True)
    with torch.no_grad():
        y = module(torch.from_numpy(x))[0]
        if "head.weight" in sd:
            y = y @ sd["head.weight"].T + sd["head.bias"]
    if name != "lstm_initial_state":
        np.testing.assert_allclose(y.numpy(), expected, **TOL)


def test_describe_prints_a_module_for_a_head_and_a_last_step(tmp_path):
    model = rnncli.load_model(os.path.join(KERAS, "lstm_dense", "model.keras"))
    text = describe(model)
    assert "self.rnn = nn.LSTM(input_size=3, hidden_size=4, num_layers=1, batch_first=True, " \
        "bidirectional=False)" in text and "self.head = nn.Linear(4, 2)" in text
    model.layers[1].configure("activation", "softmax")
    model.layers[0].return_sequences = False
    text = describe(model)
    assert "y = h_n[-1]" in text and "torch.softmax(y, dim=-1)" in text
    tensors, settings = state_dict(model)
    assert settings == {"rnn_l0.return_sequences": "false", "head.activation": "softmax"}
    out = str(tmp_path / "m.safetensors")
    write(model, out)
    meta = read_safetensors_file(out).metadata
    assert json.loads(meta["rnncli.settings"]) == settings and meta["format"] == "pt"
    x = np.load(os.path.join(KERAS, "lstm_dense", "input.npy"))
    again = rnncli.load_model(out)
    assert any("settings stored by rnncli" in n for n in again.notes)
    np.testing.assert_allclose(again.run(x).output, model.run(x).output, **TOL)


@pytest.mark.parametrize("name, match", [
    ("mixed_stack", "differs from the first recurrent layer's kind"),
    ("gru_reset_before_backwards", "go_backwards alone"),
    ("embedding_bilstm_tagger", "mask_zero"),
])
def test_models_a_state_dict_cannot_hold_are_refused(tmp_path, name, match):
    model = rnncli.load_model(os.path.join(KERAS, name, "model.keras"))
    one_line(OutputError, write, model, str(tmp_path / "x.safetensors"), match=match)


def test_reset_before_gru_and_other_activations_are_refused(tmp_path):
    model = rnncli.load_model(os.path.join(KERAS, "gru_reset_before_backwards", "model.keras"))
    model.layers[0].go_backwards = False
    one_line(OutputError, write, model, str(tmp_path / "x.safetensors"), match="reset_after")
    lstm = rnncli.load_model(os.path.join(KERAS, "lstm_dense", "model.keras"))
    lstm.layers[0].cell.set_activation("relu")
    one_line(OutputError, write, lstm, str(tmp_path / "x.safetensors"),
             match="nn.LSTM computes tanh and sigmoid")


def test_bad_metadata_is_a_one_line_error(tmp_path):
    path = str(tmp_path / "m.safetensors")
    write_safetensors(path, _sd(), {"rnncli.settings": "[1, 2]"})
    one_line(ModelFileError, rnncli.load_model, path, match="rnncli.settings")
    write_safetensors(path, _sd(), {"rnncli.settings": '{"nope.activation": "relu"}'})
    one_line(ModelFileError, rnncli.load_model, path, match="doesn't fit the model")


def test_the_registry_writes_safetensors_by_name(tmp_path):
    from rnncli.models import write_weights

    case = TORCH_CASES[0]
    model = rnncli.load_model(case_file(case))
    out = str(tmp_path / "via_registry.safetensors")
    assert write_weights(model, out).name == "safetensors"
    assert set(read_safetensors(out)) == set(read_safetensors(case_file(case)))
    with pytest.raises(RnncliError):
        write_weights(model, out)  # exists


# --- the tutorial ----------------------------------------------------------------------------

NUMBER = r"-?\d+\.\d*(?:e-?\d+)?"


def test_the_pytorch_tutorial_prints_what_it_says(monkeypatch):
    """docs/tutorials/pytorch_lstm_gates.md: each ```python block, run in order from the
    repository's root, prints the ```text block after it (numbers to their printed
    precision)."""
    import contextlib
    import io
    import re

    root = os.path.dirname(HERE)
    text = open(os.path.join(root, "docs", "tutorials", "pytorch_lstm_gates.md")).read()
    blocks = re.findall(r"```(python|text)\n(.*?)```", text, re.S)
    pairs = [(code, out) for (kind, code), (nxt, out) in zip(blocks, blocks[1:])
             if kind == "python" and nxt == "text"]
    assert len(pairs) == sum(kind == "python" for kind, _ in blocks) == 7
    monkeypatch.chdir(root)
    namespace = {}
    for code, want in pairs:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, "pytorch_lstm_gates.md", "exec"), namespace)
        got = buf.getvalue()
        assert re.sub(NUMBER, "#", got) == re.sub(NUMBER, "#", want), got
        for a, b in zip(re.findall(NUMBER, got), re.findall(NUMBER, want)):
            assert abs(float(a) - float(b)) <= 0.011, (a, b)


def test_a_zip_of_an_unknown_version_is_a_one_line_error(tmp_path):
    data = bytearray(open(case_file(TORCH_CASES[0], "torch_state_dict"), "rb").read())
    at = data.index(b"PK\x01\x02")
    data[at + 6:at + 8] = (95).to_bytes(2, "little")  # "version needed to extract": 9.5
    path = tmp_path / "future.pt"
    path.write_bytes(bytes(data))
    one_line(RnncliError, rnncli.load_model, str(path))


def test_gradients_of_a_state_dict_model_are_torch_s(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch_module("RNN", 2, True, head=2, nonlinearity="relu")
    path = save(module, tmp_path / "relu.safetensors")
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    target = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    ((module(xt) - torch.from_numpy(target)) ** 2).mean().backward()
    g = rnncli.load_model(path, {"activation": "relu"}).gradients(x, target=target)
    np.testing.assert_allclose(g["grad_input"], xt.grad.numpy(), **TOL)
    rnn = module.rnn
    np.testing.assert_allclose(g["grad/rnn_l1/backward/recurrent_kernel"],
                               rnn.weight_hh_l1_reverse.grad.numpy().T, **TOL)
    np.testing.assert_allclose(g["grad/rnn_l0/forward/kernel"], rnn.weight_ih_l0.grad.numpy().T,
                               **TOL)
    np.testing.assert_allclose(g["grad/rnn_l0/forward/bias"], rnn.bias_ih_l0.grad.numpy(), **TOL)
    np.testing.assert_allclose(g["grad/head/kernel"], module.head.weight.grad.numpy().T, **TOL)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gradients_of_gated_state_dict_models_are_torch_s(tmp_path, kind):
    """An independent reference for the gated cells' backward steps (GRU has no
    TensorFlow case): torch autograd through a two-layer bidirectional nn.LSTM / nn.GRU.
    Every weight gradient is compared (GRU's gate blocks reordered from torch's)."""
    torch = pytest.importorskip("torch")
    module = torch_module(kind, 2, True, head=2)
    path = save(module, tmp_path / "m.safetensors")
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    target = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    ((module(xt) - torch.from_numpy(target)) ** 2).mean().backward()
    g = rnncli.load_model(path).gradients(x, target=target)
    np.testing.assert_allclose(g["grad_input"], xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(g["grad/head/kernel"], module.head.weight.grad.numpy().T, **TOL)
    rnn = module.rnn
    for layer in (0, 1):
        for d, suffix in (("forward", ""), ("backward", "_reverse")):
            ours = f"grad/rnn_l{layer}/{d}/"
            w_ih = getattr(rnn, f"weight_ih_l{layer}{suffix}").grad.numpy().T
            w_hh = getattr(rnn, f"weight_hh_l{layer}{suffix}").grad.numpy().T
            b_ih = getattr(rnn, f"bias_ih_l{layer}{suffix}").grad.numpy()
            b_hh = getattr(rnn, f"bias_hh_l{layer}{suffix}").grad.numpy()
            if kind == "LSTM":
                np.testing.assert_allclose(g[ours + "kernel"], w_ih, **TOL)
                np.testing.assert_allclose(g[ours + "recurrent_kernel"], w_hh, **TOL)
                np.testing.assert_allclose(g[ours + "bias"], b_ih, **TOL)  # = b_hh's
                np.testing.assert_allclose(b_hh, b_ih, **TOL)
            else:  # torch's gates r, z, n are Keras' columns z, r, h
                order = np.concatenate([np.arange(4, 8), np.arange(4), np.arange(8, 12)])
                np.testing.assert_allclose(g[ours + "kernel"], w_ih[:, order], **TOL)
                np.testing.assert_allclose(g[ours + "recurrent_kernel"], w_hh[:, order],
                                           **TOL)
                np.testing.assert_allclose(g[ours + "bias"], np.stack([b_ih, b_hh])[:, order],
                                           **TOL)
