"""The protobuf wire format, for the few ONNX messages rnncli needs.

A message is a sequence of fields, each a varint key (field number << 3 | wire type) and a
value: wire type 0 a varint, 1 eight bytes, 2 a varint length and that many bytes (a
string, bytes, a nested message or a packed repeated number field), 5 four bytes.
:func:`decode` turns the bytes of a message into a dict keyed by the field names of
onnx.proto (checked against onnx 1.23's onnx.proto); :func:`encode` does the reverse.

Decoded dicts hold only the fields present. Repeated number fields come back as numpy
arrays (packed or not, as protobuf parsers must accept both), other repeated fields as
lists, ``bytes`` fields as memoryviews into the input (no copy), strings as str. Every
length is checked against the bytes that remain before it is used, and message nesting
is limited to :data:`MAX_DEPTH`. Fields not in the schemas below are skipped.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, OutputError

MAX_DEPTH = 32
MAX_MESSAGES = 2_000_000  # a 2-byte empty message costs ~200 bytes decoded
REP = True  # repeated

# message -> field number -> (name, type, repeated); types are protobuf's, or a message.
SCHEMAS: dict[str, dict[int, tuple]] = {
    "ModelProto": {
        1: ("ir_version", "int64", False), 8: ("opset_import", "OperatorSetIdProto", REP),
        2: ("producer_name", "string", False), 3: ("producer_version", "string", False),
        4: ("domain", "string", False), 5: ("model_version", "int64", False),
        6: ("doc_string", "string", False), 7: ("graph", "GraphProto", False),
        14: ("metadata_props", "StringStringEntryProto", REP),
    },
    "OperatorSetIdProto": {1: ("domain", "string", False), 2: ("version", "int64", False)},
    "StringStringEntryProto": {1: ("key", "string", False), 2: ("value", "string", False)},
    "GraphProto": {
        1: ("node", "NodeProto", REP), 2: ("name", "string", False),
        5: ("initializer", "TensorProto", REP), 10: ("doc_string", "string", False),
        11: ("input", "ValueInfoProto", REP), 12: ("output", "ValueInfoProto", REP),
        13: ("value_info", "ValueInfoProto", REP),
    },
    "NodeProto": {
        1: ("input", "string", REP), 2: ("output", "string", REP), 3: ("name", "string", False),
        4: ("op_type", "string", False), 7: ("domain", "string", False),
        5: ("attribute", "AttributeProto", REP), 6: ("doc_string", "string", False),
    },
    "AttributeProto": {
        1: ("name", "string", False), 21: ("ref_attr_name", "string", False),
        13: ("doc_string", "string", False), 20: ("type", "int32", False),
        2: ("f", "float", False), 3: ("i", "int64", False), 4: ("s", "bytes", False),
        5: ("t", "TensorProto", False), 6: ("g", "GraphProto", False),
        7: ("floats", "float", REP), 8: ("ints", "int64", REP), 9: ("strings", "bytes", REP),
        10: ("tensors", "TensorProto", REP), 11: ("graphs", "GraphProto", REP),
    },
    "TensorProto": {
        1: ("dims", "int64", REP), 2: ("data_type", "int32", False),
        3: ("segment", "Segment", False),
        4: ("float_data", "float", REP), 5: ("int32_data", "int32", REP),
        6: ("string_data", "bytes", REP), 7: ("int64_data", "int64", REP),
        8: ("name", "string", False), 12: ("doc_string", "string", False),
        9: ("raw_data", "bytes", False),
        13: ("external_data", "StringStringEntryProto", REP),
        14: ("data_location", "int32", False),
        10: ("double_data", "double", REP), 11: ("uint64_data", "uint64", REP),
    },
    "Segment": {1: ("begin", "int64", False), 2: ("end", "int64", False)},
    "ValueInfoProto": {
        1: ("name", "string", False), 2: ("type", "TypeProto", False),
        3: ("doc_string", "string", False),
    },
    "TypeProto": {1: ("tensor_type", "TypeProto.Tensor", False),
                  6: ("denotation", "string", False)},
    "TypeProto.Tensor": {1: ("elem_type", "int32", False),
                         2: ("shape", "TensorShapeProto", False)},
    "TensorShapeProto": {1: ("dim", "TensorShapeProto.Dimension", REP)},
    "TensorShapeProto.Dimension": {
        1: ("dim_value", "int64", False), 2: ("dim_param", "string", False),
        3: ("denotation", "string", False),
    },
}
# Repeated number fields written packed (onnx.proto marks these [packed = true]).
PACKED = {("TensorProto", n) for n in
          ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")}

VARINTS = {"int64": np.int64, "int32": np.int32, "uint64": np.uint64}
FIXED = {"float": (5, np.dtype("<f4")), "double": (1, np.dtype("<f8"))}
WIRE = {**{t: 0 for t in VARINTS}, "float": 5, "double": 1, "string": 2, "bytes": 2}


def _fail(where, message):
    raise ModelFileError(f"{where}: {message}")


def _varint(buf, pos: int, end: int, where: str, what: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            _fail(where, f"a varint in {what} runs past its end (byte {pos}); expected a "
                         "complete file")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            _fail(where, f"a varint in {what} is longer than 10 bytes (byte {pos})")


def _signed(v: int, kind: str) -> int:
    if kind == "uint64":
        return v & 0xFFFFFFFFFFFFFFFF
    v &= 0xFFFFFFFFFFFFFFFF
    if kind == "int32":
        v &= 0xFFFFFFFF
        return v - (1 << 32) if v >= 1 << 31 else v
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_varints(buf, start: int, end: int, kind: str, where: str, what: str):
    """The varints packed in ``buf[start:end]``, decoded by numpy (no Python int each)."""
    b = np.frombuffer(buf, np.uint8, end - start, start)
    if b.size and b[-1] >= 0x80:
        _fail(where, f"a varint in {what} runs past its end (byte {end}); expected a "
                     "complete file")
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.intp)
    lengths = ends - starts + 1
    if lengths.size and lengths.max() > 10:
        _fail(where, f"a varint in {what} is longer than 10 bytes")
    shifts = (np.arange(b.size, dtype=np.intp) - np.repeat(starts, lengths)).astype(np.uint64)
    values = np.add.reduceat((b & 0x7F).astype(np.uint64) << (shifts * np.uint64(7)), starts) \
        if b.size else np.zeros(0, np.uint64)
    if kind == "int64":
        return values.view(np.int64)
    if kind == "int32":
        return values.astype(np.uint32).view(np.int32)
    return values


def decode(message: str, buf: bytes, where: str, start: int = 0, end: int | None = None,
           depth: int = 0, _left: list | None = None) -> dict:
    """The fields of ``message`` held in ``buf[start:end]``, by name (see the module doc)."""
    if depth > MAX_DEPTH:
        _fail(where, f"messages nest deeper than {MAX_DEPTH} levels (at {message}); "
                     "expected a shallower model")
    left = [MAX_MESSAGES] if _left is None else _left
    left[0] -= 1
    if left[0] < 0:
        _fail(where, f"more than {MAX_MESSAGES} protobuf messages; expected a smaller model")
    end = len(buf) if end is None else end
    schema, out, numbers = SCHEMAS[message], {}, {}
    view = memoryview(buf)
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end, where, message)
        number, wire = key >> 3, key & 7
        if number == 0:
            _fail(where, f"{message} has a field numbered 0 at byte {pos}; expected 1 or more")
        if wire == 0:
            value, pos = _varint(buf, pos, end, where, message)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if size > end - pos:
                _fail(where, f"a {size}-byte field {number} of {message} at byte {pos} runs "
                             f"past its end ({end - pos} bytes left)")
            value, pos = (pos, pos + size), pos + size
        elif wire == 2:
            n, pos = _varint(buf, pos, end, where, message)
            if n > end - pos:
                _fail(where, f"field {number} of {message} at byte {pos} declares {n} bytes, "
                             f"past the end of its {end - pos} bytes; expected a complete file")
            value, pos = (pos, pos + n), pos + n
        else:
            _fail(where, f"field {number} of {message} has wire type {wire} (a protobuf "
                         "group or garbage); expected 0, 1, 2 or 5")
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind, repeated = spec
        expected = WIRE.get(kind, 2)
        if wire != expected and not (repeated and wire == 2 and expected != 2):
            _fail(where, f"field {number} ({name}) of {message} has wire type {wire}; "
                         f"expected {expected}")
        if kind in VARINTS or kind in FIXED:
            if wire == 2 and kind in VARINTS:
                part = _packed_varints(buf, *value, kind, where, f"{message}.{name}")
            elif kind in VARINTS:
                part = _signed(value, kind)
            else:
                dtype = FIXED[kind][1]
                if (value[1] - value[0]) % dtype.itemsize:
                    _fail(where, f"packed {message}.{name} holds {value[1] - value[0]} bytes, "
                                 f"not a multiple of {dtype.itemsize}")
                part = np.frombuffer(view[value[0]:value[1]], dtype)
                if wire != 2:
                    part = float(part[0])
            if not repeated:
                out[name] = part
                continue
            parts = numbers.setdefault(name, (kind, []))[1]
            if isinstance(part, np.ndarray):
                parts.append(part)
            elif parts and isinstance(parts[-1], list):
                parts[-1].append(part)  # unpacked: one Python number each, joined below
            else:
                parts.append([part])
            continue
        if kind == "string":
            item = bytes(view[value[0]:value[1]]).decode("utf-8", "replace")
        elif kind == "bytes":
            item = view[value[0]:value[1]]
        else:
            item = decode(kind, buf, where, value[0], value[1], depth + 1, left)
        if repeated:
            out.setdefault(name, []).append(item)
        else:
            out[name] = item
    for name, (kind, parts) in numbers.items():
        dtype = VARINTS[kind] if kind in VARINTS else FIXED[kind][1]
        arrays = [np.asarray(p, dtype) for p in parts]
        out[name] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0].copy()
    return out


def _key(number: int, wire: int) -> bytes:
    return _uvarint(number << 3 | wire)


def _uvarint(v: int) -> bytes:
    v &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _one(message, name, kind, number, value) -> bytes:
    if kind in VARINTS:
        return _key(number, 0) + _uvarint(int(value))
    if kind in FIXED:
        wire, dtype = FIXED[kind]
        return _key(number, wire) + np.asarray(value, dtype).tobytes()
    if kind == "string":
        value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    elif kind == "bytes":
        value = bytes(value)
    else:
        if not isinstance(value, dict):
            raise OutputError(f"{message}.{name} must be a dict of {kind} fields, "
                              f"got {type(value).__name__}")
        value = encode(kind, value)
    return _key(number, 2) + _uvarint(len(value)) + value


def encode(message: str, fields: dict) -> bytes:
    """The bytes of ``message`` holding ``fields`` (a dict as :func:`decode` returns)."""
    schema = SCHEMAS[message]
    names = {spec[0]: (number, spec) for number, spec in schema.items()}
    unknown = set(fields) - set(names)
    if unknown:
        raise OutputError(f"{message} has no field {sorted(unknown)[0]!r}; expected one of "
                          f"{', '.join(sorted(names))}")
    out = []
    for number in sorted(schema):
        name, kind, repeated = schema[number]
        value = fields.get(name)
        if value is None:
            continue
        if not repeated:
            out.append(_one(message, name, kind, number, value))
        elif (message, name) in PACKED:
            if kind in FIXED:
                payload = np.asarray(value, FIXED[kind][1]).tobytes()
            else:
                payload = b"".join(_uvarint(int(v)) for v in np.asarray(value).ravel())
            if payload:
                out.append(_key(number, 2) + _uvarint(len(payload)) + payload)
        else:
            out.extend(_one(message, name, kind, number, v) for v in value)
    return b"".join(out)

