"""ONNX models read and written without the onnx package: rnncli.onnx.

Golden values come from the frameworks: the reference models (written by onnx 1.23, with
what ONNX Runtime computed), onnx's own parser and numpy_helper, ONNX Runtime running what
we write, and PyTorch's outputs for the torch reference case. Damaged files are built here.
"""

import json
import os
import random
import struct
import tracemalloc

import numpy as np
import pytest
from conftest import one_line, ort_run

from rnncli.errors import ModelFileError, OutputError
from rnncli.onnx import proto
from rnncli.onnx.graph import (
    OnnxNode,
    OnnxValue,
    onnx_bytes,
    parse_onnx,
    read_onnx,
    write_onnx,
)
from rnncli.onnx.tensor import from_array, to_array
from rnncli.torch.pt import read_pt

DATA = os.path.join(os.path.dirname(__file__), "data", "torch_onnx")
MANIFEST = json.load(open(os.path.join(DATA, "manifest.json")))
ONNX_CASES = [c for c in MANIFEST["cases"] if c["name"].startswith("onnx_")]
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
TOL = MANIFEST["tolerance"]


def model_path(case):
    return os.path.join(DATA, case["files"]["onnx"])


def load(case, key):
    return np.load(os.path.join(DATA, case[key] if key == "input" else case["expected"][key]))






# --- the reference models --------------------------------------------------------------


@pytest.mark.parametrize("case", ONNX_CASES, ids=lambda c: c["name"])
def test_reference_models_nodes_shapes_and_attributes(case):
    m = read_onnx(model_path(case))
    x = load(case, "input")                       # (B, T, D)
    y, y_h = load(case, "Y"), load(case, "Y_h")   # [T, dirs, B, H], [dirs, B, H]
    dirs, hidden = y_h.shape[0], y_h.shape[-1]
    assert (m.opset, m.opsets, m.ir_version) == (14, {"": 14}, 9)
    assert m.other_op_types == []
    [node] = m.recurrent_nodes
    op = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[case["name"].split("_")[1]]
    assert node.op_type == op
    assert node.input_names() == {"X": "X", "W": "W", "R": "R", "B": "B"}
    assert list(node.output_names()) == ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]
    gh = GATES[op] * hidden
    arrays = m.node_arrays(node)
    assert {k: v.shape for k, v in arrays.items()} == {
        "W": (dirs, gh, x.shape[-1]), "R": (dirs, gh, hidden), "B": (dirs, 2 * gh)}
    assert all(v.dtype == np.float32 for v in arrays.values())
    s = node.settings()
    assert s["hidden_size"] == hidden
    assert s["direction"] == ("bidirectional" if dirs == 2 else "forward")
    assert s["layout"] == 0
    assert len(s["activations"]) == dirs * {"RNN": 1, "GRU": 2, "LSTM": 3}[op]
    if op == "GRU":
        assert s["linear_before_reset"] == 1
    [x_info] = m.inputs
    assert x_info == OnnxValue("X", [x.shape[1], x.shape[0], x.shape[2]], 1)
    assert [o.name for o in m.outputs] == list(node.output_names().values())
    assert y.shape[:3] == (x.shape[1], dirs, x.shape[0])


@pytest.mark.parametrize("case", ONNX_CASES, ids=lambda c: c["name"])
def test_reference_initializers_equal_what_onnx_reads(case):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    theirs = onnx.load(model_path(case))
    ours = read_onnx(model_path(case))
    assert list(ours.initializers) == [t.name for t in theirs.graph.initializer]
    for t in theirs.graph.initializer:
        np.testing.assert_array_equal(ours.initializers[t.name], numpy_helper.to_array(t))
    node = theirs.graph.node[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    assert ours.recurrent_nodes[0].attributes == attrs


@pytest.mark.parametrize("case", ONNX_CASES, ids=lambda c: c["name"])
def test_decode_then_encode_gives_back_the_file(case):
    raw = open(model_path(case), "rb").read()
    assert proto.encode("ModelProto", proto.decode("ModelProto", raw, "m")) == raw


# --- the wire format against onnx's own parser ----------------------------------------


def test_packed_and_unpacked_repeated_fields_decode_alike():
    def key(number, wire):
        return bytes([number << 3 | wire])

    floats = np.array([1.5, -2.25, 3.0], "<f4")
    unpacked = b"".join(key(1, 0) + bytes([d]) for d in (1, 3)) + key(2, 0) + b"\x01"
    unpacked += b"".join(key(4, 5) + f.tobytes() for f in floats)
    packed = key(1, 2) + b"\x02\x01\x03" + key(2, 0) + b"\x01"
    packed += key(4, 2) + bytes([12]) + floats.tobytes()
    mixed = key(1, 0) + b"\x01" + key(1, 2) + b"\x01\x03" + key(2, 0) + b"\x01"
    mixed += key(4, 5) + floats[:1].tobytes() + key(4, 2) + bytes([8]) + floats[1:].tobytes()
    for raw in (unpacked, packed, mixed):
        t = proto.decode("TensorProto", raw, "t")
        np.testing.assert_array_equal(t["dims"], [1, 3])
        np.testing.assert_array_equal(t["float_data"], floats)
        np.testing.assert_array_equal(to_array(t, "t"), floats.reshape(1, 3))
    onnx = pytest.importorskip("onnx")
    for raw in (unpacked, packed, mixed):
        theirs = onnx.TensorProto.FromString(raw)
        assert list(theirs.dims) == [1, 3] and list(theirs.float_data) == floats.tolist()


def test_varints_and_negative_numbers_agree_with_onnx():
    onnx = pytest.importorskip("onnx")
    ints = [-1, 0, 1, 127, 128, 2**31 - 1, -(2**31), 2**40, -(2**63), 2**63 - 1]
    a = onnx.AttributeProto(name="n", type=onnx.AttributeProto.INTS, ints=ints, i=-5, f=0.1)
    ours = proto.decode("AttributeProto", a.SerializeToString(), "a")
    assert ours["ints"].tolist() == ints and ours["i"] == -5
    assert ours["f"] == np.float32(0.1)
    mine = proto.encode("AttributeProto", {"name": "n", "type": 7, "ints": ints, "i": -5,
                                           "f": 0.1})
    back = onnx.AttributeProto.FromString(mine)
    assert list(back.ints) == ints and back.i == -5 and back.name == "n"
    extremes = [-(2**63), 2**63 - 1, -1, 0, 1, 2**62, -(2**31) - 1]
    t = onnx.TensorProto(name="t", data_type=7, dims=[7], int64_data=extremes)  # packed
    np.testing.assert_array_equal(
        to_array(proto.decode("TensorProto", t.SerializeToString(), "t"), "t"), extremes)
    t = onnx.TensorProto(name="t", data_type=13, dims=[2], uint64_data=[2**64 - 1, 2**63])
    np.testing.assert_array_equal(
        to_array(proto.decode("TensorProto", t.SerializeToString(), "t"), "t"),
        np.array([2**64 - 1, 2**63], np.uint64))
    t = onnx.TensorProto(name="t", data_type=6, dims=[3], int32_data=[-1, 2**31 - 1, -(2**31)])
    np.testing.assert_array_equal(to_array(proto.decode("TensorProto", t.SerializeToString(),
                                                        "t"), "t"), [-1, 2**31 - 1, -(2**31)])


DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int16", "uint16", "int32",
          "int64", "uint32", "uint64", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed_field"])
def test_tensor_dtypes_agree_with_onnx(dtype, raw):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(7)
    values = (rng.standard_normal((2, 3)) * 100).astype(dtype)
    data_type = helper.np_dtype_to_tensor_dtype(values.dtype)
    t = helper.make_tensor("t", data_type, values.shape, values.ravel() if raw is False
                           else values.tobytes(), raw=raw)
    got = to_array(proto.decode("TensorProto", t.SerializeToString(), "t"), "t")
    want = numpy_helper.to_array(t)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # and what we write onnx reads the same
    mine = onnx.TensorProto.FromString(proto.encode("TensorProto", from_array("t", values)))
    np.testing.assert_array_equal(numpy_helper.to_array(mine), values)
    assert numpy_helper.to_array(mine).dtype == values.dtype


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed_field"])
def test_bfloat16_becomes_float32_as_onnx_reads_it(raw):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    values = np.array([1.0, -2.5, 3.140625, 1e-3, 65504.0], np.float32)
    t = helper.make_tensor("t", onnx.TensorProto.BFLOAT16, [5], values)
    if raw:
        bits = numpy_helper.to_array(t).view(np.uint16)
        t = helper.make_tensor("t", onnx.TensorProto.BFLOAT16, [5], bits.tobytes(), raw=True)
    got = to_array(proto.decode("TensorProto", t.SerializeToString(), "t"), "t")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, numpy_helper.to_array(t).astype(np.float32))


def test_external_data_written_by_onnx_is_read(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    src = onnx.load(model_path(ONNX_CASES[1]))
    for t in src.graph.initializer:  # onnx moves only raw_data out; these use float_data
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
    onnx.save_model(src, tmp_path / "ext.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    ours = read_onnx(tmp_path / "ext.onnx")
    original = read_onnx(model_path(ONNX_CASES[1]))
    for name, arr in original.initializers.items():
        np.testing.assert_array_equal(ours.initializers[name], arr)


# --- writing models ONNX Runtime runs --------------------------------------------------


@pytest.mark.parametrize("case", ONNX_CASES, ids=lambda c: c["name"])
@pytest.mark.parametrize("opset", [7, 14, 22])
def test_written_models_run_in_onnxruntime_as_the_reference(tmp_path, case, opset):
    m = read_onnx(model_path(case))
    [node] = m.recurrent_nodes
    attributes = dict(node.attributes)
    if opset < 14:
        attributes.pop("layout")
    x = load(case, "input").transpose(1, 0, 2).copy()   # layout 0: [T, B, D]
    path = tmp_path / "m.onnx"
    write_onnx(path, [OnnxNode(node.op_type, node.inputs, node.outputs, attributes, "rnn")],
               {k: m.initializers[k] for k in ("W", "R", "B")},
               [("X", [None, "batch", x.shape[-1]])], [(n, None) for n in node.outputs],
               opset=opset)
    onnx = pytest.importorskip("onnx")
    checked = onnx.load(path)
    onnx.checker.check_model(checked, full_check=True)
    assert checked.opset_import[0].version == opset
    got = ort_run(path, {"X": x})
    for name in node.outputs:
        np.testing.assert_allclose(got[name], load(case, name), **TOL)
    again = read_onnx(path)
    assert again.recurrent_nodes[0].attributes == attributes
    assert again.opset == opset


def torch_lstm_to_onnx(state, layer):
    """ONNX W, R, B of layer ``layer`` of an nn.LSTM state_dict (gates i,f,g,o -> i,o,f,c)."""
    def blocks(a):
        return np.concatenate([np.split(a, 4)[i] for i in (0, 3, 1, 2)])

    w, r = state[f"weight_ih_l{layer}"], state[f"weight_hh_l{layer}"]
    b = np.concatenate([blocks(state[f"bias_ih_l{layer}"]), blocks(state[f"bias_hh_l{layer}"])])
    return blocks(w)[None], blocks(r)[None], b[None]


def test_two_stacked_lstm_nodes_compute_what_torch_computed(tmp_path):
    case = next(c for c in MANIFEST["cases"] if c["name"] == "torch_lstm_2layer")
    state = read_pt(os.path.join(DATA, case["files"]["torch_state_dict"]))
    x = load(case, "input")
    hidden = state["weight_hh_l0"].shape[1]
    init, nodes = {"axes": np.array([1], np.int64)}, []
    source = "X"
    for k in range(2):
        init[f"W{k}"], init[f"R{k}"], init[f"B{k}"] = torch_lstm_to_onnx(state, k)
        nodes.append(OnnxNode("LSTM", [source, f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}"],
                              {"hidden_size": hidden, "direction": "forward"}, f"lstm{k}"))
        source = f"H{k}"
        nodes.append(OnnxNode("Squeeze", [f"Y{k}", "axes"], [source], name=f"squeeze{k}"))
    path = tmp_path / "stack.onnx"
    write_onnx(path, nodes, init, [("X", ["T", "B", x.shape[-1]])], [("H1", ["T", "B", hidden])])
    got = ort_run(path, {"X": x.transpose(1, 0, 2).copy()})["H1"]
    np.testing.assert_allclose(got.transpose(1, 0, 2), load(case, "sequence"), **TOL)
    m = read_onnx(path)
    assert [n.name for n in m.recurrent_nodes] == ["lstm0", "lstm1"]
    assert m.other_op_types == ["Squeeze"]
    assert m.node_arrays(m.recurrent_nodes[1])["W"].shape == (1, 4 * hidden, hidden)


def test_onnx_checker_accepts_what_we_write():
    onnx = pytest.importorskip("onnx")
    nodes = [OnnxNode("GRU", ["X", "W", "R", "", "", "h0"], ["Y", "Y_h"],
                      {"hidden_size": 2, "direction": "reverse", "clip": 5,
                       "activations": ["Sigmoid", "Tanh"], "linear_before_reset": 0,
                       "activation_alpha": None}),
             {"op_type": "Transpose", "inputs": ["Y_h"], "outputs": ["T"],
              "attributes": {"perm": [1, 0, 2]}}]
    init = {"W": np.ones((1, 6, 3), np.float32), "R": np.ones((1, 6, 2), np.float32),
            "h0": np.zeros((1, 4, 2), np.float32)}
    model = onnx.ModelProto.FromString(onnx_bytes(nodes, init, [("X", [5, 4, 3])],
                                                  [("T", [4, 1, 2])], opset=13))
    onnx.checker.check_model(model, full_check=True)
    [a_clip] = [a for a in model.graph.node[0].attribute if a.name == "clip"]
    assert a_clip.type == onnx.AttributeProto.FLOAT and a_clip.f == 5.0
    assert "activation_alpha" not in [a.name for a in model.graph.node[0].attribute]


@pytest.mark.parametrize("kwargs, match", [
    ({"opset": 6}, "opset 6"),
    ({"opset": 23}, "opset 23"),
    ({"initializers": {"s": np.array(["a"])}}, "can't write"),
    ({"nodes": [OnnxNode("RNN", ["X"], ["Y"], {"activations": []})]}, "non-empty list"),
    ({"nodes": [OnnxNode("RNN", ["X"], ["Y"], {"activations": ["Tanh", 1]})]}, "mixing"),
])
def test_write_refuses(kwargs, match):
    args = {"nodes": [], "initializers": {}, "inputs": [], "outputs": [], **kwargs}
    with pytest.raises(OutputError, match=match):
        onnx_bytes(**args)


# --- damaged and hostile files ---------------------------------------------------------


def write(tmp_path, data, name="bad.onnx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def model_with(initializers=(), nodes=(), opset=14):
    return proto.encode("ModelProto", {
        "ir_version": 7, "opset_import": [{"domain": "", "version": opset}],
        "graph": {"name": "g", "initializer": list(initializers), "node": list(nodes)}})


def test_truncated_model(tmp_path):
    raw = open(model_path(ONNX_CASES[1]), "rb").read()
    one_line(ModelFileError, read_onnx, write(tmp_path, raw[:1000]), match="past the end")


@pytest.mark.parametrize("data, match", [
    (b"\x3a\xe8\x07" + b"\0" * 10, "declares 1000 bytes, past the end of its 10 bytes"),
    (b"\x08\xff", "runs past its end"),
    (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
    (b"\x0b", "wire type 3"),
    (b"\x00\x01", "numbered 0"),
    (b"\x38\x01", "field 7 (graph) of ModelProto has wire type 0; expected 2"),
    (b"\x08\x07", "no graph"),
    (b"", "empty file"),
    (b"hello, world", "ModelProto"),
])
def test_broken_protobuf(tmp_path, data, match):
    one_line(ModelFileError, read_onnx, write(tmp_path, data), match=match)


def test_packed_varints_that_run_past_their_field(tmp_path):
    t = {"name": "W", "dims": [2], "data_type": 7}
    raw = proto.encode("TensorProto", t) + b"\x3a\x02\x01\x80"  # int64_data: 1, then a cut
    message = one_line(ModelFileError, proto.decode, "TensorProto", raw, "w.onnx",
                             match="a varint in TensorProto.int64_data runs past its end")
    assert message.startswith("w.onnx: ")
    raw = proto.encode("TensorProto", t) + b"\x3a\x0b" + b"\xff" * 10 + b"\x01"
    one_line(ModelFileError, proto.decode, "TensorProto", raw, "w.onnx", match="longer than 10 bytes")


def test_message_count_is_limited(tmp_path, monkeypatch):
    monkeypatch.setattr(proto, "MAX_MESSAGES", 100)
    data = proto.encode("ModelProto", {"graph": {"node": [{}] * 200}})
    one_line(ModelFileError, read_onnx, write(tmp_path, data), match="more than 100 protobuf messages")


def test_nesting_is_limited(tmp_path):
    graph = {"name": "leaf"}
    for _ in range(proto.MAX_DEPTH):
        graph = {"node": [{"op_type": "If", "attribute": [{"name": "then_branch", "type": 5,
                                                           "g": graph}]}]}
    data = proto.encode("ModelProto", {"ir_version": 7, "graph": graph})
    one_line(ModelFileError, read_onnx, write(tmp_path, data), match="nest deeper than")


@pytest.mark.parametrize("tensor, match", [
    ({"name": "W", "dims": [10**6, 10**6], "data_type": 1, "raw_data": b"\0" * 16},
     "declares 1000000000000 elements"),
    ({"name": "W", "dims": [10**6, 10**6], "data_type": 1, "float_data": np.zeros(4)},
     "declares 1000000000000 elements; its float_data holds 4"),
    ({"name": "W", "dims": [10**6, 10**6], "data_type": 7, "int64_data": [1, 2]},
     "its int64_data holds 2"),
    ({"name": "W", "dims": [2, 3], "data_type": 1}, "its float_data holds 0"),
    ({"name": "W", "dims": [-2, 3], "data_type": 1}, "non-negative sizes"),
    ({"name": "W", "dims": [1], "data_type": 8, "string_data": [b"a"]}, "data_type STRING"),
    ({"name": "W", "dims": [1], "data_type": 17, "raw_data": b"\0"}, "FLOAT8E4M3FN"),
    ({"name": "W", "dims": [1], "data_type": 1, "float_data": [1.0],
      "segment": {"begin": 0, "end": 1}}, "segment"),
])
def test_tensors_that_lie_about_their_size(tmp_path, tensor, match):
    path = write(tmp_path, model_with([tensor]))
    tracemalloc.start()
    try:
        one_line(ModelFileError, read_onnx, path, match=match)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_duplicate_initializers(tmp_path):
    t = from_array("W", np.zeros(2, np.float32))
    one_line(ModelFileError, read_onnx, write(tmp_path, model_with([t, t])), match="two initializers")


def external(location, offset=None, length=None, dims=(2, 2)):
    entries = [{"key": "location", "value": location}]
    if offset is not None:
        entries.append({"key": "offset", "value": str(offset)})
    if length is not None:
        entries.append({"key": "length", "value": str(length)})
    return {"name": "W", "dims": list(dims), "data_type": 1, "data_location": 1,
            "external_data": entries}


def test_external_data_inside_the_folder(tmp_path):
    values = np.arange(6, dtype="<f4")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(b"\0" * 8 + values.tobytes())
    path = write(tmp_path, model_with([external("sub/w.bin", 8, 16)]))
    np.testing.assert_array_equal(read_onnx(path).initializers["W"], values[:4].reshape(2, 2))


@pytest.mark.parametrize("tensor, match", [
    (external("../secret.bin"), "resolves outside the model's folder"),
    (external("sub/../../secret.bin"), "resolves outside the model's folder"),
    (external("/etc/passwd"), "expected a path relative"),
    (external(""), "expected a path relative"),
    (external("."), "not a regular file"),
    (external("sub"), "not a regular file"),
    (external("link.bin"), "resolves outside the model's folder"),
    (external("w.bin", 0, 12), "needs 16 bytes, its external data declares 12"),
    (external("w.bin", 4), "which holds 16"),
    (external("w.bin", "x"), "expected integers"),
    (external("w.bin", -4), "offset -4; expected a non-negative"),
    (external("w.bin", 0, dims=(10**6, 10**6)), "which holds 16"),
    (external("missing.bin"), "no such file"),
])
def test_external_data_that_is_refused(tmp_path, tensor, match):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    (folder / "w.bin").write_bytes(b"\0" * 16)
    os.symlink(tmp_path / "secret.bin", folder / "link.bin")
    path = write(folder, model_with([tensor]))
    tracemalloc.start()
    try:
        one_line(ModelFileError, read_onnx, path, match=match)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_opsets(tmp_path):
    rnn = {"op_type": "RNN", "input": ["X", "W", "R"], "output": ["Y"]}
    one_line(ModelFileError, read_onnx, write(tmp_path, model_with(nodes=[rnn], opset=6)),
                   match="opset 6; expected 7 to 28")
    assert read_onnx(write(tmp_path, model_with(nodes=[rnn], opset=23))).opset == 23
    relu = {"op_type": "Relu", "input": ["X"], "output": ["Y"]}
    assert read_onnx(write(tmp_path, model_with(nodes=[relu], opset=1))).other_op_types == ["Relu"]


def test_other_op_types_and_foreign_domains(tmp_path):
    nodes = [{"op_type": "Transpose", "input": ["X"], "output": ["a"]},
             {"op_type": "LSTM", "input": ["a", "W", "R"], "output": ["b"]},
             {"op_type": "LSTM", "domain": "com.example", "input": ["b"], "output": ["c"]},
             {"op_type": "Transpose", "input": ["c"], "output": ["d"]},
             {"op_type": "Constant", "output": ["k"], "attribute": [
                 {"name": "value", "type": 4, "t": from_array("", np.ones(2, np.float32))}]}]
    m = read_onnx(write(tmp_path, model_with(nodes=nodes)))
    assert [n.op_type for n in m.recurrent_nodes] == ["LSTM"]
    assert m.other_op_types == ["Transpose", "com.example.LSTM", "Constant"]
    np.testing.assert_array_equal(m.constants()["k"], [1, 1])


@pytest.mark.parametrize("case", ONNX_CASES, ids=lambda c: c["name"])
def test_every_truncation_and_random_damage_is_a_model_file_error(tmp_path, case):
    """No cut or flipped byte makes the reader fail any other way than ModelFileError."""
    raw = open(model_path(case), "rb").read()
    rng = random.Random(14)
    damaged = [raw[:n] for n in range(1, len(raw))]
    for _ in range(300):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        damaged.append(bytes(b))
    path = tmp_path / "d.onnx"
    refused = 0
    for data in damaged:
        path.write_bytes(data)
        try:
            read_onnx(path)
        except ModelFileError as e:
            assert "\n" not in str(e)
            refused += 1
    assert refused > len(raw) // 2  # most cuts land inside a field


def test_missing_file(tmp_path):
    one_line(ModelFileError, read_onnx, tmp_path / "none.onnx", match="no such file")


def test_bytes_without_a_folder_refuse_external_data():
    raw = open(model_path(ONNX_CASES[0]), "rb").read()
    assert parse_onnx(raw).recurrent_nodes[0].op_type == "RNN"
    one_line(ModelFileError, parse_onnx, model_with([external("w.bin")]), "mem.onnx",
                   match="mem.onnx: tensor 'W' keeps its data in an external file, but the "
                         "model was not read from a folder")


def test_struct_sanity():
    # the fixed-width fields are little-endian whatever the machine
    t = proto.decode("AttributeProto", b"\x15" + struct.pack("<f", 0.5), "a")
    assert t["f"] == 0.5
