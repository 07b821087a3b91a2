"""Forward and trace results as data: csv, tsv, json, ndjson, npy.

Schemas (docs/export.md):
- forward csv/tsv: ``sample,t,h0,h1,...`` one row per sample and step (one layer);
- forward ndjson: ``{"layer", "sample", "step", "t", "h": [...]}`` per line;
- trace csv/tsv: ``layer,direction[,section],sample,step,t,unit,<the cell's columns>,
  dominant,flag`` (+ ``x0_w ...`` with --terms), one row per sample, step and unit;
  SimpleRNN's columns are ``xw,hu,bias,z,h``; gated cells add a ``section`` (a gate, or
  ``state``); one header holds every section's and layer's columns, blank where a row's
  section has none;
- trace ndjson: ``{"layer", "direction", "sample", "step", "t", "xw": [...], ...}`` per line;
- json: one document; npy: forward (B, T, H), trace (B, T, C, H) in the columns' order.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from ..present.views import PARTS

DOMINANT = np.array(PARTS)
DATA_FORMATS = ("csv", "tsv", "json", "ndjson", "npy")  # what forward and trace write as data
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json",
              ".ndjson": "ndjson", ".jsonl": "ndjson", ".npy": "npy", ".txt": "table"}


def fmt(a, precision=None) -> np.ndarray:
    """Numbers as text: the shortest form that reads back exactly, or fixed decimals."""
    a = np.asarray(a)
    if precision is None:
        return a.astype(str)
    return np.char.mod(f"%.{precision}f", a)


def _list(a, precision=None):
    """Nested lists of floats for JSON; float32 values keep their short exact form."""
    a = np.asarray(a)
    if a.dtype.kind == "b":
        return a.tolist()
    if precision is not None:
        return np.round(a.astype(np.float64), precision).tolist()
    if a.dtype == np.float32 or a.dtype == np.float16:
        return _nest(a.astype(str))
    return a.tolist()


def _nest(strings):
    if strings.ndim == 0:
        return float(strings[()])
    if strings.ndim == 1:
        return [float(v) for v in strings]
    return [_nest(s) for s in strings]


# ---------------------------------------------------------------- forward


def states_rows(views, precision=None):
    """One table: ``sample,t,h0,...`` for one layer; with several, a ``layer`` column first
    and as many unit columns as the widest (empty where a layer has fewer)."""
    several = len(views) > 1
    width = max(len(v.units) for v in views)
    units = views[0].units if not several else range(width)
    yield (["layer"] if several else []) + ["sample", "t"] + [f"h{u}" for u in units]
    for view in views:
        text = fmt(view.values, precision)
        pad = [""] * (width - len(view.units))
        for bi, b in enumerate(view.samples):
            for si, t in enumerate(view.t):
                yield ([view.key] if several else []) + [str(b), str(t), *text[bi, si], *pad]


def write_states(views, fmt_name, out, precision=None):
    if fmt_name in ("csv", "tsv"):
        w = csv.writer(out, delimiter="," if fmt_name == "csv" else "\t", lineterminator="\n")
        for row in states_rows(views, precision):
            w.writerow(row)
    elif fmt_name == "ndjson":
        for view in views:
            _states_ndjson(view, out, precision)
    else:
        raise ValueError(fmt_name)


def _states_ndjson(view, out, precision):
    for bi, b in enumerate(view.samples):
        for si, (step, t) in enumerate(zip(view.steps, view.t)):
            out.write(json.dumps({"layer": view.key, "sample": int(b), "step": int(step),
                                  "t": int(t), "h": _list(view.values[bi, si], precision)})
                      + "\n")


def states_document(views, outputs, precision=None, source=None):
    doc = {"source": source or {}, "layers": []}
    for v in views:
        doc["layers"].append({"layer": v.key, "samples": v.samples.tolist(),
                              "steps": v.steps.tolist(), "t": v.t.tolist(),
                              "units": v.units.tolist(), "hidden": _list(v.values, precision)})
    if outputs is not None:
        doc["output"] = [_list(o, precision) for o in outputs]
    return doc


# ---------------------------------------------------------------- trace


def trace_header(views, own=False) -> list:
    """One header for every view: a ``section`` column when a gated cell is in the model,
    the columns of every cell kind of the model in a fixed order (the views'
    ``model_columns``: the same whatever layers or gates are shown; blank in the rows of a
    section that has no such column: an LSTM's state section has no ``xw``), the terms'
    ``x0_w ...``. ``own``: the views' own columns only (one view's row layout)."""
    views = list(views)
    fixed = [] if own else [c for v in views for c in (v.model_columns or ())]
    columns = list(dict.fromkeys([*fixed, *(c for v in views for c in v.columns)]))
    section = ["section"] if any(v.section for v in views) or (
        not own and any(v.model_columns and "gate" in v.model_columns for v in views)) \
        else []
    features = max((v.terms.shape[2] for v in views if v.terms is not None), default=0)
    return ["layer", "direction", *section, "sample", "step", "t", "unit", *columns,
            "dominant", "flag", *(f"x{i}_w" for i in range(features))]


def trace_rows(view, header, precision=None):
    """The view's rows, one per sample, step and unit, laid out under ``header``."""
    own = trace_header([view], own=True)
    place = [header.index(c) for c in own]
    if own == header:
        place = None
    text = {k: fmt(view.arrays[k], precision) for k in view.columns}
    dominant = view.dominant()
    dom = DOMINANT[dominant] if dominant is not None else \
        np.full(view.arrays[view.value].shape, "", object)
    flags = view.flags()
    terms = None if view.terms is None else fmt(view.terms, precision)
    section = [view.section] if view.section else []
    for bi, b in enumerate(view.samples):
        for si, (step, t) in enumerate(zip(view.steps, view.t)):
            for ui, u in enumerate(view.units):
                row = [view.layer, view.direction or "", *section, str(b), str(step), str(t),
                       str(u), *(text[k][bi, si, ui] for k in view.columns), dom[bi, si, ui],
                       flags[bi, si, ui]]
                if terms is not None:
                    row += list(terms[bi, si, :, ui])
                if place is not None:
                    out = [""] * len(header)
                    for i, v in zip(place, row):
                        out[i] = v
                    row = out
                yield row


def write_trace(views, fmt_name, out, precision=None, header=True):
    """csv/tsv: one table (one header for every layer and section); ndjson: a record per
    sample and step of each section."""
    if fmt_name in ("csv", "tsv"):
        w = csv.writer(out, delimiter="," if fmt_name == "csv" else "\t", lineterminator="\n")
        columns = trace_header(views)
        if header:
            w.writerow(columns)
        for v in views:
            w.writerows(trace_rows(v, columns, precision))
    elif fmt_name == "ndjson":
        for v in views:
            dominant, flags = v.dominant(), v.flags()
            for bi, b in enumerate(v.samples):
                for si, (step, t) in enumerate(zip(v.steps, v.t)):
                    rec = {"layer": v.layer, "direction": v.direction or None, "sample": int(b),
                           "step": int(step), "t": int(t), "units": v.units.tolist()}
                    if v.section:
                        rec["section"] = v.section
                    rec.update({k: _list(v.arrays[k][bi, si], precision) for k in v.columns})
                    # a section with no x·W, h·U, b parts (a gated cell's state) has "" per
                    # unit, as csv leaves dominant blank: always a list, like note
                    rec["largest"] = [""] * len(v.units) if dominant is None else \
                        DOMINANT[dominant[bi, si]].tolist()
                    rec["note"] = flags[bi, si].tolist()
                    out.write(json.dumps(rec) + "\n")
    else:
        raise ValueError(fmt_name)


def trace_document(views, precision=None, source=None):
    doc = {"source": source or {}, "traces": []}
    for v in views:
        entry = {"layer": v.layer, "direction": v.direction or None, "activation": v.activation,
                 "samples": v.samples.tolist(), "steps": v.steps.tolist(), "t": v.t.tolist(),
                 "units": v.units.tolist()}
        if v.section:
            entry["section"] = v.section
        entry.update({k: _list(v.arrays[k], precision) for k in v.columns})
        dominant = v.dominant()
        entry["largest"] = np.full(v.arrays[v.value].shape, "", object).tolist() \
            if dominant is None else DOMINANT[dominant].tolist()
        entry["note"] = v.flags().tolist()
        if v.terms is not None:
            entry["terms"] = _list(v.terms, precision)
        doc["traces"].append(entry)
    return doc


def trace_stack(view) -> np.ndarray:
    """(B, T, C, H): the view's columns in order (SimpleRNN: xw, hu, bias, z, h)."""
    return np.stack([view.arrays[k] for k in view.columns], axis=2)


def npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()
