"""Read NPY arrays and NPZ members without trusting their headers.

``numpy.load`` allocates what a header declares before it reads a byte of data, so a
100-byte file claiming shape (10**11, 3) ends in a MemoryError, and an .npz member that
inflates to gigabytes is inflated. Here the header is parsed first (with the
``max_npy_header_bytes`` limit), its shape × itemsize compared with the bytes actually
present and with ``max_memory`` (see :mod:`rnncli.limits`), and only then is memory
allocated, mapped or decompressed. Nothing is unpickled: object, structured and other
non-numeric dtypes are refused with a sentence saying what was found.

Every function takes ``error``, the :class:`~rnncli.errors.RnncliError` subclass to raise
(``InputDataError`` for inputs, ``ModelFileError`` for weights), and ``name``, the label
that starts each message.
"""

from __future__ import annotations

import ast
import lzma
import math
import os
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from .. import limits
from ..errors import RnncliError

MAGIC = b"\x93NUMPY"
MAX_DIMS = 32  # numpy 1.x's limit (2.x allows 64); inputs are at most 3-D anyway
CHUNK = 1 << 20
NUMERIC_KINDS = "fiub"  # float, int, unsigned, bool: computed as floats (or token ids)
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
               zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
# What reading a damaged zip member can raise, besides rnncli's own errors.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, ValueError,
              NotImplementedError, RuntimeError, struct.error, KeyError, IndexError)
EXAMPLE = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}"


@dataclass(frozen=True)
class NpyHeader:
    dtype: np.dtype
    shape: tuple
    fortran_order: bool
    offset: int  # bytes before the data: magic, version, length field, header

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize

    def describe(self) -> str:
        return f"shape {self.shape} of {self.dtype}"


def printable(text, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters with control characters escaped, so a name
    taken from a file cannot move the cursor or recolour the terminal it is shown on."""
    text = str(text)[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _read_exact(read, n):
    parts, got = [], 0
    while got < n:
        part = read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_header(read, name: str, error) -> NpyHeader:
    """Parse an NPY header with ``read(n)`` (a file's ``read``), checking it completely."""
    lead = _read_exact(read, 8)
    if not lead.startswith(MAGIC) or len(lead) < 8:
        raise error(f"{name}: not NPY data (starts with {bytes(lead[:8])!r}); expected an "
                    f"array saved by numpy.save")
    major, minor = lead[6], lead[7]
    if major not in (1, 2, 3) or minor != 0:
        raise error(f"{name}: NPY format version {major}.{minor} is unknown; expected 1.0, "
                    f"2.0 or 3.0")
    size_field = _read_exact(read, 2 if major == 1 else 4)
    if len(size_field) < (2 if major == 1 else 4):
        raise error(f"{name}: NPY data ends inside its header; the file is truncated")
    hlen = int.from_bytes(size_field, "little")
    limits.check_bytes(hlen, f"{name}: NPY header is", name="max_npy_header_bytes",
                       error=error)
    raw = _read_exact(read, hlen)
    if len(raw) < hlen:
        raise error(f"{name}: NPY header is cut short ({len(raw)} of {hlen} bytes); the file "
                    f"is truncated")
    dtype, shape, fortran = _parse_dict(raw, major, name, error)
    return NpyHeader(dtype, shape, fortran, 8 + len(size_field) + hlen)


def _parse_dict(raw, major, name, error):
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1").strip()
    except UnicodeDecodeError:
        raise error(f"{name}: NPY header is not text; the file is damaged") from None
    if not text.startswith("{"):
        raise error(f"{name}: NPY header does not start with '{{'; expected a dictionary like "
                    f"{EXAMPLE}")
    if not text.endswith("}"):
        raise error(f"{name}: NPY header has no closing brace '}}'; expected a dictionary like "
                    f"{EXAMPLE} (the file is damaged or truncated)")
    try:
        with warnings.catch_warnings():  # odd literals warn while compiling ("\h", "1abc")
            warnings.simplefilter("ignore")
            d = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        d = None
    if not isinstance(d, dict):
        raise error(f"{name}: NPY header is not a readable dictionary; expected one like "
                    f"{EXAMPLE}")
    if set(d) != {"descr", "fortran_order", "shape"}:
        keys = ", ".join(sorted(map(repr, d)))[:80]
        raise error(f"{name}: NPY header has keys {keys}; expected exactly 'descr', "
                    f"'fortran_order' and 'shape'")
    shape, fortran = d["shape"], d["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(n) is int for n in shape):
        raise error(f"{name}: NPY header shape {printable(shape)} is not a tuple of whole "
                    f"numbers; expected one like (2, 3)")
    if any(n < 0 for n in shape):
        raise error(f"{name}: NPY header declares a negative dimension in shape "
                    f"{printable(shape)}; expected sizes of 0 or more")
    if len(shape) > MAX_DIMS:
        raise error(f"{name}: NPY header declares {len(shape)} dimensions; expected at most "
                    f"{MAX_DIMS}")
    if not isinstance(fortran, bool):
        raise error(f"{name}: NPY header fortran_order is {printable(fortran, 30)}; expected True "
                    f"or False")
    dtype = numeric_dtype(d["descr"], name, error)
    if math.prod(max(n, 1) for n in shape) * dtype.itemsize > np.iinfo(np.intp).max:
        raise error(f"{name}: NPY header declares shape {printable(shape)}, larger than any "
                    f"array can be; the file is damaged")
    return dtype, shape, fortran


def numeric_dtype(descr, name: str, error) -> np.dtype:
    """The dtype an NPY ``descr`` names, if it holds plain numbers; else ``error``."""
    if isinstance(descr, list):
        fields = printable(", ".join(str(f[0]) if isinstance(f, tuple) and f else "?"
                                     for f in descr[:5]))
        raise error(f"{name}: holds structured records (fields {fields}); expected a plain "
                    f"numeric array, e.g. np.save(path, records['field'])")
    if not isinstance(descr, str):
        raise error(f"{name}: NPY header descr {printable(descr, 40)} is not a dtype; expected one "
                    f"like '<f4'")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError, OverflowError, MemoryError, RecursionError):
        raise error(f"{name}: NPY header names an unknown dtype {descr[:40]!r}; expected a "
                    f"numeric one like '<f4' or '<i8'") from None
    return check_numeric(dtype, name, error)


def check_numeric(dtype, name: str, error) -> np.dtype:
    """``dtype`` if it is float, int or bool; a sentence about anything else."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise error(f"{name}: holds an object (pickled) array, which rnncli never loads; "
                    f"expected numbers")
    if dtype.fields is not None:
        fields = printable(", ".join(dtype.names[:5]))
        raise error(f"{name}: holds structured records (fields {fields}); expected a plain "
                    f"numeric array")
    if dtype.subdtype is not None:
        raise error(f"{name}: has a sub-array dtype {dtype}; expected a plain numeric one")
    if dtype.kind == "c":
        raise error(f"{name}: holds complex numbers ({dtype}); expected real numbers (save "
                    f"x.real, or the real and imaginary parts as features)")
    if dtype.kind not in NUMERIC_KINDS or dtype.itemsize == 0:
        raise error(f"{name}: holds {dtype} values; expected numbers (float, int or bool)")
    return dtype


def _truncated(header, present, name, error):
    if header.nbytes > present:
        raise error(f"{name}: NPY data is truncated: its header declares "
                    f"{header.describe()} ({limits.format_size(header.nbytes)}) but only "
                    f"{limits.format_size(max(present, 0))} follow")


def _shaped(flat, header):
    if header.fortran_order:
        return flat.reshape(header.shape[::-1]).transpose()
    return flat.reshape(header.shape)


def map_file(path, name: str, error) -> np.ndarray:
    """A regular .npy file, memory-mapped read-only (a large input is read a batch at a
    time). Its declared size is checked against the file's length, not ``max_memory``:
    the data is on disk, and nothing is allocated for it."""
    with open(path, "rb") as f:
        header = read_header(f.read, name, error)
        present = os.fstat(f.fileno()).st_size - header.offset
    _truncated(header, present, name, error)
    if header.count == 0:
        return np.empty(header.shape, header.dtype)
    try:
        return np.memmap(path, dtype=header.dtype, mode="r", offset=header.offset,
                         shape=header.shape, order="F" if header.fortran_order else "C")
    except (OSError, ValueError) as e:
        raise error(f"{name}: cannot be memory-mapped ({str(e)[:60]})") from None


def from_buffer(buf, name: str, error) -> np.ndarray:
    """An array over ``buf`` (bytes, bytearray or memoryview holding a whole .npy), without
    copying the data."""
    view = memoryview(buf)
    pos = 0

    def read(n):
        nonlocal pos
        part = view[pos:pos + n]
        pos += len(part)
        return bytes(part)

    header = read_header(read, name, error)
    _truncated(header, len(view) - header.offset, name, error)
    flat = np.frombuffer(view, dtype=header.dtype, count=header.count, offset=header.offset)
    return _shaped(flat, header)


def read_stream(f, name: str, error, size: int | None = None) -> np.ndarray:
    """An .npy read from a stream (a pipe, an archive member). The declared size is checked
    against ``size`` (the bytes the stream holds, when known) and ``max_memory`` before
    anything is allocated; the buffer then grows only as data actually arrives."""
    header = read_header(f.read, name, error)
    if size is not None:
        _truncated(header, size - header.offset, name, error)
    elif header.nbytes > limits.get("max_memory"):
        # Over the limit: a lie (the stream ends soon) or a real large array. Count what
        # follows, without keeping it, to tell which, up to the limit.
        seen = 0
        while seen <= limits.get("max_memory") and (part := f.read(CHUNK)):
            seen += len(part)
        _truncated(header, seen, name, error)
    limits.check_bytes(header.nbytes, f"{name}: array of {header.describe()} takes",
                       error=error)
    buf = bytearray()
    while len(buf) < header.nbytes:
        part = f.read(min(CHUNK, header.nbytes - len(buf)))
        if not part:
            break
        buf += part
    _truncated(header, len(buf), name, error)
    flat = np.frombuffer(buf, dtype=header.dtype, count=header.count)
    return _shaped(flat, header)


# ------------------------------------------------------------------ .npz


def npz_keys(zf: zipfile.ZipFile) -> list[str]:
    """Array names in an .npz, as numpy names them (``a.npy`` -> ``a``)."""
    return [n[:-4] if n.endswith(".npy") else n for n in zf.namelist()]


def npz_member(zf: zipfile.ZipFile, key: str) -> zipfile.ZipInfo:
    names = zf.namelist()
    member = key + ".npy" if key + ".npy" in names else key
    return zf.getinfo(member)


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, error) -> np.ndarray:
    """One .npz member as an array. Encryption and compression methods other than stored,
    deflate, bzip2 and lzma are refused; the declared size is checked against
    ``max_memory`` and ``max_decompression_ratio``, then against what the member's NPY
    header declares, before any of it is inflated; CRC errors are reported as damage."""
    method = info.compress_type
    if info.flag_bits & 0x1:
        raise error(f"{name}: member is encrypted; expected an .npz written by numpy.savez")
    if method not in ZIP_METHODS:
        label = zipfile.compressor_names.get(method, "unknown")
        raise error(f"{name}: member uses compression method {method} ({label}), which rnncli "
                    f"cannot read; expected stored or deflate members as numpy.savez and "
                    f"savez_compressed write")
    limits.check_bytes(info.file_size, f"{name}: member would take", error=error)
    limits.check_ratio(info.file_size, info.compress_size, f"{name}: member", error=error)
    try:
        with zf.open(info) as f:
            arr = read_stream(f, name, error, size=info.file_size)
            while f.read(CHUNK):  # the rest, so the CRC is checked at its end
                pass
    except RnncliError:
        raise
    except ZIP_ERRORS as e:
        raise error(f"{name}: damaged archive member ({_short(e)})") from None
    return arr


def _short(e) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:80]
