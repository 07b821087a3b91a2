"""Write what forward and trace compute to files: .npz, .h5, .csv, .json, .npy, LSTMVis.

The array names follow one schema (docs/export.md): ``output``, ``output_1``,
``hidden/<layer>``, ``state/<layer>``, ``xw|hu|bias|z/<layer>``, ``mask/<layer>``;
a Bidirectional layer's directions add ``/forward`` and ``/backward``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .errors import OutputError, RnncliError
from .output import atomic_path, open_output

RESULT_FORMATS = ("npz", "h5", "csv", "json", "npy", "lstmvis")
EXTENSIONS = {".npz": "npz", ".h5": "h5", ".hdf5": "h5", ".csv": "csv", ".json": "json",
              ".npy": "npy"}


def format_for(path, fmt=None):
    if fmt:
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    raise RnncliError(f"{path}: can't tell the format from the extension {ext or '(none)'}; "
                      f"use --format with one of {', '.join(RESULT_FORMATS)}")


def _version():
    from . import __version__

    return __version__


def _select(arrays, what):
    if what is None:
        return arrays
    keys = [k for k in arrays if k == what or k.startswith(what + "/")]
    if not keys:
        raise RnncliError(f"--what {what!r} matches no array; available: "
                          f"{', '.join(list(arrays)[:12])}")
    return {k: arrays[k] for k in keys}


def write_results(result, path, fmt, *, what=None, layers=None, force=False, source=None,
                  model=None, precision=None, lstmvis_layer=None):
    """Write ``result`` to ``path`` (``-`` for stdout) in ``fmt``; atomic for files."""
    if layers:
        unknown = [n for n in layers if n not in result.layers]
        if unknown:
            raise RnncliError(f"--layers: no recurrent layer {unknown[0]!r}; expected one of "
                              f"{', '.join(result.layers)}")
    if what and what.split("/")[0] == "output" and result.outputs is None:
        raise RnncliError(f"the model output can't be computed: {result.output_error}")
    arrays = _select(result.arrays(layers=layers), what)
    meta = {"rnncli_version": _version(), "source": json.dumps(source or {})}
    if fmt == "npz":
        with open_output(path, "wb", force) as fh:
            np.savez(fh, **arrays)
    elif fmt == "npy":
        if len(arrays) != 1:
            raise RnncliError(f".npy holds one array; choose one with --what (e.g. "
                              f"{next(iter(arrays), 'hidden/<layer>')}); there are {len(arrays)}")
        with open_output(path, "wb", force) as fh:
            np.save(fh, next(iter(arrays.values())), allow_pickle=False)
    elif fmt == "json":
        from .formats import _list

        doc = {"rnncli_version": meta["rnncli_version"], "source": source or {},
               "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype),
                              "data": _list(v, precision)} for k, v in arrays.items()}}
        with open_output(path, "w", force) as fh:
            json.dump(doc, fh)
            fh.write("\n")
    elif fmt == "csv":
        from .formats import write_trace
        from .views import Selection, trace_views

        names = [n for n in result.layers if not layers or n in layers]
        views = [v for n in names for v in trace_views(result, n, Selection())]
        if not views:
            raise RnncliError("no trace to write: the model has no recurrent layer to export")
        with open_output(path, "w", force) as fh:
            write_trace(views, "csv", fh, precision)
    elif fmt == "h5":
        _write_h5(result, path, arrays, meta, model, force)
    elif fmt == "lstmvis":
        _write_lstmvis(result, path, lstmvis_layer, force)
    else:
        raise RnncliError(f"unknown export format {fmt!r}; expected one of "
                          f"{', '.join(RESULT_FORMATS)}")


def _h5_target(path, force):
    if path == "-":
        raise OutputError("HDF5 can't be streamed to stdout; give a file name with -o")
    return atomic_path(path, force)


def _write_h5(result, path, arrays, meta, model, force):
    import h5py

    with _h5_target(path, force) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in meta.items():
                f.attrs[k] = v
            for key, value in arrays.items():
                kind, _, rest = key.partition("/")
                if not rest:  # output, output_1
                    f.create_dataset(key, data=value)
                    continue
                layer, _, direction = rest.partition("/")
                group = f.require_group(layer if not direction else f"{layer}/{direction}")
                group.create_dataset(kind, data=value)
            for name, r in result.layers.items():
                if name in f:
                    g = f[name]
                    g.attrs["class_name"] = r.layer.class_name
                    from .summary import layer_config

                    g.attrs["config"] = layer_config(r.layer)
                    g.attrs["shapes"] = "hidden (batch, timesteps, units) in Keras' order; " \
                        "state (batch, units); xw, hu, z (batch, timesteps, units) in " \
                        "processing order; bias (units,)"


def _write_lstmvis(result, path, layer, force):
    """LSTMVis states file: dataset ``states`` (timesteps, units), samples end to end."""
    import h5py

    name = layer or next(reversed(result.layers), None)
    if name is None or name not in result.layers:
        raise RnncliError(f"no recurrent layer {name!r} to write for LSTMVis")
    hidden = result.layers[name].hidden
    states = hidden.reshape(-1, hidden.shape[-1])
    with _h5_target(path, force) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("states", data=states)
            f.attrs["layer"] = name
            f.attrs["rnncli_version"] = _version()
