"""Ctrl-C, kill and hangup at any moment: exit 128 + the signal, one line on stderr, nothing
left behind (no output, no .part file, no .rnncli-* spill folder, no /tmp/rnncli-* folder,
no HDF5 probe child).

No test guesses with sleeps: rnncli prints ``rnncli: checkpoint NAME`` at named moments when
RNNCLI_CHECKPOINTS is set, and waits there for a signal when the name is listed in it
(rnncli/signals.py). A test reads stderr up to that line, then sends the signal.
"""

import contextlib
import os
import select
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, read_until, rest_of, sample, signals_at_default

from rnncli import signals

S0 = sample("seed000_two_units.keras")
S0_IN = sample("seed000_input.csv")
S0_H5 = sample("seed000_two_units_k2.h5")
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hangup"}


def start(argv, tmp_path, stop_at=None, python=None, env=None, **popen):
    """rnncli (or ``python -c <python>`` with rnncli's arguments) with checkpoints on, its
    temporary folder inside ``tmp_path``/tmp so that leftovers there are seen, and the
    signals tests send at their default (conftest.signals_at_default)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(tmpdir),
               RNNCLI_CHECKPOINTS=stop_at or "1", **(env or {}))
    cmd = [sys.executable] + (["-c", python] if python else ["-m", "rnncli"]) + argv
    popen["preexec_fn"] = signals_at_default(then=popen.get("preexec_fn"))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=tmp_path, **popen)


def wait_for(proc, name):
    """Read stderr up to the line of checkpoint ``name``; fail if rnncli ends first."""
    read_until(proc, f"rnncli: checkpoint {name}")


def finish(proc):
    """(exit code, stderr without checkpoint lines)."""
    code, err = rest_of(proc)
    lines = [ln for ln in err.splitlines(keepends=True)
             if not ln.startswith("rnncli: checkpoint ")]
    return code, "".join(lines)


def leftovers(tmp_path, keep=()):
    """Files in the test's folder (and its TMPDIR) that rnncli may have left."""
    found = []
    for folder, dirs, files in os.walk(tmp_path):
        for n in dirs + files:
            rel = os.path.relpath(os.path.join(folder, n), tmp_path)
            if rel not in ("tmp", *keep):
                found.append(rel)
    return sorted(found)


EXPORTS = {
    "npz": ["export", S0, "-i", S0_IN, "-o", "out.npz"],
    "h5": ["export", S0_H5, "-i", S0_IN, "-o", "out.h5"],
    "csv": ["forward", S0, "-i", S0_IN, "-o", "out.csv"],
    "convert": ["convert", S0, "-o", "out.keras"],
}


@pytest.mark.parametrize("signum,where,command", [
    (signal.SIGINT, "started", "npz"),  # before the command line is even imported
    (signal.SIGTERM, "probing", "npz"),  # the HDF5 probe's child is running
    (signal.SIGHUP, "probing", "h5"),
    (signal.SIGINT, "spill", "npz"),  # the .rnncli-* spill folder exists
    (signal.SIGINT, "part", "npz"),  # the spill folder and the .part file both exist
    (signal.SIGHUP, "part", "h5"),
    (signal.SIGTERM, "part", "csv"),
    (signal.SIGINT, "part", "convert"),
], ids=lambda v: v.name if isinstance(v, signal.Signals) else v)
def test_a_signal_at_any_moment_ends_cleanly(tmp_path, signum, where, command):
    proc = start(EXPORTS[command], tmp_path, stop_at=where)
    wait_for(proc, where)
    proc.send_signal(signum)
    code, err = finish(proc)
    assert code == 128 + signum, err
    assert err == f"rnncli: {WORDS[signum]}\n"
    assert leftovers(tmp_path) == []


def test_a_signal_while_a_large_archive_member_is_unpacked(tmp_path):
    # A member over IN_MEMORY_BYTES is unpacked to /tmp/rnncli-*; a small one is made large.
    python = ("import sys, rnncli.keras.archive as a; a.IN_MEMORY_BYTES = 0; "
              "from rnncli.__main__ import main; main()")
    proc = start(EXPORTS["npz"], tmp_path, stop_at="unzip", python=python)
    wait_for(proc, "unzip")
    assert os.listdir(tmp_path / "tmp")[0].startswith("rnncli-")  # what must go
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert (code, err) == (143, "rnncli: terminated\n")
    assert leftovers(tmp_path) == []


def test_an_ignored_hangup_stays_ignored(tmp_path):
    # nohup and background jobs start rnncli with SIGHUP ignored: it must carry on.
    def ignore_hangup():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = start(EXPORTS["npz"], tmp_path, preexec_fn=ignore_hangup)
    wait_for(proc, "spill")
    proc.send_signal(signal.SIGHUP)
    code, err = finish(proc)
    assert code == 0, err
    assert leftovers(tmp_path) == ["out.npz"]
    assert "simple_rnn" in str(sorted(np.load(tmp_path / "out.npz").files))


# ------------------------------------------------------------ the HDF5 probe's child

SPINNING_PROBE = """
import os, sys
from rnncli import signals
from rnncli.keras import h5probe

def spin(f):  # a file that sends the HDF5 library into an endless loop, as the fuzz found
    os.write(1, f"{os.getpid()}\\n".encode())
    while True:
        pass

h5probe._visit = spin
signals.install()
try:
    h5probe.probe(sys.argv[1], "m.h5", timeout=600)
except KeyboardInterrupt as e:
    signals.stop(e)
"""


def wait_until_gone(pid, timeout=30):
    """Whether process ``pid`` ends within ``timeout`` seconds (a pidfd: an event, not polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL],
                         ids=["kill", "kill -9"])
def test_the_probe_child_never_outlives_rnncli(tmp_path, signum):
    proc = start([S0_H5], tmp_path, python=SPINNING_PROBE)
    child = int(proc.stdout.readline())
    try:
        proc.send_signal(signum)
        proc.wait(timeout=60)
        gone = wait_until_gone(child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)  # (only if the test failed)
    assert gone, "the probe's child is still running"
    code, err = finish(proc)
    if signum == signal.SIGTERM:
        assert (code, err) == (143, "rnncli: terminated\n")
    else:
        assert code == -signal.SIGKILL


# ------------------------------------------------------------ the handler, in-process


@pytest.fixture
def handler():
    signals.reset()
    yield signals._handler
    signals.reset()


def test_a_deferred_signal_acts_when_the_block_ends(handler):
    done = []
    with pytest.raises(signals.Interrupted) as e:
        with signals.deferred():
            handler(signal.SIGTERM, None)
            handler(signal.SIGINT, None)  # the first one counts
            done.append("rest of the block")
    assert done == ["rest of the block"]
    assert (signals.exit_code(e.value), signals.describe(e.value)) == (143, "terminated")


def test_interruptible_inside_deferred_acts_at_once(handler):
    with signals.deferred():
        with pytest.raises(signals.Interrupted):
            with signals.interruptible():
                handler(signal.SIGHUP, None)
        handler(signal.SIGINT, None)  # cleaning up after the first: ignored


def test_a_signal_held_back_acts_on_entering_interruptible(handler):
    with signals.deferred():
        handler(signal.SIGINT, None)
        with pytest.raises(signals.Interrupted) as e:
            with signals.interruptible():
                pytest.fail("the command must not start")
    assert signals.exit_code(e.value) == 130


def test_tracked_paths_are_removed_by_their_own_process_only(tmp_path):
    mine, folder = tmp_path / "a.part", tmp_path / ".rnncli-x"
    mine.write_text("x")
    folder.mkdir()
    (folder / "0").write_text("y")
    signals.track(mine)
    signals.track(folder)
    signals._tracked[str(tmp_path / "other")] = os.getpid() + 1  # as if a forked child's
    (tmp_path / "other").write_text("z")
    signals.remove_tracked()
    assert sorted(os.listdir(tmp_path)) == ["other"]
    signals.untrack(tmp_path / "other")
