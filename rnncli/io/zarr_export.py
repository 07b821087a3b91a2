"""``rnncli export ... -o NAME.zarr``: the chunks of :func:`rnncli.dask.run` written to Zarr.

Each task reads one batch chunk of the input, runs the model on it, writes that chunk of
every array and then its done-mark (rnncli/io/zarrstore.py): a chunk is whole or absent, a
task retried after its worker died writes the same bytes to the same place, and
``resume`` computes only the chunks without a mark. The tasks run on the threads of this
process (no scheduler given), on a ``LocalCluster`` started here (``workers``), or on an
existing cluster (``scheduler``: its address, or a ``distributed.Client``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..dask import (
    FileChunks,
    _as_dask,
    _cores,
    _plan,
    _run_blocks,
    _spread_states,
    model_fingerprint,
)
from ..errors import InputDataError, RnncliError
from . import zarrstore

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class MissingExtraError(RnncliError):
    """An optional dependency rnncli needs for this is not installed."""


def require_extra(distributed=False):
    """Fail with one sentence naming the extra to install unless dask and zarr (and
    distributed, for a cluster) can be imported; before anything is read or written."""
    import importlib

    for name in ("dask", "dask.array", "zarr") + (("distributed",) if distributed else ()):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise MissingExtraError(
                f"writing .zarr needs dask and zarr, and {e.name or name} is not installed; "
                f"install them with: pip install 'rnncli[dask]'") from None


# ------------------------------------------------------------------ inputs


def open_source(source, key=None, model=None):
    """(array to wrap, name): a lazily read file, or the array itself."""
    from . import lazyinput

    if not isinstance(source, (str, os.PathLike)):
        return source, "<array>"
    path = os.fspath(source)
    if lazyinput.is_zarr(path):
        return lazyinput.open_zarr_input(path, key)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except IsADirectoryError:
        raise InputDataError(f"{path}: is a directory that holds no Zarr array; expected a "
                             f".npy or .npz file or a Zarr array") from None
    except OSError as e:
        from ..errors import file_error

        raise file_error(path, e, InputDataError) from None
    if magic == b"\x93NUMPY":
        return lazyinput.open_npy(path), path
    if magic.startswith(b"PK\x03\x04"):
        reader = lazyinput.open_npz_member(path, key)
        return reader, reader.name
    # CSV/TSV text: small by nature, read whole as the other commands do
    from .inputs import as_model_input, read_input

    data = read_input(path, key)
    return (as_model_input(data, model) if model is not None else data.array), path


def _stand_in(shape, dtype):
    """An array of ``shape`` and ``dtype`` that takes no memory (for size estimates)."""
    zero = np.zeros(1, dtype)
    return np.lib.stride_tricks.as_strided(zero, shape=shape, strides=(0,) * len(shape))


def _input_array(reader, model, chunk_for):
    """``reader`` as a Dask array of whole sequences, ``chunk_for(shape, dtype)`` a chunk."""
    import dask.array as da

    shape = tuple(reader.shape)
    if len(shape) == 2 and model is not None and not model.takes_token_ids:
        shape = (1, *shape)  # one sequence (T, D)
        if isinstance(reader, da.Array):
            reader = reader[None]
        else:
            reader = np.asarray(reader)[None] if isinstance(reader, np.ndarray) else reader
    if len(shape) not in (2, 3):
        raise InputDataError(f"input must have shape (batch, timesteps, features) or integer "
                             f"ids (batch, timesteps), got shape {shape}")
    chunk = chunk_for(shape, np.dtype(reader.dtype))
    if isinstance(reader, da.Array):
        return _as_dask(reader, chunk), chunk
    if len(shape) != len(reader.shape):  # a lazily read (T, D) file: read it whole
        reader = np.asarray(reader[:])[None]
    if isinstance(reader, np.ndarray):
        X = da.from_array(reader, chunks=(chunk, *shape[1:]), asarray=True, lock=False,
                          fancy=False)
        return _as_dask(X, chunk), chunk
    # A file is read by the task that computes on it: one object (the chunk's rows) per
    # chunk, on the batch index only, so that Dask fuses reading, the model run and the
    # write into one task per chunk (no chunk ever moves between workers).
    from dask import delayed

    rows = tuple(min(chunk, shape[0] - i) for i in range(0, shape[0], chunk))
    blocks = da.map_blocks(_read_rows, dtype=object, chunks=(rows,),
                           meta=np.empty((0,), object),
                           reader=delayed(reader, name=f"rnncli-input-{uuid.uuid4().hex[:12]}"),
                           name=f"rnncli-read-{uuid.uuid4().hex[:12]}")
    return FileChunks(blocks, shape, np.dtype(reader.dtype)), chunk


def _read_rows(reader=None, block_info=None):
    start, stop = block_info[None]["array-location"][0]
    return np.asarray(reader[start:stop])


# ------------------------------------------------------------------ tasks


def _write_block(results, index, *, path, paths, batch_chunk):
    start = int(index[0])
    n = zarrstore.write_chunk(path, paths, start // batch_chunk, start, results)
    return np.array([n], np.int64)


def export_zarr(model, source, path, *, what=None, layers=None, key=None, initial_state=None,
                scheduler=None, workers=None, resume=False, force=False, progress=None,
                batch_chunk=None) -> dict:
    """Run ``model`` on ``source`` and write every array to the Zarr store ``path``.

    ``source``: a ``.npy`` path (memory-mapped), an ``.npz`` (member ``key``), a Zarr
    array (or group + ``key``), CSV/TSV text, or a numpy or Dask array. ``scheduler``:
    a Dask scheduler's address or a ``distributed.Client``; ``workers``: start a local
    cluster of that many single-threaded worker processes; neither: the threads of this
    process. ``resume`` finishes an interrupted export of the same model, input and
    options; ``force`` replaces an existing export. ``progress``: a callable
    ``(samples done, total)``, True for Dask's progress bar on stderr, False for none,
    None for Dask's bar when stderr is a terminal. ``batch_chunk``: samples per chunk
    (default: about 64 MiB of results). Returns a summary dict.
    """
    if scheduler is not None and workers is not None:
        raise RnncliError("--scheduler and --workers both given; expected one: the address "
                          "of a running cluster, or how many local workers to start")
    if workers is not None and int(workers) < 1:
        raise RnncliError(f"--workers {workers}: expected at least 1")
    require_extra(distributed=scheduler is not None or workers is not None)
    reader, name = open_source(source, key, model)
    trace_hint = what is None or any(w.strip().split("/")[0] in ("xw", "hu", "bias", "z")
                                     for w in what.split(","))

    def chunk_for(shape, dtype):
        if batch_chunk is not None:
            if int(batch_chunk) < 1:
                raise RnncliError(f"batch_chunk {batch_chunk}: expected at least 1")
            return int(min(int(batch_chunk), shape[0]))
        return model.batch_size_for(_stand_in(shape, dtype), trace_hint)

    X, chunk = _input_array(reader, model, chunk_for)
    n = X.shape[0]
    states = _spread_states(model, initial_state, n)
    plan = _plan(model, X, states, what, layers)
    from . import export

    arrays = {k: (str(np.dtype(plan.per_sample[k][0])), (n, *plan.per_sample[k][1]), False)
              if k in plan.per_sample else (str(plan.static[k].dtype), plan.static[k].shape,
                                              True) for k in plan.names}
    layout = zarrstore.Layout(
        samples=n, batch_chunk=chunk, arrays=arrays,
        input={"name": name, "shape": list(X.shape), "dtype": str(X.dtype)},
        model=model_fingerprint(model), what=what, layers=layers,
        version=export._version(), source=model.source)
    todo = zarrstore.prepare(path, layout, plan.static, resume=resume, force=force)
    summary = {"path": path, "samples": n, "batch_chunk": chunk, "chunks": layout.chunks,
               "written": len(todo), "skipped": layout.chunks - len(todo),
               "arrays": list(plan.names)}
    if todo:
        tasks = _tasks(model, X, states, plan, path, chunk, todo)
        done = n - sum(min(chunk, n - i * chunk) for i in todo)
        _execute(tasks, scheduler, workers, progress, done, n)
    zarrstore.finish(path)
    return summary


def _tasks(model, X, states, plan, path, chunk, todo):
    """One Delayed per chunk to write (of those in ``todo``): each runs the model on its
    chunk and writes the results in the same task."""
    import dask.array as da

    starts = da.arange(X.shape[0], chunks=(X.chunks[0],))
    paths = zarrstore.zarr_paths(plan.names)
    paths = {k: paths[k] for k in plan.per_sample}
    writes = _run_blocks(model, X, states, plan, then=_write_block, extra=(starts,),
                         path=os.path.abspath(path), paths=paths, batch_chunk=chunk)
    # a unique name: these tasks write, so a later export must never reuse their results
    writes = writes.map_blocks(_count, dtype=np.int64, chunks=((1,) * writes.numblocks[0],),
                               meta=np.empty((0,), np.int64),
                               name=f"rnncli-write-{uuid.uuid4().hex}")
    return list(writes.to_delayed().ravel()[todo])


def _count(written):
    return written


# ------------------------------------------------------------------ running


def _show_bar(progress):
    return progress is True or (progress is None and sys.stderr.isatty())


def _execute(tasks, scheduler, workers, progress, done, total):
    if scheduler is None and workers is None:
        _run_local(tasks, progress, done, total)
        return
    with _client(scheduler, workers) as client:
        futures = client.compute(tasks)
        try:
            if callable(progress):
                from distributed import as_completed

                for f in as_completed(futures):
                    done += int(f.result()[0])
                    progress(done, total)
            elif _show_bar(progress):
                from distributed import progress as dask_progress

                with contextlib.redirect_stdout(sys.stderr):
                    dask_progress(futures)
                    sys.stderr.write("\n")
            client.gather(futures)
        except BaseException:
            client.cancel(futures)
            raise


def _run_local(tasks, progress, done, total):
    import dask
    from dask.callbacks import Callback

    wanted = {t.key for t in tasks}
    count = [done]

    class Count(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in wanted:
                count[0] += int(result[0])
                progress(count[0], total)

    with contextlib.ExitStack() as stack:
        if callable(progress):
            stack.enter_context(Count())
        elif _show_bar(progress):
            from dask.diagnostics import ProgressBar

            stack.enter_context(ProgressBar(out=sys.stderr))
        # Our own pool, so that an interruption waits for the chunks being written (each
        # finishes whole) and starts no other: nothing writes after we return.
        pool = ThreadPoolExecutor(_cores())
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        dask.compute(*tasks, scheduler="threads", pool=pool)


@contextlib.contextmanager
def _client(scheduler, workers):
    """A Client on the given scheduler, or on a LocalCluster of ``workers`` processes."""
    from distributed import Client

    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # a Client the caller made and will close
        return
    if scheduler is not None:
        try:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as e:
            raise RnncliError(f"--scheduler {scheduler}: no Dask scheduler answered ({e}); "
                              f"expected the address of a running one, e.g. "
                              f"tcp://HOST:8786") from None
        with client:
            yield client
        return
    cluster = local_cluster(int(workers))
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def local_cluster(workers, **kwargs):
    """A LocalCluster on 127.0.0.1 only: ``workers`` processes of one thread each, each
    with one BLAS thread (so workers x threads stays within the cores when workers does)."""
    from distributed import LocalCluster

    env = dict.fromkeys(BLAS_ENV, "1")
    # the workers import the rnncli this process runs, wherever it came from
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in os.environ.get(
        "PYTHONPATH", "").split(os.pathsep) if p and p != here])
    with contextlib.redirect_stdout(io.StringIO()):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address="127.0.0.1:0", env=env,
                            **kwargs)
