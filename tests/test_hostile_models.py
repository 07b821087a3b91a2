"""Deep, wide and outsized models: deep but genuine ones run (no RecursionError, nothing
quadratic), outsized ones are refused by rnncli/limits.py with one line before anything is
read for them, and `summary` stays bounded on thousands of units."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT
from hostile_files import (
    deflated,
    json_of_empty_objects,
    keras_with,
    npy,
    npy_header,
    npy_of,
    zero_deflate,
    zip64_bytes,
)

import rnncli
from rnncli import limits
from rnncli.cli import cli
from rnncli.core import layers as L
from rnncli.core import model as model_module
from rnncli.core.model import InputSpec, Model, Node, Ref
from rnncli.core.simple_rnn import SimpleRNN
from rnncli.errors import ModelFileError
from rnncli.keras.random import random_weights
from rnncli.models import write_weights
from rnncli.present import summary

X = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)


def simple_rnn(name, seed=0, units=2, dim=2):
    k, u, b = random_weights(seed, units, dim)
    return SimpleRNN(name, k, u, b + 0.1, return_sequences=True)


def stacked(depth):
    return [simple_rnn(f"rnn_{i}", i, dim=3 if i == 0 else 2) for i in range(depth)]


def one_at_a_time(layers, x):
    for layer in layers:
        x = Model.chain("one", [layer]).run(x, trace=False).output
    return x


def test_300_stacked_simple_rnn_layers_run():
    layers = stacked(300)
    result = Model.chain("deep", layers).run(X)
    assert result.hidden["rnn_299"].shape == (2, 4, 2)
    np.testing.assert_array_equal(result.output, one_at_a_time(layers, X))


def keras_file(tmp_path, layers, name="m.keras", input_layer=True):
    """A .keras written by rnncli; without an InputLayer when asked (as a hand-written
    Sequential config may be: the input size is then found from the first layer)."""
    path = tmp_path / name
    write_weights(Model.chain("m", layers, input_spec=InputSpec("input", (None, None, 3))),
                  str(path))
    if not input_layer:
        with zipfile.ZipFile(path) as z:
            members = {n: z.read(n) for n in z.namelist()}
        config = json.loads(members["config.json"])
        config["config"]["layers"] = [e for e in config["config"]["layers"]
                                      if e["class_name"] != "InputLayer"]
        members["config.json"] = json.dumps(config).encode()
        with zipfile.ZipFile(path, "w") as z:
            for n, data in members.items():
                z.writestr(n, data)
    return str(path)


def test_250_dropout_layers_from_a_keras_file(tmp_path):
    rnn = simple_rnn("rnn", dim=3)
    layers = [L.Identity(f"dropout_{i}", "Dropout") for i in range(250)] + [rnn]
    model = rnncli.load_model(keras_file(tmp_path, layers, input_layer=False))
    assert len(model.layers) == 251 and model.input_dim == 3
    np.testing.assert_array_equal(model.run(X).output, one_at_a_time([rnn], X))
    info = summary.describe(model)
    assert info["layers"][-1]["output_shape"] == "(None, None, 2)"


def test_finding_the_first_layer_is_linear_in_the_layers(monkeypatch):
    # 5,000 Dropout layers took 20 s: each step past one scanned every node again.
    calls = []
    flatten = model_module._flatten

    def counted(obj):
        calls.append(1)
        return flatten(obj)

    monkeypatch.setattr(model_module, "_flatten", counted)
    n = 2000
    layers = [L.Identity(f"dropout_{i}", "Dropout") for i in range(n)] + [simple_rnn("rnn", dim=3)]
    assert Model.chain("m", layers).input_dim == 3
    assert len(calls) < 5 * n


def test_a_graph_that_is_a_cycle_is_a_model_file_error():
    a, b = L.Identity("a", "Dropout"), L.Identity("b", "Dropout")
    nodes = {("a", 0): Node(a, [Ref("b")]), ("b", 0): Node(b, [Ref("a")])}
    model = Model("loop", [a, b], nodes, [Ref("in")], [Ref("b")],
                  input_specs=[InputSpec("in", (None, None, 3))])
    with pytest.raises(ModelFileError, match="cycle"):
        model.run(X)


# ------------------------------------------------------------ limits, before any reading


def archive(tmp_path, entries, name="big.keras"):
    """A .keras of a hand-written config whose weights are not even HDF5: a limit must
    refuse it before they are opened."""
    config = {"class_name": "Sequential", "config": {"name": "big", "layers": entries}}
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.4.1"}))
        z.writestr("model.weights.h5", b"not HDF5")
    return str(path)


def dropout(i):
    return {"class_name": "Dropout", "config": {"name": f"dropout_{i}", "rate": 0.5}}


def test_20000_layers_are_refused_at_once(tmp_path):
    path = archive(tmp_path, [dropout(i) for i in range(20_000)])
    r = CliRunner().invoke(cli, ["summary", path])
    assert r.exit_code == 1
    assert r.stderr == (f"rnncli: error: {path}: config.json lists 20,000 layers, over the "
                        f"4,096 max_layers limit; if the file is trusted, raise it with "
                        f"RNNCLI_MAX_LAYERS=20000\n")


def test_units_over_the_limit_are_refused_before_the_weights(tmp_path):
    entry = {"class_name": "SimpleRNN", "config": {"name": "wide", "units": 100_000}}
    path = archive(tmp_path, [entry])
    with pytest.raises(ModelFileError, match="layer 'wide' declares units=100,000, over the "
                                             "65,536 max_units limit"):
        rnncli.load_model(path)


def test_the_limits_can_be_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNCLI_MAX_LAYERS", "30000")
    path = archive(tmp_path, [dropout(i) for i in range(20_000)])
    with pytest.raises(ModelFileError, match="not a readable HDF5|damaged"):  # next check
        rnncli.load_model(path)


# ------------------------------------------------------------ summary of thousands of units


def matrices(n):
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return {"orthogonal (Keras' default)": q, "random": rng.standard_normal((n, n)) / np.sqrt(n),
            "scaled": 0.5 * q, "diagonal": np.diag(np.linspace(0.1, 1.2, n)),
            "rank one": np.full((n, n), 0.8 / n), "zero": np.zeros((n, n))}


@pytest.mark.parametrize("kind", list(matrices(4)))
def test_estimated_spectra_are_close_and_read_the_same(kind, monkeypatch):
    monkeypatch.setattr(summary, "EXACT_UNITS", 64)  # (small matrices: a fast test)
    u = matrices(150)[kind].astype(np.float32)
    rho, sigma, exact = summary.spectrum(u)
    u64 = u.astype(np.float64)
    true_rho, true_sigma = np.abs(np.linalg.eigvals(u64)).max(), np.linalg.norm(u64, 2)
    assert not exact
    assert sigma == pytest.approx(true_sigma, rel=1e-4, abs=1e-6)
    assert rho == pytest.approx(true_rho, rel=0.05, abs=1e-6)
    assert summary.recurrence_reading(rho, sigma) == summary.recurrence_reading(true_rho,
                                                                                 true_sigma)


def test_small_kernels_stay_exact():
    u = matrices(summary.EXACT_UNITS)["random"]
    rho, sigma, exact = summary.spectrum(u)
    assert exact and rho == np.abs(np.linalg.eigvals(u)).max()


def test_a_kernel_with_nan_is_not_read():
    rho, sigma, _ = summary.spectrum(np.full((3, 3), np.nan))
    assert summary.recurrence_reading(rho, sigma) == "not computed: the kernel holds NaN or Inf"


CHILD = """
import json, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"code": r.returncode, "stderr": r.stderr,
                  "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def test_summary_of_a_thousand_units_is_bounded(tmp_path):
    # An eigen-decomposition before: O(units³), 42 s for 2000 units and 4 minutes for 4000
    # on a busy machine, deaf to Ctrl-C; now O(units²), Ctrl-C acting between products.
    n = 1024
    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, n)).astype(np.float32)
    u = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    layer = SimpleRNN("rnn", k, u, np.zeros(n, np.float32), return_sequences=True)
    path = str(tmp_path / "wide.h5")
    write_weights(Model.chain("wide", [layer], input_spec=InputSpec("in", (None, None, 3))), path)
    r = subprocess.run([sys.executable, "-c", CHILD, sys.executable, "-m", "rnncli", "summary",
                        path], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    out = json.loads(r.stdout)
    assert out["code"] == 0, out["stderr"]
    assert "'rnn' (1024 units) are estimates" in out["stderr"]
    assert out["peak_mib"] < 300, out  # the weights take 4 MiB


# ------------------------------------------------------------ small files that claim gigabytes

MEASURED = """
import json, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))  # a regression can't fill /tmp
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"code": r.returncode, "stderr": r.stderr,
                  "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def forward_measured(tmp_path, model):
    """`rnncli forward MODEL` in a grandchild: exit code, stderr, peak RSS, and what it left
    in its own temporary folder."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    argv = [sys.executable, "-c", MEASURED, sys.executable, "-m", "rnncli", "forward", model,
            "-i", os.path.join(ROOT, "sample_weights", "seed000_input.csv")]
    env = dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(tmp))
    env.pop("RNNCLI_MAX_MEMORY", None)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    out = json.loads(r.stdout)
    out["left"] = os.listdir(tmp)
    return out


def seed000_config():
    with zipfile.ZipFile(os.path.join(ROOT, "sample_weights", "seed000_two_units.keras")) as z:
        return z.read("config.json")


@pytest.mark.parametrize("config_mib,metadata_mib,message", [
    # 130 KB holding two 64 MiB members of "{}," (22 million dicts each): 3.3 GB before
    (64, 64, "config.json is 64.0 MiB, over the 8 MiB max_config_bytes limit; if the file "
             "is trusted, raise it with RNNCLI_MAX_CONFIG_BYTES=64M"),
    # the most the limits let through is parsed, in little memory
    (8, 8, "metadata.json is 8.0 MiB; expected at most 1 MiB (Keras writes a version"),
])
def test_config_members_inflating_to_millions_of_objects(tmp_path, config_mib, metadata_mib,
                                                        message):
    config = json_of_empty_objects(config_mib * 2**20 - (64 if config_mib > 8 else 0))
    metadata = json_of_empty_objects(metadata_mib * 2**20 - 64)
    path = tmp_path / "config.keras"
    path.write_bytes(keras_with(config, metadata, deflated("model.weights.h5", b"x")[1:5]))
    assert path.stat().st_size < 140_000
    r = forward_measured(tmp_path, str(path))
    assert r["code"] == 1 and message in r["stderr"], r
    assert len(r["stderr"].strip().splitlines()) == 1
    assert r["peak_mib"] < 400 and r["left"] == [], r


def test_keras_weights_inflating_to_8_gib_are_refused_before_unpacking(tmp_path):
    # 8 MB whose model.weights.h5 declares (and would inflate to) 8 GiB: it was written to /tmp
    total = 8 * 2**30 - 8
    weights = zero_deflate(total, b"\x89HDF\r\n\x1a\n")
    path = tmp_path / "weights.keras"
    path.write_bytes(keras_with(seed000_config(), b'{"keras_version": "3.4.1"}',
                                (weights, zipfile.ZIP_DEFLATED, 0, total + 8)))
    r = forward_measured(tmp_path, str(path))
    assert r["code"] == 1
    assert r["stderr"] == (f"rnncli: error: {path}: member model.weights.h5 would take 8 GiB, "
                           f"over the 2 GiB max_memory limit; if the file is trusted, raise it "
                           f"with RNNCLI_MAX_MEMORY=8G or --max-memory 8G\n")
    assert r["peak_mib"] < 300 and r["left"] == [], r


def test_model_npz_inflating_to_gigabytes_is_refused_before_inflating(tmp_path):
    # 13 MB, about 256:1 (under the ratio limit), whose kernel inflates to 2.5 GiB: np.load
    # inflated it all (2.6 GB)
    n = 5 * 2**27
    header = npy(npy_header("<f4", (5, n // 5)))
    members = [("kernel.npy", zero_deflate(n * 4, header, noise=16 << 10),
                zipfile.ZIP_DEFLATED, 0, len(header) + n * 4),
               deflated("recurrent_kernel.npy", npy_of(np.zeros((2, 2), np.float32)))[:5]]
    path = tmp_path / "model.npz"
    path.write_bytes(zip64_bytes(members))
    assert 10e6 < path.stat().st_size < 14e6
    r = forward_measured(tmp_path, str(path))
    assert r["code"] == 1
    assert r["stderr"] == (f"rnncli: error: {path}: the weights would take 2.5 GiB, over the "
                           f"2 GiB max_memory limit; if the file is trusted, raise it with "
                           f"RNNCLI_MAX_MEMORY=4G or --max-memory 4G\n")
    assert r["peak_mib"] < 300 and r["left"] == [], r


def test_model_npz_members_are_read_within_the_limits(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, kernel=np.ones((3, 2), np.float32), recurrent_kernel=np.eye(2, dtype="f4"),
             bias=np.zeros(2, np.float32))
    assert rnncli.load_model(str(path)).layers[0].units == 2
    with limits.override(max_memory="32"):
        with pytest.raises(ModelFileError, match=r"m.npz: the weights would take .* over the "
                                                 r"32 bytes max_memory limit"):
            rnncli.load_model(str(path))
