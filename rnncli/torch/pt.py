"""Read ``torch.save(module.state_dict())`` files into numpy, without torch and without
running anything the file names.

Since PyTorch 1.6, torch.save writes a zip: ``<prefix>/data.pkl`` (a pickle of the
state_dict), ``<prefix>/data/<key>`` (each storage's raw bytes), ``<prefix>/byteorder``
("little" or "big") and ``<prefix>/version``. A pickle may call any function it names, so
data.pkl is read by an unpickler that knows only the few globals a state_dict needs and
maps each to a numpy stand-in of our own; any other global is refused by its name before
anything is called. Storages come from the zip through ``persistent_load``: each tensor's
size, stride and offset are checked against its storage before an array is made.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import re
import zipfile

import numpy as np

from ..errors import ModelFileError, file_error

MAX_PICKLE_BYTES = 64 * 2**20

# torch storage class -> numpy dtype of its bytes (little-endian; BFloat16 widened later).
STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "u1",
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co.: only names a dtype."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a storage type was given pickled state")


class _Storage:
    """One ``data/<key>`` entry of the zip: a flat array, read when first used."""

    __slots__ = ("key", "kind", "numel", "array")

    def __init__(self, key, kind, numel):
        self.key, self.kind, self.numel, self.array = key, kind, numel, None

    def __setstate__(self, state):  # BUILD must not rewrite a checked size
        raise pickle.UnpicklingError("a storage was given pickled state")


class _Tensor:
    """What a rebuilt tensor becomes until the state_dict is checked; takes no pickled state."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a tensor was given pickled state")


def _check_ints(what, value, length=None):
    if (not isinstance(value, tuple) or (length is not None and len(value) != length)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                       for v in value)):
        raise pickle.UnpicklingError(f"{what} {value!r:.80}; expected a tuple of "
                                     "non-negative integers")


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, where: str, archive: _Archive):
        super().__init__(io.BytesIO(data))
        self.where, self.archive, self.storages = where, archive, {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self.rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return self.rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise ModelFileError(f"{self.where}: data.pkl asks for {module}.{name}, which a "
                             "state_dict never needs; refused")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or pid[1].name not in STORAGE_DTYPES
                or not isinstance(pid[2], str)
                or not isinstance(pid[4], int) or isinstance(pid[4], bool) or pid[4] < 0):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}; expected "
                                         "('storage', <storage type>, key, location, size)")
        _, stype, key, _, numel = pid
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, stype.name, numel)
        elif (storage.kind, storage.numel) != (stype.name, numel):
            raise pickle.UnpicklingError(f"storage {key!r} is declared twice, differently")
        return storage

    def rebuild_tensor(self, storage, offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor is built from something that is not a "
                                         "storage")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise pickle.UnpicklingError(f"tensor offset {offset!r:.40}; expected a "
                                         "non-negative integer")
        _check_ints("tensor size", size)
        _check_ints("tensor stride", stride, len(size))
        count = math.prod(size)
        numel = storage.numel
        if count:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= numel:
                raise ModelFileError(f"{self.where}: a tensor of size {list(size)}, stride "
                                     f"{list(stride)} and offset {offset} reaches element "
                                     f"{last} of storage {storage.key!r}, which holds {numel}")
            if count > numel:
                raise ModelFileError(f"{self.where}: a tensor of size {list(size)} has {count} "
                                     f"elements, its storage {storage.key!r} holds {numel}; "
                                     "expected no more than that")
        flat = self.archive.storage(storage)
        view = np.lib.stride_tricks.as_strided(
            flat[offset:] if count else flat[:0], shape=size,
            strides=[s * flat.dtype.itemsize for s in stride], writeable=False)
        array = np.empty(size, flat.dtype.newbyteorder("="))  # native order, C-contiguous
        array[...] = view
        return _Tensor(_to_numpy(storage.kind, array))

    def rebuild_parameter(self, data, requires_grad=False, backward_hooks=None):
        if not isinstance(data, _Tensor):
            raise pickle.UnpicklingError("a parameter wraps something that is not a tensor")
        return data


class _Archive:
    """The zip written by torch.save, its entries checked before they are read."""

    def __init__(self, path, where):
        self.where = where
        try:
            self.size = os.path.getsize(path)
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise file_error(where, e, ModelFileError) from None
        if magic != b"PK\x03\x04":
            if magic[:2] == b"\x80\x02" or magic[:1] == b"\x80":
                raise ModelFileError(f"{where}: a legacy (non-zip) torch.save file, which rnncli "
                                     "does not read; expected the zip format of PyTorch >= 1.6 "
                                     "(re-save it with torch.save(state_dict, path))")
            raise ModelFileError(f"{where}: not a zip file; expected a torch.save file "
                                 "(a zip holding data.pkl)")
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            raise ModelFileError(f"{where}: damaged zip file ({e}); expected a torch.save "
                                 "file") from None
        self.entries = {i.filename: i for i in self.zip.infolist()}
        pkls = [n for n in self.entries if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pkls) != 1:
            if any(re.fullmatch(r"[^/]+/constants\.pkl", n) for n in self.entries):
                raise ModelFileError(f"{where}: a TorchScript archive (torch.jit.save); "
                                     "expected a torch.save(state_dict) file")
            raise ModelFileError(f"{where}: the zip holds {len(pkls)} <prefix>/data.pkl "
                                 "entries; expected exactly one (a torch.save file)")
        self.prefix = pkls[0][: -len("data.pkl")]
        order = self.entries.get(self.prefix + "byteorder")
        self.byteorder = "little" if order is None else self.read(order, 16).decode(
            "ascii", "replace")
        if self.byteorder not in ("little", "big"):
            raise ModelFileError(f"{where}: byteorder is {self.byteorder!r}; expected "
                                 "'little' or 'big'")

    def read(self, info: zipfile.ZipInfo, limit: int) -> bytes:
        if info.file_size > limit:
            raise ModelFileError(f"{self.where}: {info.filename} declares {info.file_size} "
                                 f"bytes; expected at most {limit}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError(f"{self.where}: {info.filename} is compressed; expected it "
                                 "stored as torch.save writes it")
        if info.header_offset + info.compress_size > self.size:
            raise ModelFileError(f"{self.where}: {info.filename} runs past the end of the "
                                 "zip file (truncated?)")
        try:
            with self.zip.open(info) as f:
                data = f.read(info.file_size)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            raise ModelFileError(f"{self.where}: {info.filename} can't be read from the zip "
                                 f"({e})") from None
        if len(data) != info.file_size:
            raise ModelFileError(f"{self.where}: {info.filename} holds {len(data)} bytes, its "
                                 f"zip entry declares {info.file_size}")
        return data

    def pickle_bytes(self) -> bytes:
        data = self.read(self.entries[self.prefix + "data.pkl"], MAX_PICKLE_BYTES)
        # Walk the opcodes first, running nothing: pickletools reads each declared length
        # from the bytes that are there, so a lying one (BINBYTES8 of 2**40 bytes, which
        # the C unpickler would allocate before reading) is caught here.
        try:
            for _ in pickletools.genops(data):
                pass
        except Exception as e:  # ValueError & co.: the message names the opcode
            msg = " ".join(str(e).split())[:160] or type(e).__name__
            raise ModelFileError(f"{self.where}: data.pkl is damaged ({msg}); expected a "
                                 "pickled state_dict") from None
        return data

    def storage(self, storage: _Storage) -> np.ndarray:
        if storage.array is None:
            name = f"{self.prefix}data/{storage.key}"
            info = self.entries.get(name)
            if info is None:
                raise ModelFileError(f"{self.where}: data.pkl names storage {storage.key!r}, "
                                     f"but the zip has no {name}")
            dtype = np.dtype(STORAGE_DTYPES[storage.kind])
            dtype = dtype.newbyteorder("<" if self.byteorder == "little" else ">")
            need = storage.numel * dtype.itemsize
            if info.file_size != need:
                raise ModelFileError(f"{self.where}: {name} holds {info.file_size} bytes; "
                                     f"expected {need} ({storage.numel} x {storage.kind})")
            storage.array = np.frombuffer(self.read(info, need), dtype)
        return storage.array


def _to_numpy(kind: str, array: np.ndarray) -> np.ndarray:
    if kind == "BFloat16Storage":  # bfloat16 is the top half of a float32
        return (array.astype(np.uint32) << 16).view(np.float32)
    if kind == "BoolStorage":
        return array != 0
    return array


def read_pt(path) -> dict[str, np.ndarray]:
    """name -> array for the state_dict that ``torch.save`` wrote to ``path``, in its order.

    Arrays are C-contiguous copies in the tensor's own dtype (bfloat16 becomes float32,
    bool stays bool). Only a flat name -> tensor dict is accepted (an OrderedDict from
    ``state_dict()`` or a plain dict of tensors or parameters).
    """
    where = os.fspath(path)
    archive = _Archive(path, where)
    with archive.zip:
        unpickler = _StateDictUnpickler(archive.pickle_bytes(), where, archive)
        try:
            obj = unpickler.load()
        except ModelFileError:
            raise
        except RecursionError:
            raise ModelFileError(f"{where}: data.pkl nests too deeply; expected a "
                                 "state_dict") from None
        except Exception as e:  # a damaged or hostile pickle: its message, one line
            msg = " ".join(str(e).split())[:160] or type(e).__name__
            raise ModelFileError(f"{where}: data.pkl can't be read as a state_dict "
                                 f"({msg})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{where}: data.pkl holds a {type(obj).__name__}; expected a "
                             "state_dict (a dict of name -> tensor)")
    out, seen = {}, set()
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _Tensor):
            what = "a tensor" if isinstance(value, _Tensor) else type(value).__name__
            raise ModelFileError(f"{where}: data.pkl maps {name!r:.60} to {what}; expected "
                                 "a state_dict (a dict of name -> tensor)")
        # one tensor pickled under two names (tied weights) gives two arrays, not one
        out[name] = value.array.copy() if id(value) in seen else value.array
        seen.add(id(value))
    return out
