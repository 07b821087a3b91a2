"""Hidden states for millions of sequences: the model run chunk by chunk with Dask, into Zarr.

:func:`run` maps the model over a Dask array's batch chunks and returns lazy Dask arrays
named as the export schema (docs/export.md); :func:`export_zarr` writes them to a Zarr
store chunk by chunk, resumably, on the local machine or a Dask cluster (docs/scale.md).

Every chunk is computed with a single-threaded BLAS, whatever the scheduler: on this
project's machines OpenBLAS rounds a row differently depending on how a call splits the
batch, so pinning the arithmetic makes the bytes depend only on the model, the input and
``batch_chunk``, not on how many workers or threads ran them. Parallelism comes from
running chunks side by side (one per worker thread), which is also what keeps workers x
BLAS threads within the cores.

Needs ``pip install 'rnncli[dask]'`` (dask[distributed] and zarr).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass

import numpy as np

from .errors import InputDataError, RnncliError
from .io.export import STATIC_KINDS, _select, needs_trace

__all__ = ["run", "export_zarr", "read_zarr", "model_fingerprint"]

_AXES = "tdefghijklmnopq"  # index letters for the axes after the batch (b)


def _cores():
    from .core.workers import affinity_cores

    return affinity_cores()


# ------------------------------------------------------------------ BLAS


_pin_lock = threading.Lock()
_pinned = [0, None]  # how many chunks run now, the counts before the first


@contextlib.contextmanager
def one_blas_thread():
    """OpenBLAS single-threaded inside, so rnncli neither splits a chunk across threads nor
    lets BLAS do it (nesting and overlapping safely; the counts are restored after)."""
    from .core import blas

    found = blas.api()
    if not found:
        yield
        return
    with _pin_lock:
        if _pinned[0] == 0:
            _pinned[1] = [get() for get, _ in found]
            for _, put in found:
                put(1)
        _pinned[0] += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pinned[0] -= 1
            if _pinned[0] == 0:
                for (_, put), n in zip(found, _pinned[1]):
                    put(n)


# ------------------------------------------------------------------ planning


@dataclass
class Plan:
    """What a run produces, found by running the model on two samples of zeros."""

    names: list  # schema order
    per_sample: dict  # name -> (dtype, shape after the batch axis)
    static: dict  # name -> ndarray
    trace: bool | str  # export.needs_trace
    what: str | None
    layers: list | None


def _check_layers(model, layers):
    if layers:
        names = [la.name for la in model.recurrent_layers]
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise RnncliError(f"--layers: no recurrent layer {unknown[0]!r}; expected one of "
                              f"{', '.join(names)}")


def _plan(model, X, states, what, layers) -> Plan:
    _check_layers(model, layers)
    trace = needs_trace("npz", what)
    probe = np.zeros((2, *X.shape[1:]), X.dtype)
    h0 = _probe_states(states)
    with one_blas_thread():
        result = model.run(probe, initial_state=h0, trace=trace)
    if what and what.split("/")[0] == "output" and result.outputs is None:
        raise RnncliError(f"the model output can't be computed: {result.output_error}")
    arrays = _select(result.arrays(), what, layers)
    per_sample, static = {}, {}
    for name, v in arrays.items():
        if name.split("/")[0] in STATIC_KINDS:
            static[name] = np.array(v)
        else:
            per_sample[name] = (v.dtype, v.shape[1:])
    return Plan(list(arrays), per_sample, static, trace, what, layers)


def _probe_states(states):
    split, whole = states
    if not split and whole is None:
        return None
    h0 = dict(whole or {})
    for name, s in split.items():
        h0[name] = np.zeros((2, *s.shape[1:]), s.dtype)
    return h0


def _spread_states(model, initial_state, n):
    """({layer: per-sample (n, w) state}, {layer: state used whole} or None)."""
    if initial_state is None:
        return {}, None
    if not isinstance(initial_state, dict):
        rec = model.recurrent_layers
        if not rec:
            raise InputDataError("an initial state was given but the model has no recurrent "
                                 "layer")
        initial_state = {rec[0].name: initial_state}
    split, whole = {}, {}
    for name, s in initial_state.items():
        shape = np.shape(s)
        if len(shape) == 2 and shape[0] == n and n > 1:
            split[name] = s
        elif len(shape) == 2 and shape[0] != 1:
            raise InputDataError(f"initial state for layer {name!r} has {shape[0]} rows; "
                                 f"expected 1, or one per sequence ({n})")
        else:
            whole[name] = np.asarray(s)
    return split, whole or None


# ------------------------------------------------------------------ the graph


def _as_dask(X, batch_chunk=None):
    import dask.array as da

    if not isinstance(X, da.Array):
        X = da.from_array(X, chunks=(batch_chunk or len(X),) + X.shape[1:], asarray=True,
                          lock=False, fancy=False)
    if X.ndim not in (2, 3):
        raise InputDataError(f"input must have shape (batch, timesteps, features) or integer "
                             f"ids (batch, timesteps), got shape {X.shape}")
    rest = {i: -1 for i in range(1, X.ndim)}  # the time axis never splits
    if batch_chunk:
        rest[0] = batch_chunk
    return X.rechunk(rest)


class FileChunks:
    """A file's batch chunks as a 1-D Dask array with one array of rows per block, and the
    shape and dtype of the whole. Indexed on the batch alone, the blocks let Dask fuse
    reading, the model run and the write into one task per chunk."""

    def __init__(self, blocks, shape, dtype):
        self.blocks, self.shape, self.dtype = blocks, tuple(shape), np.dtype(dtype)
        self.chunks = (blocks.chunks[0], *((s,) for s in self.shape[1:]))
        self.ndim = len(self.shape)


def _run_chunk(model, x, *rest, split=(), whole=None, trace=True, what=None, layers=None,
               then=None, then_kwargs=None):
    """One chunk's results: {name: array} for the per-sample names, in their own memory;
    or, with ``then``, ``then(results, *rest after the states, **then_kwargs)`` in the same
    task (the export writes a chunk where it was computed, never moving it)."""
    h0 = dict(whole or {})
    h0.update(zip(split, rest))
    with one_blas_thread():
        result = model.run(np.asarray(x), initial_state=h0 or None, trace=trace)
    arrays = _select(result.arrays(), what, layers)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()
              if k.split("/")[0] not in STATIC_KINDS}
    if then is None:
        return arrays
    return then(arrays, *rest[len(split):], **(then_kwargs or {}))


def _pick(results, array):
    return results[array]


def _model_key(model):
    from dask import delayed

    return delayed(model, name=f"rnncli-model-{model_fingerprint(model)[:16]}")


def _run_blocks(model, X, states, plan, then=None, extra=(), **then_kwargs):
    """An object array with one {name: array} per batch chunk of ``X``; with ``then``,
    whatever ``then(results, *blocks of extra, **then_kwargs)`` returns for each chunk
    (``extra``: arrays chunked as ``X`` on the batch)."""
    import dask.array as da

    split, whole = states
    if isinstance(X, FileChunks):  # read by the task that runs the model on them
        args = [_model_key(model), None, X.blocks, "b"]
    else:
        args = [_model_key(model), None, X, "b" + _AXES[:X.ndim - 1]]
    for s in split.values():
        s = _as_dask(np.asarray(s) if not isinstance(s, da.Array) else s)
        args += [s.rechunk({0: X.chunks[0], 1: -1}), "bw"]
    for e in extra:
        args += [e, "b"]
    kwargs = {} if then is None else {"then": then, "then_kwargs": then_kwargs}
    return da.blockwise(_run_chunk, "b", *args, dtype=object, concatenate=True,
                        meta=np.empty((0,), object), split=tuple(split), whole=whole,
                        trace=plan.trace, what=plan.what, layers=plan.layers,
                        token="rnncli-run", **kwargs)


def run(model, X, *, what=None, layers=None, initial_state=None) -> dict:
    """The model over a Dask array ``X`` (B, T, D), or token ids (B, T), chunked on the batch.

    Returns ``{name: dask.array.Array}`` named as the export schema (``output``,
    ``hidden/<layer>``, ``state/<layer>``, ``xw/<layer>``, ...), each chunked as ``X`` on
    the batch; ``bias/<layer>`` is a small array without a batch axis. ``what`` and
    ``layers`` select as ``rnncli export`` does. ``initial_state``: as ``Model.run`` takes
    it; a (B, units) state (numpy or Dask) travels with its chunk. Nothing is computed
    until the caller asks; arrays computed together run the model once per chunk. Masks
    come from the input values, so they travel with the chunk too.
    """

    X = _as_dask(X)
    states = _spread_states(model, initial_state, X.shape[0])
    plan = _plan(model, X, states, what, layers)
    return _arrays(_run_blocks(model, X, states, plan), plan)


def _arrays(blocks, plan):
    import dask.array as da

    out = {}
    for name in plan.names:
        if name in plan.static:
            value = plan.static[name]
            out[name] = da.from_array(value, chunks=value.shape or ())
            continue
        dtype, rest = plan.per_sample[name]
        axes = _AXES[:len(rest)]
        out[name] = da.blockwise(_pick, "b" + axes, blocks, "b", array=name,
                                 new_axes=dict(zip(axes, rest)), dtype=dtype,
                                 meta=np.empty((0,) * (1 + len(rest)), dtype),
                                 token="rnncli-" + name.replace("/", "-"))
    return out


def model_fingerprint(model) -> str:
    """A SHA-256 of every layer's class, name, config and weights."""
    h = hashlib.sha256()
    for la in model.layers:
        config = json.dumps(getattr(la, "config", {}), sort_keys=True, default=str)
        h.update(f"{la.class_name}\0{la.name}\0{config}\0".encode())
        for key, w in la.weights().items():
            w = np.ascontiguousarray(w)
            h.update(f"{key}\0{w.dtype.str}\0{w.shape}\0".encode())
            h.update(w.tobytes())
    return h.hexdigest()


def export_zarr(model, source, path, **options) -> dict:
    """Run ``model`` on ``source`` and write every array to the Zarr store ``path``,
    chunk by chunk and resumably: see :func:`rnncli.io.zarr_export.export_zarr`."""
    from .io.zarr_export import export_zarr as export

    return export(model, source, path, **options)


def read_zarr(path) -> dict:
    """The arrays of a Zarr export by schema name, as Zarr arrays."""
    from .io.zarrstore import read_zarr as read

    return read(path)
