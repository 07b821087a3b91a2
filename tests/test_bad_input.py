"""Bad input never crashes rnncli, never loses a file, never runs code from a model file.

Each case is one command line and what rnncli must answer. ``CASES`` also generates the
table in docs/errors.md (test_error_table_in_docs_is_current keeps it true).
"""

import json
import os
import zipfile

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA, ROOT, ref_path, sample

import rnncli
from rnncli.cli import cli
from rnncli.errors import RnncliError

S0 = sample("seed000_two_units.keras")
S0_IN = sample("seed000_input.csv")
EMB = sample("masked_classifier.keras")


def _keras_with_config(tmp, edit, name="m.keras", drop=None):
    """seed000's archive with its config edited (or a member dropped)."""
    src = zipfile.ZipFile(S0)
    out = os.path.join(tmp, name)
    with zipfile.ZipFile(out, "w") as z:
        for n in src.namelist():
            if n == drop:
                continue
            data = src.read(n)
            if n == "config.json" and edit:
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg).encode()
            z.writestr(n, data)
    return out


def _add_lambda(cfg):
    layers = cfg["config"]["layers"]
    layers.append({"module": "keras.layers", "class_name": "Lambda", "config": {
        "name": "evil", "function": {"class_name": "__lambda__", "config": {
            "code": "4wEAAAAAAAAAAAAAAAEAAAAD", "defaults": None, "closure": None}}}})


def _add_unknown(cfg):
    cfg["config"]["layers"].append({"class_name": "MyCustomLayer", "config": {"name": "custom"}})


def _units_mismatch(cfg):
    cfg["config"]["layers"][1]["config"]["units"] = 7


# Files made in a temp folder: name -> function(tmp) -> path
def f_text(tmp):
    p = os.path.join(tmp, "notes.h5")
    open(p, "w").write("hello, this is not a model\n")
    return p


def f_text_named(name):
    def make(tmp):
        p = os.path.join(tmp, name)
        open(p, "w").write("hello, this is not a model\n")
        return p
    return make


def f_lstm(tmp):  # seeded LSTM weights of 5 features, as a Keras archive
    from rnncli.keras.random import random_model
    from rnncli.models import write_weights

    p = os.path.join(tmp, "lstm.keras")
    write_weights(random_model(1, 3, 5, cell="lstm"), p)
    return p


def f_pickle_pt(tmp):  # the bytes of a protocol-2 pickle: never unpickled
    p = os.path.join(tmp, "old.pt")
    open(p, "wb").write(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.")
    return p


def f_empty_onnx(tmp):
    p = os.path.join(tmp, "model.onnx")
    open(p, "wb").close()
    return p


def f_truncated(tmp):
    data = open(ref_path("seed000_two_units", "model_k2.h5"), "rb").read()
    p = os.path.join(tmp, "half.h5")
    open(p, "wb").write(data[: len(data) // 2])
    return p


def f_truncated_named(source, name):
    def make(tmp):  # the first half of a zip archive: its list of members is gone
        data = open(source, "rb").read()
        p = os.path.join(tmp, name)
        open(p, "wb").write(data[: len(data) // 2])
        return p
    return make


def f_empty_h5(tmp):
    p = os.path.join(tmp, "empty.h5")
    h5py.File(p, "w").close()
    return p


def f_external_link(tmp):
    p = os.path.join(tmp, "link.h5")
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = np.array([b"simple_rnn"])
        f["simple_rnn"] = h5py.ExternalLink("/etc/passwd", "/")
    return p


def f_object_npz(tmp):
    p = os.path.join(tmp, "pickled.npz")
    np.savez(p, kernel=np.array([{"a": 1}], dtype=object))
    return p


def f_bad_shapes_npz(tmp):
    p = os.path.join(tmp, "shapes.npz")
    np.savez(p, kernel=np.ones((5, 2)), recurrent_kernel=np.ones((3, 3)), bias=np.ones(2))
    return p


def f_float_ids(tmp):
    p = os.path.join(tmp, "floats.csv")
    open(p, "w").write("token\n1.5\n2\n")
    return p


def f_big_ids(tmp):
    p = os.path.join(tmp, "ids.csv")
    open(p, "w").write("token\n5\n900\n")
    return p


def f_negative_ids(tmp):
    p = os.path.join(tmp, "neg.npy")
    np.save(p, np.array([[3, -1, 2]]))
    return p


def f_1d(tmp):
    p = os.path.join(tmp, "flat.npy")
    np.save(p, np.ones(5))
    return p


def f_4d(tmp):
    p = os.path.join(tmp, "four.npy")
    np.save(p, np.ones((1, 2, 3, 5)))
    return p


def f_nan(tmp):
    p = os.path.join(tmp, "nan.csv")
    open(p, "w").write("1,1,1,1,1\nnan,2,2,2,2\n")
    return p


def f_text_csv(tmp, text, name="in.csv"):
    p = os.path.join(tmp, name)
    open(p, "w").write(text)
    return p


def f_state(tmp):
    p = os.path.join(tmp, "h0.npy")
    np.save(p, np.ones(3))
    return p


def f_states_h_c(tmp):  # an LSTM's states, given to a SimpleRNN
    p = os.path.join(tmp, "h0c0.npz")
    np.savez(p, h=np.zeros(2), c=np.zeros(2))
    return p


CASES = [
    # (label, argv with {tmp}-made paths as callables, exit code, message)
    ("model: not HDF5 or zip", ["forward", f_text, "-i", S0_IN], 1,
     "holds text ('hello, this is not a model' ...), but a .h5 file is an HDF5 file"),
    ("model: empty, named .onnx", ["forward", f_empty_onnx, "-i", S0_IN], 1,
     "is empty, but a .onnx file is a protobuf ModelProto"),
    ("model: a legacy pickle named .pt", ["forward", f_pickle_pt, "-i", S0_IN], 1,
     "is a pickle (torch.save's format before PyTorch 1.6: rnncli unpickles nothing), but a "
     ".pt file is a zip archive"),
    ("model: no format's name", ["forward", f_text_named("notes.bin"), "-i", S0_IN], 1,
     "not a model file rnncli reads; expected .keras, .h5"),
    ("model: truncated HDF5", ["forward", f_truncated, "-i", S0_IN], 1, "not a readable HDF5 file"),
    ("model: truncated .keras",
     ["forward", f_truncated_named(sample("seed000_two_units.keras"), "half.keras"), "-i",
      S0_IN], 1, "half.keras: a zip archive cut short (it starts as one but its end, the list "
     "of members, is missing"),
    ("model: truncated .npz",
     ["forward", f_truncated_named(sample("seed000_two_units.npz"), "half.npz"), "-i",
      S0_IN], 1, "half.npz: a zip archive cut short"),
    ("model: HDF5 with no model weights", ["forward", f_empty_h5, "-i", S0_IN], 1,
     "holds no Keras model or weights"),
    ("model: .keras without config.json",
     ["forward", lambda t: _keras_with_config(t, None, drop="config.json"), "-i", S0_IN], 1,
     "has no config.json"),
    ("model: .keras without model.weights.h5",
     ["forward", lambda t: _keras_with_config(t, None, drop="model.weights.h5"), "-i", S0_IN], 1,
     "has no model.weights.h5"),
    ("model: config with a Lambda layer (never run)",
     ["forward", lambda t: _keras_with_config(t, _add_lambda), "-i", S0_IN, "-f", "json"], 0,
     "never runs code from a model file"),
    ("model: config with an unknown layer",
     ["forward", lambda t: _keras_with_config(t, _add_unknown), "-i", S0_IN, "-f", "csv"], 0,
     "MyCustomLayer, which rnncli cannot compute"),
    ("model: config that doesn't match the weights",
     ["forward", lambda t: _keras_with_config(t, _units_mismatch), "-i", S0_IN], 1,
     "config says units=7 but the kernel has shape (5, 2)"),
    ("model: weights with inconsistent shapes", ["forward", f_bad_shapes_npz, "-i", S0_IN], 1,
     "recurrent_kernel must be (2, 2) to match kernel (5, 2), got (3, 3)"),
    ("model: .npz with object (pickled) arrays", ["forward", f_object_npz, "-i", S0_IN], 1,
     "never loads"),
    ("model: HDF5 external link", ["forward", f_external_link, "-i", S0_IN], 1,
     "is an external link to /etc/passwd; refused"),
    ("model: a directory", ["forward", lambda t: t, "-i", S0_IN], 1, "is a directory"),
    ("model: missing path", ["forward", "missing.keras", "-i", S0_IN], 1, "no such file"),
    ("data: empty file", ["forward", S0, "-i", lambda t: f_text_csv(t, "")], 1, "is empty"),
    ("data: header only", ["forward", S0, "-i", lambda t: f_text_csv(t, "a,b,c,d,e\n")], 1,
     "has a header but no data rows"),
    ("data: ragged rows", ["forward", S0, "-i", lambda t: f_text_csv(t, "1,2,3,4,5\n1,2\n")], 1,
     "line 2 has 2 columns; expected 5"),
    ("data: non-numeric cell",
     ["forward", S0, "-i", lambda t: f_text_csv(t, "1,2,3,4,5\n1,2,x,4,5\n")], 1,
     "line 2, column 3: 'x' is not a number"),
    ("data: NaN (a warning)", ["forward", S0, "-i", f_nan, "-f", "csv"], 0,
     "input holds NaN or Inf values; they propagate"),
    ("data: NaN with --strict", ["forward", S0, "-i", f_nan, "--strict"], 1,
     "expected finite numbers (--strict)"),
    ("data: wrong feature count",
     ["forward", S0, "-i", sample("seed001_input.npy")], 1,
     "input has 3 features per timestep; the model expects 5"),
    ("data: 1-D array", ["forward", S0, "-i", f_1d], 1, "is 1-D (shape (5,))"),
    ("data: 4-D array", ["forward", S0, "-i", f_4d], 1,
     "input must have shape (batch, timesteps, features) or (timesteps, features), got shape "
     "(1, 2, 3, 5)"),
    ("data: floats for an Embedding", ["forward", EMB, "-i", f_float_ids], 1,
     "expects integer token ids, got non-integer values"),
    ("data: token id out of range", ["forward", EMB, "-i", f_big_ids], 1,
     "expects token ids in 0..199, got 900"),
    ("data: negative token id", ["forward", EMB, "-i", f_negative_ids], 1,
     "expects token ids in 0..199, got -1"),
    ("data: initial state of the wrong shape",
     ["forward", S0, "-i", S0_IN, "--initial-state", f_state], 1,
     "initial state for layer 'simple_rnn' must have shape (2,) or (1, 2), got (3,)"),
    ("data: initial state of a state the layer lacks",
     ["forward", S0, "-i", S0_IN, "--initial-state", f_states_h_c], 1,
     "initial state 'c': layer 'simple_rnn' has the state(s) h; expected those"),
    ("data: a directory", ["forward", S0, "-i", lambda t: t], 1, "is a directory"),
    ("data: missing path", ["forward", S0, "-i", "missing.csv"], 1, "no such file"),
    ("output: missing directory",
     ["export", S0, "-i", S0_IN, "-o", lambda t: os.path.join(t, "no", "o.npz")], 1,
     "does not exist"),
    ("output: existing file without --force",
     ["export", S0, "-i", S0_IN, "-o", lambda t: f_text_csv(t, "keep", "o.npz")], 1,
     "already exists; use --force to overwrite it"),
    ("usage: no input", ["forward", S0], 2, "Missing option '-i' / '--input'"),
    ("usage: unknown format", ["forward", S0, "-i", S0_IN, "-f", "xml"], 2,
     "'xml' is not one of"),
    ("data: text named .npy", ["forward", S0, "-i", f_text_named("x.npy")], 1,
     "x.npy: holds text, but a .npy file is numpy's binary format; expected one written by "
     "numpy.save"),
    ("usage: --heatmap of a gate's column without --gate",
     ["trace", f_lstm, "-i", S0_IN, "--heatmap", "gate"], 2,
     "the state section of layer 'lstm' has columns c_prev, fc, ig, c, h; --gate NAME shows"),
    ("usage: a --gate list with a gate the layer lacks",
     ["trace", f_lstm, "-i", S0_IN, "--gate", "i,g"], 2,
     "--gate g: no layer shown has that gate or section; expected one of LSTM: i, f, c, o, state; GRU: z, r, h, state"),
    ("usage: --cell for a model file", ["summary", S0, "--cell", "lstm"], 2,
     "--units, --input-dim and --cell go with --seed"),
    ("usage: a model file and --seed", ["summary", S0, "--seed", "1", "--units", "2"], 2,
     "give MODEL or --seed, not both"),
    ("usage: --target with --of", ["grad", S0, "-i", S0_IN, "--target", S0_IN, "--of",
                                    "output"], 2,
     "--target and --of each pick what is differentiated"),
    ("usage: a size that is not one", ["forward", S0, "-i", S0_IN, "--max-memory", "abc"], 2,
     "Invalid value for '--max-memory': 'abc' is not a size"),
    ("usage: seeded weights over the memory limit",
     ["forward", "--seed", "1", "--units", "40000", "--input-dim", "5", "-i", S0_IN], 1,
     "--units 40000: the weights would take 6.0 GiB, over the 2 GiB max_memory limit; if "
     "that is what you meant, raise it"),
]


def _argv(args, tmp):
    return [a(str(tmp)) if callable(a) else a for a in args]


@pytest.mark.parametrize("label,args,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, label, args, code, message):
    work = tmp_path / "work"
    work.mkdir()
    argv = _argv(args, work)
    before = set(os.listdir(work))
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    if code:
        assert r.stdout == ""
    if code == 1:  # usage errors (2) also show click's usage line
        assert len(r.stderr.strip().splitlines()) <= 2
    assert set(os.listdir(work)) == before  # no new or damaged file


def test_unreadable_file(monkeypatch, tmp_path):
    import rnncli.io.inputs

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rnncli.io.inputs, "open", denied, raising=False)
    r = CliRunner().invoke(cli, ["forward", S0, "-i", S0_IN])
    assert r.exit_code == 1 and "permission denied" in r.stderr


def test_binary_garbage_on_stdin():
    r = CliRunner().invoke(cli, ["forward", S0, "-i", "-"], input=b"\x00\xff\x13garbage")
    assert r.exit_code == 1 and "<stdin>: binary data that is not NPY" in r.stderr


def test_lambda_layer_is_listed_never_run(tmp_path):
    path = _keras_with_config(str(tmp_path), _add_lambda)
    model = rnncli.load_model(path)
    assert model.layers[-1].class_name == "Lambda"
    result = model.run(np.ones((1, 3, 5), np.float32))
    assert result.outputs is None and "never runs code" in result.output_error
    assert result.hidden["simple_rnn"].shape == (1, 3, 2)  # the RNN is still inspectable
    r = CliRunner().invoke(cli, ["summary", path])
    assert "evil (Lambda)" in r.stdout and "never runs code" in r.stderr


def test_hdf5_that_loops_inside_the_library_is_reported(tmp_path, monkeypatch):
    # A Keras 3 legacy .h5 whose global heap (holding model_config) was shuffled by the
    # fuzz test below: reading the attribute never returns inside HDF5.
    import rnncli.keras.h5probe

    monkeypatch.setattr(rnncli.keras.h5probe, "TIMEOUT_SECONDS", 1.0)
    data = bytearray(open(ref_path("bidirectional_masked", "model_k3legacy.h5"), "rb").read())
    damaged = bytes.fromhex(open(os.path.join(DATA, "damaged", "heap_7984.hex")).read())
    data[7984:7984 + len(damaged)] = damaged
    path = tmp_path / "looping.h5"
    path.write_bytes(bytes(data))
    with pytest.raises(RnncliError, match="reading its structure did not finish in 1 s"):
        rnncli.load_model(str(path))


def test_huge_zip_member_is_refused(tmp_path, monkeypatch):
    import rnncli.keras.archive as archive

    monkeypatch.setattr(archive, "MAX_WEIGHTS_BYTES", 1000)
    with pytest.raises(RnncliError, match="over the 1000-byte limit; refused"):
        rnncli.load_model(S0)


def test_traceback_flag_shows_the_traceback():
    r = CliRunner().invoke(cli, ["--traceback", "forward", "missing.keras", "-i", S0_IN])
    assert r.exit_code == 1 and isinstance(r.exception, RnncliError)


# ---------------------------------------------------------------- docs/errors.md

DOC = os.path.join(ROOT, "docs", "errors.md")


def error_table(tmp_path):
    lines = ["| input | exit code | what rnncli says (on stderr) |", "|---|---|---|"]
    for label, args, _code, _ in CASES:
        work = tmp_path / f"t{len(lines)}"
        work.mkdir()
        r = CliRunner().invoke(cli, _argv(args, work))
        said = r.stderr.strip().splitlines()
        said = said[-1] if said else ""
        said = said.replace(str(work), "…").replace(ROOT, ".").replace("|", "\\|")
        lines.append(f"| {label} | {r.exit_code} | `{said}` |")
    return "\n".join(lines) + "\n"


def test_error_table_in_docs_is_current(tmp_path):
    table = error_table(tmp_path)
    text = open(DOC).read() if os.path.exists(DOC) else ""
    start, end = "<!-- errors:start -->\n", "<!-- errors:end -->"
    if os.environ.get("RNNCLI_UPDATE_DOCS") == "1":
        head = text.split(start)[0] if start in text else text
        tail = text.split(end)[1] if end in text else "\n"
        with open(DOC, "w") as f:
            f.write(head + start + table + end + tail)
        text = open(DOC).read()
    assert start + table + end in text, "docs/errors.md is stale: run RNNCLI_UPDATE_DOCS=1 pytest"



def test_large_archived_weights_are_read_from_a_temporary_file(monkeypatch):
    import rnncli.keras.archive as archive

    monkeypatch.setattr(archive, "IN_MEMORY_BYTES", 1000)  # seed000's weights are ~12 kB
    model = rnncli.load_model(S0)
    x = np.load(ref_path("seed000_two_units", "input.npy"))
    np.testing.assert_allclose(model.run(x).output, np.load(
        ref_path("seed000_two_units", "expected_output.npy")), atol=1e-5)
    monkeypatch.setattr(archive, "MAX_WEIGHTS_BYTES", 5000)
    with pytest.raises(RnncliError, match="over the 5000-byte limit; refused"):
        rnncli.load_model(S0)


def test_integer_weights_are_computed_as_float32(tmp_path):
    """A hand-made .npz of integer weights (an identity kernel) ran numpy's tanh into an
    int32 array ("unexpected error") and numba's kernels into a TypingError: Keras makes
    every weight a float32 variable, so rnncli computes them as those floats."""
    rng = np.random.default_rng(0)
    k, u = rng.integers(-2, 3, (5, 3)), rng.integers(-1, 2, (3, 3))
    ints, floats = tmp_path / "ints.npz", tmp_path / "floats.npz"
    np.savez(ints, kernel=k.astype(np.int32), recurrent_kernel=u.astype(np.int64),
             bias=np.array([1, 0, -1], np.int8))
    np.savez(floats, kernel=k.astype(np.float32), recurrent_kernel=u.astype(np.float32),
             bias=np.array([1, 0, -1], np.float32))
    x = rng.normal(size=(2, 4, 5)).astype(np.float32)
    model = rnncli.load_model(str(ints))
    assert model.layers[0].cell.dtype == np.float32
    assert any("integer weights" in n for n in model.notes)
    nan = tmp_path / "nan.npz"  # weights-only files are checked for NaN as others are
    np.savez(nan, kernel=np.where(k == 2, np.nan, k).astype(np.float32),
             recurrent_kernel=u.astype(np.float32))
    assert "layer 'simple_rnn': kernel holds NaN or Inf values" in \
        rnncli.load_model(str(nan)).notes
    np.testing.assert_array_equal(model.run(x).output, rnncli.load_model(str(floats)).run(x).output)
    for engine in ("numpy", "numba"):
        os.environ["RNNCLI_ENGINE"] = engine
        try:
            result = CliRunner().invoke(cli, ["grad", str(ints), "-i", str(sample("seed000_input.csv")),
                                              "--of", "output", "-f", "json"])
        finally:
            del os.environ["RNNCLI_ENGINE"]
        assert result.exit_code == 0, result.output
