"""Members of zip archives (.keras, .npz), read within limits: a member's declared size
and what it actually inflates to are both checked, and a large member is spilled to a
temporary file rather than held in memory."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile

from .. import signals
from ..errors import ModelFileError
from .hdf5 import short

MAX_CONFIG_BYTES = 64 * 2**20  # config.json / metadata.json in a .keras archive
MAX_WEIGHTS_BYTES = 8 * 2**30  # model.weights.h5 in a .keras archive


def read_json(text, where):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ModelFileError(f"{where} is not valid JSON") from None


IN_MEMORY_BYTES = 256 * 2**20  # a larger archived member is spilled to a temporary file


@contextlib.contextmanager
def member_file(zf, path, member, limit):
    """An archived member for h5py: in memory when small, else copied to a temporary file
    (so a multi-GB .keras archive is never held in memory whole)."""
    info = zf.getinfo(member)
    if info.file_size <= IN_MEMORY_BYTES:
        yield io.BytesIO(read_member(zf, path, member, limit))
        return
    if info.file_size > limit:
        raise ModelFileError(f"{path}: member {member} is {info.file_size} bytes, over the "
                             f"{limit}-byte limit; refused")
    with signals.deferred():  # made and tracked at once: Ctrl-C or kill can't leak it
        tmp = tempfile.mkdtemp(prefix="rnncli-")
        signals.track(tmp)
    try:
        target = os.path.join(tmp, "model.weights.h5")
        signals.checkpoint("unzip")
        try:
            with zf.open(info) as src, open(target, "wb") as dst:
                copied = 0
                while chunk := src.read(1 << 20):
                    copied += len(chunk)
                    if copied > limit:
                        raise ModelFileError(f"{path}: member {member} is over the "
                                             f"{limit}-byte limit; refused")
                    dst.write(chunk)
        except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as e:
            if isinstance(e, ModelFileError):
                raise
            raise ModelFileError(f"{path}: member {member} is damaged ({short(e)})") from None
        yield target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        signals.untrack(tmp)


def read_member(zf, path, member, limit):
    info = zf.getinfo(member)
    if info.file_size > limit:
        raise ModelFileError(f"{path}: member {member} is {info.file_size} bytes, over the "
                             f"{limit}-byte limit; refused")
    try:
        with zf.open(info) as fh:
            data = fh.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise ModelFileError(f"{path}: member {member} is damaged ({short(e)})") from None
    if len(data) > limit:
        raise ModelFileError(f"{path}: member {member} is over the {limit}-byte limit; refused")
    return data
