"""Writing files safely: to a temporary file beside the target, moved into place when complete.

A failure half-way (bad input, a full disk, Ctrl-C, ``kill``) leaves no partial file and any
existing file untouched. The rules (docs/export.md):

- a new file is created exclusively: if another program made the same name meanwhile, the
  write fails ("already exists") instead of silently replacing its file;
- an existing file is replaced only with ``force=True``, keeping its permission bits (and
  its owner and group where allowed); the new file takes the name, so other hard links to
  the old one keep the old contents, as with any atomic save;
- a symbolic link is followed: the file it points to is replaced, the link stays;
- a device, a FIFO or a standard stream (``/dev/null``, ``/dev/stdout``, ``/dev/fd/3``) is
  never replaced: it is written to as a stream, like stdout, and needs no ``force``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager, suppress

from .. import signals
from ..errors import OutputError, file_error

_STD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd|proc/(\d+)/fd)/(\d+)")


def stream_fd(path: str) -> int | None:
    """The descriptor ``path`` names when it is this process's own (``/dev/stdout``,
    ``/dev/fd/N``, ``/proc/self/fd/N``, or a link to one of them), else None."""
    p = os.path.abspath(path)
    for _ in range(40):
        if p in _STD_STREAMS:
            return _STD_STREAMS[p]
        m = _FD_PATH.fullmatch(p)
        if m and (m.group(1) is None or int(m.group(1)) == os.getpid()):
            return int(m.group(2))
        if not os.path.islink(p):
            return None
        try:
            target = os.readlink(p)
        except OSError:  # another process's descriptor, which only its owner may read
            return None
        p = os.path.normpath(os.path.join(os.path.dirname(p), target))
    return None


def _kind(path: str) -> str:
    """``new``, ``file`` (a regular file, through links), ``stream`` or ``directory``."""
    if stream_fd(path) is not None:
        return "stream"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "new"
    except OSError as e:
        raise OutputError(f"{path}: can't be written ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    return "file" if stat.S_ISREG(st.st_mode) else "stream"


def _real(path: str) -> str:
    """Where a file at ``path`` is written: through symbolic links."""
    return os.path.realpath(path)


# what rnncli writes in binary: results (export, forward/trace/grad -f npy/npz) and
# every weights format (convert: rnncli/models.py, WRITERS)
BINARY_FORMATS = ("npy", "npz", "h5", "lstmvis", "keras", "weights.h5", "safetensors", "onnx")
TERMINALS = ("/dev/tty", "/dev/console", "/dev/pts/")


def _terminal(path: str) -> bool:
    """Whether ``path`` (``-``: stdout, as written to) is a terminal."""
    try:
        if path == "-":
            return sys.stdout.isatty()
        fd = stream_fd(path)
        if fd is not None:
            return os.isatty(fd)
    except (AttributeError, ValueError, OSError):  # no stdout, or a closed one
        return False
    return os.path.realpath(path).startswith(TERMINALS)


def check_target(path: str, force: bool = False, fmt: str | None = None):
    """Fail early, before any work, when ``path`` can't or mustn't be written: ``fmt``,
    the format to write there, is not sent to a terminal when binary (its bytes would
    garble the screen; a pipe or a redirection takes them)."""
    if fmt in BINARY_FORMATS and _terminal(path):
        where = "stdout" if path == "-" else path
        streams = fmt not in ("h5", "lstmvis")  # HDF5 is written to files alone
        raise OutputError(f"{where} is a terminal, {fmt} is binary; expected -o FILE"
                          + (" or > FILE" if streams else ""))
    if path == "-":
        return
    kind = _kind(path)
    if kind == "stream":
        return
    if kind == "directory":
        raise OutputError(f"{path}: is a directory; expected a file name")
    folder = os.path.dirname(_real(path))
    if not os.path.isdir(folder):
        raise OutputError(f"{path}: directory {folder} does not exist")
    if kind == "file" and not force:
        raise OutputError(f"{path}: already exists; use --force to overwrite it")


def spill_folder(path: str) -> str | None:
    """Where temporary data for ``path`` goes: beside the file it becomes (the same file
    system, so a rename moves it), or the temporary folder for a stream (None)."""
    if path == "-" or _kind(path) == "stream":
        return None
    return os.path.dirname(_real(path))


def _os_error(path, e: OSError):
    if e.errno == errno.ENOSPC:
        return OutputError(f"{path}: no space left on the device; nothing was written")
    if isinstance(e, PermissionError):
        return OutputError(f"{path}: permission denied")
    return None


@contextmanager
def atomic_path(path: str, force: bool = False):
    """Yield a temporary path to write; on success it becomes ``path`` (the rules above).
    For a device, FIFO or standard stream the temporary file is in the temporary folder and
    its bytes are copied to ``path`` at the end."""
    check_target(path, force)
    stream = _kind(path) == "stream"
    target = path if stream else _real(path)
    folder = None if stream else os.path.dirname(target)
    tmp = None
    try:
        with signals.deferred():  # no moment in which the file exists but is not tracked
            prefix = "rnncli-" if stream else f".{os.path.basename(target)}."
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=folder)
            signals.track(tmp)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        signals.checkpoint("part")
        yield tmp
        if stream:
            _copy_to_stream(tmp, path)
        else:
            _move_into_place(tmp, target, path, force)
    except OSError as e:
        error = _os_error(path, e)
        if error is None:
            raise
        raise error from None
    finally:
        if tmp is not None:
            _unlink(tmp)
            signals.untrack(tmp)


def _move_into_place(tmp, target, path, force):
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        if not force:  # (check_target passed when the write began)
            raise _made_meanwhile(path)
        _keep_owner_and_mode(tmp, st)
        os.replace(tmp, target)
        return
    if st is not None:  # became a directory, a device... since check_target
        check_target(path, force)
        raise OutputError(f"{path}: is no longer a regular file; nothing was written")
    try:
        os.link(tmp, target)  # fails if the name exists: two writers can't both win
    except FileExistsError:
        if not force:
            raise _made_meanwhile(path) from None
        os.replace(tmp, target)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK,
                           errno.ENOSYS, errno.EXDEV):
            raise
        _create_exclusively_then_replace(tmp, target, path, force)


def _made_meanwhile(path):
    return OutputError(f"{path}: already exists (made while rnncli was writing); use --force "
                       f"to overwrite it")


def _create_exclusively_then_replace(tmp, target, path, force):
    """Where hard links are not supported (FAT, some network file systems): claim the name
    with an exclusive create, then rename over that empty file."""
    with signals.deferred():
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            if not force:
                raise _made_meanwhile(path) from None
        os.replace(tmp, target)


def _keep_owner_and_mode(tmp, st):
    """The replaced file's permission bits, and its owner and group where allowed."""
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        for uid, gid in ((st.st_uid, st.st_gid), (-1, st.st_gid)):
            try:
                os.chown(tmp, uid, gid)
                break
            except OSError:
                pass
    os.chmod(tmp, stat.S_IMODE(st.st_mode) & 0o777)


def _copy_to_stream(tmp, path):
    with open(tmp, "rb") as src, _open_stream(path, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


@contextmanager
def _open_stream(path, mode):
    """A device, FIFO or standard stream, opened for writing without truncating it (a
    redirection in append mode stays one)."""
    fd = stream_fd(path)
    if fd == 1:
        out = sys.stdout.buffer if "b" in mode else sys.stdout
        yield out
        out.flush()
        return
    try:
        fd = os.dup(fd) if fd is not None else os.open(path, os.O_WRONLY)
    except OSError as e:
        raise OutputError(f"{path}: can't be written ({e.strerror or e})") from None
    kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with open(fd, mode, **kwargs) as fh:
        yield fh


@contextmanager
def open_output(path: str, mode: str = "w", force: bool = False):
    """A file object for ``path`` (``-`` is stdout) that appears only when complete."""
    binary = "b" in mode
    if path == "-":
        yield sys.stdout.buffer if binary else sys.stdout
        (sys.stdout.buffer if binary else sys.stdout).flush()
        return
    check_target(path, force)
    if _kind(path) == "stream":
        with _open_stream(path, mode) as fh:
            yield fh
        return
    with atomic_path(path, force) as tmp:
        kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def _unlink(p):
    with suppress(OSError):
        os.unlink(p)


def write_bytes(path_or_file, data: bytes) -> None:
    """``data`` into a binary file object, or into the file at a path (an OSError becomes
    rnncli's one-line OutputError)."""
    if hasattr(path_or_file, "write"):
        path_or_file.write(data)
        return
    try:
        with open(path_or_file, "wb") as f:
            f.write(data)
    except OSError as e:
        raise file_error(os.fspath(path_or_file), e, OutputError) from None
