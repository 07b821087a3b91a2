"""Read and write safetensors files with numpy alone.

The format: an 8-byte little-endian header size N, N bytes of JSON (an object mapping each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``, plus an optional
``"__metadata__"`` object of strings), then the tensors' raw little-endian bytes, back to
back. ``data_offsets`` count from the first byte after the header; together they must tile
the data exactly: no overlap, no hole, nothing after the last tensor.

Every size the header declares is checked against the file's size before anything is
allocated, so a lying header costs nothing: at most the file's own size is ever read.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelFileError, OutputError, file_error
from ..io.atomic import write_bytes

MAX_HEADER_BYTES = 100 * 2**20

# safetensors dtype -> numpy dtype of the bytes in the file (BF16 is widened to float32).
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
}
# numpy kind + itemsize -> safetensors dtype, for writing.
WRITE_DTYPES = {
    ("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16",
    ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16", ("i", 1): "I8",
    ("u", 8): "U64", ("u", 4): "U32", ("u", 2): "U16", ("u", 1): "U8",
    ("b", 1): "BOOL",
}


@dataclass
class SafetensorsFile:
    """What a safetensors file holds.

    ``tensors``: name -> array, in the order of their bytes in the file. ``metadata``: the
    header's ``__metadata__`` (strings to strings; empty when absent). ``dtypes``: name ->
    the file's dtype string (``"BF16"`` tensors come back as float32 arrays).
    """

    tensors: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice")
        out[k] = v
    return out


def _parse_header(where: str, raw: bytes) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise ModelFileError(f"{where}: the safetensors header is not UTF-8 text; "
                             "expected a JSON object") from None
    except ValueError as e:
        raise ModelFileError(f"{where}: the safetensors header is not valid JSON ({e}); "
                             "expected a JSON object") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{where}: the safetensors header is a JSON "
                             f"{type(header).__name__}; expected a JSON object")
    return header


def _check_entry(where: str, name: str, entry) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry, after checking each on its own."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ModelFileError(f"{where}: tensor {name!r}: expected an object with dtype, shape "
                             f"and data_offsets, got {got}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise ModelFileError(f"{where}: tensor {name!r} has dtype {dtype!r}; expected one of "
                             f"{', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise ModelFileError(f"{where}: tensor {name!r} has shape {shape!r}; expected a list "
                             "of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_int(o) and o >= 0 for o in offsets)):
        raise ModelFileError(f"{where}: tensor {name!r} has data_offsets {offsets!r}; expected "
                             "[begin, end], two non-negative integers")
    begin, end = offsets
    if end < begin:
        raise ModelFileError(f"{where}: tensor {name!r} has data_offsets [{begin}, {end}], "
                             "which end before they begin; expected begin <= end")
    nbytes = math.prod(shape) * DTYPES[dtype].itemsize
    if end - begin != nbytes:
        raise ModelFileError(f"{where}: tensor {name!r} ({dtype} {shape}) needs {nbytes} bytes, "
                             f"its data_offsets [{begin}, {end}] hold {end - begin}; expected them equal")
    return dtype, tuple(shape), begin, end


def _plan(where: str, header: dict, data_bytes: int):
    """Checked (name, dtype, shape, begin, end) in file order, and the metadata."""
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ModelFileError(f"{where}: __metadata__ must map strings to strings, got "
                             f"{json.dumps(metadata)[:80]}")
    entries = [(name, *_check_entry(where, name, e)) for name, e in header.items()]
    entries.sort(key=lambda e: (e[3], e[4]))
    at, previous = 0, None
    for name, _, _, begin, end in entries:
        if begin < at:
            raise ModelFileError(f"{where}: tensor {name!r} starts at byte {begin}, inside "
                                 f"{previous!r} (which ends at {at}); expected tensors that "
                                 "do not overlap")
        if begin > at:
            raise ModelFileError(f"{where}: tensor {name!r} starts at byte {begin}, leaving a "
                                 f"hole after byte {at}; expected tensors back to back")
        at, previous = end, name
    if at != data_bytes:
        raise ModelFileError(f"{where}: the header declares {at} bytes of tensor data, the "
                             f"file holds {data_bytes} after the header; expected them equal")
    return entries, metadata


def _array(where, name, dtype, shape, buf) -> np.ndarray:
    raw = np.frombuffer(buf, DTYPES[dtype])
    if dtype == "BF16":  # bfloat16 is the top half of a float32
        arr = (raw.astype(np.uint32) << 16).view(np.float32)
    elif dtype == "BOOL":
        if raw.size and raw.max() > 1:
            raise ModelFileError(f"{where}: BOOL tensor {name!r} holds the byte {raw.max()}; "
                                 "expected 0 or 1")
        arr = raw.view(np.bool_)
    else:
        native = raw.dtype.newbyteorder("=")
        arr = raw.view(native) if raw.dtype.isnative else raw.astype(native)
    return arr.reshape(shape)


def read_safetensors_file(path, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsFile:
    """Read every tensor of the safetensors file ``path``, with the header's metadata."""
    where = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise file_error(where, e, ModelFileError) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        first = f.read(8)
        if len(first) < 8:
            raise ModelFileError(f"{where}: {size} bytes, too short for a safetensors file; "
                                 "expected an 8-byte header size and a JSON header")
        (n,) = struct.unpack("<Q", first)
        if n > max_header_bytes:
            raise ModelFileError(f"{where}: the safetensors header declares {n} bytes, over the "
                                 f"limit of {max_header_bytes}; expected a smaller header (or "
                                 "not a safetensors file)")
        if n > size - 8:
            raise ModelFileError(f"{where}: the safetensors header declares {n} bytes, past the "
                                 f"end of the file ({size - 8} bytes follow the size)")
        header = _parse_header(where, f.read(n))
        entries, metadata = _plan(where, header, size - 8 - n)
        tensors, dtypes = {}, {}
        for name, dtype, shape, begin, end in entries:
            buf = bytearray(end - begin)
            f.seek(8 + n + begin)
            if f.readinto(buf) != len(buf):
                raise ModelFileError(f"{where}: the file ended inside tensor {name!r} "
                                     "(it changed while being read)")
            tensors[name] = _array(where, name, dtype, shape, buf)
            dtypes[name] = dtype
    return SafetensorsFile(tensors, dict(metadata), dtypes)


def read_safetensors(path, max_header_bytes: int = MAX_HEADER_BYTES) -> dict[str, np.ndarray]:
    """name -> array for every tensor in the safetensors file ``path``, in file order."""
    return read_safetensors_file(path, max_header_bytes).tensors


def safetensors_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (name -> array-like).

    Tensors are laid out widest dtype first (keeping the given order among equals), so each
    starts aligned to its item size, as the safetensors library does.
    """
    header: dict = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise OutputError("safetensors metadata must map strings to strings, got "
                              f"{metadata!r}"[:200])
        header["__metadata__"] = dict(metadata)
    arrays = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise OutputError(f"safetensors tensor names must be strings other than "
                              f"'__metadata__', got {name!r}")
        arr = np.asarray(value)
        key = WRITE_DTYPES.get((arr.dtype.kind, arr.dtype.itemsize))
        if key is None:
            raise OutputError(f"tensor {name!r} has dtype {arr.dtype}, which safetensors can't "
                              "hold; expected a float, integer or bool array")
        if key == "BOOL":
            arr = arr.view(np.uint8)
        arrays.append((name, key, np.ascontiguousarray(arr, arr.dtype.newbyteorder("<"))))
    arrays.sort(key=lambda a: -a[2].dtype.itemsize)
    at = 0
    for name, key, arr in arrays:
        header[name] = {"dtype": key, "shape": list(arr.shape),
                        "data_offsets": [at, at + arr.nbytes]}
        at += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return b"".join([struct.pack("<Q", len(text)), text] + [a.tobytes() for _, _, a in arrays])


def write_safetensors(path_or_file, tensors: dict, metadata: dict | None = None) -> None:
    """Write ``tensors`` (name -> array) and string ``metadata`` as a safetensors file.

    ``path_or_file``: a path, or a binary file object opened for writing.
    """
    write_bytes(path_or_file, safetensors_bytes(tensors, metadata))
