"""Models stored as ``.npz`` arrays (docs/formats.md): ``kernel``, ``recurrent_kernel``,
``bias`` for one recurrent layer, or ``<layer>/<weight>`` for several, with an optional
``config`` (a Keras 3 model config as JSON text, as rnncli writes it)."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from .. import limits
from ..errors import ModelFileError, RnncliError
from . import inferred
from .archive import read_json
from .build import snake_case
from .config import model_from_config
from .hdf5 import short

NPZ_LAYER_KEYS = ("kernel", "recurrent_kernel", "bias")
WEIGHT_ORDER = ("kernel", "recurrent_kernel", "bias", "embeddings")


def load_npz(path, settings=None):
    """A model from an .npz of weights. Every member is read within the limits
    (rnncli/limits.py) before it is inflated: numeric arrays as ``npyio.read_member`` reads
    them (the weights together within ``max_memory``), ``config`` (JSON text) within
    ``max_config_bytes``; nothing pickled is ever loaded."""
    from ..io import npyio

    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [zf.getinfo(n) for n in zf.namelist()]
            limits.check_bytes(sum(i.file_size for i in infos if not _is_config(i)),
                               f"{path}: the weights would take", error=ModelFileError)
            for info in infos:
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if _is_config(info):
                    arrays[key] = _config_member(zf, info, f"{path}[{key}]")
                else:
                    arrays[key] = npyio.read_member(zf, info, f"{path}[{key}]", ModelFileError)
    except RnncliError:
        raise
    except npyio.ZIP_ERRORS as e:
        raise ModelFileError(f"{path}: damaged .npz ({short(e)})") from None
    return model_from_npz(arrays, path, settings)


def _is_config(info):
    return info.filename in ("config", "config.npy")


def _config_member(zf, info, name):
    """The ``config`` member: a 0-d unicode array of JSON text, read within max_config_bytes."""
    from ..io import npyio

    limits.check_bytes(info.file_size, f"{name}: member is", name="max_config_bytes",
                       error=ModelFileError)
    limits.check_ratio(info.file_size, info.compress_size, f"{name}: member",
                       error=ModelFileError)
    with zf.open(info) as f:
        data = f.read(info.file_size + 1)
    try:
        arr = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, TypeError, OSError, EOFError, SyntaxError, MemoryError) as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise ModelFileError(f"{name}: holds an object (pickled) array, which rnncli never "
                                 f"loads; expected plain numeric arrays") from None
        raise ModelFileError(f"{name}: damaged NPY data ({npyio._short(e)})") from None
    if arr.dtype.kind not in "US" or arr.ndim != 0:
        raise ModelFileError(f"{name}: holds {arr.dtype} values of shape {arr.shape}; expected "
                             f"the model config as JSON text")
    return arr


def _source(path, has_config):
    return {"path": path, "format": "npz", "title": "numpy .npz", "keras_version": "",
            "has_config": has_config}


def model_from_npz(arrays: dict, path="<arrays>", settings=None):
    """Build a model from npz-style arrays (the schema in docs/formats.md)."""
    for k, v in arrays.items():
        if k != "config" and v.dtype.kind not in "fiu":
            raise ModelFileError(f"{path}: array {k!r} has dtype {v.dtype}; expected numbers")
    config = None
    if "config" in arrays:
        config = read_json(str(arrays["config"][()]), f"{path}: config")
    if config is None and set(arrays) <= set(NPZ_LAYER_KEYS):
        if "kernel" not in arrays or "recurrent_kernel" not in arrays:
            raise ModelFileError(f"{path}: expected arrays kernel and recurrent_kernel (bias "
                                 f"optional), found {', '.join(sorted(arrays)) or 'none'}")
        name = snake_case(inferred.cell_class([arrays["kernel"], arrays["recurrent_kernel"]]))
        arrays = {f"{name}/{k}": v for k, v in arrays.items()}
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
        return [g[prefix + k] for k in WEIGHT_ORDER if prefix + k in g]

    def layer_arrays(g):
        if "forward/kernel" in g:
            return ordered(g, "forward/") + ordered(g, "backward/")
        return ordered(g)

    if config is not None:
        return model_from_config(config, lambda i, name, c: layer_arrays(groups.get(name, {})),
                                 3, settings, source=_source(path, True))
    entries = []
    for name, g in groups.items():
        if "forward/kernel" in g:
            kind = "Bidirectional"
        elif "recurrent_kernel" in g:
            kind = "recurrent"
        elif "embeddings" in g:
            kind = "Embedding"
        elif "kernel" in g:
            kind = "Dense"
        else:
            raise ModelFileError(f"{path}: layer {name!r} has arrays {sorted(g)}; expected "
                                 f"kernel, recurrent_kernel and bias")
        entries.append((kind, name, layer_arrays(g)))
    return inferred.build(entries, path, _source(path, False), 3, settings)
