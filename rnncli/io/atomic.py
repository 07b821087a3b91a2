"""Writing files safely: to a temporary file beside the target, renamed into place.

A failure half-way (bad input, a full disk, Ctrl-C) leaves no partial file and
any existing file untouched. An existing target needs ``force=True``.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from contextlib import contextmanager

from ..errors import OutputError


def check_target(path: str, force: bool = False):
    """Fail early, before any work, when ``path`` can't or mustn't be written."""
    if path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"{path}: directory {folder} does not exist")
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a directory; expected a file name")
    if os.path.exists(path) and not force:
        raise OutputError(f"{path}: already exists; use --force to overwrite it")


@contextmanager
def atomic_path(path: str, force: bool = False):
    """Yield a temporary path in the target's folder; rename it to ``path`` on success."""
    check_target(path, force)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        _unlink(tmp)
        if e.errno == errno.ENOSPC:
            raise OutputError(f"{path}: no space left on the device; nothing was written") from None
        if isinstance(e, PermissionError):
            raise OutputError(f"{path}: permission denied") from None
        raise
    except BaseException:
        _unlink(tmp)
        raise


@contextmanager
def open_output(path: str, mode: str = "w", force: bool = False):
    """A file object for ``path`` (``-`` is stdout) that appears only when complete."""
    binary = "b" in mode
    if path == "-":
        yield sys.stdout.buffer if binary else sys.stdout
        (sys.stdout.buffer if binary else sys.stdout).flush()
        return
    with atomic_path(path, force) as tmp:
        kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def _unlink(p):
    try:
        os.unlink(p)
    except OSError:
        pass
