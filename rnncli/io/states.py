"""Initial states from files: an array (``.npy``, CSV) for a one-state layer, or an
``.npz`` of them by state name (``h``, ``c``) for the first recurrent layer, or by
``<layer>/<state>`` for any layer."""

from __future__ import annotations

from ..errors import InputDataError
from .inputs import read_input, refuse_a_model
from .npyio import printable

OPTION = "--initial-state"


def read_initial_state(path):
    """An array, or {state: array}, or {layer: {state: array}} (rnncli.Model.run takes each)."""
    if _is_npz(path):
        arrays = _npz_arrays(path)
        if all("/" in k for k in arrays):
            out: dict = {}
            for k, v in arrays.items():
                layer, _, state = k.rpartition("/")
                out.setdefault(layer, {})[state] = v
            return out
        if any("/" in k for k in arrays):
            raise InputDataError(f"{printable(path)}: mixes LAYER/STATE and plain names; "
                                 f"expected h, c (the first recurrent layer's) or "
                                 f"LAYER/h, LAYER/c for each")
        return arrays
    state = read_input(path, option=OPTION).array
    if state.ndim == 3 and state.shape[0] == 1:  # a CSV is read as one sequence
        state = state[0]
    return state


def _is_npz(path):
    if path == "-":
        return False
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _npz_arrays(path):
    import zipfile

    from .npyio import ZIP_ERRORS, _short

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            keys = [n[:-4] for n in names if n.endswith(".npy")]
    except ZIP_ERRORS as e:  # NotImplementedError too: a zip of an unknown version
        raise InputDataError(f"{printable(path)}: damaged .npz ({_short(e)})") from None
    refuse_a_model(printable(path), b"", names[:64], OPTION)
    if not keys:
        raise InputDataError(f"{printable(path)}: holds no arrays; expected h (and c)")
    return {k: read_input(path, k, option=OPTION).array for k in keys}
