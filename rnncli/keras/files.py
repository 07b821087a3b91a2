"""Read every file Keras writes, and .npz, into a :class:`~rnncli.core.model.Model`.

The format is told from the content (HDF5 signature, zip members), not the name.
Nothing is executed or unpickled: configs are read as JSON, arrays as plain numeric
data (``np.load(allow_pickle=False)``; HDF5 external links, external storage and
virtual datasets are refused). Files with a config become layers through
rnncli/keras/config.py; weights-only files through rnncli/keras/inferred.py.
"""

from __future__ import annotations

import os
import zipfile

from ..core.model import Model
from ..errors import ModelFileError, RnncliError, UsageError, file_error
from . import archive, inferred
from .archive import member_file, read_config, read_json
from .build import snake_case
from .config import check_config_size, model_from_config
from .hdf5 import (
    check_links,
    k3_group_arrays,
    k3_name,
    legacy_layer_arrays,
    legacy_names,
    open_h5,
    read_dataset,
    short,
    text,
)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")

FORMAT_TITLES = {
    "keras3_archive": "Keras 3 archive (.keras)",
    "keras3_weights_h5": "Keras 3 weights only (.weights.h5)",
    "keras3_legacy_h5": "legacy HDF5 model (Keras 3)",
    "keras2_model_h5": "legacy HDF5 model (Keras 2 / tf.keras)",
    "keras2_weights_h5": "legacy HDF5 weights only (Keras 2 / tf.keras save_weights)",
    "npz": "numpy .npz",
    "random": "random weights from a seed",
}

def load(path, overrides: dict | None = None) -> Model:
    """Load a model from ``path`` (any Keras file, or .npz); rnncli.models.load_model
    picks this reader for them.

    ``overrides``: settings to change (``--set``), ``{"activation": "relu"}`` for every
    recurrent layer or ``{"dense.activation": "sigmoid"}`` for one layer; needed for
    weights-only files whose config differs from Keras' defaults
    (rnncli/core/settings.py).
    """
    path = os.fspath(path)
    settings = dict(overrides or {})
    head = _head(path)
    try:
        if head.startswith(HDF5_SIGNATURE) or _hdf5_userblock(path):
            return _load_h5(path, settings)
        if head.startswith(ZIP_SIGNATURES):
            return _load_zip(path, settings)
    except UsageError:
        raise
    except RnncliError as e:
        if str(e).startswith(path):
            raise
        raise type(e)(f"{path}: {e}") from None
    except (MemoryError, RecursionError):
        raise ModelFileError(f"{path}: too large or too deeply nested to read") from None
    except Exception as e:  # noqa: BLE001 - a damaged file must end in one sentence
        raise ModelFileError(f"{path}: damaged or unreadable model file ({type(e).__name__}: "
                             f"{short(e)})") from None
    if head.startswith(b"\x93NUMPY"):
        raise ModelFileError(f"{path}: is a single .npy array, not a model; expected a Keras "
                             f"file or an .npz holding kernel, recurrent_kernel and bias")
    raise ModelFileError(f"{path}: not a model file (neither HDF5 nor zip); expected .keras, "
                         f".h5, .weights.h5 or .npz")


def _head(path):
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a directory; expected a model file")
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as e:
        raise file_error(path, e, ModelFileError) from None


def _hdf5_userblock(path):
    # HDF5 may start after a user block of 512, 1024, 2048 ... bytes.
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            off = 512
            while off + 8 <= min(size, 1 << 20):
                f.seek(off)
                if f.read(8) == HDF5_SIGNATURE:
                    return True
                off *= 2
    except OSError:
        return False
    return False


def _version_major(v, default=3):
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    try:
        return int(str(v).split(".")[0])
    except ValueError:
        return default


def _load_h5(path, settings):
    # (load_model turns any other failure in a damaged file into one ModelFileError)
    with open_h5(path, path) as f:
        return _model_from_h5(f, path, settings, archive=None)


def _model_from_h5(f, path, settings, archive):
    check_links(f, path)
    if "model_config" in f.attrs:
        return _legacy_model(f, path, settings)
    if "layer_names" in f.attrs:
        return _legacy_weights(f, path, settings)
    if "layers" in f or "vars" in f:
        return _k3_weights(f, path, settings, config=archive)
    raise ModelFileError(f"{path}: HDF5 file holds no Keras model or weights (no model_config, "
                         f"layer_names or layers group)")


def _source(path, fmt, version, has_config, saved_by=""):
    """``saved_by``: "rnncli" for files rnncli wrote (their keras_version is the oldest
    Keras that reads them, not a Keras that wrote them)."""
    return {"path": path, "format": fmt, "title": FORMAT_TITLES[fmt], "keras_version": version,
            "has_config": has_config, "saved_by": saved_by}


def _legacy_model(f, path, settings):
    config = read_json(text(f.attrs["model_config"]), f"{path}: model_config")
    version = text(f.attrs.get("keras_version",
                               f.get("model_weights", f).attrs.get("keras_version", "2")))
    major = _version_major(version)
    weights = f["model_weights"] if "model_weights" in f else f

    def weights_for(_i, name, _cls):
        if name is None or name not in weights:
            return []
        return legacy_layer_arrays(weights[name], f"{path}: {name}")

    fmt = "keras3_legacy_h5" if major >= 3 else "keras2_model_h5"
    model = model_from_config(config, weights_for, major, settings,
                              source=_source(path, fmt, version, True,
                                             text(f.attrs.get("saved_by", ""))))
    if major >= 3:
        model.original_config = config  # already Keras 3's form: kept for writing Keras 3 files
    return model


# ------- weights only: no config, so the layer list is inferred from the weights


def _legacy_weights(f, path, settings):
    version = text(f.attrs.get("keras_version", "2"))
    major = _version_major(version, 2)
    entries = []
    for position, name in enumerate(legacy_names(f, "layer_names")):
        if name not in f:
            raise ModelFileError(f"{path}: layer {name!r} is listed in layer_names but has no group")
        g = f[name]
        wnames = legacy_names(g)
        arrs = [read_dataset(g[n], f"{path}: {name}/{n}") for n in wnames]
        kind = _kind_from_weight_names(name, wnames, arrs)
        if kind is None or (kind == "weightless" and position == 0):
            continue  # the input layer (a functional model's, whatever its name)
        entries.append((kind, name, arrs))
    fmt = "keras3_weights_h5" if major >= 3 else "keras2_weights_h5"
    return inferred.build(entries, path, _source(path, fmt, version, False), major, settings)


def _kind_from_weight_names(name, wnames, arrs):
    base = [n.split("/")[-1].split(":")[0] for n in wnames]
    if not wnames:
        return inferred.kind_from_name(name)
    if "recurrent_kernel" in base:
        if any("/forward_" in n for n in wnames) and any("/backward_" in n for n in wnames):
            return "Bidirectional"
        return "recurrent"
    if base == ["embeddings"]:
        return "Embedding"
    if base and base[0] == "kernel" and len(base) <= 2:
        return "Dense"
    return "unknown"


K3_KINDS = {"simple_rnn": "recurrent", "lstm": "recurrent", "gru": "recurrent",
            "bidirectional": "Bidirectional", "dense": "Dense",
            "time_distributed": "TimeDistributed", "embedding": "Embedding"}
RANK = {"Embedding": 0, "Masking": 1, "recurrent": 2, "Bidirectional": 2, "Dense": 3,
        "TimeDistributed": 3}
MAX_ORDERINGS = 10_000  # interleavings of recurrent layer groups tried before giving up


def _k3_weights(f, path, settings, config):
    """Keras 3 ``.weights.h5`` (or the weights inside a ``.keras`` archive)."""
    layers = f["layers"] if "layers" in f else None
    groups = {} if layers is None else {k: layers[k] for k in layers}
    if config is not None:
        cfg, meta = config
        version = meta.get("keras_version", "3")
        by_name = {k3_name(g, k): k for k, g in groups.items()}
        counters: dict = {}

        def weights_for(_i, name, cls):
            snake = snake_case(cls)
            n = counters.get(snake, -1) + 1
            counters[snake] = n
            key = by_name.get(name) or (snake if n == 0 else f"{snake}_{n}")
            if key not in groups:
                return []
            return k3_group_arrays(groups[key], f"{path}: layers/{key}")

        model = model_from_config(cfg, weights_for, _version_major(version), settings,
                                  source=_source(path, "keras3_archive", version, True,
                                                 str(meta.get("saved_by", ""))))
        model.original_config = cfg  # kept for writing Keras 3 files back out
        return model
    entries = []
    for key, g in groups.items():
        base = key.rstrip("0123456789").rstrip("_") if key[-1:].isdigit() else key
        arrs = k3_group_arrays(g, f"{path}: layers/{key}")
        kind = K3_KINDS.get(base) or (inferred.kind_from_name(key) if not arrs else
                                      inferred.kind_from_arrays(arrs))
        if kind is None:
            continue
        entries.append((kind, k3_name(g, key), arrs, key))
    settings = dict(settings)
    given = settings.pop("layer_order", None)
    orders = _order_k3(entries)
    if given is not None:
        names = [n.strip() for n in str(given).split(",")]
        chosen = next((o for o in orders if [e[1] for e in o if e[0] in inferred.RECURRENT]
                       == names), None)
        if chosen is None:
            fits = "; ".join(_recurrent_names(o) for o in orders)
            raise UsageError(f"--set layer_order={given}: not an order these weights fit; "
                             f"they fit: {fits}")
        orders = [chosen]
    model = inferred.build([e[:3] for e in orders[0]], path,
                           _source(path, "keras3_weights_h5", "", False), 3, settings)
    if len(orders) > 1:
        model.notes.append(
            f"{path}: the weights fit several orders of the recurrent layers "
            f"({'; '.join(_recurrent_names(o) for o in orders)}); rnncli took the first. "
            f"Give the model's own with --set layer_order={_recurrent_names(orders[1], ',')} "
            f"(a .keras file, which has the config, says it)")
    return model


def _recurrent_names(order, sep=" -> "):
    return sep.join(e[1] for e in order if e[0] in inferred.RECURRENT)


def _suffix(key):
    tail = key.rsplit("_", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0


def _order_k3(entries) -> list:
    """Orders the layers of a Keras 3 weights file may have (its groups come sorted by
    name), the likeliest first.

    Groups of one class keep Keras' numbering order; recurrent layers of different
    classes are interleaved so that each kernel's input size matches the previous
    layer's output size. Shapes alone may fit several orders: all are returned.
    """
    entries = sorted(entries, key=lambda e: (RANK.get(e[0], 4), e[3].rstrip("0123456789"),
                                             _suffix(e[3])))
    rec = [e for e in entries if RANK.get(e[0]) == 2]
    if len(rec) < 2:
        return [entries]
    by_group: dict = {}
    for e in rec:
        by_group.setdefault(e[3].rstrip("0123456789").rstrip("_"), []).append(e)
    heads = [e for e in entries if RANK.get(e[0]) == 3]
    i = entries.index(rec[0])
    rest = [e for e in entries if e not in rec]
    found = []
    for n, order in enumerate(_interleavings(list(by_group.values()))):
        chain = order + heads[:1]
        if all(inferred.out_width(a[0], a[2]) == b[2][0].shape[0]
               for a, b in zip(chain, chain[1:])):
            found.append(rest[:i] + list(order) + rest[i:])
        if n >= MAX_ORDERINGS or len(found) > 8:
            break
    return found or [entries]


def _interleavings(groups):
    """Every merge of the lists in ``groups`` that keeps each list's own order."""
    groups = [g for g in groups if g]
    if len(groups) <= 1:
        yield list(groups[0]) if groups else []
        return
    for i, g in enumerate(groups):
        rest = groups[:i] + [g[1:]] + groups[i + 1:]
        for tail in _interleavings(rest):
            yield [g[0], *tail]


# ---------------------------------------------------------------- zip: .keras and .npz


def _starts_as_zip(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _load_zip(path, settings):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        if isinstance(e, zipfile.BadZipFile) and _starts_as_zip(path):
            raise ModelFileError(f"{path}: a zip archive cut short (it starts as one but its "
                                 f"end, the list of members, is missing: an interrupted "
                                 f"download or copy?); expected the whole file") from None
        raise ModelFileError(f"{path}: not a readable zip archive ({short(e)})") from None
    with zf:
        names = set(zf.namelist())
        if any(n.endswith(".npy") for n in names) and "config.json" not in names:
            zf.close()
            from .npz import load_npz

            return load_npz(path, settings)
        if "config.json" not in names and "model.weights.h5" not in names:
            raise ModelFileError(f"{path}: zip archive is neither a .keras model (config.json, "
                                 f"model.weights.h5) nor an .npz of arrays")
        for member in ("config.json", "model.weights.h5"):
            if member not in names:
                raise ModelFileError(f"{path}: .keras archive has no {member}; expected "
                                     f"config.json, metadata.json and model.weights.h5")
        config = read_config(zf, path, "config.json")
        check_config_size(config, f"{path}: config.json")  # before the weights are opened
        meta = {}
        if "metadata.json" in names:
            meta = read_config(zf, path, "metadata.json")
            if not isinstance(meta, dict):
                meta = {}
        with member_file(zf, path, "model.weights.h5", archive.MAX_WEIGHTS_BYTES) as source, \
                open_h5(source, f"{path}: model.weights.h5") as f:
            check_links(f, path)
            return _k3_weights(f, path, settings, config=(config, meta))
