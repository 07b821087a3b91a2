"""The commands, through click's CliRunner: exact numbers from Keras, formats, exit codes."""

import csv
import io
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ref_path, sample

from rnncli.cli import cli

S0 = sample("seed000_two_units.keras")
S0_IN = sample("seed000_input.csv")
# Keras 3.15's output for seed 000 (tests/data/keras_reference/seed000_two_units)
S0_OUT = np.load(ref_path("seed000_two_units", "expected_output.npy"))[0]


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def rows(text, delimiter=","):
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def test_forward_table_shows_every_timestep():
    r = run("forward", S0, "-i", S0_IN)
    assert r.exit_code == 0, r.stderr
    assert "simple_rnn (SimpleRNN, tanh, 2 units)  sample 0" in r.stdout
    for value in ("0.17312296", "-0.601329", "0.6816086", "-0.98611367"):
        assert value in r.stdout
    assert r.stderr == ""


def test_forward_csv_is_keras_numbers():
    r = run("forward", S0, "-i", S0_IN, "-f", "csv")
    assert r.exit_code == 0
    table = rows(r.stdout)
    assert table[0] == ["sample", "t", "h0", "h1"]
    got = np.array([[float(v) for v in row[2:]] for row in table[1:]])
    np.testing.assert_allclose(got, S0_OUT, atol=1e-6)
    assert [row[:2] for row in table[1:]] == [["0", "0"], ["0", "1"], ["0", "2"]]


def test_forward_tsv_and_ndjson_and_json_agree():
    tsv = rows(run("forward", S0, "-i", S0_IN, "-f", "tsv").stdout, "\t")
    nd = [json.loads(line) for line in run("forward", S0, "-i", S0_IN, "-f", "ndjson").stdout.splitlines()]
    doc = json.loads(run("forward", S0, "-i", S0_IN, "-f", "json").stdout)
    assert [float(v) for v in tsv[3][2:]] == nd[2]["h"] == doc["layers"][0]["hidden"][0][2]
    assert nd[2] == {"layer": "simple_rnn", "sample": 0, "step": 2, "t": 2, "h": nd[2]["h"]}
    np.testing.assert_allclose(doc["output"][0][0], S0_OUT, atol=1e-6)


def test_forward_npy_to_stdout():
    r = CliRunner().invoke(cli, ["forward", S0, "-i", S0_IN, "-f", "npy"])
    arr = np.load(io.BytesIO(r.stdout_bytes))
    np.testing.assert_allclose(arr[0], S0_OUT, atol=1e-6)


def test_trace_shows_the_notebooks_arithmetic():
    r = run("trace", S0, "-i", S0_IN)
    assert r.exit_code == 0
    # x·W + b from the notebook (bias is zero here), and h = tanh(z)
    for value in ("0.17488432", "-0.6952264", "0.34976864", "-1.3904527", "0.52465284",
                  "-2.085679"):
        assert value in r.stdout
    assert "h = tanh(z)" in r.stdout
    assert "saturated" in r.stdout  # unit 1 at t=2: tanh(-2.48) = -0.986


def test_trace_csv_terms_add_up():
    r = run("trace", S0, "-i", S0_IN, "-f", "csv", "--terms")
    table = rows(r.stdout)
    head = table[0]
    assert head[:13] == ["layer", "direction", "sample", "step", "t", "unit", "xw", "hu",
                         "bias", "z", "h", "dominant", "flag"]
    assert head[13:] == [f"x{i}_w" for i in range(5)]
    for row in table[1:]:
        rec = dict(zip(head, row))
        xw, hu, b, z = (float(rec[k]) for k in ("xw", "hu", "bias", "z"))
        assert abs(xw + hu + b - z) < 1e-6
        assert abs(sum(float(rec[f"x{i}_w"]) for i in range(5)) - xw) < 1e-5
        assert abs(np.tanh(z) - float(rec["h"])) < 1e-6
    xw_plus_b = [float(r[6]) + float(r[8]) for r in table[1:]]
    np.testing.assert_allclose(xw_plus_b, [0.17488432, -0.6952264, 0.34976864, -1.3904527,
                                           0.52465284, -2.085679], rtol=1e-6)


def test_trace_flags_dead_relu_units():
    r = run("trace", sample("seed004_relu.keras"), "-i", sample("seed004_input.npy"), "-f", "csv")
    table = rows(r.stdout)
    dead = [row for row in table[1:] if row[12] == "dead"]
    assert dead and all(float(row[9]) <= 0 for row in dead)


def test_seed004_relu_output():
    r = run("forward", sample("seed004_relu.keras"), "-i", sample("seed004_input.npy"))
    assert "[6.445161 2.715219]" in r.stdout


def test_summary_counts_57_parameters():
    r = run("summary", sample("seed001_dense_head.keras"))
    assert r.exit_code == 0
    assert "Total params: 57" in r.stdout
    assert "│      45 │" in r.stdout and "│      12 │" in r.stdout
    assert "Keras 3 archive (.keras), written by Keras 3.15.1" in r.stdout
    assert "spectral radius" in r.stdout


def test_summary_json():
    info = json.loads(run("summary", sample("seed001_dense_head.keras"), "-f", "json").stdout)
    assert [la["params"] for la in info["layers"]] == [45, 12]
    assert info["layers"][0]["output_shape"] == "(None, 5)"
    rec = info["recurrence"][0]
    assert rec["max_singular_value"] >= rec["spectral_radius"] - 1e-9


def test_summary_warns_for_weights_only():
    r = run("summary", ref_path("seed004_relu", "model.weights.h5"))
    assert r.exit_code == 0
    assert "assumed Keras' defaults" in r.stderr


BILSTM = ref_path("..", "lstm_gru_reference", "embedding_bilstm_tagger", "model.keras")


def test_summary_makes_no_memory_claim_for_a_gated_cells_gates():
    """An LSTM/GRU keeps memory in c (or through the update gate) whatever U is: a gate's
    row reads the size of h·U_g only; SimpleRNN keeps its contracting reading."""
    info = json.loads(run("summary", BILSTM, "-f", "json").stdout)
    gated = [r for r in info["recurrence"] if r["gate"]]
    assert len(gated) == 8 and all(r["max_singular_value"] < 1 for r in gated)
    for r in gated:
        assert "fades" not in r["reading"] and "memory" not in r["reading"]
        assert f"h·U_{r['gate']} only shrinks h" in r["reading"]
    table = run("summary", BILSTM, "--width", "80").stdout
    assert "fades" not in table and "can keep memory whatever U is" in " ".join(table.split())
    from rnncli.present.summary import recurrence_reading

    assert recurrence_reading(0.5, 0.8) == "contracting: only shrinks (memory fades)"
    assert "fades" not in recurrence_reading(0.5, 0.8, "f")
    assert "can enlarge" in recurrence_reading(0.5, 1.5, "z")


@pytest.mark.parametrize("width", [80, 60])
def test_summary_never_cuts_a_config_value(width):
    out = run("summary", BILSTM, "--width", str(width)).stdout
    assert "…" not in out
    flat = "".join(line.split("│")[4].strip() for line in out.splitlines()
                   if line.count("│") == 5 and "Param" not in line)
    assert "recurrent_activation=sigmoid," in flat


def test_random_weights_need_no_file():
    a = run("forward", "--seed", "1", "--units", "2", "-i", S0_IN, "-f", "csv")
    b = run("forward", "--seed", "1", "--units", "2", "-i", S0_IN, "-f", "csv")
    c = run("forward", "--seed", "2", "--units", "2", "-i", S0_IN, "-f", "csv")
    assert a.exit_code == 0 and a.stdout == b.stdout != c.stdout
    assert rows(a.stdout)[0] == ["sample", "t", "h0", "h1"]


def test_selection_options():
    r = run("forward", sample("seed002_batch_state.keras"), "-i", sample("seed002_input.npy"),
            "-f", "csv", "--sample", "1,3", "--steps", "-2:", "-u", "0:3")
    table = rows(r.stdout)
    assert table[0] == ["sample", "t", "h0", "h1", "h2"]
    assert [row[:2] for row in table[1:]] == [["1", "26"], ["1", "27"], ["3", "26"], ["3", "27"]]
    expected = np.load(ref_path("seed002_batch_state", "expected_hidden_simple_rnn.npy"))
    np.testing.assert_allclose(float(table[1][2]), expected[1, 26, 0], atol=1e-6)


def test_long_tables_are_elided_unless_all():
    short = run("forward", sample("seed002_batch_state.keras"), "-i",
                sample("seed002_input.npy"), "--sample", "0")
    full = run("forward", sample("seed002_batch_state.keras"), "-i",
               sample("seed002_input.npy"), "--sample", "0", "--all")
    assert "⋮" in short.stdout and "⋮" not in full.stdout
    assert len(full.stdout.splitlines()) > len(short.stdout.splitlines())


def test_initial_state_option():
    r = run("forward", sample("seed003_initial_state.keras"), "-i", sample("seed003_input.npy"),
            "--initial-state", sample("seed003_initial_state.npy"), "-f", "npy")
    arr = np.load(io.BytesIO(r.stdout_bytes))
    np.testing.assert_allclose(arr, np.load(ref_path("seed003_initial_state", "expected_output.npy")),
                               atol=1e-5)


def test_stdin_csv_and_npy():
    text = open(S0_IN).read()
    a = run("forward", S0, "-i", "-", "-f", "csv", input=text)
    buf = io.BytesIO()
    np.save(buf, np.loadtxt(S0_IN, delimiter=",", skiprows=1))
    b = CliRunner().invoke(cli, ["forward", S0, "-i", "-", "-f", "csv"], input=buf.getvalue())
    assert a.exit_code == b.exit_code == 0
    assert a.stdout == b.stdout


def test_embedding_model_takes_token_csv():
    r = run("forward", sample("masked_classifier.keras"), "-i",
            sample("masked_classifier_input.csv"), "-f", "json")
    doc = json.loads(r.stdout)
    expected = np.load(ref_path("embedding_masked_classifier", "expected_output.npy"))
    np.testing.assert_allclose(doc["output"][0], expected, atol=1e-5)


def test_set_overrides_weights_only_config():
    path = ref_path("seed004_relu", "model.weights.h5")
    r = run("forward", path, "-i", sample("seed004_input.npy"), "--set", "activation=relu",
            "-f", "csv")
    assert rows(r.stdout)[2][2:] == ["6.445161", "2.715219"]


@pytest.mark.parametrize("args,message,code", [
    (["forward", S0, "-i", sample("seed001_input.npy")],
     "input has 3 features per timestep; the model expects 5", 1),
    (["forward", "nope.keras", "-i", S0_IN], "nope.keras: no such file", 1),
    (["forward", S0_IN, "-i", S0_IN], "not a model file", 1),
    (["forward", S0, "-i", S0_IN, "--layer", "nope"],
     "no recurrent layer 'nope' in the model; expected a name or index of one of: simple_rnn",
     2),
    (["trace", S0, "-i", S0_IN, "--layer", "nope"], "no recurrent layer 'nope'", 2),
    (["export", S0, "-i", S0_IN, "-o", "-", "-f", "json", "--layers", "nope"],
     "--layers: no recurrent layer 'nope'; expected one of simple_rnn", 2),
    (["convert", S0, "-o", "weights.txt"],
     "weights.txt: can't tell the weights format from the name", 2),
    (["forward", S0, "-i", S0_IN, "--set", "bogus.activation=relu"],
     "no layer 'bogus'; expected one of: simple_rnn", 2),
    (["forward", S0, "-i", S0_IN, "--set", "units=7"],
     "no recurrent layer has a setting 'units'; they can set activation", 2),
    (["forward", S0, "-i", S0_IN, "--set", "simple_rnn.units=7"],
     "a SimpleRNN layer's 'units' can't be set; it can set: activation", 2),
    (["forward", S0, "-i", S0_IN, "--initial-state", sample("seed003_initial_state.npy")],
     "initial state for layer 'simple_rnn' must have shape", 1),
])
def test_errors_are_one_line(args, message, code):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == code
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_usage_errors_exit_2():
    assert CliRunner().invoke(cli, ["forward", S0]).exit_code == 2  # no -i
    r = CliRunner().invoke(cli, ["forward", "--seed", "1", "-i", S0_IN])
    assert r.exit_code == 2 and "--seed needs --units" in r.stderr


def test_every_command_has_help_with_an_example():
    for name, command in cli.commands.items():
        r = run(name, "--help")
        assert r.exit_code == 0
        assert "Example" in r.stdout, name
        assert command.help


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.startswith("rnncli, version ")


def test_forward_with_input_shows_the_features():
    r = run("forward", S0, "-i", S0_IN, "--with-input")
    head = r.stdout.splitlines()[2]
    assert [c.strip() for c in head.strip("┃").split("┃")] == ["t", "x0", "x1", "x2", "x3", "x4",
                                                               "h0", "h1"]
    assert "│ 2 │  3 │  3 │  3 │  3 │  3 │  0.9247829 │" in r.stdout


def test_trace_one_direction_of_a_bidirectional_layer():
    path = ref_path("bidirectional_masked", "model.keras")
    x = ref_path("bidirectional_masked", "input.npy")
    both = rows(run("trace", path, "-i", x, "--layer", "bidi", "-f", "csv").stdout)
    back = rows(run("trace", path, "-i", x, "--layer", "bidi/backward", "-f", "csv").stdout)
    assert {r[1] for r in both[1:]} == {"forward", "backward"}
    assert {r[1] for r in back[1:]} == {"backward"} and len(back) - 1 == (len(both) - 1) // 2
    # the backward direction reads the input from its last step
    assert [r[3:5] for r in back[1:] if r[2] == "0" and r[5] == "0"][:2] == [["0", "5"],
                                                                           ["1", "4"]]


def test_forward_shows_one_direction_of_a_bidirectional_layer():
    """--layer bidi/forward and bidi/backward show that direction's states (the backward
    one in the order it processes its steps, as trace does), not the merged output:
    side by side, reversed, they are Keras' concatenated output."""
    case = os.path.join(os.path.dirname(ref_path()), "generated", "merge_concat")
    path, x = os.path.join(case, "model.keras"), os.path.join(case, "input.npy")
    keras = np.load(os.path.join(case, "expected_output.npy"))  # (3, 6, 2 x 4)
    got = {}
    for d in ("forward", "backward"):
        r = run("forward", path, "-i", x, "--layer", f"bidi/{d}", "-f", "json")
        assert r.exit_code == 0, r.stderr
        (layer,) = json.loads(r.stdout)["layers"]
        assert layer["layer"] == f"bidi/{d}"
        assert layer["t"] == (list(range(6)) if d == "forward" else list(range(5, -1, -1)))
        got[d] = np.array(layer["hidden"])
    assert got["forward"].shape == (3, 6, 4)
    np.testing.assert_allclose(got["forward"], keras[..., :4], atol=1e-6)
    np.testing.assert_allclose(got["backward"][:, ::-1], keras[..., 4:], atol=1e-6)
    both = rows(run("forward", path, "-i", x, "--layer", "bidi/forward,bidi/backward",
                    "-f", "csv", "--sample", "0").stdout)
    assert both[0][:3] == ["layer", "sample", "t"]
    assert [r[0] for r in both[1:]] == ["bidi/forward"] * 6 + ["bidi/backward"] * 6
    table = run("forward", path, "-i", x, "--layer", "bidi/backward", "--sample", "0").stdout
    assert "merge concat) backward  sample 0" in table and " b0 " not in table
    assert "shown above" not in table  # the merged output was not shown: it gets a table


def test_a_direction_of_a_one_way_layer_is_refused():
    r = CliRunner().invoke(cli, ["forward", S0, "-i", S0_IN, "--layer", "simple_rnn/backward"])
    assert r.exit_code == 2
    assert "layer 'simple_rnn' is not Bidirectional; expected --layer simple_rnn" in r.stderr


def test_a_file_written_with_o_is_named_on_stderr(tmp_path):
    """forward, trace and grad say which file they wrote, as export does; stdout stays
    empty (and nothing is said when -o - writes to it)."""
    for argv, name, fmt in ((["forward"], "h.csv", "csv"), (["trace"], "t.ndjson", "ndjson"),
                            (["grad", "--of", "output"], "g.npz", "npz")):
        out = tmp_path / name
        r = run(argv[0], S0, "-i", S0_IN, *argv[1:], "-o", str(out))
        assert r.exit_code == 0, r.stderr
        assert r.stdout == "" and r.stderr == f"rnncli: wrote {out} ({fmt})\n"
        assert out.stat().st_size > 0
    r = run("forward", S0, "-i", S0_IN, "-f", "csv", "-o", "-")
    assert r.stdout.startswith("sample,t,h0,h1") and r.stderr == ""


def test_tables_show_a_few_samples_unless_asked():
    r = run("forward", sample("seed002_batch_state.keras"), "-i", sample("seed002_input.npy"),
            "--steps", "0:1", "-u", "0:2")
    assert r.stdout.count("simple_rnn (SimpleRNN") == 3
    assert "showing samples 0 to 2 of 32" in r.stderr
    r = run("forward", sample("seed002_batch_state.keras"), "-i", sample("seed002_input.npy"),
            "--steps", "0:1", "-u", "0:2", "--all")
    assert r.stdout.count("simple_rnn (SimpleRNN") == 32


S2 = sample("seed002_batch_state.keras")
S2_IN = sample("seed002_input.npy")


@pytest.mark.parametrize("command", ["forward", "trace"])
def test_a_long_table_says_it_left_steps_out(command):
    """28 steps: the first and last 8 are shown, the note says so and how to see the rest."""
    r = run(command, S2, "-i", S2_IN, "--sample", "0", "-u", "0:2", "--width", "200")
    assert "│  ⋮ │" in r.stdout
    assert "16 of 28 steps shown (⋮: the middle ones); --steps picks them, --all shows " \
        "every one" in r.stdout
    r = run(command, S2, "-i", S2_IN, "--sample", "0", "-u", "0:2", "--all",
            "--width", "200")
    assert "⋮" not in r.stdout and "steps shown" not in r.stdout


def test_chosen_samples_carry_keras_numbers_and_their_own_labels():
    # Only the chosen samples are computed; numbers and labels must be those of the batch.
    hidden = np.load(ref_path("seed002_batch_state", "expected_hidden_simple_rnn.npy"))
    state = np.load(ref_path("seed002_batch_state", "expected_output_1.npy"))
    doc = json.loads(run("forward", S2, "-i", S2_IN, "--sample", "30,7", "-f", "json").stdout)
    assert doc["layers"][0]["samples"] == [30, 7]
    np.testing.assert_allclose(doc["layers"][0]["hidden"], hidden[[30, 7]], atol=1e-5)
    np.testing.assert_allclose(doc["output"][1], state[[30, 7]], atol=1e-5)
    table = rows(run("trace", S2, "-i", S2_IN, "--sample", "-1", "--steps", "-1:",
                     "-f", "csv").stdout)
    head = table[0]
    last = [r for r in table[1:] if r[head.index("unit")] == "3"]
    assert [r[head.index("sample")] for r in last] == ["31"]
    assert float(last[0][head.index("h")]) == pytest.approx(hidden[31, -1, 3], abs=1e-5)


def test_table_of_a_big_batch_shows_the_batch_numbers():
    hidden = np.load(ref_path("seed002_batch_state", "expected_hidden_simple_rnn.npy"))
    r = run("forward", S2, "-i", S2_IN, "--sample", "12", "--steps", "0:1", "--precision", "6")
    assert "sample 12" in r.stdout
    assert f"{hidden[12, 0, 0]:.6f}" in r.stdout
    r = run("forward", S2, "-i", S2_IN, "--sample", "12", "--with-input", "--steps", "0:1",
            "--precision", "6")
    x = np.load(S2_IN)
    assert f"{x[12, 0, 0]:.6f}" in r.stdout  # the input shown is sample 12's too


def test_chosen_samples_start_from_their_own_initial_state():
    x = np.load(sample("seed003_input.npy"))
    expected = np.load(ref_path("seed003_initial_state", "expected_output.npy"))
    r = run("forward", sample("seed003_initial_state.keras"), "-i", sample("seed003_input.npy"),
            "--initial-state", sample("seed003_initial_state.npy"), "--sample", "1", "-f", "npy")
    arr = np.load(io.BytesIO(r.stdout_bytes))
    assert arr.shape[0] == 1 and x.shape[0] == 2
    np.testing.assert_allclose(arr[0], expected[1], atol=1e-5)


def test_a_wrong_initial_state_is_judged_against_the_whole_batch():
    r = run("forward", sample("seed003_initial_state.keras"), "-i", sample("seed003_input.npy"),
            "--initial-state", sample("seed001_input.npy"), "--sample", "0")
    assert r.exit_code == 1
    assert "must have shape (5,) or (2, 5), got (10, 3)" in r.stderr  # 2 samples, not 1


TORCH_LSTM2 = ref_path("..", "torch_onnx", "torch_lstm_2layer")


def test_trace_npy_asks_only_for_what_is_missing(tmp_path):
    out = str(tmp_path / "t.npy")
    args = ["trace", f"{TORCH_LSTM2}/model.pt", "-i", f"{TORCH_LSTM2}/input.npy", "-f", "npy",
            "-o", out]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2
    assert "choose one --gate (i, f, c, o, state)" in r.stderr
    assert "--layer" not in r.stderr.split("Error:")[-1]
    r = CliRunner().invoke(cli, args + ["--layer", "lstm_l0", "--gate", "f"])
    assert r.exit_code == 0, r.stderr
    assert np.load(out).shape[:2] == (3, 5) and np.load(out).shape[-1] == 6


@pytest.mark.parametrize("model, gate, expected", [
    (S0, "f", "has no gates, only one trace section; leave out --gate"),
    (f"{TORCH_LSTM2}/model.pt", "x", "expected one of i, f, c, o, state"),
])
def test_trace_an_unknown_gate_lists_the_valid_ones(model, gate, expected):
    data = S0_IN if model == S0 else f"{TORCH_LSTM2}/input.npy"
    r = CliRunner().invoke(cli, ["trace", model, "-i", data, "--gate", gate])
    assert r.exit_code == 2
    assert expected in r.stderr and "no trace section" not in r.stderr


@pytest.mark.parametrize("command", ["forward", "trace"])
def test_a_format_contradicting_the_extension_is_refused(tmp_path, command):
    out = tmp_path / "x.npy"
    r = run(command, S0, "-i", S0_IN, "-f", "csv", "-o", str(out))
    assert r.exit_code == 2 and f"-f csv contradicts -o {out}" in r.output
    assert not out.exists()


def test_selection_messages_count_one_in_the_singular_and_quote_no_value():
    """'there is 1 (sample 0)', not 'there are 1 (sample 0 to 0)'; values as typed."""
    from rnncli.errors import UsageError
    from rnncli.present.views import parse_index_list

    with pytest.raises(UsageError, match=r"^--sample 1 is out of range; there is 1 \(sample 0\)$"):
        parse_index_list("1", "sample", 1)
    with pytest.raises(UsageError, match=r"^--unit 2:2 selects nothing \(there are 3\)$"):
        parse_index_list("2:2", "unit", 3)


@pytest.mark.parametrize("width", [80, 120])
def test_a_gates_trace_fits_the_width_with_its_unit_column(tmp_path, width):
    """A GRU gate's seven columns at 80 did not fit at 4 decimals: rich squeezed the
    "unit" column to nothing (its header and every index gone) and broke the heading
    inside "(gate z)". Fewer decimals where needed, and the equation on its own line."""
    gru = str(tmp_path / "gru.keras")
    assert run("convert", "--seed", "1", "--units", "3", "--input-dim", "5", "--cell", "gru",
               "-o", gru, "-q").exit_code == 0
    out = run("trace", gru, "-i", sample("seed000_input.csv"), "--gate", "z",
              "--width", str(width)).stdout
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines), out
    header = next(line for line in lines if line.startswith("┃"))
    assert "unit" in header and "note" in header, out
    indices = [line.split("│")[2].strip() for line in lines if line.startswith("│")]
    assert indices[:3] == ["0", "1", "2"], out
    assert "(gate z)" in out and not any(line.rstrip().endswith("(gate") for line in lines)
    assert ("rounded to 3 decimals" in out) == (width == 80), out


def test_the_tables_of_one_trace_are_rounded_alike(tmp_path):
    """A GRU's gate tables came out at 4, 3 and 2 decimals in one command (each table
    chose for itself what fits): one command's tables now share the digits the widest of
    them needs."""
    import re

    gru = str(tmp_path / "gru.keras")
    assert run("convert", "--seed", "1", "--units", "3", "--input-dim", "5", "--cell", "gru",
               "-o", gru, "-q").exit_code == 0
    mixed = []
    for width in range(60, 132, 3):
        out = run("trace", gru, "-i", sample("seed000_input.csv"), "--width", str(width)).stdout
        tables = re.split(r"^(?=gru )", out, flags=re.M)[1:]  # a heading, then its table
        assert len(tables) == 4, out
        rounding = {(re.search(r"rounded\s+to\s+(\d)\s+decimals", t) or [None, "all"])[1]
                    for t in tables}
        if len(rounding) > 1:
            mixed.append((width, rounding))
    assert mixed == []
