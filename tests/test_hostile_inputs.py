"""Hostile input files (issue 17): each ends in one InputDataError sentence, and none makes
rnncli allocate what it merely declares. Files are crafted small (headers that lie); the
memory cases run in a child process whose peak RSS is measured."""

import io
import json
import os
import struct
import subprocess
import sys
import threading
import warnings
import zipfile

import numpy as np
import pytest
from conftest import ROOT, sample
from hostile_files import deflate_bomb, deflated, npy, npy_header, npy_of, npz_of, stored, zip_bytes

from rnncli import limits
from rnncli.errors import InputDataError, RnncliError
from rnncli.io.inputs import InputData, is_tty_stdin, parse_table, read_input

S0 = sample("seed000_two_units.keras")
S0_IN = sample("seed000_input.csv")
EMB = sample("masked_classifier.keras")
GIB = 2**30


# ------------------------------------------------------------------ limits


@pytest.mark.parametrize("text,size", [("4G", 4 * GIB), ("512M", 512 * 2**20),
                                       ("1.5g", 3 * GIB // 2), ("65536", 65536),
                                       ("8GiB", 8 * GIB), ("2 KB", 2048), (100, 100)])
def test_parse_size(text, size):
    assert limits.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "-1", "4X", "1e9", "four"])
def test_parse_size_refuses(text):
    with pytest.raises(RnncliError, match="is not a size; expected a number of bytes"):
        limits.parse_size(text)


def test_limit_precedence_override_then_environment_then_default(monkeypatch):
    assert limits.get("max_units") == 65536
    monkeypatch.setenv("RNNCLI_MAX_UNITS", "100")
    assert limits.get("max_units") == 100
    with limits.override(max_units=7, max_memory=None):
        assert limits.get("max_units") == 7
        with limits.override(max_units="9"):
            assert limits.get("max_units") == 9
        assert limits.get("max_units") == 7
    assert limits.get("max_units") == 100
    monkeypatch.setenv("RNNCLI_MAX_DECOMPRESSION_RATIO", "50:1")
    assert limits.get("max_decompression_ratio") == 50


def test_default_memory_limit_is_at_most_2_gib():
    assert 256 * 2**20 <= limits.LIMITS["max_memory"].default <= 2 * GIB


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("RNNCLI_MAX_MEMORY", "lots")
    with pytest.raises(RnncliError, match="RNNCLI_MAX_MEMORY='lots' is not usable"):
        limits.get("max_memory")
    monkeypatch.setenv("RNNCLI_MAX_MEMORY", "0")
    with pytest.raises(RnncliError, match="expected a size above zero"):
        limits.get("max_memory")


def test_bad_override_and_unknown_limit():
    with pytest.raises(RnncliError, match="not a valid max_layers; expected a positive integer"):
        with limits.override(max_layers="many"):
            pass
    with pytest.raises(KeyError, match="no limit named 'max_cats'"):
        limits.get("max_cats")


def test_check_bytes_says_how_to_raise_the_limit():
    with limits.override(max_memory="2G"):
        with pytest.raises(InputDataError) as e:
            limits.check_bytes(3 * 10**9, "x.npy: array takes", error=InputDataError)
    assert str(e.value) == ("x.npy: array takes 2.8 GiB, over the 2 GiB max_memory limit; if "
                            "the file is trusted, raise it with RNNCLI_MAX_MEMORY=4G or "
                            "--max-memory 4G")
    limits.check_bytes(10, "fine")  # under the limit: no error


def test_check_counts_with_a_placeholder():
    with pytest.raises(RnncliError, match=r"^m.keras: layer 'r' declares 100,000 units, over "
                                          r"the 65,536 max_units limit; .*RNNCLI_MAX_UNITS="):
        limits.check("max_units", 100_000, "m.keras: layer 'r' declares {} units")


def test_ratio_check_spares_small_members():
    limits.check_ratio(10 * 2**20, 1, "tiny")  # 10 MiB of zeros: under the floor
    with pytest.raises(RnncliError, match=r"inflates 1,000 bytes to 100 MiB \(104,858:1\)"):
        limits.check_ratio(100 * 2**20, 1000, "x.npz: member")


def test_limits_doc_is_current():
    text = open(os.path.join(ROOT, "docs", "errors.md")).read()
    table = "<!-- limits:start -->\n" + limits.markdown_table() + "<!-- limits:end -->"
    assert table in text, "docs/errors.md is stale: paste limits.markdown_table() into it"
    assert len(limits.table()) == len(limits.names()) == 9


# ------------------------------------------------------------------ NPY headers

H = npy_header()
NPY_CASES = [
    ("no closing brace", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), \n"),
     "NPY header has no closing brace '}'; expected a dictionary like"),
    ("header over the limit", b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{",
     "NPY header is 60,000 bytes, over the 10,000 bytes max_npy_header_bytes limit"),
    ("4 GiB header (v2)", b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{",
     "NPY header is 4.0 GiB, over the 10,000 bytes max_npy_header_bytes limit"),
    ("header cut short", b"\x93NUMPY\x01\x00" + struct.pack("<H", 200) + b"{'descr'",
     "NPY header is cut short (8 of 200 bytes); the file is truncated"),
    ("ends in the length field", b"\x93NUMPY\x01\x00\x10", "NPY data ends inside its header"),
    ("unknown version", npy(H, version=(9, 0)), "NPY format version 9.0 is unknown"),
    ("negative dimension", npy(npy_header(shape=(-2, 3))),
     "NPY header declares a negative dimension in shape (-2, 3)"),
    ("gigantic shape", npy(npy_header(shape=(10**11, 3))),
     "its header declares shape (100000000000, 3) of float64 (2.2 TiB) but only 0 bytes follow"),
    ("gigantic shape, 1e40 elements", npy(npy_header(shape=(10**20, 10**20))),
     "NPY header declares shape (100000000000000000000, 100000000000000000000), larger than"),
    ("zero-size shape with a 1e30 dimension", npy(npy_header(shape=(0, 10**30))),
     "NPY header declares shape (0, 1000000000000000000000000000000), larger than any array"),
    ("truncated data", npy(H, bytes(10)),
     "its header declares shape (2, 3) of float64 (48 bytes) but only 10 bytes follow"),
    ("not a dictionary", npy("[1, 2]\n"), "NPY header does not start with '{'"),
    ("unreadable dictionary", npy("{'descr': <f8>}\n"), "NPY header is not a readable dictionary"),
    ("nested 3000 deep", npy("{'descr': " + "[" * 3000 + "]" * 3000 + "}\n"),
     "NPY header is not a readable dictionary"),
    ("wrong keys", npy("{'descr': '<f8', 'shape': (2,)}\n"),
     "NPY header has keys 'descr', 'shape'; expected exactly"),
    ("shape not a tuple", npy(npy_header(shape=[2, 3])), "shape [2, 3] is not a tuple"),
    ("bool dimension", npy(npy_header(shape=(True,))), "shape (True,) is not a tuple of whole"),
    ("too many dimensions", npy(npy_header(shape=(1,) * 40)), "declares 40 dimensions"),
    ("fortran_order not a bool", npy("{'descr': '<f8', 'fortran_order': 1, 'shape': (2,)}\n"),
     "fortran_order is 1; expected True or False"),
    ("unknown dtype", npy(npy_header(descr="<x9")), "names an unknown dtype '<x9'"),
    ("object dtype", npy(npy_header(descr="|O")), "object (pickled) array, which rnncli never"),
    ("structured", npy(npy_header(descr=[("a", "<f8"), ("b", "<i4")])),
     "holds structured records (fields a, b); expected a plain numeric array"),
    ("complex", npy(npy_header(descr="<c16", shape=(1, 2)), bytes(32)),
     "holds complex numbers (complex128); expected real numbers"),
    ("datetime", npy(npy_header(descr="<M8[ns]")), "holds datetime64[ns] values; expected numbers"),
    ("strings", npy(npy_header(descr="<U3")), "holds <U3 values; expected numbers"),
    ("sub-array dtype", npy(npy_header(descr="(2,)<f8")), "has a sub-array dtype"),
    ("header not UTF-8 (v3)", npy("{", version=(3, 0))[:-1] + b"\xff",
     "NPY header is not text"),
]


def _write(tmp_path, data, name="x.npy"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


@pytest.mark.parametrize("label,data,message", NPY_CASES, ids=[c[0] for c in NPY_CASES])
def test_hostile_npy_in_a_file(tmp_path, label, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(InputDataError) as e:
        read_input(path)
    assert message in str(e.value) and str(e.value).startswith(path + ": ")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("label,data,message", NPY_CASES, ids=[c[0] for c in NPY_CASES])
def test_hostile_npy_on_stdin(label, data, message):
    with pytest.raises(InputDataError) as e:
        read_input("-", stdin=io.BytesIO(data))
    assert message in str(e.value) and str(e.value).startswith("<stdin>: ")


@pytest.mark.parametrize("label,data,message", NPY_CASES, ids=[c[0] for c in NPY_CASES])
def test_hostile_npy_inside_an_npz(tmp_path, label, data, message):
    path = _write(tmp_path, zip_bytes([stored("x.npy", data)]), "x.npz")
    with pytest.raises(InputDataError) as e:
        read_input(path)
    assert message in str(e.value) and str(e.value).startswith(path + "[x]: ")


def test_odd_header_literals_print_no_warnings():
    # compiling '\\h' or '1abc' warns; in the CLI that would be a second stderr line
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for header in ("{'descr': '\\h', 1abc}\n", "{'descr': '<f8', 'shape': (1abc,)}\n"):
            with pytest.raises(InputDataError, match="not a readable dictionary"):
                read_input("-", stdin=io.BytesIO(npy(header)))
    assert [str(w.message) for w in seen] == []


def test_gigantic_shape_on_stdin_within_the_limit_is_truncated_not_allocated():
    with limits.override(max_memory="1T"):
        with pytest.raises(InputDataError, match=r"\(745 GiB\) but only 16 bytes follow"):
            read_input("-", stdin=io.BytesIO(npy(npy_header(shape=(10**11,)), bytes(16))))


def test_large_declared_array_on_stdin_is_refused_by_max_memory():
    data = npy(npy_header(shape=(64, 4)), bytes(64 * 4 * 8))
    with limits.override(max_memory="1K"):
        with pytest.raises(InputDataError, match=r"^<stdin>: array of shape \(64, 4\) of float64 "
                                                 r"takes 2 KiB, over the 1 KiB max_memory"):
            read_input("-", stdin=io.BytesIO(data))
    assert read_input("-", stdin=io.BytesIO(data)).array.shape == (64, 4)


# ------------------------------------------------------------------ numbers of every dtype


@pytest.mark.parametrize("arr", [
    np.arange(6, dtype=np.int64).reshape(2, 3), np.arange(6, dtype=np.uint8).reshape(2, 3),
    np.array([[True, False, True]]), np.arange(6, dtype=np.float16).reshape(2, 3),
    np.arange(6, dtype=">f8").reshape(2, 3), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.arange(24, dtype=np.float32).reshape(2, 3, 4)], ids=lambda a: f"{a.dtype.str}")
def test_numeric_dtypes_read_exactly_from_file_stdin_and_npz(tmp_path, arr):
    data = npy_of(arr)
    for got in (read_input(_write(tmp_path, data)).array,
                read_input("-", stdin=io.BytesIO(data)).array,
                read_input(_write(tmp_path, npz_of(x=arr), "x.npz")).array,
                read_input("-", stdin=io.BytesIO(npz_of(x=arr))).array):
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


def test_integer_input_runs_as_floats(tmp_path):
    import rnncli

    path = _write(tmp_path, npy_of(np.ones((1, 3, 5), np.int16)))
    model = rnncli.load_model(S0)
    expected = model.run(np.ones((1, 3, 5), np.float32)).output
    np.testing.assert_array_equal(model.run(read_input(path).array).output, expected)


@pytest.mark.parametrize("values,dtype,found", [
    ([1e300, 1.0], "float32", 1e300), ([1.0, -3.5e38], "float32", -3.5e38),
    ([3.4028235e38, 1.0], "float32", None),  # float32's largest value: no overflow
    ([1e300, np.inf, np.nan], "float64", None), ([np.inf, np.nan, 1.0], "float32", None),
    ([70000, 3], "float16", 70000.0)])
def test_overflows(values, dtype, found):
    arr = np.array(values, dtype=np.int32 if dtype == "float16" else np.float64)
    data = InputData(arr[None, :, None], "x", False)
    assert data.overflowing_value(dtype) == found
    assert data.overflows(dtype) is (found is not None)


def test_csv_value_that_overflows_float32_is_reported():
    data = read_input("-", stdin=io.BytesIO(b"1,2\n1e300,3\n"))
    assert not data.has_nonfinite and data.overflowing_value(np.float32) == 1e300


# ------------------------------------------------------------------ .npz archives


def test_npz_member_that_is_not_npy(tmp_path):
    path = _write(tmp_path, zip_bytes([stored("x.npy", b"hello, not an array")]), "x.npz")
    with pytest.raises(InputDataError, match=r"x.npz\[x\]: not NPY data \(starts with "
                                             r"b'hello, n'\); expected an array saved by"):
        read_input(path)


@pytest.mark.parametrize("method,label", [(9, "deflate64"), (99, "unknown"), (6, "implode")])
def test_npz_member_with_an_unknown_compression_method(tmp_path, method, label):
    path = _write(tmp_path, zip_bytes([stored("x.npy", npy_of(np.ones(3)), method)]), "x.npz")
    with pytest.raises(InputDataError, match=rf"member uses compression method {method} "
                                             rf"\({label}\), which rnncli cannot read; expected "
                                             rf"stored or deflate members"):
        read_input(path)


def test_encrypted_npz_member(tmp_path):
    path = _write(tmp_path, zip_bytes([stored("x.npy", npy_of(np.ones(3)), flags=1)]), "x.npz")
    with pytest.raises(InputDataError, match=r"\[x\]: member is encrypted"):
        read_input(path)


def test_npz_with_an_object_array(tmp_path):
    p = tmp_path / "o.npz"
    np.savez(p, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputDataError, match=r"o.npz\[x\]: holds an object \(pickled\) array, "
                                             r"which rnncli never loads"):
        read_input(str(p))


def test_zip_that_is_not_an_npz(tmp_path):
    import zipfile

    p = tmp_path / "notes.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(InputDataError, match=r"zip archive holds no .npy arrays \(notes.txt"
                                             r"\); expected an .npz written by numpy.savez"):
        read_input(str(p))
    # a .keras is a zip too, and is named as the model it is (tests/test_inputs.py)


@pytest.mark.parametrize("member,message", [
    (deflated("x.npy", npy_of(np.ones(3)), crc=1), "damaged archive member (Bad CRC-32"),
    (("x.npy", b"\xff" * 40, zipfile.ZIP_DEFLATED, 0, 200, 0), "damaged archive member ("),
    (("x.npy", b"garbage" * 5, zipfile.ZIP_BZIP2, 0, 200, 0), "damaged archive member ("),
])
def test_damaged_npz_members(tmp_path, member, message):
    with pytest.raises(InputDataError, match=r"x.npz\[x\]: " + message.replace("(", r"\(")):
        read_input(_write(tmp_path, zip_bytes([member]), "x.npz"))


def test_npz_directory_that_understates_a_member(tmp_path):
    # the member inflates to 2.8 GiB; its directory entry says 4 KiB (zipfile reads 4 KiB
    # ahead, so its CRC check fails first) or 1 MiB (less than its NPY header declares)
    with pytest.raises(InputDataError, match=r"x.npz\[x\]: damaged archive member \(Bad CRC"):
        read_input(_write(tmp_path, deflate_bomb(declared=4096), "x.npz"))
    with pytest.raises(InputDataError, match=r"declares shape \(377487360,\) of float64 "
                                             r"\(2.8 GiB\) but only 1024 KiB follow"):
        read_input(_write(tmp_path, deflate_bomb(declared=2**20), "x.npz"))


def test_npz_bzip2_bomb_is_refused_by_its_ratio(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as z:
        z.writestr("x.npy", npy_of(np.zeros(2**18)))  # 2 MiB inflated from ~100 bytes
    path = _write(tmp_path, buf.getvalue(), "x.npz")
    assert read_input(path).array.shape == (2**18,)  # under the ratio floor
    with limits.override(decompression_ratio_floor="1M"):
        with pytest.raises(InputDataError, match=r"max_decompression_ratio limit; if the file is "
                                                 r"trusted, raise it with "
                                                 r"RNNCLI_MAX_DECOMPRESSION_RATIO="):
            read_input(path)


def test_npz_key_with_or_without_its_suffix(tmp_path):
    path = _write(tmp_path, npz_of(a=np.ones(2), b=np.zeros(3)), "x.npz")
    assert read_input(path, key="b.npy").array.tolist() == [0, 0, 0]
    with pytest.raises(InputDataError, match=r"x.npz: has no array 'c'; it holds a, b"):
        read_input(path, key="c")


def test_npyio_from_buffer_views_without_copying():
    from rnncli.io import npyio

    data = bytearray(npy_of(np.arange(6.0).reshape(2, 3)))
    arr = npyio.from_buffer(data, "buf", InputDataError)
    assert arr.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert np.shares_memory(arr, np.frombuffer(data, "u1"))
    with pytest.raises(InputDataError, match="^buf: NPY data is truncated"):
        npyio.from_buffer(data[:-1], "buf", InputDataError)


def test_npz_on_stdin_counts_against_max_memory():
    data = npz_of(x=np.ones(1000))
    assert read_input("-", stdin=io.BytesIO(data)).array.shape == (1000,)
    with limits.override(max_memory="4K"):
        with pytest.raises(InputDataError, match="^<stdin>: NPZ data on a stream takes over"):
            read_input("-", stdin=io.BytesIO(data))


# ------------------------------------------------------------------ peak memory (child process)

CHILD = """
import json, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"code": r.returncode, "stderr": r.stderr,
                  "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run_measured(argv, env=None, stdin_file=None):
    """Run ``argv`` in a grandchild, so RUSAGE_CHILDREN is its peak RSS alone."""
    full_env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    cmd = [sys.executable, "-c", CHILD] + argv
    with open(stdin_file or os.devnull, "rb") as stdin:
        r = subprocess.run(cmd, capture_output=True, text=True, env=full_env, stdin=stdin,
                           timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


RNNCLI_FORWARD = [sys.executable, "-m", "rnncli", "forward", S0]


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    path.write_bytes(deflate_bomb())
    assert path.stat().st_size < 3_000_000  # 2.9 MB that inflate to 2.8 GiB
    return str(path)


@pytest.mark.parametrize("env,message", [
    ({}, "member would take 2.8 GiB, over the 2 GiB max_memory limit; if the file is trusted, "
         "raise it with RNNCLI_MAX_MEMORY=4G or --max-memory 4G"),
    ({"RNNCLI_MAX_MEMORY": "8G"}, "member inflates 2,941,280 bytes to 2.8 GiB (1,027:1), over "
                                  "the 1000:1 max_decompression_ratio limit"),
])
def test_deflate_bomb_fails_fast_in_little_memory(bomb, env, message):
    env = dict(env, RNNCLI_MAX_MEMORY=env.get("RNNCLI_MAX_MEMORY", "2G"))
    r = run_measured(RNNCLI_FORWARD + ["-i", bomb], env)
    assert r["code"] == 1
    assert r["stderr"].startswith(f"rnncli: error: {bomb}[x]: {message}")
    assert len(r["stderr"].strip().splitlines()) == 1
    assert r["peak_mib"] < 300, r


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_gigantic_declared_shape_costs_no_memory(tmp_path, how):
    path = _write(tmp_path, npy(npy_header(shape=(10**10, 5)), bytes(4096)))
    argv = RNNCLI_FORWARD + ["-i", path if how == "file" else "-"]
    r = run_measured(argv, {"RNNCLI_MAX_MEMORY": "1T"}, stdin_file=path)
    assert r["code"] == 1 and "Traceback" not in r["stderr"]
    assert "(373 GiB) but only 4 KiB follow" in r["stderr"]
    assert len(r["stderr"].strip().splitlines()) == 1
    assert r["peak_mib"] < 300, r


def test_understated_bomb_costs_no_memory(tmp_path):
    path = _write(tmp_path, deflate_bomb(declared=100 * 2**20), "x.npz")
    r = run_measured(RNNCLI_FORWARD + ["-i", path])
    assert r["code"] == 1 and "but only 100.0 MiB follow" in r["stderr"]
    assert r["peak_mib"] < 300, r


# ------------------------------------------------------------------ CSV / TSV


def _csv(tmp_path, text, name="in.csv"):
    return _write(tmp_path, text.encode(), name)


def test_csv_cell_over_the_csv_module_limit(tmp_path):
    path = _csv(tmp_path, "1,2\n3," + "9" * 140_000 + "\n")
    with pytest.raises(InputDataError, match=r"in.csv: line 2 has a cell of more than 4,096 "
                                             r"characters, over the max_csv_cell_chars limit"):
        read_input(path)


def test_csv_cell_over_the_limit(tmp_path):
    path = _csv(tmp_path, "a,b\n1," + "0" * 5000 + "1\n")
    with pytest.raises(InputDataError, match=r"line 2 has a cell of 5,001 characters, over the "
                                             r"4,096 max_csv_cell_chars limit; if the file is "
                                             r"trusted, raise it with "
                                             r"RNNCLI_MAX_CSV_CELL_CHARS=5001"):
        read_input(path)
    with limits.override(max_csv_cell_chars=200_000):
        assert read_input(path).array.tolist() == [[[1.0, 1.0]]]


def test_csv_line_over_the_limit(tmp_path):
    path = _csv(tmp_path, "1,2\n" + ",".join(["1"] * 600) + "\n")
    with limits.override(max_csv_line_chars=1000):
        with pytest.raises(InputDataError, match=r"line 2 is longer than 1,000 characters, the "
                                                 r"max_csv_line_chars limit"):
            read_input(path)
        assert read_input(_csv(tmp_path, "1," * 499 + "1\n")).array.shape == (1, 1, 500)


def test_csv_over_max_memory(tmp_path):
    path = _csv(tmp_path, "1,2,3,4\n" * 100)
    with limits.override(max_memory="1K"):
        with pytest.raises(InputDataError, match=r"in.csv: the numbers up to line 33 take 1,056 "
                                                 r"bytes, over the 1 KiB max_memory limit"):
            read_input(path)


@pytest.mark.parametrize("cell,shown", [("nan", "nan"), ("0.5", "0.5"), ("inf", "inf")])
def test_sample_column_must_be_whole_numbers(cell, shown):
    with pytest.raises(InputDataError, match=rf"line 3, column sample: {shown} is not a whole "
                                             rf"number; expected sample ids like 0, 1, 2"):
        parse_table(f"sample,x\n0,1\n{cell},2\n")


def test_interleaved_samples_keep_their_order():
    x = parse_table("sample,t,x\n7,0,1\n2,0,10\n7,1,2\n2,1,20\n7,2,3\n2,2,30\n")
    assert x[..., 0].tolist() == [[1, 2, 3], [10, 20, 30]]


def test_names_from_a_file_cannot_drive_the_terminal(tmp_path):
    with pytest.raises(InputDataError) as e:
        parse_table("a\x1b[31m,b\u202e\n1,x\n")
    assert "column b\\u202e: 'x'" in str(e.value)
    with pytest.raises(InputDataError) as e:
        parse_table("a\x1b[31m,b\n1,2\nx,2\n")
    assert "column a\\x1b[31m: 'x'" in str(e.value) and "\x1b" not in str(e.value)
    path = _write(tmp_path, npz_of(**{"x\x1b]0;owned\x07": np.ones(2), "y": np.ones(2)}), "x.npz")
    with pytest.raises(InputDataError) as e:
        read_input(path)
    assert "x\\x1b]0;owned\\x07" in str(e.value) and "\x1b" not in str(e.value)
    with pytest.raises(InputDataError) as e:
        read_input("-", stdin=io.BytesIO(npy(npy_header(shape="\x1b[2J"))))
    assert "shape \\x1b[2J is not a tuple" in str(e.value)


def test_json_input_shows_the_accepted_layouts(tmp_path):
    path = _csv(tmp_path, '\ufeff  [[1, 2], [3, 4]]\n', "x.json")
    with pytest.raises(InputDataError, match=r"x.json: is JSON, which rnncli does not read as "
                                             r"input; expected CSV/TSV text \(one row per "
                                             r"timestep, .*\) or a .npy/.npz array"):
        read_input(path)


def test_text_that_stops_being_utf8(tmp_path):
    path = _write(tmp_path, b"1,2\n" * 2000 + b"3,\xff\n", "x.csv")
    with pytest.raises(InputDataError, match="line 2001 is not UTF-8 text"):
        read_input(path)


# ------------------------------------------------------------------ stdin, pipes, terminals


class _Closed(io.BytesIO):
    def read(self, *a):
        raise ValueError("I/O operation on closed file")


def test_stdin_closed_or_empty(monkeypatch):
    with pytest.raises(InputDataError, match="^<stdin>: is closed or cannot be read; expected"):
        read_input("-", stdin=_Closed())
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputDataError, match="^<stdin>: is closed; expected data piped in"):
        read_input("-")
    with pytest.raises(InputDataError, match="^<stdin>: is empty"):
        read_input("-", stdin=io.BytesIO(b""))


def test_text_stdin_is_read_too():
    assert read_input("-", stdin=io.StringIO("1,2\n3,4\n")).array.shape == (1, 2, 2)
    text = "# " + "é" * 100_000 + "\n1,2\n3,4\n"  # more bytes than characters
    assert read_input("-", stdin=io.StringIO(text)).array.tolist() == [[[1, 2], [3, 4]]]


class _Tty(io.BytesIO):
    def isatty(self):
        return True


def test_is_tty_stdin(monkeypatch):
    assert is_tty_stdin(_Tty())
    assert not is_tty_stdin(io.BytesIO())
    closed = io.BytesIO()
    closed.close()
    assert not is_tty_stdin(closed)
    monkeypatch.setattr(sys, "stdin", None)
    assert not is_tty_stdin()


@pytest.mark.parametrize("payload", [b"1,2\n3,4\n", npy_of(np.array([[1.0, 2.0], [3.0, 4.0]]))],
                         ids=["csv", "npy"])
def test_a_named_pipe_is_read_as_a_stream(tmp_path, payload):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(payload)

    t = threading.Thread(target=feed)
    t.start()
    try:
        arr = read_input(fifo).array
    finally:
        t.join(timeout=10)
    assert arr.reshape(-1).tolist() == [1, 2, 3, 4]


# ------------------------------------------------------------------ the CLI, end to end

NO_BRACE = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 5), \n")
CLI_CASES = [
    ("npy without its closing brace", ["-i", "{bad}"], NO_BRACE, 1,
     "{bad}: NPY header has no closing brace"),
    ("the same on stdin", ["-i", "-"], NO_BRACE, 1, "<stdin>: NPY header has no closing brace"),
    ("the same as --initial-state", ["-i", S0_IN, "--initial-state", "{bad}"], NO_BRACE, 1,
     "{bad}: NPY header has no closing brace"),
    ("initial state on stdin", ["-i", S0_IN, "--initial-state", "-"], NO_BRACE, 1,
     "<stdin>: NPY header has no closing brace"),
    ("gigantic shape in an npz", ["-i", "{bad}"],
     zip_bytes([stored("x.npy", npy(npy_header(shape=(10**12, 5))))]), 1,
     "{bad}[x]: NPY data is truncated: its header declares shape (1000000000000, 5)"),
    ("CSV cell of 140,000 characters", ["-i", "{bad}"], b"1,2,3,4,5\n1,2,3,4," + b"5" * 140_000,
     1, "{bad}: line 2 has a cell of more than 4,096 characters"),
    ("JSON", ["-i", "{bad}"], b"[[1, 2, 3, 4, 5]]", 1, "{bad}: is JSON"),
    ("token ids as a (batch, steps) CSV", ["-i", "{bad}", "--model", EMB], b"3,5,7\n1,2,0\n", 1,
     "{bad}: this model starts with an Embedding and takes one token id per row; got 3 columns"),
    ("complex numbers", ["-i", "{bad}"], npy_of(np.ones((1, 2, 5), np.complex64)), 1,
     "{bad}: holds complex numbers (complex64)"),
    ("bad RNNCLI_MAX_MEMORY", ["-i", S0_IN, "--env", "RNNCLI_MAX_MEMORY=lots"], b"", 1,
     "RNNCLI_MAX_MEMORY='lots' is not usable"),
    ("no input (usage)", [], b"", 2, "Missing option '-i' / '--input'"),
]


@pytest.mark.parametrize("label,args,data,code,message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_reports_hostile_inputs_in_one_line(tmp_path, label, args, data, code, message):
    bad = _write(tmp_path, data, "bad.bin")
    env = dict(os.environ, PYTHONPATH=ROOT)
    model = S0
    argv = []
    it = iter(args)
    for a in it:
        if a == "--model":
            model = next(it)
        elif a == "--env":
            k, v = next(it).split("=", 1)
            env[k] = v
        else:
            argv.append(a.replace("{bad}", bad))
    with open(bad, "rb") as stdin:
        r = subprocess.run([sys.executable, "-m", "rnncli", "forward", model] + argv,
                           capture_output=True, text=True, env=env, stdin=stdin, timeout=60)
    assert r.returncode == code, r.stderr
    assert message.replace("{bad}", bad) in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    if code == 1:
        assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["bad.bin"]  # nothing written beside it


def test_cli_with_stdin_closed():
    r = subprocess.run(["bash", "-c", f"'{sys.executable}' -m rnncli forward '{S0}' -i - <&-"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT),
                       timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("rnncli: error: <stdin>: is closed")
    assert len(r.stderr.strip().splitlines()) == 1
