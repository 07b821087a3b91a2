"""Hostile input files, made in memory: NPY headers that lie, zip archives written by hand
(so their directories can lie too), a deflate bomb built from one repeated block.

Shared by tests/test_hostile_inputs.py and tests/test_fuzz_inputs.py.
"""

import io
import struct
import zipfile
import zlib

import numpy as np


def npy(header: str, data: bytes = b"", version=(1, 0)) -> bytes:
    """NPY bytes with ``header`` as written (no padding, no checks)."""
    h = header.encode("latin1" if version[0] < 3 else "utf-8")
    size = struct.pack("<H" if version[0] == 1 else "<I", len(h))
    return b"\x93NUMPY" + bytes(version) + size + h + data


def npy_header(descr="<f8", shape=(2, 3), fortran=False) -> str:
    return f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}\n"


def npy_of(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def zip_bytes(members) -> bytes:
    """A zip archive from ``(name, stored_bytes, method, crc, file_size, flags)`` tuples,
    with whatever sizes and methods they claim."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size, flags in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc,
                           len(data), size, len(raw), 0) + raw + data
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, flags, method,
                               0, 0x21, crc, len(data), size, len(raw), 0, 0, 0, 0, 0,
                               offset) + raw
    n = len(members)
    return bytes(out + central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n,
                                             len(central), len(out), 0))


def stored(name, data, method=zipfile.ZIP_STORED, flags=0, size=None):
    """A member holding ``data`` uncompressed (``method`` and ``size`` may lie)."""
    return (name, data, method, zlib.crc32(data), len(data) if size is None else size, flags)


def deflated(name, data, size=None, crc=None):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    packed = c.compress(data) + c.flush()
    return (name, packed, zipfile.ZIP_DEFLATED, zlib.crc32(data) if crc is None else crc,
            len(data) if size is None else size, 0)


BLOCK = 4 << 20  # zero bytes per repeated deflate block


def deflate_bomb(blocks=720, declared=None):
    """An .npz whose one member inflates to ``blocks`` × 4 MiB of zero float64s (720 blocks:
    a 2.9 MB archive, 2.8 GiB inflated, about 1027:1) behind an honest NPY header. The
    directory declares the true size unless ``declared`` says otherwise. Built from one
    compressed block repeated (a full flush makes every block's output identical); its CRC
    is left 0, as a reader refusing the member never reads that far."""
    total = blocks * BLOCK
    header = npy(npy_header("<f8", (total // 8,)))
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(BLOCK)) + c.flush(zlib.Z_FULL_FLUSH)
    data = head + block * blocks + c.flush(zlib.Z_FINISH)
    size = len(header) + total if declared is None else declared
    return zip_bytes([("x.npy", data, zipfile.ZIP_DEFLATED, 0, size, 0)])


def npz_of(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# ------------------------------------------------------------------ model files


def _zip64_member(name, data, method, crc, size):
    """Local header and central entry of a member that declares ``size`` (any size) with a
    ZIP64 extra field; offsets stay under 4 GiB."""
    raw = name.encode()
    extra = struct.pack("<HHQQ", 1, 16, size, len(data))
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, method, 0, 0x21, crc,
                        0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra)) + raw + extra + data
    central = struct.pack("<4sHHHHHHIIIHHHHHI", b"PK\x01\x02", 45, 45, 0, method, 0, 0x21,
                          crc, 0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra), 0, 0, 0, 0)
    return local, central, raw + extra


def zip64_bytes(members) -> bytes:
    """A zip archive from ``(name, stored_bytes, method, crc, file_size)``, sizes as ZIP64."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        local, entry, tail = _zip64_member(name, data, method, crc, size)
        central += entry + struct.pack("<I", len(out)) + tail
        out += local
    n = len(members)
    return bytes(out + central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n,
                                             len(central), len(out), 0))


def zero_deflate(total, head=b"", noise=0):
    """Deflate data for ``head`` then ``total`` bytes, built from one compressed 4 MiB block
    repeated (never the bytes themselves): zeros, after ``noise`` random bytes a block (16 KiB
    of noise make it about 256:1, under the decompression-ratio limit)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = [c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)]
    plain = np.random.default_rng(0).bytes(noise) + bytes(BLOCK - noise)
    block = c.compress(plain) + c.flush(zlib.Z_FULL_FLUSH)
    out += [block] * (total // BLOCK)
    out.append(c.compress(bytes(total % BLOCK)) + c.flush(zlib.Z_FINISH))
    return b"".join(out)


def keras_with(config: bytes, metadata: bytes, weights: tuple) -> bytes:
    """A .keras archive: config.json and metadata.json deflated, then ``weights`` as
    ``(stored_bytes, method, crc, file_size)`` for model.weights.h5."""
    return zip64_bytes([deflated("config.json", config)[:5],
                        deflated("metadata.json", metadata)[:5],
                        ("model.weights.h5",) + tuple(weights)])


def json_of_empty_objects(size):
    """``size`` bytes of JSON that parse into size/3 empty dicts (64 bytes each in Python)."""
    n = (size - 2) // 3
    return b"[" + b"{}," * (n - 1) + b"{}]"
