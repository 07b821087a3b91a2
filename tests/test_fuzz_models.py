"""Fuzzing model files and initial states through the command line: real Keras files
(.keras, .h5, .weights.h5), weights-only and configured model .npz files, and the .npy,
CSV and .npz files --initial-state reads, mutated (bit flips, truncation, shuffled and
zeroed bytes; zip-directory and NPY-header edits in archives), then run as
``rnncli forward MODEL -i INPUT [--initial-state STATE] -f csv``.

Each case runs in a forked child (tests/fuzzrun.py) and must end in exit 0, or in exit
1 or 2 with rnncli's own one-line messages: the "unexpected error" line, a traceback, a
hang, a crash or a peak over 1 GiB fails the test and leaves the case to replay.

150 cases per run; RNNCLI_FUZZ=N for more, RNNCLI_FUZZ_SEED for another sequence,
RNNCLI_FUZZ_REPORT=folder to keep the counts in folder/models.json.
"""

import os
import random

import fuzzrun
import numpy as np
from click.testing import CliRunner
from conftest import DATA, sample
from test_fuzz_inputs import _flip, mutate

import rnncli
import rnncli.errors
from rnncli.cli import cli
from rnncli.models import write_weights

CASES = int(os.environ.get("RNNCLI_FUZZ", "150"))
SEED = int(os.environ.get("RNNCLI_FUZZ_SEED", "1234"))
STATE_MODEL = sample("seed003_initial_state.keras")
STATE_INPUT = sample("seed003_input.npy")


def sources(folder):
    """(label, bytes, kind, model, input, state): the files a case mutates one of."""
    out = []
    for case in ("bidirectional_masked", "embedding_masked_classifier", "seed000_two_units"):
        where = os.path.join(DATA, "keras_reference", case)
        x = os.path.join(where, "input.npy")
        for f in sorted(os.listdir(where)):
            if not f.startswith("expected") and f != "input.npy":
                out.append((f"{case}/{f}", os.path.join(where, f), "model", x))
    # weights-only .npz (kernel, recurrent_kernel, bias) and one rnncli writes with its config
    out.append(("seed000_two_units.npz", sample("seed000_two_units.npz"), "model",
                sample("seed000_input.csv")))
    bidi = os.path.join(DATA, "keras_reference", "bidirectional_masked")
    configured = os.path.join(folder, "bidirectional_masked.npz")
    write_weights(rnncli.load_model(os.path.join(bidi, "model.keras")), configured)
    out.append(("bidirectional_masked.npz", configured, "model", os.path.join(bidi, "input.npy")))
    # initial states for seed003's SimpleRNN (4 units): .npy, CSV and an .npz by state name
    h0 = np.load(sample("seed003_initial_state.npy"))
    states = {"h0.npy": sample("seed003_initial_state.npy"), "h0.csv": None, "h0.npz": None}
    states["h0.csv"] = os.path.join(folder, "h0.csv")
    np.savetxt(states["h0.csv"], np.atleast_2d(h0), delimiter=",")
    states["h0.npz"] = os.path.join(folder, "h0.npz")
    np.savez(states["h0.npz"], h=h0)
    for name, path in states.items():
        out.append((f"--initial-state {name}", path, "state", STATE_INPUT))
    return [(label, open(path, "rb").read(), kind, x) for label, path, kind, x in out]


def damage(rng, data, suffix):
    """A mutation: archives (.keras, .npz) and .npy also get zip and NPY header edits."""
    if suffix in (".keras", ".npz") and rng.random() < 0.5:
        return mutate(rng, "npz", data)
    if suffix == ".npy" and rng.random() < 0.5:
        return mutate(rng, "npy", data)
    if suffix == ".csv" and rng.random() < 0.5:
        return mutate(rng, "csv", data)
    d = bytearray(data)
    how = rng.choice(["flip", "truncate", "shuffle", "zero"])
    i = rng.randrange(len(d))
    if how == "flip":
        d = _flip(rng, d)
    elif how == "truncate":
        d = d[:i]
    elif how == "shuffle":
        chunk = d[i:i + rng.randint(8, 512)]
        rng.shuffle(chunk)
        d[i:i + len(chunk)] = chunk
    else:
        d[i:i + rng.randint(1, 256)] = bytes(min(256, len(d) - i))
    return bytes(d)


def run_forward(argv):
    """The command's outcome class, or an AssertionError naming what is wrong with it."""
    r = CliRunner().invoke(cli, argv)
    lines = r.stderr.strip().splitlines()
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    if "unexpected error" in r.stderr or "Traceback" in r.stderr:
        raise AssertionError(lines[-1] if lines else r.stderr)
    if r.exit_code == 0:
        return "ran"
    if r.exit_code not in (1, 2) or not lines or r.stdout:
        raise AssertionError(f"exit {r.exit_code}, stdout {r.stdout[:200]!r}, "
                             f"stderr {r.stderr[:400]!r}")
    own = ("rnncli: ", "Usage:", "Try ", "Error: ")
    if r.exit_code == 1 and not all(line.startswith(own) for line in lines):
        raise AssertionError(f"a message of more than one line: {r.stderr[:600]!r}")
    return f"exit {r.exit_code}: {fuzzrun.category(lines[-1])}"


def cases(n, folder, seed=SEED):
    rng = random.Random(seed)
    files = sources(folder)
    for i in range(n):
        label, data, kind, x = rng.choice(files)
        suffix = "." + label.rsplit(".", 1)[-1]
        yield i, label, damage(rng, data, suffix), kind, x, suffix


def test_fuzz_models_and_initial_states(tmp_path, monkeypatch):
    """Every damaged model or initial state ends in a result or in rnncli's own error."""
    import rnncli.keras.h5probe as h5probe

    # Some damaged heaps loop forever inside HDF5; the probe gives up on them after this.
    monkeypatch.setattr(h5probe, "TIMEOUT_SECONDS", 1.0)
    made = tmp_path / "made"
    made.mkdir()
    tally, failed = fuzzrun.Tally(), []
    for n, label, data, kind, x, suffix in cases(CASES, str(made)):
        path = tmp_path / f"case{n % 2}{'.weights.h5' if label.endswith('.weights.h5') else suffix}"
        path.write_bytes(data)
        if kind == "model":
            argv = ["forward", str(path), "-i", x, "-f", "csv"]
        else:
            argv = ["forward", STATE_MODEL, "-i", x, "--initial-state", str(path), "-f", "csv"]
        ran = fuzzrun.run_case(run_forward, argv, timeout=60)
        if ran.failure:
            replay = tmp_path / f"failing_case_{n}{suffix}"
            replay.write_bytes(data)
            failed.append(f"case {n} ({label}): {ran.failure}: {ran.outcome}; bytes in {replay}")
        tally.add(ran, f"case {n} ({label})")
    report = tally.report(seed=SEED, failed=failed)
    tally.save(report, "models")
    assert not failed, "\n".join(failed[:20])
    assert 0 < report["outcomes"].get("ran", 0) < CASES, report


def test_case_8267_an_initial_state_npz_of_an_unknown_zip_version(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("h0.npz", "wb") as f:
        f.write(bytes.fromhex(open(os.path.join(DATA, "damaged", "state_8267.hex")).read()))
    argv = ["forward", STATE_MODEL, "-i", STATE_INPUT, "--initial-state", "h0.npz"]
    assert run_forward(argv) == "exit 1: damaged _npz _"
    r = CliRunner().invoke(cli, argv)
    assert r.stderr == "rnncli: error: h0.npz: damaged .npz (zip file version 17.3)\n"


def load_peak(path):
    try:
        rnncli.load_model(path)
    except rnncli.errors.RnncliError as e:
        return str(e)
    return "loaded"


def test_case_2826_a_damaged_heap_costs_no_memory(tmp_path):
    # 24 KB whose weight_names attribute made HDF5 allocate 2 GB (in the probe's child)
    path = tmp_path / "case.h5"
    path.write_bytes(bytes.fromhex(open(os.path.join(DATA, "damaged", "heap_2826.hex")).read()))
    ran = fuzzrun.run_case(load_peak, str(path), timeout=60)
    assert ran.failure is None, ran
    assert ran.outcome == (f"{path}: damaged HDF5 file: reading its structure needs more than "
                           f"512 MiB (a damaged heap or shape); refused")
    assert ran.grew_mib < 200, ran  # 2 GB before
