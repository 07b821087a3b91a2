"""Model files: which family reads a file, and which writes a weights format.

One registry for reading (told by content, not name) and one for writing (told by the
output's name or ``--format``). A new family is one module with a ``load(path,
settings)`` and, if it writes, a ``write(model, target)``, plus one entry here; the
CLI's choices come from these tables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import import_module

from .errors import ModelFileError, UsageError, file_error


@dataclass(frozen=True)
class Reader:
    name: str
    module: str  # has load(path, settings) -> Model
    sniff: object  # (head bytes, path) -> bool


@dataclass(frozen=True)
class Writer:
    name: str  # the --format value
    extensions: tuple
    module: str  # has write(model, target, fmt) (target: a path or a binary file)
    title: str


def _is_safetensors(head, path):
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n < 2**32 and head[8:9] == b"{"


def _is_torch_zip(head, path):
    if not head.startswith(b"PK\x03\x04"):
        return False
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("data.pkl") for n in z.namelist()[:64])
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return False


def _is_onnx(head, path):
    """A ModelProto: named .onnx and binary (text or nothing is told apart: not_a_model), or
    starting with ir_version (key 08), as every writer orders its fields, and naming onnx."""
    if path.lower().endswith(".onnx"):
        return bool(head) and _text(head) is None
    return head[:1] == b"\x08" and b"\x12" in head[:16] and b"onnx" in head[:256].lower()


def _text(head: bytes) -> str | None:
    """``head`` as text, or None for binary data (control bytes, or not UTF-8)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if any(c < " " and c not in "\t\n\r" for c in text) else text


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _is_keras(head, path):
    """HDF5 (.h5, .weights.h5) or a zip (.keras, .npz)."""
    return head.startswith((HDF5_MAGIC, *ZIP_MAGICS))


READ_FORMATS = ".keras, .h5, .weights.h5, .npz (Keras), .pt, .safetensors (PyTorch) or .onnx"


def _looks_like_table(head) -> bool:
    """Text whose first lines are numbers (or a header of names) between , ; or tabs."""
    try:
        lines = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8").strip().splitlines()[:3]
    except UnicodeDecodeError:
        return False
    lines = lines[:-1] if len(lines) > 1 and len(head) >= 512 else lines  # the last may be cut
    if not lines:
        return False

    def number(cell):
        try:
            float(cell)
            return True
        except ValueError:
            return False

    rows = [[c.strip() for c in line.replace(";", ",").replace("\t", ",").split(",")]
            for line in lines]
    data = rows[1:] if len(rows) > 1 and not all(map(number, rows[0])) else rows
    return bool(data) and all(all(map(number, r)) for r in data) and \
        (len(data[0]) > 1 or len(data) > 1)


def _is_pickle(head: bytes) -> bool:
    """A pickle of protocol 2 to 5 (a .pt file from torch.save before PyTorch 1.6)."""
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def not_a_model(path, head) -> str:
    """The sentence for a file no reader recognises; says when it looks like data."""
    looks = ""
    if head.startswith(NPY_MAGIC):
        looks = " (it is a single .npy array, input data or a state: give it with -i, after " \
                "the model)"
    elif _looks_like_table(head):
        looks = " (it looks like CSV/TSV input data: give it with -i, after the model)"
    named = _named_format(path)
    if named and not looks:  # its name says what it should be: say what it is instead
        ext, what, who = named
        return f"{path}: {_contents(head)}, but a {ext} file is {what}; expected one written " \
               f"by {who}"
    return f"{path}: not a model file rnncli reads{looks}; expected {READ_FORMATS}"


# (extension, what such a file is, what writes it): the first that ends a name names it
NAMED_FORMATS = ((".weights.h5", "an HDF5 file", "Keras' save_weights"),
                 (".h5", "an HDF5 file", "Keras"), (".hdf5", "an HDF5 file", "Keras"),
                 (".keras", "a zip archive", "Keras' model.save"),
                 (".npz", "a zip archive", "numpy.savez (or rnncli)"),
                 (".pt", "a zip archive", "torch.save (PyTorch 1.6 or later)"),
                 (".pth", "a zip archive", "torch.save (PyTorch 1.6 or later)"),
                 (".safetensors", "an 8-byte header length, a JSON header and the tensors",
                  "safetensors (or rnncli)"),
                 (".onnx", "a protobuf ModelProto (binary)",
                  "torch.onnx.export or onnx.save (or rnncli)"))


def _named_format(path) -> tuple | None:
    name = str(path).lower()
    return next((f for f in NAMED_FORMATS if name.endswith(f[0])), None)


def _contents(head: bytes) -> str:
    """What a file starting with ``head`` holds, in a few words."""
    if not head:
        return "is empty"
    if _is_pickle(head):
        return "is a pickle (torch.save's format before PyTorch 1.6: rnncli unpickles nothing)"
    text = _text(head)
    if text is None:
        return f"starts with the bytes {head[:8].hex(' ')}"
    first = text.strip().splitlines()[0][:30] if text.strip() else ""
    return f"holds text ({first!r} ...)" if first else "holds only white space"


def model_file_kind(head: bytes, path: str = "", names=()) -> str | None:
    """What kind of model file starts with ``head`` (a zip's member ``names`` when known),
    in words, or None: for telling a user who gave a model where data was expected."""
    if head.startswith(HDF5_MAGIC):
        return "an HDF5 file (a Keras .h5 model or weights)"
    if _is_safetensors(head, path):
        return "a safetensors file (PyTorch weights)"
    onnx_fields = (0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42)  # after ModelProto's ir_version
    if (len(head) > 2 and head[0] == 0x08 and head[1] < 64
            and head[2] in onnx_fields):
        return "an ONNX model"
    if _is_pickle(head):
        return "a pickle (a legacy PyTorch .pt file?)"
    if "config.json" in names or "model.weights.h5" in names:
        return "a Keras model (.keras)"
    if any(n.endswith("data.pkl") for n in names):
        return "a PyTorch file (.pt)"
    return None


READERS = [
    Reader("pytorch .pt", "rnncli.torch.model", _is_torch_zip),
    Reader("safetensors", "rnncli.torch.model", _is_safetensors),
    Reader("onnx", "rnncli.onnx.model", _is_onnx),
    Reader("keras", "rnncli.keras.files", _is_keras),
]

WRITERS = [
    Writer("keras", (".keras",), "rnncli.keras.writer", "Keras 3 archive"),
    Writer("weights.h5", (".weights.h5",), "rnncli.keras.writer", "Keras 3 weights only"),
    Writer("h5", (".h5", ".hdf5"), "rnncli.keras.writer", "legacy HDF5 model (Keras 3)"),
    Writer("npz", (".npz",), "rnncli.keras.writer", "numpy .npz with a Keras 3 config"),
    Writer("safetensors", (".safetensors",), "rnncli.torch.writer", "PyTorch state_dict"),
    Writer("onnx", (".onnx",), "rnncli.onnx.writer", "ONNX model"),
]


def available_writers() -> list:
    """Writers whose module is in this installation."""
    from importlib.util import find_spec

    return [w for w in WRITERS if find_spec(w.module) is not None]


def load_model(path, overrides: dict | None = None):
    """Load a recurrent model from ``path``: any Keras file, .npz, a PyTorch state_dict
    (.safetensors, .pt) or an ONNX model; the format is told from the content.

    ``overrides``: settings to change (``--set``), ``{"activation": "relu"}`` for every
    recurrent layer or ``{"dense.activation": "sigmoid"}`` for one layer; needed where
    a file does not hold them (weights-only files, state_dicts).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a directory; expected a model file")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise file_error(path, e, ModelFileError) from None
    for reader in READERS:
        if reader.sniff(head, path):
            module = _module(reader.module, path)
            return module.load(path, overrides)
    raise ModelFileError(not_a_model(path, head))


def _module(name, path):
    try:
        return import_module(name)
    except ModuleNotFoundError as e:
        raise ModelFileError(f"{path}: this rnncli has no reader for it ({e.name})") from None


def writer_for(path, fmt=None) -> Writer:
    """The writer a name (or ``--format``) asks for."""
    writers = available_writers()
    if fmt:
        for w in writers:
            if w.name == fmt:
                return w
        raise UsageError(f"--format {fmt}: not a weights format; expected one of "
                         f"{', '.join(w.name for w in writers)}")
    low = path.lower()
    for w in sorted(writers, key=lambda w: -max(len(e) for e in w.extensions)):
        if low.endswith(w.extensions):
            return w
    names = ", ".join(e for w in writers for e in w.extensions)
    raise UsageError(f"{path}: can't tell the weights format from the name; use a name "
                     f"ending in {names}, or --format")


def write_weights(model, path, fmt=None, force=False):
    """Write ``model``'s weights to ``path`` (``-``: stdout) in the format its name or
    ``fmt`` asks for, atomically."""
    w = writer_for(path if path != "-" else "", fmt) if (fmt or path != "-") else \
        writer_for("x.npz")
    module = import_module(w.module)
    if path == "-":
        import io
        import sys

        buf = io.BytesIO()
        module.write(model, buf, w.name)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return w
    from .io.atomic import atomic_path

    with atomic_path(path, force) as tmp:
        module.write(model, tmp, w.name)
    return w


FRAMEWORK_MODULES = {"pytorch": "rnncli.torch.model", "onnx": "rnncli.onnx.model"}


def framework_arrays(model, result) -> dict:
    """The outputs of the framework a model came from, in its own layout (PyTorch's
    ``h_n``, ``c_n``; ONNX's ``Y``, ``Y_h``, ``Y_c``), or {} for Keras models."""
    name = FRAMEWORK_MODULES.get(model.source.get("framework"))
    if name is None:
        return {}
    return import_module(name).framework_arrays(model, result)
