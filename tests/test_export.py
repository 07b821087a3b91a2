"""export: every format, the schema, batch-by-batch writing, and safe files."""

import io
import json
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ref_path, sample

import rnncli
from rnncli.cli import cli
from rnncli.errors import OutputError, RnncliError
from rnncli.io.export import export_results

BIDI = ref_path("bidirectional_masked", "model.keras")
BIDI_X = np.load(ref_path("bidirectional_masked", "input.npy"))


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_npz_schema_and_keras_numbers(tmp_path):
    out = tmp_path / "out.npz"
    r = invoke("export", BIDI, "-i", ref_path("bidirectional_masked", "input.npy"), "-o", str(out))
    assert r.exit_code == 0, r.stderr
    z = np.load(out)
    assert {"output", "hidden/bidi", "hidden/top", "state/top", "state/bidi/forward",
            "xw/bidi/forward", "hu/bidi/backward", "bias/top", "z/top", "mask/top",
            "hidden/bidi/forward"} <= set(z.files)
    np.testing.assert_allclose(z["output"], np.load(ref_path("bidirectional_masked",
                                                             "expected_output.npy")), atol=1e-5)
    np.testing.assert_allclose(z["hidden/bidi"], np.load(ref_path("bidirectional_masked",
                                                                  "expected_hidden_bidi.npy")),
                               atol=1e-5)
    np.testing.assert_allclose(z["z/top"], z["xw/top"] + z["hu/top"] + z["bias/top"], atol=1e-6)


@pytest.mark.parametrize("what,fmt", [("hidden", "npz"), ("output,state", "h5"), (None, "lstmvis")])
def test_exports_without_trace_arrays_skip_the_trace(tmp_path, monkeypatch, what, fmt):
    model = rnncli.load_model(BIDI)
    export_results(model, BIDI_X, str(tmp_path / "full.npz"), "npz")
    traced = []
    run = model.run
    monkeypatch.setattr(model, "run", lambda *a, **k: traced.append(k["trace"]) or run(*a, **k))
    export_results(model, BIDI_X, str(tmp_path / f"part.{fmt}"), fmt, what=what)
    assert traced and not any(traced)  # four arrays a layer not computed, only one
    full = np.load(tmp_path / "full.npz")
    if fmt == "npz":
        part = np.load(tmp_path / "part.npz")
        assert part.files == ["hidden/bidi", "hidden/bidi/forward", "hidden/bidi/backward",
                              "hidden/top"]
        for k in part.files:
            np.testing.assert_array_equal(part[k], full[k])
    else:
        with h5py.File(tmp_path / f"part.{fmt}") as f:
            if fmt == "h5":
                np.testing.assert_array_equal(f["output"][()], full["output"])
                assert "xw" not in f["top"]
            else:
                states = full["hidden/top"]
                np.testing.assert_array_equal(f["states"][()], states.reshape(-1, states.shape[2]))


def test_seed000_npz_matches_the_notebook(tmp_path):
    out = tmp_path / "s.npz"
    invoke("export", sample("seed000_two_units.keras"), "-i", sample("seed000_input.csv"),
           "-o", str(out))
    z = np.load(out)
    expected = np.load(ref_path("seed000_two_units", "expected_xw_plus_b.npy"))
    np.testing.assert_allclose(z["xw/simple_rnn"] + z["bias/simple_rnn"],
                               expected.reshape(1, 3, 2), atol=1e-6)


def test_batches_give_the_same_file_as_one_pass(tmp_path):
    model = rnncli.load_model(BIDI)
    export_results(model, BIDI_X, str(tmp_path / "a.npz"), "npz")
    export_results(model, BIDI_X, str(tmp_path / "b.npz"), "npz", batch_size=1)
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a.files == b.files
    for k in a.files:  # a sample's numbers never depend on the batch it came in
        np.testing.assert_array_equal(a[k], b[k])
    export_results(model, BIDI_X, str(tmp_path / "c.h5"), "h5", batch_size=2)
    with h5py.File(tmp_path / "c.h5") as f:
        np.testing.assert_allclose(f["bidi/hidden"][()], a["hidden/bidi"], atol=1e-6)
        np.testing.assert_allclose(f["bidi/forward/xw"][()], a["xw/bidi/forward"], atol=1e-6)
        np.testing.assert_allclose(f["output"][()], a["output"], atol=1e-6)
        assert f["top"].attrs["class_name"] == "SimpleRNN"
        assert f["top"].attrs["config"] == "tanh"
        assert json.loads(f.attrs["source"])["format"] == "keras3_archive"
        assert f.attrs["rnncli_version"]


def test_csv_long_format(tmp_path):
    out = tmp_path / "t.csv"
    model = rnncli.load_model(BIDI)
    export_results(model, BIDI_X, str(out), "csv", batch_size=2)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("layer,direction,sample,step,t,unit,xw,hu,bias,z,h")
    # 3 samples x 6 steps x (4 + 4 bidi units + 3 top units)
    assert len(lines) == 1 + 3 * 6 * (4 + 4 + 3)
    assert sum(1 for ln in lines if ln.startswith("top,,2,")) == 6 * 3  # offsets carried


def test_json_and_npy(tmp_path):
    model = rnncli.load_model(BIDI)
    export_results(model, BIDI_X, str(tmp_path / "a.json"), "json", what="hidden/top")
    doc = json.load(open(tmp_path / "a.json"))
    assert list(doc["arrays"]) == ["hidden/top"]
    np.testing.assert_allclose(doc["arrays"]["hidden/top"]["data"],
                               np.load(ref_path("bidirectional_masked", "expected_hidden_top.npy")),
                               atol=1e-5)
    export_results(model, BIDI_X, str(tmp_path / "a.npy"), "npy", what="hidden/top",
                   batch_size=1)
    assert np.load(tmp_path / "a.npy").shape == (3, 6, 3)
    with pytest.raises(RnncliError, match="holds one array"):
        export_results(model, BIDI_X, str(tmp_path / "b.npy"), "npy")
    assert not (tmp_path / "b.npy").exists()


def test_lstmvis_states(tmp_path):
    model = rnncli.load_model(BIDI)
    export_results(model, BIDI_X, str(tmp_path / "s.h5"), "lstmvis", layers=["bidi"])
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["states"].shape == (3 * 6, 8)
        assert f.attrs["layer"] == "bidi"


def test_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "out.npz"
    out.write_bytes(b"precious")
    args = ["export", sample("seed000_two_units.keras"), "-i", sample("seed000_input.csv"),
            "-o", str(out)]
    r = invoke(*args)
    assert r.exit_code == 1 and "already exists; use --force" in r.stderr
    assert out.read_bytes() == b"precious"
    assert invoke(*args, "--force").exit_code == 0
    assert "output" in np.load(out).files


def test_missing_directory(tmp_path):
    r = invoke("export", sample("seed000_two_units.keras"), "-i", sample("seed000_input.csv"),
               "-o", str(tmp_path / "nope" / "out.npz"))
    assert r.exit_code == 1 and "does not exist" in r.stderr


@pytest.mark.parametrize("fmt", ["npz", "h5", "csv", "npy"])
def test_failure_half_way_keeps_the_old_file(tmp_path, monkeypatch, fmt):
    model = rnncli.load_model(BIDI)
    out = tmp_path / f"out.{fmt}"
    out.write_bytes(b"old")
    real = model.run
    calls = []

    def failing(x, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(x, **kw)

    monkeypatch.setattr(model, "run", failing)
    with pytest.raises(KeyboardInterrupt):
        export_results(model, BIDI_X, str(out), fmt, force=True, batch_size=1,
                       what="hidden/top" if fmt == "npy" else None)
    assert out.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == [f"out.{fmt}"]


def test_full_disk_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import rnncli.io.export as ex

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ex.shutil, "copyfileobj", full)
    model = rnncli.load_model(BIDI)
    with pytest.raises(OutputError, match="no space left"):
        export_results(model, BIDI_X, str(tmp_path / "o.npz"), "npz")
    assert os.listdir(tmp_path) == []


def test_binary_export_to_stdout():
    r = CliRunner().invoke(cli, ["export", sample("seed000_two_units.keras"), "-i",
                                 sample("seed000_input.csv"), "-o", "-"])
    assert r.exit_code == 0
    z = np.load(io.BytesIO(r.stdout_bytes))
    assert "hidden/simple_rnn" in z.files


def test_hdf5_cannot_go_to_stdout():
    r = invoke("export", sample("seed000_two_units.keras"), "-i", sample("seed000_input.csv"),
               "-o", "-", "-f", "h5")
    assert r.exit_code == 1 and "HDF5 can't be streamed to stdout" in r.stderr


def test_unsupported_output_is_named(tmp_path):
    # A model whose head rnncli can't compute still exports its recurrent layers.
    model = rnncli.load_model(BIDI)
    model.layers[-1].call = lambda *a, **k: (_ for _ in ()).throw(
        rnncli.UnsupportedLayerError("layer 'dense' is a Foo, which rnncli cannot compute"))
    with pytest.raises(RnncliError, match="layer 'dense' is a Foo"):
        export_results(model, BIDI_X, str(tmp_path / "o.npz"), "npz", what="output")
    export_results(model, BIDI_X, str(tmp_path / "o.npz"), "npz")
    assert "output" not in np.load(tmp_path / "o.npz").files


def test_progress_counts_written_samples(tmp_path, monkeypatch):
    import itertools

    import rnncli.io.export as ex

    clock = itertools.count(0, 0.6)  # every batch seems to take 0.6 s
    monkeypatch.setattr(ex.time, "perf_counter", lambda: next(clock))
    calls = []
    model = rnncli.random_model(1, 4, 3)
    export_results(model, np.ones((10, 5, 3), np.float32), str(tmp_path / "p.npz"), "npz",
                   batch_size=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(6, 10), (9, 10), (10, 10)]  # nothing shown in the first second


@pytest.mark.parametrize("missing", ["dask", "zarr", "distributed"])
def test_zarr_without_the_dask_extra_names_it(tmp_path, monkeypatch, missing):
    """No dask (or zarr, or distributed for --workers): one line naming the extra, exit 1
    (as a model file whose reader isn't installed), and nothing written."""
    import sys

    for before in ("dask", "zarr")[:("dask", "zarr", "distributed").index(missing)]:
        pytest.importorskip(before)  # (checked in this order: the first missing is named)
    for name in list(sys.modules):
        if name == missing or name.startswith(missing + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, missing, None)
    out = tmp_path / "y.zarr"
    extra = ["--workers", "1"] if missing == "distributed" else []
    r = invoke("export", sample("seed000_two_units.keras"), "-i",
               sample("seed000_input.csv"), "-o", str(out), *extra)
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines() == [
        f"rnncli: error: writing .zarr needs dask and zarr, and {missing} is not installed; "
        "install them with: pip install 'rnncli[dask]'"]
    assert not out.exists()


@pytest.mark.parametrize("fmt,name", [("csv", "x.zarr"), ("npz", "x.csv"), ("json", "x.h5"),
                                      ("csv", "x.npy")])
def test_a_format_contradicting_the_extension_is_refused(tmp_path, fmt, name):
    out = tmp_path / name
    r = invoke("export", sample("seed000_two_units.keras"), "-i",
               sample("seed000_input.csv"), "-f", fmt, "-o", str(out))
    assert r.exit_code == 2, r.output
    assert f"-f {fmt} contradicts -o {out}" in r.output
    assert not out.exists()


def test_an_unknown_format_is_named_as_such_whatever_the_extension(tmp_path):
    """-f zip -o x.npz: zip is no format at all, not one that contradicts .npz."""
    out = tmp_path / "x.npz"
    r = invoke("export", sample("seed000_two_units.keras"), "-i",
               sample("seed000_input.csv"), "-f", "zip", "-o", str(out))
    assert r.exit_code == 2, r.output
    assert "-f zip: expected one of npz, h5, csv" in r.output and "contradicts" not in r.output
    assert not out.exists()


@pytest.mark.parametrize("fmt,name", [("lstmvis", "x.h5"), ("csv", "x.txt"), ("tsv", "x.tab")])
def test_a_format_agreeing_with_the_extension_is_kept(tmp_path, fmt, name):
    r = invoke("export", sample("seed000_two_units.keras"), "-i",
               sample("seed000_input.csv"), "-f", fmt, "-o", str(tmp_path / name))
    assert r.exit_code == 0, r.output
