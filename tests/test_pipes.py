"""Whole-process behaviour in shell pipelines: stdin, | head, Ctrl-C, exit codes."""

import os
import signal
import subprocess
import sys

import numpy as np
from conftest import read_until, rest_of, sample, signals_at_default

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
    np.save(x, np.zeros((1, 1_000_000, 5), np.float32))
    # the numpy loop, so that a million steps take seconds, not milliseconds
    env = dict(os.environ, RNNCLI_ENGINE="numpy", RNNCLI_CHECKPOINTS="1", TMPDIR=str(tmp_path))
    proc = subprocess.Popen(RNNCLI + ["export", S0, "-i", str(x), "-o", str(tmp_path / "out.npz")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=signals_at_default())
    # Interrupt once the export is under way: its spill folder exists and the run follows.
    # rnncli says so on stderr (rnncli/signals.py: checkpoint); no folder watching, no sleep.
    read_until(proc, "rnncli: checkpoint spill")
    proc.send_signal(signal.SIGINT)
    code, err = rest_of(proc)
    err = "".join(ln for ln in err.splitlines(True) if not ln.startswith("rnncli: checkpoint"))
    assert (code, err) == (130, "rnncli: interrupted\n")
    assert os.listdir(tmp_path) == ["big.npy"]


def test_binary_output_is_not_sent_to_a_terminal(tmp_path):
    """npy, npz and every weights format to a terminal printed bytes that garbled it, exit
    0 (a new user's -f npy without -o): refused before any work, one line on stderr; a
    pipe still takes them."""
    import pty
    import select

    commands = [["forward", S0, "-i", S0_IN, "-f", "npy"],
                ["grad", S0, "-i", S0_IN, "--of", "output", "-f", "npz"],
                ["export", S0, "-i", S0_IN, "-o", "-", "-f", "npz"],
                ["export", S0, "-i", S0_IN, "-o", "/dev/stdout", "-f", "h5"],
                ["convert", S0, "-o", "-"],
                ["convert", S0, "-o", "-", "-f", "onnx"]]
    for args in commands:
        main, terminal = pty.openpty()
        try:
            done = subprocess.run(RNNCLI + args, stdout=terminal, stderr=subprocess.PIPE,
                                  text=True, timeout=120)
            written = b""
            while select.select([main], [], [], 0.1)[0]:
                written += os.read(main, 1 << 16)
        finally:
            os.close(main)
            os.close(terminal)
        assert done.returncode == 1, args
        assert "is a terminal" in done.stderr and "binary" in done.stderr, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert ("> FILE" in done.stderr) == ("h5" not in args), done.stderr  # HDF5: files only
        assert written == b"", args
    piped = subprocess.run(RNNCLI + ["forward", S0, "-i", S0_IN, "-f", "npy"],
                           capture_output=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout.startswith(b"\x93NUMPY")


def test_a_full_device_is_one_line_not_an_unexpected_error(tmp_path):
    """Output to a full disk (/dev/full here) said 'unexpected error: OSError', as for a
    bug; and an input beyond float32 printed numpy's RuntimeWarning beside rnncli's own."""
    if not os.path.exists("/dev/full"):
        import pytest
        pytest.skip("no /dev/full")
    for redirect in ("-f csv > /dev/full", "-f npy > /dev/full", "> /dev/full"):
        done = sh(f"{rnncli_cmd()} forward '{S0}' -i '{S0_IN}' {redirect}")
        assert done.returncode == 1, (redirect, done.stderr)
        assert done.stderr == "rnncli: error: the output could not be written (No space " \
                              "left on device)\n", (redirect, done.stderr)
    big = tmp_path / "big.csv"
    big.write_text("1e39,0,0,0,0\n1,2,3,4,5\n")
    done = sh(f"{rnncli_cmd()} forward '{S0}' -i '{big}' -f csv")
    assert done.returncode == 0
    assert done.stderr.count("\n") == 1 and "beyond what the model's float32" in done.stderr, \
        done.stderr


def test_an_hdf5_output_past_the_file_size_limit_is_one_line_and_no_file(tmp_path):
    """h5py reports a full disk (here: past `ulimit -f`, EFBIG) as a RuntimeError, which
    said 'unexpected error' as for a bug; one line now, and no file or part left."""
    big = tmp_path / "in.npy"
    np.save(big, np.random.default_rng(0).normal(size=(64, 200, 5)).astype(np.float32))
    out = tmp_path / "x.h5"
    done = sh(f"ulimit -f 200; {rnncli_cmd()} export '{S0}' -i '{big}' -o '{out}'")
    assert done.returncode == 1, done.stderr
    assert done.stderr == "rnncli: error: the output could not be written (File too large)\n"
    assert sorted(os.listdir(tmp_path)) == ["in.npy"]


def test_a_table_piped_from_a_terminal_fits_the_terminal(tmp_path):
    """A table piped on (| less, | head) is still read on the terminal stderr writes to:
    it takes that terminal's width (bash does not export $COLUMNS), not 120."""
    import fcntl
    import pty
    import struct
    import termios

    reader, writer = pty.openpty()
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    try:
        r = subprocess.run(RNNCLI + ["forward", sample("seed002_batch_state.keras"), "-i",
                                     sample("seed002_input.npy"), "--sample", "0"],
                           stdout=subprocess.PIPE, stderr=writer, env=env, timeout=120,
                           text=True)
    finally:
        os.close(writer)
        os.close(reader)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert max(len(line) for line in lines) > 60  # as wide as it needs, up to the terminal
