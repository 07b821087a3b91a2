"""A small PNG writer and reader (8-bit, non-interlaced), numpy + zlib + struct only.

The writer stores RGB or RGBA pixels, each row with whichever of the five PNG filters
leaves the smallest residuals. The reader handles all five row filters and the grey,
grey+alpha, RGB, RGBA and palette colour types: enough to check our own images and a
browser's screenshots.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

from ..errors import InputDataError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _filter_rows(x, bpp):
    """Each row filtered the way that leaves the smallest residuals (the usual heuristic:
    least sum of |residual| as signed bytes), with its filter type byte in front.
    All five filters depend only on raw pixels, so they are computed for all rows at once."""
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    upleft = np.zeros_like(x)
    upleft[1:, bpp:] = x[:-1, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    candidates = np.stack([x, x - left, x - up, x - (left + up) // 2, x - paeth]) & 0xFF
    signed = np.where(candidates > 127, 256 - candidates, candidates)
    best = signed.sum(axis=2).argmin(axis=0)
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(x.shape[0])]
    return out


def encode_png(pixels) -> bytes:
    """PNG bytes for ``pixels``: a uint8 array (height, width, 3) or (height, width, 4)."""
    a = np.asarray(pixels)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.dtype != np.uint8 or 0 in a.shape[:2]:
        raise InputDataError(f"an image of shape {a.shape} and dtype {a.dtype} cannot be "
                             "written as PNG; expected uint8 (height, width, 3 or 4)")
    h, w, c = a.shape
    filtered = _filter_rows(a.reshape(h, w * c).astype(np.int16), c)
    header = struct.pack(">IIBBBBB", w, h, 8, 2 if c == 3 else 6, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)) + _chunk(b"IEND", b""))


def png_data_uri(pixels) -> str:
    """``data:image/png;base64,...`` for ``pixels`` (see :func:`encode_png`)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")


def _chunks(data: bytes):
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise InputDataError(f"PNG chunk {kind!r} has a bad checksum; expected an intact file")
        yield kind, body
        pos += 12 + length


def _unfilter_row(kind, row, prior, bpp):
    """Undo one row's filter; ``row``/``prior`` are uint8 arrays."""
    if kind == 0:
        return row
    if kind == 2:
        return (row.astype(np.uint16) + prior).astype(np.uint8)
    if kind == 1:
        n = len(row) // bpp
        return (np.cumsum(row.reshape(n, bpp).astype(np.uint32), axis=0) & 0xFF) \
            .astype(np.uint8).ravel()
    out = bytearray(row.tobytes())
    up = prior.tobytes()
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            out[i] = (out[i] + ((a + b) >> 1)) & 0xFF
            continue
        c = up[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out[i] = (out[i] + pred) & 0xFF
    return np.frombuffer(bytes(out), dtype=np.uint8)


def decode_png(data: bytes) -> np.ndarray:
    """Pixels of a PNG as uint8 (height, width, channels): 1 grey, 2 grey+alpha, 3 RGB,
    4 RGBA; palette images come back as RGB(A)."""
    if not data.startswith(SIGNATURE):
        raise InputDataError("the data is not a PNG image; expected the PNG signature")
    idat, palette, alpha, head = [], None, None, None
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)
        elif kind == b"tRNS":
            alpha = np.frombuffer(body, dtype=np.uint8)
        elif kind == b"IDAT":
            idat.append(body)
    if head is None:
        raise InputDataError("the PNG has no IHDR chunk; expected a header")
    w, h, depth, ctype, _, _, interlace = head
    if depth != 8 or interlace or ctype not in _CHANNELS:
        raise InputDataError(f"PNG with bit depth {depth}, colour type {ctype}, interlace "
                             f"{interlace} is not supported; expected 8-bit non-interlaced")
    bpp = _CHANNELS[ctype]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    raw = raw[:h * (w * bpp + 1)].reshape(h, w * bpp + 1)
    out = np.empty((h, w * bpp), dtype=np.uint8)
    prior = np.zeros(w * bpp, dtype=np.uint8)
    for y in range(h):
        prior = out[y] = _unfilter_row(int(raw[y, 0]), raw[y, 1:], prior, bpp)
    img = out.reshape(h, w, bpp)
    if ctype == 3:
        idx = img[..., 0]
        rgb = palette[idx]
        if alpha is not None:
            full = np.full(len(palette), 255, dtype=np.uint8)
            full[:len(alpha)] = alpha
            return np.dstack([rgb, full[idx]])
        return rgb
    return img
