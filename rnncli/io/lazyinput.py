"""Inputs read a slice at a time by whichever process computes that slice.

A Dask worker must not receive the whole input inside the task graph: it gets a small
object that names the file and reads its own slice. :class:`NpyFile` is a ``.npy`` file
or an uncompressed ``.npz`` member (an ``.npy`` stored at an offset inside the zip): a
run of rows is read straight from the file into a fresh array (a memory map kept open
would count every page read in the worker's RSS, which Dask's memory limits watch), and
pickled it is only the path, offset, shape and dtype. :class:`NpzDeflatedMember`
decompresses a compressed member up to the rows asked for (slow for big inputs: use
``.npy`` then). A Zarr array is read by Zarr itself, which already works this way.
"""

from __future__ import annotations

import os
import struct
import zipfile

import numpy as np

from ..errors import InputDataError, file_error

ZIP_LOCAL_HEADER = 30  # bytes before the member's name in a zip local file header


def _check_dtype(dtype, shape, name):
    if dtype.hasobject:
        raise InputDataError(f"{name}: holds an object (pickled) array, which rnncli never "
                             f"loads; expected numbers")
    if dtype.kind not in "fiub":
        raise InputDataError(f"{name}: array has dtype {dtype}; expected numbers")
    if not shape or int(np.prod(shape)) == 0:
        raise InputDataError(f"{name}: array is empty (shape {shape}); expected at least one "
                             f"timestep")


def _npy_header(fh, name):
    """(shape, fortran_order, dtype, header length) of the NPY data starting at ``fh``."""
    start = fh.tell()
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except ValueError as e:
        raise InputDataError(f"{name}: damaged NPY data ({str(e)[:80]})") from None
    return shape, fortran, dtype, fh.tell() - start


class _LazyArray:
    """What Dask and the export read of an array on disk besides its slices: ``shape``,
    ``dtype``, ``ndim``, ``len``."""

    shape: tuple
    dtype: np.dtype
    name: str

    @property
    def ndim(self):
        return len(self.shape)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {self.shape} {self.dtype}>"


class NpyFile(_LazyArray):
    """An NPY array at ``offset`` in the file ``path``, read a slice at a time."""

    def __init__(self, path, offset, shape, dtype, fortran_order=False, name=None):
        self.path, self.offset = os.path.abspath(path), offset
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.fortran_order = fortran_order
        self.name = name or path

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        first = index[0] if index else slice(None)
        try:
            if (isinstance(first, slice) and first.step in (None, 1)
                    and not self.fortran_order):
                return self._rows(first, index[1:])
            # anything else through a mapping dropped right after: pages of a map kept open
            # count in the process's RSS, which Dask's memory limits watch
            mapped = np.memmap(self.path, self.dtype, "r", self.offset, self.shape,
                               "F" if self.fortran_order else "C")
            return np.array(mapped[index])
        except OSError as e:
            raise file_error(self.path, e, InputDataError) from None

    def _rows(self, rows, rest):
        """Rows ``rows`` read from the file into a fresh array."""
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(start, stop)
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        row_bytes = out[0].nbytes if len(out) else 0
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * row_bytes)
            got = fh.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        if got != out.nbytes:
            raise InputDataError(f"{self.name}: ends early (truncated NPY data); expected "
                                 f"{self.shape[0]} rows")
        return out[(slice(None), *rest)] if rest else out


class NpzDeflatedMember(_LazyArray):
    """A compressed ``.npz`` member, read by decompressing the zip stream up to the rows
    asked for (and no further)."""

    def __init__(self, path, member, header_len, shape, dtype, name):
        self.path, self.member, self.header_len = os.path.abspath(path), member, header_len
        self.shape, self.dtype, self.name = tuple(shape), np.dtype(dtype), name

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        first = index[0] if index else slice(None)
        if isinstance(first, (int, np.integer)):
            first = slice(int(first), int(first) + 1)
            index = (first, *index[1:])
            squeeze = True
        else:
            squeeze = False
        if not isinstance(first, slice) or first.step not in (None, 1):
            raise InputDataError(f"{self.name}: a compressed .npz member is read in "
                                 f"contiguous runs of rows only")
        start, stop, _ = first.indices(self.shape[0])
        stop = max(start, stop)
        row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        with zipfile.ZipFile(self.path) as z, z.open(self.member) as fh:
            fh.seek(self.header_len + start * row)
            data = fh.read((stop - start) * row)
        rows = np.frombuffer(data, self.dtype).reshape((stop - start, *self.shape[1:]))
        out = rows[(slice(None), *index[1:])]
        return np.array(out[0] if squeeze else out)


def open_npy(path, name=None) -> NpyFile:
    """A ``.npy`` file as a lazily memory-mapped array."""
    name = name or path
    try:
        with open(path, "rb") as fh:
            shape, fortran, dtype, header = _npy_header(fh, name)
    except OSError as e:
        raise file_error(path, e, InputDataError) from None
    _check_dtype(dtype, shape, name)
    return NpyFile(path, header, shape, dtype, fortran, name)


def open_npz_member(path, key=None):
    """Member ``key`` of an ``.npz`` (the only one when ``key`` is None), read lazily."""
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        if isinstance(e, OSError):
            raise file_error(path, e, InputDataError) from None
        raise InputDataError(f"{path}: damaged NPZ data ({str(e)[:80]})") from None
    with z:
        names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
        if key is None:
            if len(names) != 1:
                raise InputDataError(f"{path}: holds {len(names)} arrays "
                                     f"({', '.join(names[:6])}); choose one with --key")
            key = names[0]
        if key not in names:
            raise InputDataError(f"{path}: has no array {key!r}; it holds "
                                 f"{', '.join(names[:10])}")
        info = z.getinfo(key + ".npy")
        name = f"{path}[{key}]"
        with z.open(info) as fh:
            shape, fortran, dtype, header = _npy_header(fh, name)
    _check_dtype(dtype, shape, name)
    if info.compress_type != zipfile.ZIP_STORED:
        if fortran:
            raise InputDataError(f"{name}: a compressed member in Fortran order can't be read "
                                 f"in parts; expected C order, or an uncompressed .npz")
        return NpzDeflatedMember(path, info.filename, header, shape, dtype, name)
    with open(path, "rb") as f:  # the data start after the member's own local header
        f.seek(info.header_offset)
        local = f.read(ZIP_LOCAL_HEADER)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + ZIP_LOCAL_HEADER + name_len + extra_len + header
    return NpyFile(path, offset, shape, dtype, fortran, name)


def is_zarr(path) -> bool:
    """Whether ``path`` is a folder holding Zarr (v2 or v3) metadata."""
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, f)) for f in ("zarr.json", ".zarray", ".zgroup"))


def open_zarr_input(path, key=None):
    """A Zarr array at ``path``, or the array ``key`` inside the group at ``path``."""
    import zarr

    try:
        node = zarr.open(path, mode="r")
    except Exception as e:  # zarr raises several kinds for a folder it can't read
        raise InputDataError(f"{path}: not a readable Zarr array or group ({str(e)[:80]})") \
            from None
    if hasattr(node, "shape"):
        if key is not None:
            raise InputDataError(f"{path}: is a Zarr array, so --key {key!r} names nothing; "
                                 f"expected no --key")
        arr, name = node, path
    else:
        held = sorted(p for p, a in node.arrays())
        found = held if key is None else [key]
        if key is None and len(found) != 1:
            raise InputDataError(f"{path}: a Zarr group holding {len(found)} arrays "
                                 f"({', '.join(found[:6])}); choose one with --key")
        try:
            arr = node[found[0]]
        except KeyError:
            raise InputDataError(f"{path}: has no array {found[0]!r}; it holds "
                                 f"{', '.join(held[:10]) or 'none'}") from None
        if not hasattr(arr, "shape"):
            raise InputDataError(f"{path}/{found[0]}: is a group; expected an array")
        name = f"{path}/{found[0]}"
    _check_dtype(np.dtype(arr.dtype), arr.shape, name)
    return arr, name
