"""export --sample/--steps/--unit in every format, and the tsv/ndjson text formats.

The rule checked here, written independently of rnncli/io/slices.py: a selected export is
exactly the unselected export's slice; sequences (hidden, cell, the trace) are cut on
samples, steps and units, final states on samples and units, biases on units, masks on
samples and steps, the model output on samples only.
"""

import csv
import io
import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ref_path, sample

import rnncli
from rnncli.cli import cli
from rnncli.errors import UsageError
from rnncli.io.export import export_results

BIDI = ref_path("bidirectional_masked", "model.keras")  # bidi (2x4, concat) -> top (3), masked
BIDI_IN = ref_path("bidirectional_masked", "input.npy")  # (3, 6, 3)
MIXED = ref_path("..", "lstm_gru_reference", "mixed_stack", "model.keras")  # rnn 4, lstm 3, gru 2
MIXED_IN = ref_path("..", "lstm_gru_reference", "mixed_stack", "input.npy")  # (2, 10, 2)
S2, S2_IN = sample("seed002_batch_state.keras"), sample("seed002_input.npy")  # (32, 28, 32), 16

SAMPLES, STEPS, UNITS = [2, 0], slice(1, 5), [0, 2]
OPTS = ["--sample", "2,0", "--steps", "1:5", "-u", "0,2"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def export(tmp_path, name, *args, model=BIDI, x=BIDI_IN):
    out = tmp_path / name
    r = invoke("export", *([model] if model else []), "-i", x, "-o", out, "--force", *args)
    assert r.exit_code == 0, r.stderr
    return out


def expected(key, a, samples=SAMPLES, steps=STEPS, units=UNITS):
    kind = key.split("/")[0]
    if kind.startswith("output"):
        return a[samples]
    if kind == "mask":
        return a[samples][:, steps]
    if kind == "state":
        return a[samples][:, units]
    if kind in ("bias", "recurrent_bias"):
        return a[units]
    assert a.ndim == 3, key
    return a[samples][:, steps][:, :, units]


def read_h5(path):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            parts = name.split("/")
            out["/".join([parts[-1], *parts[:-1]])] = obj[()]
    with h5py.File(path) as f:
        f.visititems(visit)
    return out


def read_json(path):
    doc = json.load(open(path))
    return {k: np.asarray(v["data"], dtype=v["dtype"]) for k, v in doc["arrays"].items()}


READ = {"npz": lambda p: dict(np.load(p)), "h5": read_h5, "json": read_json}


@pytest.mark.parametrize("fmt", ["npz", "h5", "json"])
@pytest.mark.parametrize("model,x", [(BIDI, BIDI_IN), (MIXED, MIXED_IN)], ids=["bidi", "mixed"])
@pytest.mark.parametrize("engine", ["auto", "numba"])  # numba: the trace computed when read
def test_named_arrays_are_the_full_exports_slices(tmp_path, monkeypatch, fmt, model, x, engine):
    monkeypatch.setenv("RNNCLI_ENGINE", engine)
    samples = SAMPLES if model == BIDI else [1]
    opts = OPTS if model == BIDI else ["--sample", "1", "--steps", "1:5", "-u", "0,1"]
    units = UNITS if model == BIDI else [0, 1]
    full = READ[fmt](export(tmp_path, f"full.{fmt}", model=model, x=x))
    cut = READ[fmt](export(tmp_path, f"cut.{fmt}", *opts, model=model, x=x))
    assert set(cut) == set(full)
    for k, a in full.items():
        np.testing.assert_array_equal(cut[k], expected(k, a, samples, units=units), err_msg=k)


def test_the_trace_of_some_steps_computes_those_steps_alone(tmp_path, monkeypatch):
    """export --steps of the trace's arrays (npz, h5, json) computes the terms of those
    steps alone, after the scan (rnncli/core/replay.py), and writes the bits a whole
    trace has there."""
    from rnncli.core import replay

    monkeypatch.setenv("RNNCLI_ENGINE", "numba")
    steps, real = [], replay.replay

    def counted(cell, loop, x, *rest, **kw):
        steps.append(x.shape[1])
        return real(cell, loop, x, *rest, **kw)

    monkeypatch.setattr(replay, "replay", counted)
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(5).normal(size=(3, 60, 4)).astype(np.float32))
    seeded = ["--seed", "7", "--cell", "lstm", "--units", "5"]
    cut = dict(np.load(export(tmp_path, "cut.npz", *seeded, "--steps", "40:44", model="",
                              x=x)))
    assert steps == [4]  # one replay, of the four steps
    full = dict(np.load(export(tmp_path, "full.npz", *seeded, model="", x=x)))
    assert set(cut) == set(full) and "gate/lstm/f" in cut
    for k, a in full.items():
        np.testing.assert_array_equal(cut[k], expected(k, a, [0, 1, 2], slice(40, 44),
                                                       slice(None)), err_msg=k)


def test_keras_numbers_of_a_selection(tmp_path):
    z = np.load(export(tmp_path, "k.npz", *OPTS))
    keras = np.load(ref_path("bidirectional_masked", "expected_hidden_bidi.npy"))
    np.testing.assert_allclose(z["hidden/bidi"], keras[SAMPLES][:, STEPS][:, :, UNITS],
                               atol=1e-5)
    out = np.load(ref_path("bidirectional_masked", "expected_output.npy"))
    np.testing.assert_allclose(z["output"], out[SAMPLES], atol=1e-5)


def test_npy_and_stdout(tmp_path):
    full = np.load(export(tmp_path, "f.npy", "--what", "hidden/top"))
    r = CliRunner().invoke(cli, ["export", BIDI, "-i", BIDI_IN, "-o", "-", "-f", "npy",
                                 "--what", "hidden/top", *OPTS])
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(np.load(io.BytesIO(r.stdout_bytes)), expected("hidden", full))


def test_lstmvis_holds_the_selection(tmp_path):
    full = read_h5(export(tmp_path, "f.h5", "-f", "lstmvis", "--layers", "bidi"))["states"]
    cut = read_h5(export(tmp_path, "c.h5", "-f", "lstmvis", "--layers", "bidi", *OPTS))["states"]
    want = expected("hidden", full.reshape(3, 6, 8)).reshape(-1, 2)
    np.testing.assert_array_equal(cut, want)


def test_selection_is_recorded_in_json_and_h5(tmp_path):
    doc = json.load(open(export(tmp_path, "s.json", *OPTS)))
    assert doc["selection"] == {"samples": [2, 0], "steps": [1, 2, 3, 4], "units": [0, 2]}
    with h5py.File(export(tmp_path, "s.h5", "--steps", "-2:")) as f:
        assert list(f.attrs["steps"]) == [4, 5]
        assert "samples" not in f.attrs and "units" not in f.attrs
    assert "selection" not in json.load(open(export(tmp_path, "n.json")))


def test_steps_keep_final_states_whole(tmp_path):
    full = np.load(export(tmp_path, "f.npz", "--what", "state"))
    cut = np.load(export(tmp_path, "c.npz", "--what", "state,hidden", "--steps", "0:2"))
    for k in full.files:
        np.testing.assert_array_equal(cut[k], full[k])
    assert cut["hidden/top"].shape == (3, 2, 3)


@pytest.mark.parametrize("samples,runs", [("3,1", [8]), ("3,30", [8, 8]), ("0,9,1", [8, 8, 8])])
def test_only_the_batches_holding_a_sample_are_computed(tmp_path, monkeypatch, samples, runs):
    from rnncli.core.model import Model

    rows = []
    run = Model.run

    def counting(self, x, *a, **kw):
        rows.append(len(x))
        return run(self, x, *a, **kw)

    monkeypatch.setattr(Model, "run", counting)
    export_results(rnncli.load_model(S2), np.load(S2_IN), str(tmp_path / "c.npz"), "npz",
                   samples=samples, batch_size=8)
    assert rows == runs


@pytest.mark.parametrize("fmt", ["npz", "csv"])
def test_equal_to_the_last_bit_where_blas_rounds_by_batch(tmp_path, fmt):
    """seed002's 32 features: OpenBLAS rounds x·W of a row by where it sits in the product,
    so a run on fewer rows can differ in the last bit; the selection's numbers must not."""
    model, x = rnncli.load_model(S2), np.load(S2_IN)
    full, cut = tmp_path / f"f.{fmt}", tmp_path / f"c.{fmt}"
    export_results(model, x, str(full), fmt, batch_size=12)
    export_results(model, x, str(cut), fmt, batch_size=12, samples="30,5,7,13", units="3",
                   steps="-2:")
    if fmt == "npz":
        f, c = np.load(full), np.load(cut)
        for k in f.files:
            np.testing.assert_array_equal(c[k], expected(k, f[k], [30, 5, 7, 13], slice(-2, None),
                                                         [3]), err_msg=k)
        return
    rows = {(r["sample"], r["step"], r["unit"]): r for r in csv_rows(full)}
    got = csv_rows(cut)
    assert [(r["sample"], r["step"], r["unit"]) for r in got] == \
        [(s, t, "3") for s in ("30", "5", "7", "13") for t in ("26", "27")]
    assert got == [rows[r["sample"], r["step"], r["unit"]] for r in got]


def test_a_batch_initial_state_follows_its_samples(tmp_path):
    args = ("--initial-state", sample("seed003_initial_state.npy"))
    m, x = sample("seed003_initial_state.keras"), sample("seed003_input.npy")
    full = np.load(export(tmp_path, "f.npz", *args, model=m, x=x))
    cut = np.load(export(tmp_path, "c.npz", *args, "--sample", "1", model=m, x=x))
    for k in full.files:
        np.testing.assert_array_equal(cut[k], expected(k, full[k], [1], slice(None),
                                                       slice(None)), err_msg=k)


# ---------------------------------------------------------------- the trace's rows


def csv_rows(path, delimiter=","):
    return list(csv.DictReader(open(path, newline=""), delimiter=delimiter))


def ndjson_rows(path):
    """One csv row per unit of each ndjson record."""
    rows = []
    for line in open(path):
        rec = json.loads(line)
        for i, u in enumerate(rec["units"]):
            row = {"layer": rec["layer"], "direction": rec["direction"] or "",
                   "sample": str(rec["sample"]), "step": str(rec["step"]), "t": str(rec["t"]),
                   "unit": str(u), "dominant": (rec["largest"] or [""] * 99)[i],
                   "flag": rec["note"][i]}
            if "section" in rec:
                row["section"] = rec["section"]
            for k, v in rec.items():
                if isinstance(v, list) and k not in ("units", "largest", "note"):
                    row[k] = v[i]
            rows.append(row)
    return rows


def same_rows(got, want):
    """Same keys and text; numbers compared as float32 (json reads them back as floats).
    A csv row's blank cells (a column another section has) are absent from ndjson."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if any(isinstance(v, float) for v in g.values()):
            w = {k: v for k, v in w.items() if v != "" or k in ("direction", "dominant", "flag")}
        assert set(g) == set(w), (g, w)
        for k, v in w.items():
            if isinstance(g[k], float):
                assert np.float32(g[k]) == np.float32(float(v)), (k, g[k], v)
            else:
                assert g[k] == v, (k, g, w)


@pytest.mark.parametrize("model,x", [(BIDI, BIDI_IN), (MIXED, MIXED_IN)], ids=["bidi", "mixed"])
def test_tsv_and_ndjson_read_back_as_the_csv(tmp_path, model, x):
    want = csv_rows(export(tmp_path, "t.csv", model=model, x=x))
    same_rows(csv_rows(export(tmp_path, "t.tsv", model=model, x=x), "\t"), want)
    same_rows(ndjson_rows(export(tmp_path, "t.ndjson", model=model, x=x)), want)
    assert {r["layer"] for r in want} == ({"bidi", "top"} if model == BIDI else
                                          {"rnn", "lstm", "gru"})


@pytest.mark.parametrize("fmt", ["csv", "tsv", "ndjson"])
def test_rows_are_the_full_exports_rows(tmp_path, fmt):
    read = {"csv": csv_rows, "tsv": lambda p: csv_rows(p, "\t"), "ndjson": ndjson_rows}[fmt]
    full = read(export(tmp_path, f"f.{fmt}", model=MIXED, x=MIXED_IN))
    cut = read(export(tmp_path, f"c.{fmt}", "--sample", "1", "--steps", "-3:", "-u", "1",
                      model=MIXED, x=MIXED_IN))
    want = [r for r in full if r["sample"] == "1" and int(r["step"]) >= 7 and r["unit"] == "1"]
    assert len(want) == 3 * (1 + 5 + 4)  # steps x sections (rnn; lstm's i f c o state; gru's z r h state)
    same_rows(cut, want)


@pytest.mark.parametrize("ext,fmt", [(".tsv", "tsv"), (".tab", "tsv"), (".ndjson", "ndjson"),
                                     (".jsonl", "ndjson")])
def test_text_formats_from_the_extension(tmp_path, ext, fmt):
    r = invoke("export", BIDI, "-i", BIDI_IN, "-o", tmp_path / f"x{ext}")
    assert r.exit_code == 0, r.stderr
    assert f"({fmt}, 3 samples)" in r.stderr
    first = (tmp_path / f"x{ext}").read_text().splitlines()[0]
    assert first.startswith("layer\tdirection\t") if fmt == "tsv" else json.loads(first)


def test_ndjson_to_stdout_is_one_object_a_line():
    r = CliRunner().invoke(cli, ["export", BIDI, "-i", BIDI_IN, "-o", "-", "-f", "ndjson",
                                 "--sample", "1", "--layers", "top"])
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(recs) == 6 and {(d["sample"], d["layer"]) for d in recs} == {(1, "top")}
    assert recs[0]["units"] == [0, 1, 2] and len(recs[0]["z"]) == 3


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("args,message", [
    (["--steps", "10:20"], "--steps 10:20 selects no step; there are 6 (0 to 5)"),
    (["--steps", "x"], "--steps x is not a slice"),
    (["--steps", "0:6:0"], "--steps 0:6:0: a slice's stride can't be 0"),
    (["--sample", "0:3:0"], "--sample 0:3:0: a slice's stride can't be 0"),
    (["--steps", ""], "--steps is empty; expected e.g. 0:10"),
    (["--sample", " "], "--sample is empty"),
    (["-u", ""], "--unit is empty"),
    (["--sample", "3"], "--sample 3 is out of range; there are 3 (sample 0 to 2)"),
    (["--sample", "1:1"], "--sample 1:1 selects nothing (there are 3)"),
    (["-u", "3"], "--unit 3 is out of range; there are 3 (unit 0 to 2)"),  # top has 3
    (["-u", "2:2"], "--unit 2:2 selects nothing (there are 3)"),
    (["-u", "0,a"], "--unit '0,a': 'a' is not an index"),
    (["-f", "npz", "--what", "output", "-u", "0"], "none of the arrays written has the layers' "
                                                   "units"),
    (["-f", "npz", "--what", "state", "--steps", "0"], "none of the arrays written has timesteps"),
    (["-f", "tsv", "--what", "hidden"], "--what picks arrays"),
    (["-f", "zarr", "--sample", "0"], "--sample: a .zarr export writes every sample"),
    (["--weights", "--unit", "0"], "--unit selects results; --weights"),
])
@pytest.mark.parametrize("fmt", ["npz", "ndjson"])
def test_bad_selections_are_usage_errors(tmp_path, args, message, fmt):
    out = tmp_path / (f"x.{fmt}" if "-f" not in args else "x.out")  # (-f: its own format)
    r = invoke("export", BIDI, "-i", BIDI_IN, "-o", out, *args)
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not out.exists()


def test_unit_range_follows_the_arrays_written(tmp_path):
    """--unit counts along each array's last axis, up to the narrowest array written: top's
    3 units bound it unless --layers leaves top out; bidi's directions have 4."""
    z = np.load(export(tmp_path, "b.npz", "--layers", "bidi", "--what", "hidden", "-u", "3"))
    assert z["hidden/bidi"].shape == z["hidden/bidi/forward"].shape == (3, 6, 1)
    r = invoke("export", BIDI, "-i", BIDI_IN, "-o", tmp_path / "c.npz", "--layers", "bidi",
               "-u", "4")
    assert r.exit_code == 2 and "--unit 4 is out of range; there are 4" in r.stderr


def test_an_unknown_extension_is_a_usage_error(tmp_path):
    r = invoke("export", BIDI, "-i", BIDI_IN, "-o", tmp_path / "x.xyz")
    assert r.exit_code == 2
    assert r.stderr.startswith("rnncli: error: -o ") and "use -f with one of npz, h5, csv, " \
        "tsv, json, ndjson" in r.stderr


def test_library_errors_are_usage_errors(tmp_path):
    model = rnncli.load_model(BIDI)
    with pytest.raises(UsageError, match="selects nothing"):
        export_results(model, np.load(BIDI_IN), str(tmp_path / "e.npz"), "npz", samples=[])


def test_onnx_arrays_follow_the_selection(tmp_path):
    """ONNX's Y is (T, directions, B, H) and Y_h (directions, B, H): their batch axis is not
    the first; Y is left out with --steps (--what Y then is an error)."""
    case = ref_path("..", "torch_onnx", "onnx_lstm_bidirectional")
    m, x = f"{case}/model.onnx", f"{case}/input.npy"
    full = np.load(export(tmp_path, "f.npz", model=m, x=x))
    np.testing.assert_allclose(full["Y"], np.load(f"{case}/expected_Y.npy"), atol=1e-5)
    cut = np.load(export(tmp_path, "c.npz", "--sample", "1", "-u", "3", model=m, x=x))
    np.testing.assert_array_equal(cut["Y"], full["Y"][:, :, [1]][..., [3]])
    np.testing.assert_array_equal(cut["Y_h"], full["Y_h"][:, [1]][..., [3]])
    steps = np.load(export(tmp_path, "s.npz", "--steps", "0:2", model=m, x=x))
    assert "Y" not in steps.files and "Y_c" in steps.files
    r = invoke("export", m, "-i", x, "-o", tmp_path / "y.npz", "--what", "Y", "--steps", "0")
    assert r.exit_code == 2 and "--steps doesn't apply to ONNX's Y" in r.stderr


MIXED = ref_path("..", "lstm_gru_reference", "mixed_stack", "model.keras")  # rnn, lstm, gru
MIXED_IN = ref_path("..", "lstm_gru_reference", "mixed_stack", "input.npy")


@pytest.mark.parametrize("command", ["export", "trace"])
def test_csv_columns_keep_their_place_whatever_the_selection(tmp_path, command):
    """The csv header is the model's (every cell kind's columns in a fixed order), so `h`
    is the same column with every layer and with one layer or gate picked."""
    pick = "--layers" if command == "export" else "--layer"
    picks = {"all": [pick, "rnn,lstm,gru"], "gru": [pick, "gru"], "lstm": [pick, "lstm"]}
    if command == "trace":
        picks["f"] = [pick, "lstm", "--gate", "f"]
    tables = {}
    for name, extra in picks.items():
        out = str(tmp_path / f"{name}.csv")
        r = CliRunner().invoke(cli, [command, MIXED, "-i", MIXED_IN, "-f", "csv", "-o", out,
                                     *extra])
        assert r.exit_code == 0, r.output
        with open(out, newline="") as f:
            tables[name] = list(csv.reader(f))
    headers = {name: tuple(t[0]) for name, t in tables.items()}
    assert len(set(headers.values())) == 1, headers
    rows, layer = tables["all"][1:], headers["all"].index("layer")
    assert {r[layer] for r in rows} == {"rnn", "lstm", "gru"}
    for name in ("gru", "lstm"):
        assert tables[name][1:] == [r for r in rows if r[layer] == name]
    h = headers["all"].index("h")
    assert all(r[h] for r in rows if r[layer] == "rnn")  # SimpleRNN rows fill h


def test_ndjson_and_json_largest_is_a_list_like_note():
    """A gated cell's state section has no x·W/h·U/b parts: `largest` is "" per unit (the
    csv's blank `dominant`), a list like `note`, not null."""
    args = ["trace", MIXED, "-i", MIXED_IN, "--layer", "lstm,gru"]
    lines = CliRunner().invoke(cli, [*args, "-f", "ndjson"]).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["section"] for r in records} >= {"state", "f", "z"}
    for r in records:
        assert isinstance(r["largest"], list) and isinstance(r["note"], list)
        assert len(r["largest"]) == len(r["note"]) == len(r["units"])
    assert {x for r in records if r["section"] == "state" for x in r["largest"]} == {""}
    doc = json.loads(CliRunner().invoke(cli, [*args, "-f", "json"]).stdout)
    for t in doc["traces"]:
        assert np.shape(t["largest"]) == np.shape(t["note"]) == np.shape(t["h" if "h" in t
                                                                            else "gate"])


def test_npy_without_what_is_a_usage_error_naming_the_arrays(tmp_path):
    out = tmp_path / "x.npy"
    r = invoke("export", sample("seed000_two_units.keras"), "-i", sample("seed000_input.csv"),
               "-o", out)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().endswith(
        "there are 7 arrays: output, hidden/simple_rnn, state/simple_rnn, xw/simple_rnn, "
        "hu/simple_rnn, bias/simple_rnn, z/simple_rnn"), r.stderr
    assert not out.exists()


def test_one_step_is_counted_in_the_singular(tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("x0,x1,x2,x3,x4\n1,1,1,1,1\n")
    r = invoke("export", sample("seed000_two_units.keras"), "-i", one, "-o",
               tmp_path / "x.npz", "--steps", "1:")
    assert r.exit_code == 2, r.output
    assert "--steps 1: selects no step; there is 1 (0)" in r.stderr, r.stderr


def test_there_are_and_index_range_agree_in_number():
    from rnncli.errors import index_range, there_are

    assert there_are(1) == "there is 1" and there_are(1, "array") == "there is 1 array"
    assert there_are(7, "array") == "there are 7 arrays" and there_are(0) == "there are 0"
    assert index_range(1, "sample") == "sample 0" and index_range(3, "unit") == "unit 0 to 2"


def test_the_wrote_line_names_the_steps_and_units(tmp_path):
    out = tmp_path / "x.npz"
    r = invoke("export", BIDI, "-i", BIDI_IN, "-o", out, "--sample", "1", "--steps", "0:2",
               "-u", "0")
    assert r.exit_code == 0, r.output
    assert r.stderr.strip() == f"rnncli: wrote {out} (npz, 1 of 3 samples, steps 0:2, units 0)"
    with np.load(out) as z:
        assert z["hidden/top"].shape == (1, 2, 1)


def test_every_command_gives_a_sample_the_same_bits():
    """forward, forward --sample, trace --sample and export printed a sample's numbers a
    few ulp apart (0.64341265 against 0.64341253): export ran the compiled loop where the
    other commands ran numpy's, and --sample ran one row, which numpy's BLAS sums in
    another order than the same row in its batch. Each is now computed in its batch, by
    the same loop, whatever the command."""
    model, x = sample("seed002_batch_state.keras"), sample("seed002_input.npy")

    def rows(args):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        return [line.split(",") for line in result.output.splitlines()[1:]]

    whole = rows(["forward", model, "-i", x, "-f", "csv"])
    assert len({r[0] for r in whole}) > 1  # a batch of several samples
    for s in ("0", "3"):
        one = rows(["forward", model, "-i", x, "-f", "csv", "--sample", s])
        assert one == [r for r in whole if r[0] == s]
    exported = rows(["export", model, "-i", x, "-o", "-", "-f", "csv"])
    header = CliRunner().invoke(cli, ["export", model, "-i", x, "-o", "-", "-f", "csv"]
                                ).output.splitlines()[0].split(",")
    h = header.index("h")  # the trace's rows: one a unit and step, h its output
    sample_, step, unit = (header.index(k) for k in ("sample", "t", "unit"))
    by_step = {(r[0], r[1]): r[2:] for r in whole}
    for r in exported:
        assert r[h] == by_step[(r[sample_], r[step])][int(r[unit])], r
