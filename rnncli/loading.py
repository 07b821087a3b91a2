"""Read every file Keras writes for a SimpleRNN model, and .npz, into a :class:`Model`.

The format is told from the content (HDF5 signature, zip members), not the name.
Nothing is executed or unpickled: configs are read as JSON, arrays as plain
numeric data (``np.load(allow_pickle=False)``; HDF5 external links, external
storage and virtual datasets are refused).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import ModelFileError, RnncliError, file_error
from .keras_config import Overrides, model_from_config, snake_case
from .model import Model

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
MAX_CONFIG_BYTES = 64 * 2**20  # config.json / metadata.json in a .keras archive
MAX_WEIGHTS_BYTES = 8 * 2**30  # model.weights.h5 in a .keras archive

FORMAT_TITLES = {
    "keras3_archive": "Keras 3 archive (.keras)",
    "keras3_weights_h5": "Keras 3 weights only (.weights.h5)",
    "keras3_legacy_h5": "legacy HDF5 model written by Keras 3",
    "keras2_model_h5": "legacy HDF5 model written by Keras 2 / tf.keras",
    "keras2_weights_h5": "legacy HDF5 weights only (Keras 2 / tf.keras save_weights)",
    "npz": "numpy .npz",
    "random": "random weights from a seed",
}

def defaults_note(path, kinds, given) -> str:
    """Which of Keras' defaults a weights-only model was built with (those not --set)."""
    rec = {"SimpleRNN", "Bidirectional"} & set(kinds)
    defaults = [("activation", "tanh", rec), ("go_backwards", "false", rec),
                ("merge_mode", "concat", "Bidirectional" in kinds),
                ("mask_value", "0", "Masking" in kinds),
                ("mask_zero", "false", "Embedding" in kinds),
                ("dense activation", "linear", {"Dense", "TimeDistributed"} & set(kinds))]
    keys = {k.rsplit(".", 1)[-1] for k in given}
    assumed = [f"{k}={v}" for k, v, present in defaults if present and k not in keys]
    if not assumed:
        return ""
    return (f"{path}: weights only, no config: assumed Keras' defaults {', '.join(assumed)}; "
            f"give the model's own with --set KEY=VALUE")


def load_model(path, overrides: dict | None = None) -> Model:
    """Load a SimpleRNN model from ``path`` (any Keras file, or .npz).

    ``overrides``: config values to change, ``{"activation": "relu"}`` for every
    recurrent layer or ``{"dense.activation": "sigmoid"}`` for one layer; needed for
    weights-only files whose config differs from Keras' defaults.
    """
    path = os.fspath(path)
    ov = Overrides(overrides)
    head = _head(path)
    try:
        if head.startswith(HDF5_SIGNATURE) or _hdf5_userblock(path):
            return _load_h5(path, ov)
        if head.startswith(ZIP_SIGNATURES):
            return _load_zip(path, ov)
    except RnncliError as e:
        if str(e).startswith(path):
            raise
        raise type(e)(f"{path}: {e}") from None
    except (MemoryError, RecursionError):
        raise ModelFileError(f"{path}: too large or too deeply nested to read") from None
    except Exception as e:  # noqa: BLE001 - a damaged file must end in one sentence
        raise ModelFileError(f"{path}: damaged or unreadable model file ({type(e).__name__}: "
                             f"{_short(e)})") from None
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


def _text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v[()])
    return str(v)


def _json(text, where):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ModelFileError(f"{where} is not valid JSON") from None


# ---------------------------------------------------------------- HDF5


def _open_h5(source, path):
    import h5py

    from .h5probe import probe

    probe(source, path)
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({_short(e)}); the file may be "
                             f"truncated or damaged") from None


def _short(e):
    s = str(e).split("(")[0].strip().rstrip(":")
    return s[:120] or type(e).__name__


def _load_h5(path, ov):
    # (load_model turns any other failure in a damaged file into one ModelFileError)
    with _open_h5(path, path) as f:
        return _model_from_h5(f, path, ov, archive=None)


def read_dataset(obj, where):
    """A plain numeric array from an HDF5 dataset, refusing links out of the file."""
    import h5py

    if not isinstance(obj, h5py.Dataset):
        raise ModelFileError(f"{where}: expected an array, found a group")
    if obj.is_virtual or obj.external:
        raise ModelFileError(f"{where}: the array's data lives outside the file (virtual or "
                             f"external storage); refused")
    if obj.dtype.kind not in "fiu":
        raise ModelFileError(f"{where}: expected a numeric array, got dtype {obj.dtype}")
    return obj[()]


def _check_links(group, where):
    """Refuse external links anywhere under ``group`` (they point into other files)."""
    import h5py

    def visit(g, prefix):
        for key in g:
            link = g.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise ModelFileError(f"{where}: '{prefix}{key}' is an external link to "
                                     f"{link.filename}; refused")
            if isinstance(link, h5py.SoftLink):
                continue  # soft links stay inside the file; never followed while visiting
            obj = g.get(key)
            if isinstance(obj, h5py.Group):
                visit(obj, f"{prefix}{key}/")

    visit(group, "")


def _model_from_h5(f, path, ov, archive):
    _check_links(f, path)
    if "model_config" in f.attrs:
        return _legacy_model(f, path, ov)
    if "layer_names" in f.attrs:
        return _legacy_weights(f, path, ov)
    if "layers" in f or "vars" in f:
        return _k3_weights(f, path, ov, config=archive)
    raise ModelFileError(f"{path}: HDF5 file holds no Keras model or weights (no model_config, "
                         f"layer_names or layers group)")


def _legacy_names(group, key="weight_names"):
    names = group.attrs.get(key, [])
    return [_text(n) for n in np.asarray(names).ravel()]


def _legacy_layer_arrays(group, where):
    return [read_dataset(group[n], f"{where}/{n}") for n in _legacy_names(group)]


def _legacy_model(f, path, ov):
    config = _json(_text(f.attrs["model_config"]), f"{path}: model_config")
    version = _text(f.attrs.get("keras_version", f.get("model_weights", f).attrs.get("keras_version", "2")))
    major = _version_major(version)
    weights = f["model_weights"] if "model_weights" in f else f

    def weights_for(_i, name, _cls):
        if name is None or name not in weights:
            return []
        return _legacy_layer_arrays(weights[name], f"{path}: {name}")

    fmt = "keras3_legacy_h5" if major >= 3 else "keras2_model_h5"
    model = model_from_config(config, weights_for, major, ov,
                              source=_source(path, fmt, version, True))
    if major >= 3:
        model.original_config = config  # already Keras 3's form: kept for writing Keras 3 files
    return model


def _source(path, fmt, version, has_config):
    return {"path": path, "format": fmt, "title": FORMAT_TITLES[fmt], "keras_version": version,
            "has_config": has_config}


# ------- weights only: no config, so the layer list is inferred from the weights

RNN_CELL = "simple_rnn_cell"


def _legacy_weights(f, path, ov):
    version = _text(f.attrs.get("keras_version", "2"))
    major = _version_major(version, 2)
    entries = []
    for position, name in enumerate(_legacy_names(f, "layer_names")):
        if name not in f:
            raise ModelFileError(f"{path}: layer {name!r} is listed in layer_names but has no group")
        g = f[name]
        wnames = _legacy_names(g)
        arrs = [read_dataset(g[n], f"{path}: {name}/{n}") for n in wnames]
        kind = _kind_from_weight_names(name, wnames)
        if kind is None or (kind == "weightless" and position == 0):
            continue  # the input layer (a functional model's, whatever its name)
        entries.append((kind, name, arrs))
    fmt = "keras3_weights_h5" if major >= 3 else "keras2_weights_h5"
    return _model_from_inferred(entries, path, fmt, version, major, ov)


def _kind_from_weight_names(name, wnames):
    base = [n.split("/")[-1].split(":")[0] for n in wnames]
    if not wnames:
        return _kind_from_name(name)
    if any(RNN_CELL in n for n in wnames):
        if any("/forward_" in n for n in wnames) and any("/backward_" in n for n in wnames):
            return "Bidirectional"
        return "SimpleRNN"
    if base == ["embeddings"]:
        return "Embedding"
    if base and base[0] == "kernel" and len(base) <= 2:
        return "Dense"
    return "unknown"


def _kind_from_name(name):
    base = name.rstrip("0123456789").rstrip("_")
    return {"masking": "Masking", "flatten": "Flatten", "input_layer": None, "input": None,
            "top_level_model_weights": None}.get(base, "Dropout" if base in
                                                 ("dropout", "spatial_dropout1d", "gaussian_noise",
                                                  "gaussian_dropout", "alpha_dropout") else
                                                 ("weightless" if base else None))


K3_KINDS = {"simple_rnn": "SimpleRNN", "bidirectional": "Bidirectional", "dense": "Dense",
            "time_distributed": "TimeDistributed", "embedding": "Embedding", "masking": "Masking",
            "flatten": "Flatten", "input_layer": None}


def _k3_vars(group, where):
    if "vars" not in group:
        return []
    v = group["vars"]
    keys = sorted(v.keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
    return [read_dataset(v[k], f"{where}/vars/{k}") for k in keys]


def _k3_group_arrays(g, where):
    if "cell" in g:
        return _k3_vars(g["cell"], f"{where}/cell")
    if "forward_layer" in g and "backward_layer" in g:
        return (_k3_vars(g["forward_layer"]["cell"], f"{where}/forward_layer/cell")
                + _k3_vars(g["backward_layer"]["cell"], f"{where}/backward_layer/cell"))
    if "layer" in g:
        return _k3_vars(g["layer"], f"{where}/layer")
    return _k3_vars(g, where)


def _k3_name(g, key):
    if "vars" in g and "name" in g["vars"].attrs:
        return _text(g["vars"].attrs["name"])
    return key


def _k3_weights(f, path, ov, config):
    """Keras 3 ``.weights.h5`` (or the weights inside a ``.keras`` archive)."""
    layers = f["layers"] if "layers" in f else None
    groups = {} if layers is None else {k: layers[k] for k in layers}
    if config is not None:
        cfg, meta = config
        version = meta.get("keras_version", "3")
        by_name = {_k3_name(g, k): k for k, g in groups.items()}
        counters: dict = {}

        def weights_for(_i, name, cls):
            snake = snake_case(cls)
            n = counters.get(snake, -1) + 1
            counters[snake] = n
            key = by_name.get(name) or (snake if n == 0 else f"{snake}_{n}")
            if key not in groups:
                return []
            return _k3_group_arrays(groups[key], f"{path}: layers/{key}")

        model = model_from_config(cfg, weights_for, _version_major(version), ov,
                                  source=_source(path, "keras3_archive", version, True))
        model.original_config = cfg  # kept for writing Keras 3 files back out
        return model
    entries = []
    for key, g in groups.items():
        base = key.rstrip("0123456789").rstrip("_") if key[-1:].isdigit() else key
        kind = K3_KINDS.get(base, "weightless" if not _k3_group_arrays(g, key) else "unknown")
        if base in ("dropout", "spatial_dropout1d", "gaussian_noise", "gaussian_dropout",
                    "alpha_dropout"):
            kind = "Dropout"
        if kind is None:
            continue
        entries.append((kind, _k3_name(g, key), _k3_group_arrays(g, f"{path}: layers/{key}"),
                        key))
    entries = _order_k3(entries)
    return _model_from_inferred([e[:3] for e in entries], path, "keras3_weights_h5", "3", 3, ov)


def _suffix(key):
    tail = key.rsplit("_", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0


def _out_dim(kind, arrs):
    if kind == "Bidirectional":
        return 2 * arrs[0].shape[1]  # concat, Keras' default merge
    return arrs[0].shape[1]


def _order_k3(entries):
    """Order layers of a Keras 3 weights file (its groups come sorted by name).

    Groups of one class keep Keras' numbering order; recurrent layers of
    different classes are interleaved so that each kernel's input size matches
    the previous layer's output size.
    """
    rank = {"Embedding": 0, "Masking": 1, "SimpleRNN": 2, "Bidirectional": 2, "Dense": 3,
            "TimeDistributed": 3}
    entries = sorted(entries, key=lambda e: (rank.get(e[0], 4), e[3].rstrip("0123456789"),
                                             _suffix(e[3])))
    rec = [e for e in entries if rank.get(e[0]) == 2]
    if len(rec) > 1:
        rnn = [e for e in rec if e[0] == "SimpleRNN"]
        bidi = [e for e in rec if e[0] == "Bidirectional"]
        heads = [e for e in entries if rank.get(e[0]) == 3]
        best = None
        for order in _interleavings(rnn, bidi):
            chain = order + heads[:1]
            if all(_out_dim(a[0], a[2]) == b[2][0].shape[0] for a, b in zip(chain, chain[1:])):
                best = order
                break
        if best:
            i = entries.index(rec[0])
            rest = [e for e in entries if e not in rec]
            entries = rest[:i] + list(best) + rest[i:]
    return entries


def _interleavings(a, b):
    if not a:
        yield list(b)
        return
    if not b:
        yield list(a)
        return
    for rest in _interleavings(a[1:], b):
        yield [a[0], *rest]
    for rest in _interleavings(a, b[1:]):
        yield [b[0], *rest]


def _model_from_inferred(entries, path, fmt, version, major, ov):
    """Weights-only: a Sequential config with Keras' defaults, one entry per layer."""
    layers, passthrough = [], []
    kinds = [k for k, _, _ in entries]
    for i, (kind, name, arrs) in enumerate(entries):
        later = kinds[i + 1:]
        seq = any(k in ("SimpleRNN", "Bidirectional", "TimeDistributed") for k in later[:1]) or \
            (later[:1] == ["weightless"] and any(k in ("SimpleRNN", "Bidirectional") for k in later))
        if kind == "SimpleRNN":
            cfg = {"name": name, "units": arrs[0].shape[1], "use_bias": len(arrs) == 3,
                   "return_sequences": seq, "dtype": arrs[0].dtype.name}
            layers.append({"class_name": "SimpleRNN", "config": cfg})
        elif kind == "Bidirectional":
            inner = {"units": arrs[0].shape[1], "use_bias": len(arrs) == 6, "return_sequences": seq,
                     "dtype": arrs[0].dtype.name}
            layers.append({"class_name": "Bidirectional", "config": {
                "name": name, "merge_mode": "concat", "dtype": arrs[0].dtype.name,
                "layer": {"class_name": "SimpleRNN", "config": {**inner, "name": "forward"}},
                "backward_layer": {"class_name": "SimpleRNN",
                                   "config": {**inner, "name": "backward", "go_backwards": True}}}})
        elif kind in ("Dense", "TimeDistributed"):
            dcfg = {"name": name, "units": arrs[0].shape[1], "use_bias": len(arrs) == 2,
                    "dtype": arrs[0].dtype.name}
            if kind == "TimeDistributed":
                layers.append({"class_name": "TimeDistributed",
                               "config": {"name": name, "layer": {"class_name": "Dense",
                                                                  "config": dcfg}}})
            else:
                layers.append({"class_name": "Dense", "config": dcfg})
        elif kind == "Embedding":
            layers.append({"class_name": "Embedding", "config": {"name": name, "mask_zero": False,
                                                                 "dtype": arrs[0].dtype.name}})
        elif kind == "Masking":
            layers.append({"class_name": "Masking", "config": {"name": name, "mask_value": 0.0}})
        elif kind == "Dropout":
            layers.append({"class_name": "Dropout", "config": {"name": name}})
        elif kind == "Flatten":
            layers.append({"class_name": "Flatten", "config": {"name": name}})
        elif kind == "weightless":
            # No weights, no config: most such layers (Dropout, noise, Activation('linear'))
            # pass values through; say so, since a Masking or Reshape would not.
            passthrough.append(name)
            layers.append({"class_name": "PassThrough", "config": {"name": name}})
        else:
            layers.append({"class_name": "Unknown", "config": {"name": name}})
    if "mask_value" in ov.values and "Masking" not in kinds:
        # --set mask_value=V: the model masked its input (Masking or mask ops in the graph)
        layers.insert(0, {"class_name": "Masking", "config": {
            "name": "masking", "mask_value": float(ov.values["mask_value"])}})
        arrays_first = [[]]
        ov.used.add("mask_value")
    else:
        arrays_first = []
    if not any(k in ("SimpleRNN", "Bidirectional") for k in kinds):
        raise ModelFileError(f"{path}: holds no SimpleRNN weights; expected a Keras model "
                             f"with at least one SimpleRNN layer")
    arrays = arrays_first + [arrs for _, _, arrs in entries]
    config = {"class_name": "Sequential", "config": {"name": "weights", "layers": layers}}
    note = defaults_note(path, kinds, ov.values)
    notes = [note] if note else []
    for (kind, name, arrs), (_, nxt, narrs) in zip(entries, entries[1:]):
        if kind == "Bidirectional" and narrs and narrs[0].ndim == 2 and \
                narrs[0].shape[0] == arrs[0].shape[1] and "merge_mode" not in ov.values \
                and f"{name}.merge_mode" not in ov.values:
            notes.append(f"{path}: layer {nxt!r} takes {arrs[0].shape[1]} features, as "
                         f"{name!r} gives with merge_mode sum, mul or ave, not concat: add "
                         f"--set {name}.merge_mode=sum (or mul, ave)")
    if passthrough:
        names = ", ".join(repr(n) for n in passthrough)
        notes.append(f"{path}: layer(s) {names} have no weights and the file no config: "
                     f"treated as pass-through (for a Masking layer, add --set mask_value=0)")
    return model_from_config(config, lambda i, _n, _c: arrays[i], major, ov,
                             source=_source(path, fmt, version, False), notes=notes)


# ---------------------------------------------------------------- zip: .keras and .npz


def _load_zip(path, ov):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable zip archive ({_short(e)})") from None
    with zf:
        names = set(zf.namelist())
        if any(n.endswith(".npy") for n in names) and "config.json" not in names:
            zf.close()
            return _load_npz(path, ov)
        if "config.json" not in names and "model.weights.h5" not in names:
            raise ModelFileError(f"{path}: zip archive is neither a .keras model (config.json, "
                                 f"model.weights.h5) nor an .npz of arrays")
        for member in ("config.json", "model.weights.h5"):
            if member not in names:
                raise ModelFileError(f"{path}: .keras archive has no {member}; expected "
                                     f"config.json, metadata.json and model.weights.h5")
        config = _json(_read_member(zf, path, "config.json", MAX_CONFIG_BYTES),
                       f"{path}: config.json")
        meta = {}
        if "metadata.json" in names:
            meta = _json(_read_member(zf, path, "metadata.json", MAX_CONFIG_BYTES),
                         f"{path}: metadata.json")
            if not isinstance(meta, dict):
                meta = {}
        with _member_file(zf, path, "model.weights.h5", MAX_WEIGHTS_BYTES) as source, \
                _open_h5(source, f"{path}: model.weights.h5") as f:
            _check_links(f, path)
            return _k3_weights(f, path, ov, config=(config, meta))


IN_MEMORY_BYTES = 256 * 2**20  # a larger archived member is spilled to a temporary file


@contextlib.contextmanager
def _member_file(zf, path, member, limit):
    """An archived member for h5py: in memory when small, else copied to a temporary file
    (so a multi-GB .keras archive is never held in memory whole)."""
    info = zf.getinfo(member)
    if info.file_size <= IN_MEMORY_BYTES:
        yield io.BytesIO(_read_member(zf, path, member, limit))
        return
    if info.file_size > limit:
        raise ModelFileError(f"{path}: member {member} is {info.file_size} bytes, over the "
                             f"{limit}-byte limit; refused")
    with tempfile.TemporaryDirectory(prefix="rnncli-") as tmp:
        target = os.path.join(tmp, "model.weights.h5")
        try:
            with zf.open(info) as src, open(target, "wb") as dst:
                copied = 0
                while chunk := src.read(1 << 20):
                    copied += len(chunk)
                    if copied > limit:
                        raise ModelFileError(f"{path}: member {member} is over the "
                                             f"{limit}-byte limit; refused")
                    dst.write(chunk)
        except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as e:
            if isinstance(e, ModelFileError):
                raise
            raise ModelFileError(f"{path}: member {member} is damaged ({_short(e)})") from None
        yield target


def _read_member(zf, path, member, limit):
    info = zf.getinfo(member)
    if info.file_size > limit:
        raise ModelFileError(f"{path}: member {member} is {info.file_size} bytes, over the "
                             f"{limit}-byte limit; refused")
    try:
        with zf.open(info) as fh:
            data = fh.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise ModelFileError(f"{path}: member {member} is damaged ({_short(e)})") from None
    if len(data) > limit:
        raise ModelFileError(f"{path}: member {member} is over the {limit}-byte limit; refused")
    return data


NPZ_LAYER_KEYS = ("kernel", "recurrent_kernel", "bias")


def _load_npz(path, ov):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {}
            for k in z.files:
                arrays[k] = z[k]
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise ModelFileError(f"{path}: holds object (pickled) arrays, which rnncli never "
                                 f"loads; expected plain numeric arrays") from None
        raise ModelFileError(f"{path}: damaged .npz ({_short(e)})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelFileError(f"{path}: damaged .npz ({_short(e)})") from None
    return model_from_npz(arrays, path, ov)


def model_from_npz(arrays: dict, path="<arrays>", ov=None) -> Model:
    """Build a model from npz-style arrays (the schema in docs/formats.md)."""
    ov = ov or Overrides()
    for k, v in arrays.items():
        if k != "config" and v.dtype.kind not in "fiu":
            raise ModelFileError(f"{path}: array {k!r} has dtype {v.dtype}; expected numbers")
    config = None
    if "config" in arrays:
        config = _json(str(arrays["config"][()]), f"{path}: config")
    if config is None and set(arrays) <= set(NPZ_LAYER_KEYS):
        if "kernel" not in arrays or "recurrent_kernel" not in arrays:
            raise ModelFileError(f"{path}: expected arrays kernel and recurrent_kernel (bias "
                                 f"optional), found {', '.join(sorted(arrays)) or 'none'}")
        arrays = {f"simple_rnn/{k}": v for k, v in arrays.items()}
    # Group "layer/.../name" keys by layer, keeping file order.
    groups: dict = {}
    for key, value in arrays.items():
        if key == "config":
            continue
        if "/" not in key:
            raise ModelFileError(f"{path}: unexpected array {key!r}; expected kernel, "
                                 f"recurrent_kernel, bias, or LAYER/kernel ... for several layers")
        layer, rest = key.split("/", 1)
        groups.setdefault(layer, {})[rest] = value

    def ordered(g, prefix=""):
        return [g[prefix + k] for k in ("kernel", "recurrent_kernel", "bias", "embeddings")
                if prefix + k in g]

    def layer_arrays(g):
        if "forward/kernel" in g:
            return ordered(g, "forward/") + ordered(g, "backward/")
        return ordered(g)

    if config is not None:
        return model_from_config(config, lambda i, name, c: layer_arrays(groups.get(name, {})),
                                 3, ov, source=_source(path, "npz", "", True))
    entries = []
    for name, g in groups.items():
        if "forward/kernel" in g:
            kind = "Bidirectional"
        elif "recurrent_kernel" in g:
            kind = "SimpleRNN"
        elif "embeddings" in g:
            kind = "Embedding"
        elif "kernel" in g:
            kind = "Dense"
        else:
            raise ModelFileError(f"{path}: layer {name!r} has arrays {sorted(g)}; expected "
                                 f"kernel, recurrent_kernel and bias")
        entries.append((kind, name, layer_arrays(g)))
    return _model_from_inferred(entries, path, "npz", "", 3, ov)
