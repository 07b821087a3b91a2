"""Read input sequences: CSV/TSV text, .npy, .npz, from a path or stdin.

CSV/TSV: one row per timestep, one column per feature, an optional header row.
A ``sample`` column splits rows into sequences (B, T, D); without it the file is
one sequence (1, T, D). Columns named ``t``/``step`` are row labels and are dropped.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import InputDataError, file_error

LABEL_COLUMNS = {"t", "step", "timestep", "time"}


@dataclass
class InputData:
    array: np.ndarray
    name: str  # the file name, or "<stdin>"
    tabular: bool  # came from CSV/TSV (so (B, T, 1) may be token ids)

    @property
    def has_nonfinite(self) -> bool:
        if self.array.dtype.kind != "f":
            return False
        flat = self.array.reshape(-1)  # a memory-mapped input is checked a slice at a time
        step = 1 << 22
        return any(not np.isfinite(flat[i:i + step]).all() for i in range(0, flat.size, step))


def read_input(source, key: str | None = None, stdin=None) -> InputData:
    """Read ``source`` (a path, or ``-`` for stdin) into an array; format from content."""
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = stream.read()
        if isinstance(data, str):
            data = data.encode()
        return _from_bytes(data, "<stdin>", key)
    path = os.fspath(source)
    if os.path.isdir(path):
        raise InputDataError(f"{path}: is a directory; expected a CSV, TSV, .npy or .npz file")
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                return InputData(_npy(path, path, mmap_mode="r"), path, False)
            f.seek(0)
            data = f.read()
    except OSError as e:
        raise file_error(path, e, InputDataError) from None
    return _from_bytes(data, path, key)


def _from_bytes(data: bytes, name: str, key) -> InputData:
    if not data.strip():
        raise InputDataError(f"{name}: is empty; expected rows of numbers (one row per "
                             f"timestep) or NPY data")
    if data.startswith(b"\x93NUMPY"):
        return InputData(_npy(data, name), name, False)
    if data.startswith(b"PK\x03\x04"):
        return InputData(_npz(data, name, key), name, False)
    if b"\x00" in data[:4096]:
        raise InputDataError(f"{name}: binary data that is not NPY or NPZ; expected CSV/TSV text "
                             f"or a .npy/.npz array")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputDataError(f"{name}: not UTF-8 text, NPY or NPZ; expected CSV/TSV text "
                             f"or a .npy/.npz array") from None
    return InputData(parse_table(text, name), name, True)


def _npy(source, name, **kw):
    """An NPY array from bytes, or memory-mapped from a path (``mmap_mode="r"``), so a large
    input is read a batch at a time. Object (pickled) arrays are refused."""
    try:
        arr = np.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                      allow_pickle=False, **kw)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise InputDataError(f"{name}: holds an object (pickled) array, which rnncli never "
                                 f"loads; expected numbers") from None
        raise InputDataError(f"{name}: damaged NPY data ({str(e)[:80]})") from None
    except (OSError, EOFError) as e:
        raise InputDataError(f"{name}: damaged NPY data ({str(e)[:80]})") from None
    return _numeric(arr, name)


def _npz(data, name, key):
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            files = z.files
            if key is None:
                if len(files) != 1:
                    raise InputDataError(f"{name}: holds {len(files)} arrays "
                                         f"({', '.join(files[:6])}); choose one with --key")
                key = files[0]
            if key not in files:
                raise InputDataError(f"{name}: has no array {key!r}; it holds "
                                     f"{', '.join(files[:10])}")
            return _numeric(z[key], f"{name}[{key}]")
    except InputDataError:
        raise
    except ValueError as e:
        raise InputDataError(f"{name}: holds object (pickled) arrays or is damaged "
                             f"({str(e)[:60]}); expected numbers") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputDataError(f"{name}: damaged NPZ data ({str(e)[:80]})") from None


def _numeric(arr, name):
    if arr.dtype.kind not in "fiub":
        raise InputDataError(f"{name}: array has dtype {arr.dtype}; expected numbers")
    if arr.size == 0:
        raise InputDataError(f"{name}: array is empty (shape {arr.shape}); expected at least one "
                             f"timestep")
    return arr


def _is_number(cell):
    try:
        float(cell)
        return True
    except ValueError:
        return False


def parse_table(text: str, name: str = "<text>") -> np.ndarray:
    """CSV/TSV text -> (B, T, D) float array (see module docstring)."""
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    delim = "\t" if "\t" in first else ("," if "," in first else None)
    if delim is None:
        delim = ";" if ";" in first else " "
    reader = csv.reader(lines, delimiter=delim, skipinitialspace=True)
    rows = []
    for lineno, row in enumerate(reader, 1):
        if delim == " ":
            row = [c for c in row if c != ""]
        if not row or all(c.strip() == "" for c in row):
            continue
        if row[0].lstrip().startswith("#"):
            continue
        rows.append((lineno, [c.strip() for c in row]))
    if not rows:
        raise InputDataError(f"{name}: no data rows; expected rows of numbers, one per timestep")
    header = None
    if not all(_is_number(c) for c in rows[0][1]):
        header = [c.lower() for c in rows[0][1]]
        rows = rows[1:]
        if not rows:
            raise InputDataError(f"{name}: has a header but no data rows; expected rows of "
                                 f"numbers, one per timestep")
    width = len(header) if header else len(rows[0][1])
    values = np.empty((len(rows), width))
    for i, (lineno, row) in enumerate(rows):
        if len(row) != width:
            raise InputDataError(f"{name}: line {lineno} has {len(row)} columns; expected "
                                 f"{width} like the {'header' if header else 'first row'}")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                col = header[j] if header else j + 1
                raise InputDataError(f"{name}: line {lineno}, column {col}: {cell!r} is not a "
                                     f"number") from None
    sample = None
    keep = list(range(width))
    if header:
        if "sample" in header:
            sample = values[:, header.index("sample")]
        keep = [j for j, h in enumerate(header) if h != "sample" and h not in LABEL_COLUMNS]
    if not keep:
        raise InputDataError(f"{name}: has no feature columns besides sample/t labels")
    feats = values[:, keep]
    if sample is None:
        return feats[None]
    ids, first_rows = np.unique(sample, return_index=True)
    order = ids[np.argsort(first_rows)]
    seqs = [feats[sample == s] for s in order]
    lengths = {len(s) for s in seqs}
    if len(lengths) > 1:
        counts = ", ".join(f"sample {s:g}: {len(q)}" for s, q in list(zip(order, seqs))[:4])
        raise InputDataError(f"{name}: samples have different numbers of rows ({counts}); "
                             f"expected equal lengths (pad them, e.g. with a Masking value)")
    return np.stack(seqs)


def as_model_input(data: InputData, model) -> np.ndarray:
    """Shape an input for ``model``: token ids (B, T) for Embedding models, else (B, T, D)."""
    arr = data.array
    if model.takes_token_ids:
        if data.tabular:
            if arr.shape[-1] != 1:
                raise InputDataError(f"{data.name}: this model starts with an Embedding and takes "
                                     f"one token id per row; got {arr.shape[-1]} columns")
            arr = arr[..., 0]
        return arr
    if arr.ndim == 1:
        raise InputDataError(f"{data.name}: is 1-D (shape {arr.shape}); expected (timesteps, "
                             f"features) or (batch, timesteps, features)")
    return arr
