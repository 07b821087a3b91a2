"""Write what forward and trace compute to files: .npz, .h5, .csv, .tsv, .json, .ndjson, .npy,
LSTMVis.

The array names follow one schema (docs/export.md): ``output``, ``output_1``,
``hidden/<layer>``, ``state/<layer>``, ``xw|hu|bias|z/<layer>``, ``mask/<layer>``;
a Bidirectional layer's directions add ``/forward`` and ``/backward``.

Large inputs are run a batch of samples at a time and each batch is written
before the next is computed, so memory stays near one batch's worth (.json,
which is one document, is the exception). Files appear only when complete.
``samples``, ``steps`` and ``units`` select what is written (rnncli/io/slices.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import zipfile

import numpy as np

from .. import signals
from ..errors import OutputError, RnncliError, UsageError, there_are
from .atomic import atomic_path, open_output, spill_folder

RESULT_FORMATS = ("npz", "h5", "csv", "tsv", "json", "ndjson", "npy", "lstmvis", "zarr")
ROW_FORMATS = ("csv", "tsv", "ndjson")  # the trace's rows, streamed (io/formats.py)
EXTENSIONS = {".zarr": "zarr", ".npz": "npz", ".h5": "h5", ".hdf5": "h5", ".csv": "csv",
              ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".ndjson": "ndjson",
              ".jsonl": "ndjson", ".npy": "npy"}
STATIC_KINDS = ("bias", "recurrent_bias",  # arrays written once, as they are: biases,
                "h_n", "c_n", "Y", "Y_h", "Y_c")  # and frameworks' outputs (one batch)
RUN_KINDS = ("output", "hidden", "state", "mask", "cell")  # the rest come from the trace


ALSO_WRITES = {"lstmvis": "h5"}  # a format whose files another's extension names


def format_for(path, fmt=None):
    """``fmt``, else the one ``path``'s extension names. A ``fmt`` that contradicts a known
    extension (``-f csv -o x.zarr``) is refused: the file would lie about what it holds."""
    ext = os.path.splitext(path.rstrip("/"))[1].lower()
    if fmt:
        known = EXTENSIONS.get(ext)
        if known and known not in (fmt, ALSO_WRITES.get(fmt)):
            raise UsageError(f"-f {fmt} contradicts -o {path} (a {ext} name holds {known}); "
                             f"drop -f, or name the file for {fmt}")
        return fmt
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    raise UsageError(f"-o {path}: can't tell the format from the extension {ext or '(none)'}; "
                     f"use -f with one of {', '.join(RESULT_FORMATS)}")


def _version():
    from .. import __version__

    return __version__


def _select(arrays, what, layers, pick=None):
    if pick is not None and pick.steps:  # ONNX's time-major Y has no step axis to slice
        if what and any(w.strip().split("/")[0] == "Y" for w in what.split(",")):
            raise UsageError("--steps doesn't apply to ONNX's Y (time-major); --what "
                             "hidden/<layer> holds the same numbers batch-first")
    if layers:
        arrays = {k: v for k, v in arrays.items()
                  if k.startswith("output") or k.split("/")[1] in layers}
    if what is None:
        return arrays
    wanted = [w.strip() for w in what.split(",") if w.strip()]
    keys = [k for k in arrays if any(k == w or k.startswith(w + "/") for w in wanted)]
    unmatched = [w for w in wanted if not any(k == w or k.startswith(w + "/") for k in arrays)]
    if unmatched or not keys:
        kinds = sorted({k.split("/")[0] for k in arrays})
        raise UsageError(f"--what {unmatched[0] if unmatched else what!r}: no such array; "
                         f"expected a kind ({', '.join(kinds)}) or a full name such as "
                         f"{next(iter(arrays), 'hidden/<layer>')}")
    return {k: arrays[k] for k in keys}


def needs_trace(fmt, what, steps=None):
    """The run's ``trace``: whether it must keep the trace (four arrays a layer, not one),
    only for the trace's rows (csv, tsv, ndjson: every term of every step and unit) and
    for the trace's own arrays. Every term is read then, so the loop writes them as it
    goes ("full"): cheaper than computing them afterwards (rnncli/core/replay.py). Rows
    of some ``steps`` alone, and the trace's arrays of some ``steps``, compute those
    steps' terms after the scan instead (True), as ``trace --steps`` does."""
    if fmt in ROW_FORMATS:
        return True if steps else "full"
    if fmt == "lstmvis":
        return False
    wanted = not what or any(w.strip().split("/")[0] not in RUN_KINDS
                             for w in what.split(","))
    return (True if steps else "full") if wanted else False


def export_results(model, x, path, fmt, *, initial_state=None, what=None, layers=None,
                   samples=None, steps=None, units=None, force=False, batch_size=None,
                   progress=None, precision=None, engine=None):
    """Run ``model`` on ``x`` and write the results to ``path`` (``-`` for stdout).

    ``samples`` (``"0,3"``, ``"0:4"`` or a list), ``steps`` (``"0:10"``) and ``units``
    (``"0,2"``) select what is written, as forward's --sample, --steps, --unit do; only
    the selected samples are computed (rnncli/io/slices.py). ``engine``: the loop to run
    (rnncli/core/planning.py; the CLI's is one-shot, as forward's). Returns the number of
    samples written."""
    from .slices import SELECTION, Pick, picked_batches, selected

    if fmt in ROW_FORMATS and what:
        raise UsageError(f"--what picks arrays for npz, h5, json and npy; -f {fmt} writes the "
                         f"trace's rows (every term of every step and unit): use --layers, "
                         f"--sample, --steps, --unit")
    if layers:
        names = [la.name for la in model.recurrent_layers]
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise UsageError(f"--layers: no recurrent layer {unknown[0]!r}; expected one of "
                             f"{', '.join(names)}")
    x = model.check_input(x)
    pick = Pick.parse(len(x), samples, steps, units)
    trace = needs_trace(fmt, what, pick.steps)
    size = batch_size or model.batch_size_for(x, trace)
    whole = size >= len(x)
    if pick.samples is None:
        batches = model.run_batches(x, initial_state, size, trace=trace, engine=engine)
    else:
        batches = picked_batches(model, x, initial_state, size, trace, pick.samples, engine)
    total = len(x) if pick.samples is None else len(pick.samples)
    batches = _with_progress(batches, total, progress)
    if fmt in ROW_FORMATS:
        _write_rows(batches, path, fmt, force, layers, pick, precision)
        return total
    if fmt == "lstmvis":
        with H5Sink(path, force, total, model, lstmvis=layers[0] if layers else None) as sink:
            def hidden(result):
                return {k: v for k, v in result.arrays().items()
                        if k == f"hidden/{sink.lstm_layer}"}

            for start, _, sel in selected(batches, hidden, pick):
                sink.add(start, sel)
        return total

    def arrays(result):
        if what and what.split("/")[0] == "output" and result.outputs is None:
            raise RnncliError(f"the model output can't be computed: {result.output_error}")
        if trace is True:
            _trace_only_steps(result, pick.steps)
        return _select(_arrays(model, result, whole, fmt), what, layers, pick)

    if fmt in ("npz", "h5", "npy"):
        sink = {"npz": NpzSink, "h5": H5Sink, "npy": NpySink}[fmt](path, force, total, model)
        with sink:
            for start, _, sel in selected(batches, arrays, pick, sink):
                sink.add(start, sel)
        return total
    if fmt == "json":
        from .formats import _list

        parts: dict = {}
        for _, _, sel in selected(batches, arrays, pick, parts):
            for k, v in sel.items():
                parts.setdefault(k, []).append(v)
        chosen = parts.pop(SELECTION, None)
        joined = {k: (v[0] if k.split("/")[0] in STATIC_KINDS else np.concatenate(v))
                  for k, v in parts.items()}
        doc = {"rnncli_version": _version(), "source": model.source}
        if chosen:
            doc["selection"] = chosen
        doc["arrays"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype),
                             "data": _list(v, precision)} for k, v in joined.items()}
        with open_output(path, "w", force) as fh:
            json.dump(doc, fh)
            fh.write("\n")
        return total
    raise RnncliError(f"unknown export format {fmt!r}; expected one of {', '.join(RESULT_FORMATS)}")


def _write_rows(batches, path, fmt, force, layers, pick, precision):
    """The trace's rows (csv, tsv, ndjson) batch by batch, as trace -f writes them; samples
    numbered as in the input."""
    from ..present.views import Selection, trace_views
    from .formats import write_trace
    from .slices import resolve

    with open_output(path, "w", force) as fh:
        sel = None
        for start, result in batches:
            chosen = [n for n in result.layers if not layers or n in layers]
            if sel is None:  # checked on each direction's h: its steps and units are the
                # trace's (reading the trace's own arrays would compute every step's terms)
                sel = resolve(pick, {f"hidden/{n}/{d}": dr.sequences["h"] for n in chosen
                                     for d, dr in result.layers[n].directions.items()})
            views = [v for n in chosen for v in trace_views(result, n,
                                                            Selection(sel.steps, sel.units))]
            for v in views:
                v.samples = pick.numbers(v.samples + start)
            write_trace(views, fmt, fh, precision, header=start == 0)


def _trace_only_steps(result, steps):
    """Each direction's trace with the terms of the steps ``steps`` (text, as --steps) alone
    computed: the selection (rnncli/io/slices.py) reads no other step."""
    from ..present.views import parse_slice

    for layer in result.layers.values():
        for d in layer.directions.values():
            if d.trace is not None:
                T = len(d.trace.step_index)
                chosen = range(T)[parse_slice(steps, "steps")]
                # none: the selection's check says what is wrong; all: the trace as it is
                if len(chosen) and max(chosen) + 1 - min(chosen) < T:
                    d.trace = d.trace.only_steps(min(chosen), max(chosen) + 1)


def _arrays(model, result, whole, fmt):
    """The export schema's arrays, and the source framework's own outputs (h_n, Y ...) when
    the input ran in one batch (their batch axis is not the first: they are not joined
    batch to batch) and the format holds named arrays."""
    arrays = result.arrays()
    if whole and fmt in ("npz", "h5", "json"):
        from ..models import framework_arrays

        arrays.update({k: v for k, v in framework_arrays(model, result).items()
                       if k not in arrays})
    return arrays


def _with_progress(batches, total, progress):
    """Pass batches through, telling ``progress(done, total)`` once a second has gone by."""
    t0 = time.perf_counter()
    for start, result in batches:
        if progress is not None and start and time.perf_counter() - t0 > 1.0:
            progress(start, total)  # every sample before this batch is written
        yield start, result
    if progress is not None and time.perf_counter() - t0 > 1.0:
        progress(total, total)


class _Sink:
    def __init__(self, path, force, total, model):
        if path == "-" and not isinstance(self, (NpzSink, NpySink)):
            raise OutputError("HDF5 can't be streamed to stdout; give a file name with -o")
        self.path, self.force, self.total, self.model = path, force, total, model

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class NpzSink(_Sink):
    """An .npz written member by member: each batch goes to a raw file per array, and the
    zip is assembled from those at the end (np.load reads it as usual)."""

    def __enter__(self):
        self.files, self.meta = {}, {}
        with signals.deferred():  # made and tracked at once (a signal can't come between)
            self.tmpdir = tempfile.mkdtemp(prefix=".rnncli-", dir=spill_folder(self.path))
            signals.track(self.tmpdir)
        signals.checkpoint("spill")
        return self

    def add(self, start, arrays):
        for k, v in arrays.items():
            v = np.ascontiguousarray(v)
            if k not in self.meta:
                self.meta[k] = (v.dtype, v.shape[1:], k.split("/")[0] in STATIC_KINDS, v.shape)
                self.files[k] = open(os.path.join(self.tmpdir, str(len(self.files))), "wb")
            elif self.meta[k][2]:
                continue
            self.files[k].write(v.tobytes())

    def _member(self, fh, key):
        """Write array ``key`` to ``fh`` as NPY: a header for its full shape, then its batches."""
        f = self.files[key]
        f.close()
        dtype, rest, static, first_shape = self.meta[key]
        np.lib.format.write_array_header_2_0(
            fh, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": first_shape if static else (self.total, *rest)})
        with open(f.name, "rb") as raw:
            shutil.copyfileobj(raw, fh, 1 << 20)

    def _finish(self, fh):
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for key in self.files:
                with z.open(key + ".npy", "w", force_zip64=True) as member:
                    self._member(member, key)

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                self._check()
                with open_output(self.path, "wb", self.force) as fh:
                    self._finish(fh)
        finally:
            for f in self.files.values():
                f.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            signals.untrack(self.tmpdir)
        return False

    def _check(self):
        pass


class NpySink(NpzSink):
    """One array (picked with --what) as .npy."""

    def _check(self):
        if len(self.files) != 1:
            names = list(self.files)
            raise UsageError(f".npy holds one array; choose one with --what (e.g. "
                             f"{next(iter(names), 'hidden/<layer>')}); "
                             f"{there_are(len(names), 'array')}: {', '.join(names) or 'none'}")

    def _finish(self, fh):
        self._member(fh, next(iter(self.files)))


class H5Sink(_Sink):
    """HDF5: a group per layer (``forward``/``backward`` subgroups for Bidirectional) with its
    arrays, the model outputs at the top, and attributes describing the source."""

    def __init__(self, path, force, total, model, lstmvis=False):
        super().__init__(path, force, total, model)
        self.lstmvis = lstmvis

    def __enter__(self):
        import h5py

        if self.lstmvis is not False:
            rec = [la.name for la in self.model.recurrent_layers]
            self.lstm_layer = self.lstmvis or (rec[-1] if rec else None)
            if self.lstm_layer not in rec:
                raise RnncliError(f"no recurrent layer {self.lstm_layer!r} for LSTMVis")
        self._atomic = atomic_path(self.path, self.force)
        tmp = self._atomic.__enter__()
        self.f = None
        try:  # (__exit__ runs only once __enter__ has returned)
            self.f = h5py.File(tmp, "w")
            self.f.attrs["rnncli_version"] = _version()
            self.f.attrs["source"] = json.dumps(self.model.source)
            if self.lstmvis is not False:
                self.f.attrs["layer"] = self.lstm_layer
        except BaseException:
            if self.f is not None:
                self.f.close()
            if not self._atomic.__exit__(*sys.exc_info()):
                raise
        return self

    def add(self, start, arrays):
        if self.lstmvis is not False:
            h = arrays[f"hidden/{self.lstm_layer}"]
            T, H = h.shape[1], h.shape[2]
            if "states" not in self.f:
                self.f.create_dataset("states", shape=(self.total * T, H), dtype=h.dtype)
            self.f["states"][start * T:(start + len(h)) * T] = h.reshape(-1, H)
            return
        for key, v in arrays.items():
            kind, _, rest = key.partition("/")
            path = key if not rest else f"{rest}/{kind}"
            if path not in self.f:
                static = kind in STATIC_KINDS
                shape = v.shape if static else (self.total, *v.shape[1:])
                self.f.create_dataset(path, shape=shape, dtype=v.dtype)
                if static:
                    self.f[path][...] = v
            if kind not in STATIC_KINDS:
                self.f[path][start:start + len(v)] = v

    def record(self, selection):
        """The samples (input rows), step positions and units written, as file attributes."""
        for k, v in selection.items():
            if v is not None:
                self.f.attrs[k] = np.asarray(v, dtype=np.int64)

    def _describe(self):
        from ..present.summary import layer_config

        for la in self.model.recurrent_layers:
            if la.name in self.f:
                g = self.f[la.name]
                g.attrs["class_name"] = la.class_name
                g.attrs["config"] = layer_config(la)
                g.attrs["shapes"] = ("hidden (batch, timesteps, units) in Keras' order; state "
                                     "(batch, units); xw, hu, z (batch, timesteps, units) in "
                                     "processing order; bias (units,); mask (batch, timesteps)")

    def __exit__(self, exc_type, exc, tb):
        try:
            try:
                if exc_type is None:
                    self._describe()
            finally:
                self.f.close()
        except BaseException:
            if not self._atomic.__exit__(*sys.exc_info()):
                raise
            return False
        return self._atomic.__exit__(exc_type, exc, tb)
