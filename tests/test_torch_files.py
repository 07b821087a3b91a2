"""PyTorch weight files read without torch: rnncli.torch.safetensors and rnncli.torch.pt.

Golden values come from torch: the reference cases (tests/data/torch_onnx, saved by
PyTorch 2.13 as both .safetensors and .pt, with the module's own outputs) and the extra
files of tests/data/torch_onnx/extra/make_extra.py, each with what torch.load returned.
Damaged and hostile files are built here, byte by byte.
"""

import io
import json
import os
import pickle
import random
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from conftest import one_line

from rnncli.errors import ModelFileError, OutputError
from rnncli.torch.pt import read_pt
from rnncli.torch.safetensors import (
    read_safetensors,
    read_safetensors_file,
    safetensors_bytes,
    write_safetensors,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "torch_onnx")
EXTRA = os.path.join(DATA, "extra")
MANIFEST = json.load(open(os.path.join(DATA, "manifest.json")))
TORCH_CASES = [c for c in MANIFEST["cases"] if c["name"].startswith("torch_")]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def case_path(case, key):
    return os.path.join(DATA, case["files"][key])




# --- the reference cases -------------------------------------------------------------


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c["name"])
def test_pt_and_safetensors_hold_the_same_state_dict(case):
    pt = read_pt(case_path(case, "torch_state_dict"))
    st = read_safetensors(case_path(case, "safetensors"))
    assert sorted(pt) == sorted(st)
    for name in pt:
        assert pt[name].dtype == st[name].dtype == np.float32, name
        assert pt[name].flags.c_contiguous and pt[name].flags.writeable
        np.testing.assert_array_equal(pt[name], st[name], err_msg=name)


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c["name"])
def test_state_dict_shapes_are_those_of_nn_rnn_lstm_gru(case):
    """Keys, order and shapes as nn.RNN/LSTM/GRU name them, sized by torch's own outputs."""
    kind = case["name"].split("_")[1]
    x = np.load(os.path.join(DATA, case["input"]))
    sequence = np.load(os.path.join(DATA, case["expected"]["sequence"]))
    h_n = np.load(os.path.join(DATA, case["expected"]["h_n"]))
    hidden = h_n.shape[-1]
    directions = sequence.shape[-1] // hidden
    layers = h_n.shape[0] // directions
    gh = GATES[kind] * hidden
    expected = {}
    for k in range(layers):
        for suffix in ["", "_reverse"][:directions]:
            width = x.shape[-1] if k == 0 else directions * hidden
            expected[f"weight_ih_l{k}{suffix}"] = (gh, width)
            expected[f"weight_hh_l{k}{suffix}"] = (gh, hidden)
            expected[f"bias_ih_l{k}{suffix}"] = (gh,)
            expected[f"bias_hh_l{k}{suffix}"] = (gh,)
    pt = read_pt(case_path(case, "torch_state_dict"))
    assert list(pt) == list(expected)  # torch's own order: _flat_weights_names
    assert {k: v.shape for k, v in pt.items()} == expected


# --- every dtype, views sharing a storage, parameters ---------------------------------


def expected_npz(name):
    with np.load(os.path.join(EXTRA, name)) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", ["dtypes.pt", "protocol4.pt"])
def test_pt_dtypes_and_views_match_torch_load(name):
    expected = expected_npz("dtypes_expected.npz")
    got = read_pt(os.path.join(EXTRA, name))
    assert list(got) == list(expected)
    for name, want in expected.items():
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)
        assert got[name].flags.c_contiguous
    assert got["bf16"].dtype == np.float32  # bfloat16 widened
    # the views became copies: writing one leaves its storage-mate alone
    got["matrix_t"][0, 0] = 1e9
    assert got["matrix"][0, 0] != 1e9


def test_safetensors_dtypes_match_torch():
    expected = expected_npz("dtypes_expected.npz")
    f = read_safetensors_file(os.path.join(EXTRA, "dtypes.safetensors"))
    assert sorted(f.tensors) == sorted(expected)
    assert f.dtypes["bf16"] == "BF16" and f.dtypes["bool"] == "BOOL"
    for name, want in expected.items():
        assert f.tensors[name].dtype == want.dtype, name
        np.testing.assert_array_equal(f.tensors[name], want, err_msg=name)
    # file order: data offsets increase along the returned dict
    raw = open(os.path.join(EXTRA, "dtypes.safetensors"), "rb").read()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    starts = [header[name]["data_offsets"][0] for name in f.tensors]
    assert starts == sorted(starts)


def test_pt_of_named_parameters():
    expected = expected_npz("params_expected.npz")
    got = read_pt(os.path.join(EXTRA, "params.pt"))
    assert list(got) == list(expected)
    for name, want in expected.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


# --- writing safetensors --------------------------------------------------------------


def sample_tensors():
    rng = np.random.default_rng(14)
    return {
        "weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float32),
        "f64": rng.standard_normal(5),
        "f16": rng.standard_normal((2, 2)).astype(np.float16),
        "i64": np.arange(-4, 2, dtype=np.int64).reshape(3, 2),
        "i32_big_endian": np.array([1, -2, 3], dtype=">i4"),
        "u8": np.array([0, 7, 255], dtype=np.uint8),
        "flags": np.array([True, False]),
        "transposed": np.arange(6, dtype=np.float32).reshape(2, 3).T,
        "empty": np.zeros((0, 4), np.float32),
        "scalar": np.float32(3.5),
    }


def test_write_then_read_round_trip(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "w.safetensors"
    write_safetensors(path, tensors, {"format": "pt", "note": "rnncli"})
    f = read_safetensors_file(path)
    assert f.metadata == {"format": "pt", "note": "rnncli"}
    assert sorted(f.tensors) == sorted(tensors)
    for name, want in tensors.items():
        want = np.asarray(want)
        assert f.tensors[name].dtype == want.dtype.newbyteorder("="), name
        np.testing.assert_array_equal(f.tensors[name], want, err_msg=name)
    buf = io.BytesIO()
    write_safetensors(buf, tensors, {"format": "pt", "note": "rnncli"})
    assert buf.getvalue() == path.read_bytes()
    assert (struct.unpack("<Q", buf.getvalue()[:8])[0] + 8) % 8 == 0  # header padded


def test_written_files_are_read_by_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    tensors = sample_tensors()
    path = tmp_path / "w.safetensors"
    write_safetensors(path, tensors, {"format": "np"})
    back = st.load_file(str(path))
    assert sorted(back) == sorted(tensors)
    for name, want in tensors.items():
        np.testing.assert_array_equal(back[name], np.asarray(want), err_msg=name)
        assert back[name].dtype == np.asarray(want).dtype.newbyteorder("="), name
    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"format": "np"}


def test_files_of_the_safetensors_package_are_read(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    tensors = {k: np.ascontiguousarray(v) for k, v in sample_tensors().items()
               if k != "i32_big_endian"}
    path = tmp_path / "theirs.safetensors"
    st.save_file(tensors, str(path), metadata={"who": "safetensors"})
    f = read_safetensors_file(path)
    assert f.metadata == {"who": "safetensors"}
    for name, want in tensors.items():
        np.testing.assert_array_equal(f.tensors[name], want, err_msg=name)
        assert f.tensors[name].dtype == want.dtype, name


def test_a_written_state_dict_loads_into_torch_and_computes_the_reference(tmp_path):
    torch = pytest.importorskip("torch")
    load_file = pytest.importorskip("safetensors.torch").load_file

    case = next(c for c in TORCH_CASES if c["name"] == "torch_lstm_2layer")
    state = read_pt(case_path(case, "torch_state_dict"))
    path = tmp_path / "lstm.safetensors"
    write_safetensors(path, state)
    x = np.load(os.path.join(DATA, case["input"]))
    module = torch.nn.LSTM(x.shape[-1], state["weight_hh_l0"].shape[1], num_layers=2,
                           batch_first=True)
    module.load_state_dict(load_file(str(path)), strict=True)
    with torch.no_grad():
        y, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(y.numpy(), np.load(os.path.join(DATA, case["expected"]["sequence"])),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tensors, metadata, match", [
    ({"a": np.array(["x"])}, None, "can't hold"),
    ({"a": np.zeros(2, np.complex64)}, None, "can't hold"),
    ({"__metadata__": np.zeros(2)}, None, "__metadata__"),
    ({1: np.zeros(2)}, None, "names must be strings"),
    ({"a": np.zeros(2)}, {"n": 1}, "strings to strings"),
])
def test_write_refuses_what_safetensors_cannot_hold(tensors, metadata, match):
    with pytest.raises(OutputError, match=match):
        safetensors_bytes(tensors, metadata)


# --- damaged and lying safetensors files ----------------------------------------------


def st_file(tmp_path, header, data=b"", size=None, name="bad.safetensors"):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(text) if size is None else size
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return path


def f32(name, shape, begin, end=None, dtype="F32"):
    size = int(np.prod(shape)) * 4
    return {name: {"dtype": dtype, "shape": shape,
                   "data_offsets": [begin, begin + size if end is None else end]}}


REFERENCE_ST = os.path.join(DATA, "torch_rnn_tanh", "model.safetensors")


@pytest.mark.parametrize("cut, match", [
    (5, "too short"),
    (40, "past the end of the file"),
    (-1, "bytes of tensor data"),
])
def test_truncated_safetensors(tmp_path, cut, match):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(open(REFERENCE_ST, "rb").read()[:cut])
    one_line(ModelFileError, read_safetensors, path, match=match)


def test_extra_bytes_after_the_last_tensor(tmp_path):
    path = tmp_path / "long.safetensors"
    path.write_bytes(open(REFERENCE_ST, "rb").read() + b"\0")
    one_line(ModelFileError, read_safetensors, path, match="bytes of tensor data")


def test_header_over_the_limit(tmp_path):
    path = st_file(tmp_path, b"{}", size=200 * 2**20)
    one_line(ModelFileError, read_safetensors, path, match="over the limit")
    one_line(ModelFileError, read_safetensors, REFERENCE_ST, max_header_bytes=16, match="over the limit")


@pytest.mark.parametrize("header, match", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
     b'"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}', "appears twice"),
    ({"__metadata__": {"k": 1}}, "strings to strings"),
    ({"a": [1, 2]}, "expected an object with dtype"),
    ({"a": {"dtype": "F32", "shape": [1]}}, "expected an object with dtype"),
    (f32("a", [1], 0, dtype="Q4"), "dtype 'Q4'"),
    (f32("a", [1], 0, dtype="F8_E4M3"), "dtype 'F8_E4M3'"),
    ({"a": {"dtype": "F32", "shape": [-1, 3], "data_offsets": [0, 0]}}, "non-negative integers"),
    ({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 10]}}, "non-negative integers"),
    ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, "non-negative integers"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, "[begin, end]"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, "[begin, end]"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, "end before they begin"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, "needs 12 bytes"),
])
def test_lying_headers(tmp_path, header, match):
    one_line(ModelFileError, read_safetensors, st_file(tmp_path, header, b"\0" * 16), match=match)


def test_overlapping_tensors(tmp_path):
    header = {**f32("a", [2], 0), **f32("b", [2], 4)}
    one_line(ModelFileError, read_safetensors, st_file(tmp_path, header, b"\0" * 12), match="overlap")


def test_a_hole_between_tensors(tmp_path):
    header = {**f32("a", [2], 0), **f32("b", [2], 12)}
    one_line(ModelFileError, read_safetensors, st_file(tmp_path, header, b"\0" * 20), match="hole")


def test_offsets_in_any_header_order_are_accepted(tmp_path):
    header = {**f32("b", [1], 4), **f32("a", [1], 0)}
    data = np.array([1.5, -2.0], "<f4").tobytes()
    got = read_safetensors(st_file(tmp_path, header, data))
    assert list(got) == ["a", "b"] and got["a"][0] == 1.5 and got["b"][0] == -2.0


def test_a_bool_byte_other_than_0_or_1(tmp_path):
    header = {"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}
    one_line(ModelFileError, read_safetensors, st_file(tmp_path, header, b"\x01\x07"), match="0 or 1")


def test_a_trillion_element_tensor_is_refused_before_allocating(tmp_path):
    header = f32("huge", [10**6, 10**6], 0)
    path = st_file(tmp_path, header, b"\0" * 64)
    tracemalloc.start()
    try:
        one_line(ModelFileError, read_safetensors, path, match="bytes of tensor data")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_missing_safetensors_file(tmp_path):
    one_line(ModelFileError, read_safetensors, tmp_path / "nope.safetensors", match="no such file")


# --- torch.save files built by hand ---------------------------------------------------


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):
    return b"\x8a\x08" + struct.pack("<q", i)  # LONG1, 8 bytes: any int64


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def state_dict_pickle(tensors, extra=b""):
    """The opcodes torch.save writes for an OrderedDict of tensors.

    ``tensors``: (name, storage type, key, numel, offset, size, stride) each.
    ``extra``: opcodes run right after each storage is loaded (it stays on the stack).
    """
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    for name, stype, key, numel, offset, size, stride in tensors:
        persid = _tuple([_str("storage"), _global("torch", stype), _str(key), _str("cpu"),
                         _int(numel)])
        out += _str(name) + _global("torch._utils", "_rebuild_tensor_v2")
        out += b"(" + persid + b"Q" + extra + _int(offset)
        out += _tuple(map(_int, size)) + _tuple(map(_int, stride))
        out += b"\x89" + _global("collections", "OrderedDict") + b")Rt" + b"R"
    return out + b"u."


def pt_file(tmp_path, pkl, storages=None, name="bad.pt", byteorder=b"little",
            compress=zipfile.ZIP_STORED):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl, compress_type=compress)
        z.writestr("archive/byteorder", byteorder)
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data, compress_type=compress)
        z.writestr("archive/version", b"3\n")
    return path


GOOD = [("w", "FloatStorage", "0", 6, 0, (2, 3), (3, 1)),
        ("w_t", "FloatStorage", "0", 6, 0, (3, 2), (1, 3)),
        ("b", "DoubleStorage", "1", 4, 1, (2,), (2,))]
GOOD_BYTES = {"0": np.arange(6, dtype="<f4").tobytes(), "1": np.array([9, 8, 7, 6], "<f8").tobytes()}


def test_hand_built_pt_reads_as_torch_reads_it(tmp_path):
    path = pt_file(tmp_path, state_dict_pickle(GOOD), GOOD_BYTES, name="good.pt")
    got = read_pt(path)
    np.testing.assert_array_equal(got["w"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(got["w_t"], [[0, 3], [1, 4], [2, 5]])
    np.testing.assert_array_equal(got["b"], [8, 6])
    assert got["b"].dtype == np.float64
    torch = pytest.importorskip("torch")
    theirs = torch.load(path, weights_only=True)
    assert list(theirs) == list(got)
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(tensor.numpy(), got[name], err_msg=name)


def test_big_endian_pt(tmp_path):
    """A reference file rewritten as a big-endian machine would save it."""
    src = os.path.join(DATA, "torch_rnn_tanh", "model.pt")
    path = tmp_path / "big.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            zout.writestr(info.filename, data)
    got, want = read_pt(path), read_pt(src)
    for name in want:
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], want[name])


def os_system_pickle(command):
    return b"\x80\x02" + _global("os", "system") + _str(command) + b"\x85R."


def test_a_pickle_calling_os_system_does_not_run(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    pkl = os_system_pickle(f"touch {marker}")
    # the payload is live: plain pickle would call os.system with it
    calls = []
    monkeypatch.setattr(os, "system", calls.append)
    pickle.loads(pkl)
    assert calls == [f"touch {marker}"]
    monkeypatch.undo()
    path = pt_file(tmp_path, pkl, name="model.pt")
    message = one_line(ModelFileError, read_pt, path, match="asks for os.system")
    assert message == f"{path}: data.pkl asks for os.system, which a state_dict never needs; refused"
    assert not marker.exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_reduce_payload_does_not_run(tmp_path, protocol):
    marker = tmp_path / "marker"
    pkl = pickle.dumps({"w": _Payload(marker)}, protocol=protocol)
    one_line(ModelFileError, read_pt, pt_file(tmp_path, pkl), match=f"asks for {os.system.__module__}.system")
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"),
    ("torch.nn.modules.rnn", "LSTM"),          # torch.save(model), not its state_dict
    ("torch._utils", "_rebuild_tensor_v3"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("torch", "Tensor"),
])
def test_a_global_outside_the_allow_list_is_refused_by_name(tmp_path, module, name):
    pkl = b"\x80\x02" + _global(module, name) + b")R."
    one_line(ModelFileError, read_pt, pt_file(tmp_path, pkl), match=f"asks for {module}.{name}, which")
    inst = f"(i{module}\n{name}\n.".encode()  # protocol 0's INST: find_class too
    one_line(ModelFileError, read_pt, pt_file(tmp_path, inst), match=f"asks for {module}.{name}, which")


@pytest.mark.parametrize("tensors, storages, match", [
    ([("w", "FloatStorage", "0", 100, 0, (2, 3), (3, 1))], GOOD_BYTES, "expected 400"),
    ([("w", "FloatStorage", "0", 6, 0, (4, 4), (4, 1))], GOOD_BYTES, "reaches element 15"),
    ([("w", "FloatStorage", "0", 6, 2, (2, 3), (3, 1))], GOOD_BYTES, "reaches element 7"),
    ([("w", "FloatStorage", "0", 6, 0, (10**6, 10**6), (0, 0))], GOOD_BYTES, "expected no more"),
    ([("w", "FloatStorage", "0", 6, 0, (10**6, 10**6), (10**6, 1))], GOOD_BYTES, "reaches"),
    ([("w", "FloatStorage", "7", 6, 0, (2, 3), (3, 1))], GOOD_BYTES, "no archive/data/7"),
    ([("w", "FloatStorage", "0", 6, 0, (2, 3), (3,))], GOOD_BYTES, "tensor stride"),
    ([("w", "FloatStorage", "0", 6, -1, (2, 3), (3, 1))], GOOD_BYTES, "tensor offset"),
    ([("w", "ComplexFloatStorage", "0", 6, 0, (2,), (1,))], GOOD_BYTES,
     "asks for torch.ComplexFloatStorage"),
])
def test_tensors_that_do_not_fit_their_storage(tmp_path, tensors, storages, match):
    path = pt_file(tmp_path, state_dict_pickle(tensors), storages)
    tracemalloc.start()
    try:
        one_line(ModelFileError, read_pt, path, match=match)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_pickled_state_cannot_rewrite_a_checked_storage(tmp_path):
    build = b"N}" + _str("numel") + _int(10**12) + b"s\x86b"  # BUILD (None, {numel: 1e12})
    path = pt_file(tmp_path, state_dict_pickle(GOOD[:1], extra=build), GOOD_BYTES)
    one_line(ModelFileError, read_pt, path, match="storage was given pickled state")


@pytest.mark.parametrize("pkl, match", [
    (b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"abc.", "data.pkl is damaged"),  # BYTEARRAY8
    (b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc.", "data.pkl is damaged"),  # BINBYTES8
    (b"\x80\x02B" + struct.pack("<I", 2**31) + b"abc.", "data.pkl is damaged"),     # BINBYTES
    (b"\x80\x02]q\x00.", "holds a list"),
    (b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u.", "maps 'a' to int; expected"),
    (b"\x80\x02(X\x01\x00\x00\x00a", "data.pkl is damaged (pickle exhausted before seeing STOP)"),
    (b"\x80\x02X\x07\x00\x00\x00storageQ.", "unknown persistent id"),
])
def test_pickles_that_are_not_state_dicts(tmp_path, pkl, match):
    path = pt_file(tmp_path, pkl)
    tracemalloc.start()
    try:
        one_line(ModelFileError, read_pt, path, match=match)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # a lying length is not allocated


def test_legacy_and_foreign_files(tmp_path):
    one_line(ModelFileError, read_pt, os.path.join(EXTRA, "legacy.pt"), match="legacy (non-zip)")
    text = tmp_path / "text.pt"
    text.write_text("hello")
    one_line(ModelFileError, read_pt, text, match="not a zip file")
    one_line(ModelFileError, read_pt, tmp_path / "missing.pt", match="no such file")
    script = tmp_path / "script.pt"
    with zipfile.ZipFile(script, "w") as z:
        z.writestr("model/constants.pkl", b"\x80\x02).")
        z.writestr("model/code/__torch__.py", b"")
    one_line(ModelFileError, read_pt, script, match="TorchScript")
    empty = tmp_path / "empty.pt"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("x/y", b"")
    one_line(ModelFileError, read_pt, empty, match="expected exactly one")


def test_truncated_pt(tmp_path):
    raw = open(os.path.join(DATA, "torch_lstm_2layer", "model.pt"), "rb").read()
    path = tmp_path / "cut.pt"
    path.write_bytes(raw[: len(raw) // 2])
    one_line(ModelFileError, read_pt, path, match="damaged zip file")


def test_compressed_entries_and_bad_byteorder(tmp_path):
    path = pt_file(tmp_path, state_dict_pickle(GOOD), GOOD_BYTES, compress=zipfile.ZIP_DEFLATED)
    one_line(ModelFileError, read_pt, path, match="is compressed")
    path = pt_file(tmp_path, state_dict_pickle(GOOD), GOOD_BYTES, byteorder=b"middle")
    one_line(ModelFileError, read_pt, path, match="byteorder is 'middle'")


def test_tied_weights_come_back_as_separate_arrays(tmp_path):
    tied = [GOOD[0], ("w2", *GOOD[0][1:])]
    got = read_pt(pt_file(tmp_path, state_dict_pickle(tied), GOOD_BYTES))
    np.testing.assert_array_equal(got["w"], got["w2"])
    assert not np.shares_memory(got["w"], got["w2"])


def test_random_damage_is_a_model_file_error_or_a_state_dict(tmp_path):
    """Flipped bytes in data.pkl or a safetensors header never fail any other way."""
    rng = random.Random(14)
    src = os.path.join(DATA, "torch_lstm_2layer", "model.pt")
    with zipfile.ZipFile(src) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    path = tmp_path / "d.pt"
    refused = 0
    for _ in range(300):
        with zipfile.ZipFile(path, "w") as out:
            for name, data in entries:
                if name.endswith("data.pkl"):
                    data = bytearray(data)
                    for _ in range(rng.randint(1, 3)):
                        data[rng.randrange(len(data))] = rng.randrange(256)
                out.writestr(name, bytes(data))
        try:
            state = read_pt(path)
            assert all(isinstance(v, np.ndarray) for v in state.values())
        except ModelFileError as e:
            assert "\n" not in str(e)
            refused += 1
    assert refused > 200
    raw = open(os.path.join(DATA, "torch_gru_bidi", "model.safetensors"), "rb").read()
    path = tmp_path / "d.safetensors"
    refused = 0
    for _ in range(300):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(400)] = rng.randrange(256)  # mostly the header
        path.write_bytes(bytes(data))
        try:
            read_safetensors(path)
        except ModelFileError as e:
            assert "\n" not in str(e)
            refused += 1
    assert refused > 200
