"""Reading inputs: CSV/TSV with or without a header and a sample column, NPY, NPZ, stdin."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rnncli.errors import InputDataError
from rnncli.io.inputs import parse_table, read_input


def test_plain_csv_is_one_sequence():
    assert parse_table("1,2\n3,4\n5,6\n").shape == (1, 3, 2)


def test_header_and_label_columns():
    x = parse_table("t,a,b\n0,1,2\n1,3,4\n")
    assert x.tolist() == [[[1, 2], [3, 4]]]


def test_sample_column_splits_sequences():
    x = parse_table("sample\tx\n0\t1\n0\t2\n1\t3\n1\t4\n")
    assert x.shape == (2, 2, 1) and x[1, :, 0].tolist() == [3, 4]


@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("a,b\n", "has a header but no data rows"),
    ("1,2\n3\n", "line 2 has 1 columns; expected 2"),
    ("a,b\n1,x\n", "line 2, column b: 'x' is not a number"),
    ("sample,x\n0,1\n0,2\n1,3\n", "samples have different numbers of rows"),
])
def test_bad_tables(tmp_path, text, message):
    p = tmp_path / "in.csv"
    p.write_text(text)
    with pytest.raises(InputDataError, match=message):
        read_input(str(p))


def test_binary_garbage_on_stdin():
    with pytest.raises(InputDataError, match="binary data that is not NPY"):
        read_input("-", stdin=io.BytesIO(b"\x00\x01\x02garbage"))


def test_npz_needs_a_key_when_ambiguous(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.ones((2, 3)), b=np.zeros((2, 3)))
    with pytest.raises(InputDataError, match="choose one with --key"):
        read_input(str(p))
    assert read_input(str(p), key="b").array.sum() == 0


def test_object_npy_refused(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match="never loads"):
        read_input(str(p))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 4)),
              elements=st.floats(-1e6, 1e6, allow_nan=False)))
def test_csv_and_npy_round_trip(a):
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in a)
    np.testing.assert_array_equal(parse_table(text)[0], a)
    buf = io.BytesIO()
    np.save(buf, a)
    np.testing.assert_array_equal(read_input("-", stdin=io.BytesIO(buf.getvalue())).array, a)


MODEL_FILES = {  # a model or weights file given where an input belongs: (path, its kind)
    "keras": ("sample_weights/seed000_two_units.keras", "a Keras model"),
    "h5": ("sample_weights/seed000_two_units_k2.h5", "an HDF5 file"),
    "onnx": ("tests/data/torch_onnx/onnx_lstm_bidirectional/model.onnx", "an ONNX model"),
    "safetensors": ("tests/data/torch_onnx/extra/dtypes.safetensors", "a safetensors file"),
    "legacy pt": ("tests/data/torch_onnx/extra/legacy.pt", "a pickle"),
}


@pytest.mark.parametrize("name", MODEL_FILES)
@pytest.mark.parametrize("via", ["path", "stdin"])
def test_a_model_file_given_as_input_is_named_as_one(name, via):
    import os

    path, kind = MODEL_FILES[name]
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)
    with pytest.raises(InputDataError) as e:
        if via == "path":
            read_input(path)
        else:
            with open(path, "rb") as f:
                read_input("-", stdin=io.BytesIO(f.read()))
    assert f"is {kind}" in str(e.value) and "not input data" in str(e.value)
    assert "-i takes the input sequences; give the model file as the command's first " \
        "argument (MODEL)" in str(e.value) and "forward" not in str(e.value)


@pytest.mark.parametrize("args, option", [
    (["report", "{m}", "-i", "{x}", "--target", "{m}", "-o", "{o}"], "--target takes"),
    (["grad", "{m}", "-i", "{x}", "--target", "{m}"], "--target takes"),
    (["forward", "{m}", "-i", "{x}", "--initial-state", "{m}"], "--initial-state takes"),
    (["forward", "{m}", "-i", "{x}", "--initial-state", "{h5}"], "--initial-state takes"),
])
def test_a_model_given_where_data_belongs_names_the_option(tmp_path, args, option):
    """The message names the option the model file came through, and recognises a .keras
    (a zip) given as an initial state (it said "holds no arrays")."""
    import os

    from click.testing import CliRunner

    from rnncli.cli import cli

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    case = os.path.join(root, "tests", "data", "gradient_gated", "gru_reset_after_mse")
    subs = {"m": os.path.join(case, "model.keras"), "x": os.path.join(case, "input.npy"),
            "o": str(tmp_path / "r.html"),
            "h5": os.path.join(root, "sample_weights", "seed000_two_units_k2.h5")}
    r = CliRunner().invoke(cli, [a.format(**subs) for a in args])
    assert r.exit_code == 1, r.output
    assert option in r.stderr and "not input data" in r.stderr
    assert "holds no arrays" not in r.stderr and "rnncli forward MODEL" not in r.stderr
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("path, looks", [
    ("sample_weights/seed000_input.csv", "it looks like CSV/TSV input data"),
    ("sample_weights/seed001_input.npy", "it is a single .npy array"),
    ("README.md", None),
])
def test_a_file_no_reader_knows_lists_every_format(path, looks):
    import os

    from rnncli.errors import ModelFileError
    from rnncli.models import load_model

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with pytest.raises(ModelFileError) as e:
        load_model(os.path.join(root, path))
    msg = str(e.value)
    for fmt in (".keras", ".h5", ".weights.h5", ".npz", ".pt", ".safetensors", ".onnx"):
        assert fmt in msg
    assert (looks in msg) if looks else "looks like" not in msg and "input data" not in msg


def test_weights_npz_given_as_input_says_they_look_like_weights(tmp_path):
    p = tmp_path / "w.npz"
    np.savez(p, kernel=np.ones((2, 3)), recurrent_kernel=np.ones((3, 3)), bias=np.ones(3))
    with pytest.raises(InputDataError, match="choose one with --key; they look like model "
                                             "weights"):
        read_input(str(p))
    np.savez(p, a=np.ones((2, 3)), b=np.ones((3, 3)))  # two arrays of data: no hint
    with pytest.raises(InputDataError, match=r"choose one with --key$"):
        read_input(str(p))


def test_numbers_named_npy_are_still_read_as_text(tmp_path):
    """Text named .npy is refused only when it holds no numbers: space-separated values
    under a few comment lines (which the text reader takes) still read as they did."""

    text = "# a\n# b\n# c\n0.1 0.2 0.3\n1 2 3\n"
    for name in ("x.npy", "x.csv"):
        (tmp_path / name).write_text(text)
    np.testing.assert_array_equal(read_input(str(tmp_path / "x.npy")).array,
                                  read_input(str(tmp_path / "x.csv")).array)
    (tmp_path / "prose.npy").write_text("hello, this is not data\n")
    with pytest.raises(InputDataError, match="holds text, but a .npy file is numpy's binary"):
        read_input(str(tmp_path / "prose.npy"))
