"""ONNX TensorProto <-> numpy.

A TensorProto holds its elements in ``raw_data`` (little-endian bytes), in a typed field
(``float_data``, ``int32_data`` ...), or in a file beside the model (``data_location`` =
EXTERNAL, with ``external_data`` keys ``location``, ``offset``, ``length``). The element
count its ``dims`` declare is compared with the bytes actually there before any array of
that size is made; external files are read only inside the model's own folder.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import ModelFileError, OutputError, file_error

# data_type -> (name, numpy dtype of the stored bytes, typed field holding the elements)
DATA_TYPES = {
    1: ("FLOAT", "<f4", "float_data"), 2: ("UINT8", "u1", "int32_data"),
    3: ("INT8", "i1", "int32_data"), 4: ("UINT16", "<u2", "int32_data"),
    5: ("INT16", "<i2", "int32_data"), 6: ("INT32", "<i4", "int32_data"),
    7: ("INT64", "<i8", "int64_data"), 9: ("BOOL", "u1", "int32_data"),
    10: ("FLOAT16", "<f2", "int32_data"), 11: ("DOUBLE", "<f8", "double_data"),
    12: ("UINT32", "<u4", "uint64_data"), 13: ("UINT64", "<u8", "uint64_data"),
    16: ("BFLOAT16", "<u2", "int32_data"),
}
OTHER_TYPES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128",
               17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
               20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"}
# numpy (kind, itemsize) -> data_type, for writing
WRITE_TYPES = {("f", 4): 1, ("u", 1): 2, ("i", 1): 3, ("u", 2): 4, ("i", 2): 5, ("i", 4): 6,
               ("i", 8): 7, ("b", 1): 9, ("f", 2): 10, ("f", 8): 11, ("u", 4): 12,
               ("u", 8): 13}
EXTERNAL = 1


def type_name(data_type: int) -> str:
    if data_type in DATA_TYPES:
        return DATA_TYPES[data_type][0]
    return OTHER_TYPES.get(data_type, f"type {data_type}")


def _finish(data_type: int, raw: np.ndarray, dims: list[int]) -> np.ndarray:
    """Stored elements (in their storage dtype) -> the array in its own native dtype."""
    if data_type == 16:  # bfloat16 is the top half of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(dims)
    if data_type == 9:
        return (raw != 0).reshape(dims)
    dtype = np.dtype(DATA_TYPES[data_type][1])
    return raw.astype(dtype.newbyteorder("="), copy=False).reshape(dims)


def _external(t: dict, what: str, where: str, base_dir, nbytes: int) -> np.ndarray:
    entries = {e.get("key", ""): e.get("value", "") for e in t.get("external_data", [])}
    location = entries.get("location", "")
    if base_dir is None:
        raise ModelFileError(f"{where}: {what} keeps its data in an external file, but the "
                             "model was not read from a folder")
    if not location or os.path.isabs(location):
        raise ModelFileError(f"{where}: {what} has external location {location!r}; expected a "
                             "path relative to the model's folder")
    root = os.path.realpath(base_dir)
    full = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, full]) != root:
        raise ModelFileError(f"{where}: {what} has external location {location!r}, which "
                             "resolves outside the model's folder; refused")
    if os.path.exists(full) and not os.path.isfile(full):  # a folder, a FIFO, a device
        raise ModelFileError(f"{where}: {what} has external location {location!r}, which is "
                             "not a regular file; expected a file of tensor data")
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else nbytes
    except ValueError:
        raise ModelFileError(f"{where}: {what} has external offset/length "
                             f"{entries.get('offset')!r}/{entries.get('length')!r}; expected "
                             "integers") from None
    if offset < 0:
        raise ModelFileError(f"{where}: {what} has external offset {offset}; expected a "
                             "non-negative integer")
    if length != nbytes:
        raise ModelFileError(f"{where}: {what} needs {nbytes} bytes, its external data "
                             f"declares {length} at offset {offset}")
    try:
        with open(full, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset + nbytes > size:
                raise ModelFileError(f"{where}: {what} needs bytes {offset} to "
                                     f"{offset + nbytes} of {location}, which holds {size}")
            f.seek(offset)
            buf = bytearray(nbytes)
            if f.readinto(buf) != nbytes:
                raise ModelFileError(f"{where}: {location} ended inside {what}")
    except OSError as e:
        raise file_error(f"{where}: {what}: {location}", e, ModelFileError) from None
    return buf


def to_array(t: dict, where: str, base_dir: str | None = None) -> np.ndarray:
    """The numpy array a decoded TensorProto ``t`` holds.

    Native byte order, C-contiguous, in the tensor's own dtype (BFLOAT16 becomes float32,
    BOOL bool). ``base_dir``: the model's folder, where external data may be read.
    """
    name = t.get("name", "")
    what = f"tensor {name!r}" if name else "a tensor"
    data_type = t.get("data_type", 0)
    if data_type not in DATA_TYPES:
        raise ModelFileError(f"{where}: {what} has data_type {type_name(data_type)}; expected "
                             f"one of {', '.join(v[0] for v in DATA_TYPES.values())}")
    if "segment" in t:
        raise ModelFileError(f"{where}: {what} is a segment of a larger tensor; expected whole "
                             "tensors")
    dims = [int(d) for d in t.get("dims", [])]
    if any(d < 0 for d in dims):
        raise ModelFileError(f"{where}: {what} has dims {dims}; expected non-negative sizes")
    count = math.prod(dims)
    type_str, stored, typed_field = DATA_TYPES[data_type]
    stored = np.dtype(stored)
    nbytes = count * stored.itemsize
    if t.get("data_location", 0) == EXTERNAL:
        return _finish(data_type, np.frombuffer(_external(t, what, where, base_dir, nbytes),
                                                stored), dims)
    if "raw_data" in t:
        raw = t["raw_data"]
        if len(raw) != nbytes:
            raise ModelFileError(f"{where}: {what} ({type_str} {dims}) declares {count} "
                                 f"elements, {nbytes} bytes; its raw_data holds {len(raw)}")
        return _finish(data_type, np.frombuffer(raw, stored).copy(), dims)
    values = t.get(typed_field)
    got = 0 if values is None else len(values)
    if got != count:
        raise ModelFileError(f"{where}: {what} ({type_str} {dims}) declares {count} elements; "
                             f"its {typed_field} holds {got}")
    if count == 0:
        return _finish(data_type, np.zeros(0, stored), dims)
    if typed_field == "int32_data" and data_type in (4, 10, 16):  # bit patterns
        values = np.asarray(values).astype(np.uint16)
        if data_type == 10:
            values = values.view(np.float16)
    return _finish(data_type, np.asarray(values).astype(stored), dims)


def from_array(name: str, array) -> dict:
    """A TensorProto dict (for proto.encode) holding ``array`` as little-endian raw_data."""
    arr = np.asarray(array)
    data_type = WRITE_TYPES.get((arr.dtype.kind, arr.dtype.itemsize))
    if data_type is None:
        raise OutputError(f"tensor {name!r} has dtype {arr.dtype}, which rnncli can't write "
                          "to ONNX; expected a float, integer or bool array")
    stored = np.dtype(DATA_TYPES[data_type][1])
    raw = np.ascontiguousarray(arr.astype(stored) if data_type != 9 else arr.view(np.uint8))
    return {"name": name, "dims": list(arr.shape), "data_type": data_type,
            "raw_data": raw.tobytes()}
