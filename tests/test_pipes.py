"""Whole-process behaviour in shell pipelines: stdin, | head, Ctrl-C, exit codes."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import sample

RNNCLI = [sys.executable, "-m", "rnncli"]
S0 = sample("seed000_two_units.keras")
S0_IN = sample("seed000_input.csv")


def sh(cmd, **kw):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, **kw)


def rnncli_cmd():
    return " ".join(f"'{p}'" for p in RNNCLI)


def test_head_closes_the_pipe_quietly(tmp_path):
    x = tmp_path / "long.npy"
    np.save(x, np.random.default_rng(0).normal(size=(4, 3000, 5)).astype(np.float32))
    r = sh(f"set -o pipefail; {rnncli_cmd()} forward '{S0}' -i '{x}' -f csv | head -n 1")
    assert r.stdout == "sample,t,h0,h1\n"
    assert r.stderr == ""
    assert r.returncode == 0


def test_stdin_csv_through_a_pipe():
    r = sh(f"cat '{S0_IN}' | {rnncli_cmd()} forward '{S0}' -i - -f csv | tail -n 1")
    assert r.returncode == 0
    assert r.stdout.startswith("0,2,0.924782")


def test_data_on_stdout_messages_on_stderr():
    path = sample("..", "tests", "data", "keras_reference", "seed004_relu", "weights_k2.h5")
    r = sh(f"{rnncli_cmd()} forward '{path}' -i '{sample('seed004_input.npy')}' -f csv")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "sample,t,h0,h1"
    assert "assumed Keras' defaults" in r.stderr and "assumed" not in r.stdout


def test_piped_tables_have_no_colour_codes():
    r = sh(f"{rnncli_cmd()} forward '{S0}' -i '{S0_IN}' | cat")
    assert "\x1b[" not in r.stdout and "0.6816086" in r.stdout


def test_ctrl_c_exits_130_and_leaves_no_file(tmp_path):
    x = tmp_path / "big.npy"
    np.save(x, np.random.default_rng(0).normal(size=(1, 3_000_000, 5)).astype(np.float32))
    out = tmp_path / "out.npz"
    # the numpy loop, so that 3 million steps take long enough to interrupt
    env = dict(os.environ, RNNCLI_ENGINE="numpy")
    proc = subprocess.Popen(RNNCLI + ["export", S0, "-i", str(x), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # interrupt once the export is under way (its spill folder appears beside the target)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(n.startswith(".rnncli-")
                                                   for n in os.listdir(tmp_path)):
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the export finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["big.npy"]
