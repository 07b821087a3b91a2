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

from .. import limits, signals
from ..errors import ModelFileError
from .hdf5 import short

MAX_WEIGHTS_BYTES = 8 * 2**30  # model.weights.h5 in a .keras archive (and max_memory)
MAX_METADATA_BYTES = 2**20  # metadata.json (Keras writes a version and a date)


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
    # before a byte is inflated or written: weights beyond max_memory could never be held
    limits.check_bytes(info.file_size, f"{path}: member {member} would take",
                       error=ModelFileError)
    limits.check_ratio(info.file_size, info.compress_size, f"{path}: member {member}",
                       error=ModelFileError)
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


def read_config(zf, path, member):
    """config.json (within max_config_bytes) or metadata.json (a MiB), parsed."""
    info = zf.getinfo(member)
    if member == "config.json":
        limits.check_bytes(info.file_size, f"{path}: {member} is", name="max_config_bytes",
                           error=ModelFileError)
        limit = limits.get("max_config_bytes")
    else:
        limit = min(MAX_METADATA_BYTES, limits.get("max_config_bytes"))
        if info.file_size > limit:
            raise ModelFileError(f"{path}: {member} is {limits.format_size(info.file_size)}; "
                                 f"expected at most {limits.format_size(limit)} (Keras writes "
                                 f"a version and a date there)")
    return read_json(read_member(zf, path, member, limit), f"{path}: {member}")


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
