"""Limits a real model or input never meets and a hostile file always does.

Each limit has a default, one line saying why, and an environment variable that overrides
it (``RNNCLI_MAX_MEMORY=8G``). :func:`override` sets limits for a block of code (the CLI's
``--max-memory`` and tests), taking precedence over the environment. Readers check a size
*before* allocating or decompressing, from what the file declares, so a small file that
claims gigabytes is refused at once::

    limits.check_bytes(count * itemsize, f"{name}: array of shape {shape}", error=InputDataError)

Sizes are given as bytes with an optional K, M, G or T suffix (powers of 1024): ``4G``,
``512M``, ``1.5G``, ``65536``.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

from .errors import RnncliError

KIB, MIB, GIB, TIB = 2**10, 2**20, 2**30, 2**40


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _default_max_memory() -> int:
    """2 GiB, or a quarter of physical memory on a smaller machine (at least 256 MiB): what
    the input takes decoded is followed by a float32 copy and states of the same order, so
    a quarter keeps the whole run in RAM."""
    ram = _physical_memory()
    if not ram:
        return 2 * GIB
    return max(256 * MIB, min(2 * GIB, ram // 4))


@dataclass(frozen=True)
class Limit:
    name: str
    default: int | float
    kind: str  # "size" (bytes), "count" or "ratio"
    why: str
    option: str | None = None  # the CLI option that sets it, if any

    @property
    def env(self) -> str:
        return "RNNCLI_" + self.name.upper()


LIMITS = {lim.name: lim for lim in (
    Limit("max_memory", _default_max_memory(), "size",
          "Bytes one input or array may take once decoded (decompressed or parsed); checked "
          "against what the file declares before allocating. Memory-mapped .npy files are "
          "checked against their length instead.", option="--max-memory"),
    Limit("max_decompression_ratio", 1000, "ratio",
          "Uncompressed:compressed size of an archive member; deflate tops out near 1032:1, "
          "so more is a crafted member (bzip2/lzma bombs, lying headers)."),
    Limit("decompression_ratio_floor", 64 * MIB, "size",
          "Members that inflate to at most this many bytes skip the ratio check (a small "
          "all-zero array compresses far better than 1000:1 and is harmless)."),
    Limit("max_config_bytes", 8 * MIB, "size",
          "config.json in a .keras archive (or an .npz model's config); real configs are "
          "kilobytes, 4,096 layers about 6 MiB. metadata.json is held to 1 MiB."),
    Limit("max_layers", 4096, "count",
          "Layers in a model config; real recurrent models have tens."),
    Limit("max_units", 65536, "count",
          "Units (or features, or vocabulary rows) one layer may declare; 65536 units already "
          "make a 16 GiB recurrent kernel."),
    Limit("max_csv_cell_chars", 4096, "count",
          "Characters in one CSV/TSV cell; a number or a column name is under 100."),
    Limit("max_csv_line_chars", MIB, "count",
          "Characters in one CSV/TSV line (about 50,000 features); bounds the memory one "
          "parsed row takes."),
    Limit("max_npy_header_bytes", 10000, "size",
          "Length of an .npy header (numpy's own default); real headers are about 128 bytes."),
)}

_overrides: list[dict] = []


def names() -> list[str]:
    return list(LIMITS)


def _limit(name: str) -> Limit:
    try:
        return LIMITS[name]
    except KeyError:
        raise KeyError(f"no limit named {name!r}; known: {', '.join(LIMITS)}") from None


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_SCALE = {"": 1, "k": KIB, "m": MIB, "g": GIB, "t": TIB}


def parse_size(text) -> int:
    """``"4G"`` -> 4294967296. Accepts an int, or a number with an optional K, M, G or T suffix
    (also ``KB``/``KiB``; always powers of 1024). Raises :class:`RnncliError` otherwise."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise RnncliError(f"{text!r} is not a size; expected a number of bytes with an "
                          f"optional K, M, G or T suffix, like 512M or 8G")
    value = float(m.group(1)) * _SCALE[m.group(2).lower()]
    return int(value)


def format_size(n: int) -> str:
    """4294967296 -> ``"4 GiB"``; exact below 1 KiB, else one decimal when needed."""
    for unit, scale in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) or v >= 100 else f"{v:.1f} {unit}"
    return f"{n} bytes"


def _parse(lim: Limit, value):
    if lim.kind == "size":
        size = parse_size(value)
        if size <= 0:
            raise RnncliError(f"{value!r} is not a valid {lim.name}; expected a size above "
                              f"zero, like 512M or 8G")
        return size
    text = str(value).strip()
    if lim.kind == "ratio" and text.endswith(":1"):
        text = text[:-2]
    try:
        number = float(text) if lim.kind == "ratio" else int(text)
    except ValueError:
        number = -1
    if number <= 0:
        raise RnncliError(f"{value!r} is not a valid {lim.name}; expected a positive "
                          f"{'number like 1000 (or 1000:1)' if lim.kind == 'ratio' else 'integer'}")
    return number


def get(name: str):
    """The limit ``name`` in force: an :func:`override`, else ``RNNCLI_<NAME>``, else the
    default. A malformed environment value raises :class:`RnncliError` naming the variable."""
    lim = _limit(name)
    for layer in reversed(_overrides):
        if name in layer:
            return layer[name]
    raw = os.environ.get(lim.env)
    if raw is None or raw.strip() == "":
        return lim.default
    try:
        return _parse(lim, raw)
    except RnncliError as e:
        raise RnncliError(f"{lim.env}={raw!r} is not usable: {e}") from None


@contextlib.contextmanager
def override(**values):
    """Set limits for a block: ``with override(max_memory="8G"): ...``. A value of None leaves
    that limit alone (so the CLI can pass an option whether or not it was given)."""
    layer = {}
    for name, value in values.items():
        if value is not None:
            layer[name] = _parse(_limit(name), value)
    _overrides.append(layer)
    try:
        yield
    finally:
        _overrides.remove(layer)


def _show(lim: Limit, value) -> str:
    if lim.kind == "size":
        return format_size(value) if value % KIB == 0 or value >= MIB else f"{value:,} bytes"
    if lim.kind == "ratio":
        return f"{value:g}:1"
    return f"{value:,}"


def _suggest(lim: Limit, needed) -> str:
    """A value for the error message that would let ``needed`` through: a round size."""
    if lim.kind == "size":
        for unit, scale in (("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)):
            if needed >= scale or unit == "K":
                n = -(-needed // scale)  # round up
                return f"{1 << (int(n) - 1).bit_length()}{unit}"  # to a power of two
    if lim.kind == "ratio":
        return f"{int(needed) + 1}"
    return f"{int(needed)}"


def how_to_raise(name: str, needed=None) -> str:
    """``"RNNCLI_MAX_MEMORY=4G or --max-memory 4G"``: how to let a trusted file through."""
    lim = _limit(name)
    value = _suggest(lim, needed) if needed is not None else "N"
    ways = [f"{lim.env}={value}"] + ([f"{lim.option} {value}"] if lim.option else [])
    return " or ".join(ways)


def check(name: str, value, what: str, error: type[RnncliError] = RnncliError,
          of_file: bool = True) -> None:
    """Raise ``error`` when ``value`` is over the limit ``name``. ``what`` starts the sentence
    and names the thing measured; ``{}`` in it stands for the value, else the value follows
    it: ``check("max_units", n, "m.keras: layer 'rnn' declares {} units", ModelFileError)``.
    ``of_file``: a file declared the value (else the user asked for it: --units)."""
    lim = _limit(name)
    limit = get(name)
    if value > limit:
        shown = _show(lim, value)
        said = what.replace("{}", shown, 1) if "{}" in what else f"{what} {shown}"
        why = "if the file is trusted" if of_file else "if that is what you meant"
        raise error(f"{said}, over the {_show(lim, limit)} {name} limit; {why}, raise it "
                    f"with {how_to_raise(name, value)}")


def check_bytes(declared: int, what: str, name: str = "max_memory",
                error: type[RnncliError] = RnncliError, of_file: bool = True) -> None:
    """Raise ``error`` when ``declared`` bytes are over the size limit ``name``
    (``max_memory`` unless told): ``check_bytes(n, "x.npy: array of shape (10**9, 3) takes")``
    -> ``"x.npy: array of shape (...) takes 22.4 GiB, over the 2 GiB max_memory limit; if
    the file is trusted, raise it with RNNCLI_MAX_MEMORY=32G or --max-memory 32G"``."""
    if _limit(name).kind != "size":
        raise KeyError(f"{name} is not a size limit")
    check(name, declared, what, error, of_file)


def check_ratio(uncompressed: int, compressed: int, what: str,
                error: type[RnncliError] = RnncliError) -> None:
    """Refuse an archive member that inflates more than ``max_decompression_ratio`` times,
    unless it stays under ``decompression_ratio_floor`` bytes. ``what`` names the member."""
    if uncompressed <= get("decompression_ratio_floor"):
        return
    ratio = uncompressed / max(compressed, 1)
    limit = get("max_decompression_ratio")
    if ratio > limit:
        raise error(f"{what} inflates {compressed:,} bytes to {format_size(uncompressed)} "
                    f"({ratio:,.0f}:1), over the {limit:g}:1 max_decompression_ratio limit; if "
                    f"the file is trusted, raise it with "
                    f"{how_to_raise('max_decompression_ratio', ratio)}")


def markdown_table() -> str:
    """The table in docs/errors.md."""
    rows = ["| limit | default | environment variable / option | why |", "|---|---|---|---|"]
    rows += ["| " + " | ".join(row) + " |" for row in table()]
    return "\n".join(rows) + "\n"


def table() -> list[tuple[str, str, str, str]]:
    """(limit, default, environment variable, why) rows for docs/errors.md."""
    rows = []
    for lim in LIMITS.values():
        default = _show(lim, lim.default)
        if lim.name == "max_memory":
            default = "2 GiB (a quarter of RAM if that is less)"
        env = f"`{lim.env}`" + (f", `{lim.option}`" if lim.option else "")
        rows.append((f"`{lim.name}`", default, env, lim.why))
    return rows
