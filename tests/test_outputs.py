"""Where outputs go: a new file created exclusively, --force keeping the replaced file's mode,
links followed, devices, FIFOs and standard streams written as streams and never replaced
(rnncli/io/atomic.py, docs/export.md)."""

import io
import os
import stat
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, sample

from rnncli.cli import cli
from rnncli.errors import OutputError
from rnncli.io.atomic import atomic_path, check_target, open_output, stream_fd

S0 = sample("seed000_two_units.keras")
S0_IN = sample("seed000_input.csv")


def rnncli(*args, tmp_path, stdout=subprocess.PIPE):
    env = dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "rnncli", *args], stdout=stdout,
                          stderr=subprocess.PIPE, env=env, cwd=tmp_path, timeout=120)


class Ran:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def export(out, tmp_path, *extra):
    """``rnncli export`` in-process (CliRunner: its stdout is a buffer, as a real one would
    be), the temporary folder inside ``tmp_path``."""
    old = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    try:
        r = CliRunner().invoke(cli, ["export", S0, "-i", S0_IN, "-o", str(out), *extra])
    finally:
        tempfile.tempdir = old
    return Ran(r.exit_code, r.stdout_bytes, r.stderr_bytes)


def is_npz(data: bytes):
    return "hidden/simple_rnn" in np.load(io.BytesIO(data)).files


# ------------------------------------------------------------ files


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_force_keeps_the_mode(tmp_path, mode):
    out = tmp_path / "o.npz"
    out.write_bytes(b"old")
    out.chmod(mode)
    r = export(out, tmp_path, "--force")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert is_npz(out.read_bytes())


def test_a_new_file_gets_the_umask_mode(tmp_path):
    out = tmp_path / "o.npz"
    old = os.umask(0o027)
    try:
        with atomic_path(str(out)) as tmp:
            open(tmp, "w").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_a_file_made_meanwhile_is_not_replaced(tmp_path):
    # Two exports to the same new name: the second to finish must not silently win.
    out = tmp_path / "o.npz"
    with pytest.raises(OutputError, match="o.npz: already exists \\(made while rnncli was "
                                          "writing\\); use --force"):
        with atomic_path(str(out)) as tmp:
            with open(tmp, "w") as f:
                f.write("mine")
            out.write_text("theirs")  # the other export finished first
    assert out.read_text() == "theirs"
    assert os.listdir(tmp_path) == ["o.npz"]  # no .part left


def test_force_replaces_a_file_made_meanwhile(tmp_path):
    out = tmp_path / "o.npz"
    with atomic_path(str(out), force=True) as tmp:
        with open(tmp, "w") as f:
            f.write("mine")
        out.write_text("theirs")
    assert out.read_text() == "mine"


def test_force_replaces_the_name_other_hard_links_keep_the_old_file(tmp_path):
    # Documented in docs/export.md: atomic replacement takes the name; writing in place to
    # keep the link would leave a half-written file when interrupted or out of space.
    out, other = tmp_path / "o.npz", tmp_path / "backup.npz"
    out.write_bytes(b"old")
    out.chmod(0o600)
    os.link(out, other)
    r = export(out, tmp_path, "--force")
    assert r.returncode == 0, r.stderr
    assert is_npz(out.read_bytes()) and other.read_bytes() == b"old"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_link_to_a_file_is_followed_and_kept(tmp_path):
    (tmp_path / "runs").mkdir()
    real = tmp_path / "runs" / "o.npz"
    real.write_bytes(b"old")
    link = tmp_path / "latest.npz"
    link.symlink_to(real)
    r = export(link, tmp_path)
    assert r.returncode == 1 and b"latest.npz: already exists" in r.stderr
    r = export(link, tmp_path, "--force")
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and is_npz(real.read_bytes())
    assert sorted(os.listdir(tmp_path / "runs")) == ["o.npz"]


# ------------------------------------------------------------ devices, FIFOs, streams


@pytest.mark.parametrize("fmt", ["npz", "h5", "csv"])
def test_a_link_to_a_device_is_written_to_never_replaced(tmp_path, fmt):
    link = tmp_path / f"null.{fmt}"
    link.symlink_to(os.devnull)
    for extra in ([], ["--force"]):  # a stream needs no --force, and --force changes nothing
        r = export(link, tmp_path, *extra)
        assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == os.devnull
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert sorted(os.listdir(tmp_path)) == [f"null.{fmt}"]  # no .part, nothing in TMPDIR


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_a_fifo_is_written_as_a_stream(tmp_path, fmt):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}

    def read():
        with open(fifo, "rb") as f:  # blocks until rnncli opens the other end
            got["data"] = f.read()

    reader = threading.Thread(target=read)
    reader.start()
    r = export(fifo, tmp_path, "-f", fmt)
    reader.join(timeout=60)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    if fmt == "npz":
        assert is_npz(got["data"])
    else:
        assert got["data"][:8] == b"\x89HDF\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["pipe"]


def test_dev_stdout_is_stdout(tmp_path):
    r = export("/dev/stdout", tmp_path, "-f", "npz")
    assert r.returncode == 0, r.stderr
    assert is_npz(r.stdout)
    assert os.listdir(tmp_path) == []


def test_dev_stdout_appends_where_stdout_appends(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("earlier\n")
    with open(log, "a") as out:
        r = rnncli("forward", S0, "-i", S0_IN, "-f", "csv", "-o", "/dev/stdout",
                   tmp_path=tmp_path, stdout=out)
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    assert text.startswith("earlier\nsample,t,h0,h1\n") and text.count("\n") == 5


def test_stream_names():
    assert stream_fd("/dev/stdout") == 1
    assert stream_fd("/dev/fd/2") == 2
    assert stream_fd("/proc/self/fd/7") == 7
    assert stream_fd(f"/proc/{os.getpid()}/fd/3") == 3
    assert stream_fd(f"/proc/{os.getpid() + 1}/fd/3") is None  # another process's
    assert stream_fd("/tmp/stdout") is None


def test_a_link_that_cant_be_read_is_no_stream_of_ours(monkeypatch, tmp_path):
    """Another process's /proc/PID/fd/N is a link its owner alone may read (the suite
    once failed on it when PID + 1 was such a process): not this process's stream."""
    link = tmp_path / "theirs"
    link.symlink_to("/dev/null")

    def refused(path, *a, **kw):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "readlink", refused)
    assert stream_fd(str(link)) is None


def test_check_target_refuses_a_directory_and_allows_a_device(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        check_target(str(tmp_path))
    check_target(os.devnull)  # no --force needed to write to a device
    with pytest.raises(OutputError, match="does not exist"):
        check_target(str(tmp_path / "no" / "o.npz"))


def test_open_output_to_a_device(tmp_path):
    with open_output(os.devnull, "w") as fh:
        fh.write("x")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
