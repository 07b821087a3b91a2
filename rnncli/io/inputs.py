"""Read input sequences: CSV/TSV text, .npy, .npz, from a path or stdin.

CSV/TSV: one row per timestep, one column per feature, an optional header row.
A ``sample`` column (whole numbers) splits rows into sequences (B, T, D); without it the
file is one sequence (1, T, D). Columns named ``t``/``step`` are row labels and are dropped.

The format is told from the content, never the file name. Hostile files end in one
:class:`InputDataError` sentence, and nothing is allocated from what a file merely
declares: NPY headers are checked before numpy sees them (:mod:`rnncli.io.npyio`), archive
members before they are inflated, and text is parsed a line at a time with the
``max_csv_*`` and ``max_memory`` limits of :mod:`rnncli.limits`. A regular .npy file is
memory-mapped; stdin and pipes are read as they arrive.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
import sys
import zipfile
from array import array
from dataclasses import dataclass

import numpy as np

from .. import limits
from ..errors import InputDataError, RnncliError, file_error
from . import npyio
from .npyio import printable

LABEL_COLUMNS = {"t", "step", "timestep", "time"}
HEAD = 4096  # bytes looked at to tell the format
LAYOUTS = ("CSV/TSV text (one row per timestep, one column per feature, an optional "
           "`sample` column) or a .npy/.npz array")


@dataclass
class InputData:
    array: np.ndarray
    name: str  # the file name, or "<stdin>"
    tabular: bool  # came from CSV/TSV (so (B, T, 1) may be token ids)

    def _chunks(self):
        flat = self.array.reshape(-1)  # a memory-mapped input is checked a slice at a time
        step = 1 << 22
        for i in range(0, flat.size, step):
            yield flat[i:i + step]

    @property
    def has_nonfinite(self) -> bool:
        if self.array.dtype.kind != "f":
            return False
        return any(not np.isfinite(c).all() for c in self._chunks())

    def overflowing_value(self, dtype) -> float | None:
        """The first finite value that becomes ±inf when cast to ``dtype`` (``1e300`` in a
        float32 model), or None."""
        dtype = np.dtype(dtype)
        kind = self.array.dtype.kind
        if dtype.kind != "f" or kind not in "fiu":
            return None
        largest = float(np.finfo(dtype).max)
        info = np.finfo if kind == "f" else np.iinfo
        if float(info(self.array.dtype).max) <= largest:
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            for c in self._chunks():
                c = np.asarray(c, np.float64) if kind in "iu" else np.asarray(c)
                bad = np.isinf(c.astype(dtype)) & np.isfinite(c)
                if bad.any():
                    return float(c[bad][0])
        return None

    def overflows(self, dtype) -> bool:
        """True if a finite value overflows to ±inf as ``dtype`` (for ``--strict``)."""
        return self.overflowing_value(dtype) is not None


def is_tty_stdin(stdin=None) -> bool:
    """True when stdin (or ``stdin``) is a terminal, so the CLI can say it is waiting for
    input; False for pipes, files, a closed stdin or anything without ``isatty``."""
    stream = sys.stdin if stdin is None else stdin
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


OPTIONS = {  # the option a file came through -> what it should hold, for messages
    "-i": "the input sequences",
    "--target": "the targets",
    "--initial-state": "initial states (an array, or an .npz of h and c)",
}


def read_input(source, key: str | None = None, stdin=None, option: str = "-i") -> InputData:
    """Read ``source`` (a path, or ``-`` for stdin) into an array; format from content.
    ``option``: the command-line option the file came through (``-i``, ``--target``,
    ``--initial-state``), named when it is a model file instead of data."""
    if source == "-":
        stream = sys.stdin if stdin is None else stdin
        if stream is None:
            raise InputDataError("<stdin>: is closed; expected data piped in, like -i - < x.csv")
        return _from_stream(getattr(stream, "buffer", stream), "<stdin>", key, option)
    path = os.fspath(source)
    if os.path.isdir(path):
        raise InputDataError(f"{path}: is a directory; expected a CSV, TSV, .npy or .npz file")
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a pipe, /dev/fd/N, a device
                return _from_stream(f, path, key, option)
            kind = _sniff(npyio._read_exact(f.read, HEAD), path, option)
            if kind == "npy":
                return _data(npyio.map_file(path, path, InputDataError), path, False)
            if kind == "zip":
                return _data(_npz(path, path, key, option), path, False)
            f.seek(0)
            return _data(_table(_text(f), path), path, True)
    except OSError as e:
        raise file_error(path, e, InputDataError) from None


def read_target(path, key, model, x) -> np.ndarray:
    """``--target``: the targets for input ``x`` of ``model``; a CSV's rows are the
    samples when the model's output has no time axis (a CSV reads as one sequence)."""
    data = read_input(path, key, option="--target")
    t = data.array
    if data.tabular and t.ndim == 3 and t.shape[0] == 1 and \
            model.run(x[:1], trace=False, sequences=False).output.ndim == 2:
        t = t[0]
    return t


def _text(binary):
    return io.TextIOWrapper(binary, "utf-8-sig", errors="surrogateescape", newline="")


def _data(arr, name, tabular):
    if arr.size == 0:
        raise InputDataError(f"{name}: array is empty (shape {arr.shape}); expected at least "
                             f"one timestep")
    return InputData(arr, name, tabular)


def _looks_numeric(text: str) -> bool:
    """Whether one of text's first lines of data holds a number (a CSV file named .npy by
    mistake is still read as CSV, comments and header and all; prose is not)."""
    lines = [line for line in text.strip().splitlines() if not line.lstrip().startswith("#")]
    return any(_is_number(cell) for line in lines[:3]
               for cell in line.split(_delimiter(line)) if cell.strip())


def _sniff(head: bytes, name: str, option: str = "-i") -> str:
    """"npy", "zip" or "text" from a file's first bytes; a sentence for anything else."""
    if not head.strip() and len(head) < HEAD:
        raise InputDataError(f"{name}: is empty; expected rows of numbers (one row per "
                             f"timestep) or NPY data")
    if head.startswith(npyio.MAGIC):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    refuse_a_model(name, head, option=option)
    if b"\x00" in head:
        raise InputDataError(f"{name}: binary data that is not NPY or NPZ; expected CSV/TSV "
                             f"text or a .npy/.npz array")
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=len(head) < HEAD)
    except UnicodeDecodeError:
        raise InputDataError(f"{name}: not UTF-8 text, NPY or NPZ; expected CSV/TSV text "
                             f"or a .npy/.npz array") from None
    if name.lower().endswith((".npy", ".npz")) and not _looks_numeric(text):
        ext = name[-4:].lower()
        raise InputDataError(f"{name}: holds text, but a {ext} file is numpy's binary format; "
                             f"expected one written by numpy.{'save' if ext == '.npy' else 'savez'}"
                             f" (or CSV/TSV text named .csv)")
    if text.lstrip()[:1] in ("[", "{"):
        raise InputDataError(f"{name}: is JSON, which rnncli does not read as input; expected "
                             f"{LAYOUTS}, e.g. numpy.save('x.npy', json.load(f))")
    return "text"


def refuse_a_model(name, head, names=(), option="-i"):
    """A model file given where data belongs (through ``option``): one sentence saying so."""
    from ..models import model_file_kind

    kind = model_file_kind(head, name, names)
    if kind:
        what = OPTIONS.get(option, "data")
        raise InputDataError(f"{name}: is {kind}, not input data; {option} takes {what}; give the "
                             f"model file as the command's first argument (MODEL)")


class _Prefixed(io.RawIOBase):
    """``head`` (already read) followed by the rest of ``stream`` (bytes, or text that is
    encoded as UTF-8)."""

    def __init__(self, head, stream):
        self.head, self.stream = memoryview(head), stream

    def readable(self):
        return True

    def readinto(self, b):
        if not len(self.head):  # a text stream may give more bytes than asked for
            self.head = memoryview(_read_text_or_bytes(self.stream, len(b)))
        n = min(len(b), len(self.head))
        b[:n], self.head = self.head[:n], self.head[n:]
        return n


def _read_text_or_bytes(stream, n):
    data = stream.read(n)
    return data.encode() if isinstance(data, str) else data


def _from_stream(stream, name, key, option="-i") -> InputData:
    """Stdin or a pipe: told apart by its first bytes, then read only as far as needed."""
    try:
        head = npyio._read_exact(lambda n: _read_text_or_bytes(stream, n), HEAD)
    except (OSError, ValueError):  # a closed or unreadable descriptor
        raise InputDataError(f"{name}: is closed or cannot be read; expected data piped in, "
                             f"like -i - < x.csv") from None
    kind = _sniff(head, name, option)
    rest = io.BufferedReader(_Prefixed(head, stream), 1 << 16)
    if kind == "npy":
        return _data(npyio.read_stream(rest, name, InputDataError), name, False)
    if kind == "zip":  # its directory is at the end: keep it whole, within max_memory
        buf = io.BytesIO()
        while part := rest.read(1 << 20):
            buf.write(part)
            limits.check_bytes(buf.tell(), f"{name}: NPZ data on a stream takes over",
                               error=InputDataError)
        return _data(_npz(buf, name, key, option), name, False)
    return _data(_table(_text(rest), name), name, True)


def _npz(source, name, key, option="-i"):
    try:
        with zipfile.ZipFile(source) as zf:
            files = npyio.npz_keys(zf)
            if key is None:
                refuse_a_model(name, b"", zf.namelist()[:64], option)
                if not any(n.endswith(".npy") for n in zf.namelist()):
                    raise InputDataError(f"{name}: zip archive holds no .npy arrays "
                                         f"({printable(', '.join(files[:4]), 80)}); expected "
                                         f"an .npz written by numpy.savez")
                if len(files) != 1:
                    weights = sum("kernel" in f or "weight" in f for f in files) >= 2
                    hint = (f"; they look like model weights: give the model file as the "
                            f"first argument, and {option} the data" if weights else "")
                    raise InputDataError(f"{name}: holds {len(files)} arrays "
                                         f"({printable(', '.join(files[:6]), 120)}); choose "
                                         f"one with --key{hint}")
                key = files[0]
            if key not in files and key.endswith(".npy") and key[:-4] in files:
                key = key[:-4]  # numpy accepts both spellings
            if key not in files:
                raise InputDataError(f"{name}: has no array {key!r}; it holds "
                                     f"{printable(', '.join(files[:10]), 160)}")
            info = npyio.npz_member(zf, key)
            return npyio.read_member(zf, info, f"{name}[{printable(key)}]", InputDataError)
    except RnncliError:
        raise
    except npyio.ZIP_ERRORS as e:
        raise InputDataError(f"{name}: damaged NPZ data ({npyio._short(e)})") from None


# ------------------------------------------------------------------ CSV / TSV


def parse_table(text: str, name: str = "<text>") -> np.ndarray:
    """CSV/TSV text -> (B, T, D) float array (see module docstring)."""
    return _table(io.StringIO(text, newline=""), name)


_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def _lines(f, name):
    """Lines of a text stream, each at most ``max_csv_line_chars`` long."""
    limit = limits.get("max_csv_line_chars")
    n = 0
    while line := f.readline(limit + 1):
        n += 1
        if len(line) > limit and not (len(line) == limit + 1 and line[-1] in "\r\n"):
            raise InputDataError(
                f"{name}: line {n} is longer than {limit:,} characters, the "
                f"max_csv_line_chars limit; expected one timestep per line (if the file is "
                f"trusted, raise it with {limits.how_to_raise('max_csv_line_chars')})")
        if not line.isascii() and _UNDECODED.search(line):
            raise InputDataError(f"{name}: line {n} is not UTF-8 text; expected CSV/TSV text "
                                 f"or a .npy/.npz array")
        yield line


def _delimiter(line):
    for d in ("\t", ",", ";"):
        if d in line:
            return d
    return " "


def _is_number(cell):
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _table(f, name) -> np.ndarray:
    lines = _lines(f, name)
    peeked = []
    for line in lines:  # the first line with data tells the delimiter
        peeked.append(line)
        if line.strip() and not line.lstrip().startswith("#"):
            break
    delim = _delimiter(peeked[-1] if peeked else "")
    cell_limit = limits.get("max_csv_cell_chars")
    if csv.field_size_limit() <= cell_limit:
        csv.field_size_limit(cell_limit + 1)  # only ever raised: more permissive for others
    max_cells = limits.get("max_memory") // 8
    reader = csv.reader(_chain(peeked, lines), delimiter=delim, skipinitialspace=True)
    header, width = None, None
    values, linenos = array("d"), array("q")
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:
            raise _csv_error(e, name, reader.line_num, cell_limit) from None
        if row is None:
            break
        if delim == " ":
            row = [c for c in row if c != ""]
        if not row or all(c.strip() == "" for c in row) or row[0].lstrip().startswith("#"):
            continue
        row = [c.strip() for c in row]
        lineno = reader.line_num
        longest = max(map(len, row))
        if longest > cell_limit:
            limits.check("max_csv_cell_chars", longest,
                         f"{name}: line {lineno} has a cell of {{}} characters", InputDataError)
        if width is None:
            if not all(_is_number(c) for c in row):
                header = [c.lower() for c in row]
                width = len(header)
                continue
            width = len(row)
        if len(row) != width:
            raise InputDataError(f"{name}: line {lineno} has {len(row)} columns; expected "
                                 f"{width} like the {'header' if header else 'first row'}")
        try:
            values.extend(map(float, row))
        except ValueError:
            j = next(j for j, c in enumerate(row) if not _is_number(c))
            col = printable(header[j], 40) if header else j + 1
            raise InputDataError(f"{name}: line {lineno}, column {col}: {row[j][:40]!r} is not "
                                 f"a number") from None
        linenos.append(lineno)
        if len(values) > max_cells:
            limits.check_bytes(len(values) * 8, f"{name}: the numbers up to line {lineno} take",
                               error=InputDataError)
    if width is None:
        raise InputDataError(f"{name}: no data rows; expected rows of numbers, one per timestep")
    if not linenos:
        raise InputDataError(f"{name}: has a header but no data rows; expected rows of "
                             f"numbers, one per timestep")
    table = np.frombuffer(values, np.float64).reshape(len(linenos), width)
    return _sequences(table, header, np.frombuffer(linenos, np.int64), name)


def _chain(first, rest):
    yield from first
    yield from rest


def _csv_error(e, name, lineno, cell_limit):
    if "field limit" in str(e):
        return InputDataError(
            f"{name}: line {lineno} has a cell of more than {cell_limit:,} characters, over the "
            f"max_csv_cell_chars limit; if the file is trusted, raise it with "
            f"{limits.how_to_raise('max_csv_cell_chars')}")
    if "NUL" in str(e):
        return InputDataError(f"{name}: line {lineno} holds a NUL byte; expected CSV/TSV text")
    return InputDataError(f"{name}: line {lineno} is not valid CSV ({printable(e)})")


def _sequences(table, header, linenos, name):
    keep = list(range(table.shape[1]))
    sample = None
    if header:
        if "sample" in header:
            sample = table[:, header.index("sample")]
        keep = [j for j, h in enumerate(header) if h != "sample" and h not in LABEL_COLUMNS]
    if not keep:
        raise InputDataError(f"{name}: has no feature columns besides sample/t labels")
    feats = table[:, keep] if len(keep) < table.shape[1] else table
    if sample is None:
        return feats[None]
    bad = ~np.isfinite(sample) | (sample != np.round(sample))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputDataError(f"{name}: line {linenos[i]}, column sample: {sample[i]:g} is not a "
                             f"whole number; expected sample ids like 0, 1, 2 (every row of a "
                             f"sequence has its sequence's id)")
    ids, first, inverse, counts = np.unique(sample, return_index=True, return_inverse=True,
                                            return_counts=True)
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(first)] = np.arange(len(ids))  # samples in order of first appearance
    if (counts != counts[0]).any():
        order = np.argsort(first)[:4]
        shown = ", ".join(f"sample {ids[k]:g}: {counts[k]}" for k in order)
        raise InputDataError(f"{name}: samples have different numbers of rows ({shown}); "
                             f"expected equal lengths (pad them, e.g. with a Masking value)")
    rows = np.argsort(rank[inverse.reshape(-1)], kind="stable")
    return feats[rows].reshape(len(ids), int(counts[0]), feats.shape[1])


def as_model_input(data: InputData, model) -> np.ndarray:
    """Shape an input for ``model``: token ids (B, T) for Embedding models, else (B, T, D)."""
    arr = data.array
    if model.takes_token_ids:
        if data.tabular:
            if arr.shape[-1] != 1:
                raise InputDataError(
                    f"{data.name}: this model starts with an Embedding and takes one token id "
                    f"per row; got {arr.shape[-1]} columns (a (batch, steps) table?), expected "
                    f"one id per row with a `sample` column for several sequences, or a "
                    f"(batch, timesteps) .npy of integer ids")
            arr = arr[..., 0]
        return arr
    if arr.ndim == 1:
        raise InputDataError(f"{data.name}: is 1-D (shape {arr.shape}); expected (timesteps, "
                             f"features) or (batch, timesteps, features)")
    return arr
