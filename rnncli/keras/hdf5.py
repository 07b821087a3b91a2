"""Keras' weight layouts in HDF5 files, read safely.

The file is first read in a throw-away child process (rnncli/keras/h5probe.py);
external links, external storage and virtual datasets are refused; only numeric
arrays are read.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError


def text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return text(v[()])
    return str(v)


def short(e):
    s = str(e).split("(")[0].strip().rstrip(":")
    return s[:120] or type(e).__name__


def open_h5(source, path):
    import h5py

    from .h5probe import probe

    probe(source, path)
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({short(e)}); the file may be "
                             f"truncated or damaged") from None


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


def check_links(group, where):
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


def legacy_names(group, key="weight_names"):
    names = group.attrs.get(key, [])
    return [text(n) for n in np.asarray(names).ravel()]


def legacy_layer_arrays(group, where):
    return [read_dataset(group[n], f"{where}/{n}") for n in legacy_names(group)]


def k3_vars(group, where):
    if "vars" not in group:
        return []
    v = group["vars"]
    keys = sorted(v.keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
    return [read_dataset(v[k], f"{where}/vars/{k}") for k in keys]


def k3_group_arrays(g, where):
    if "cell" in g:
        return k3_vars(g["cell"], f"{where}/cell")
    if "forward_layer" in g and "backward_layer" in g:
        return (k3_vars(g["forward_layer"]["cell"], f"{where}/forward_layer/cell")
                + k3_vars(g["backward_layer"]["cell"], f"{where}/backward_layer/cell"))
    if "layer" in g:
        return k3_vars(g["layer"], f"{where}/layer")
    return k3_vars(g, where)


def k3_name(g, key):
    if "vars" in g and "name" in g["vars"].attrs:
        return text(g["vars"].attrs["name"])
    return key
