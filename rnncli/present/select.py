"""What a command shows, decided once for forward, trace, grad and report: which samples,
which layers (and directions, gates), which steps and units. Plain data; the CLI only
prints the notes these return.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import RnncliError, UsageError, index_range, there_are
from .views import Selection, parse_index_list, parse_slice

TABLE_SAMPLES = 3  # samples a table shows unless --sample or --all says otherwise
ONE_LAYER_FORMATS = ("npy",)  # formats that hold one layer's array


def split_names(values) -> list:
    """``--layer a --layer b`` and ``--layer a,b`` alike: a flat list of names."""
    out = []
    for v in values or ():
        out += [p.strip() for p in str(v).split(",") if p.strip()]
    return out


def samples_to_show(total: int, sample: str | None, fmt: str, show_all: bool):
    """(sample indices or None for all, note or None)."""
    if sample:
        return parse_index_list(sample, "sample", total), None
    if fmt == "table" and not show_all and total > TABLE_SAMPLES + 1:
        return list(range(TABLE_SAMPLES)), (
            f"showing samples 0 to {TABLE_SAMPLES - 1} of {total}; pick others with --sample, "
            f"or --all for every one")
    return None, None


def layers_to_show(model, result, keys, fmt):
    """(layer keys to show, note or None). A key may name one direction of a Bidirectional
    layer, ``bidi/forward``. Without keys: every recurrent layer, but the last one for
    formats that hold one array."""
    keys = split_names(keys)
    note = None
    if keys:
        names = []
        for k in keys:
            name, _, direction = str(k).partition("/")
            if direction and direction not in ("forward", "backward"):
                raise UsageError(f"--layer {k!r}: expected LAYER, LAYER/forward or "
                                 f"LAYER/backward")
            layer = model.get_layer(name)
            names.append(layer.name + (f"/{direction}" if direction else ""))
    elif fmt in ONE_LAYER_FORMATS:
        names = list(result.layers)[-1:]
        if len(result.layers) > 1:
            note = (f"showing layer {names[0]!r}, the last of {len(result.layers)} recurrent "
                    f"layers; pick others with --layer")
    else:
        names = list(result.layers)
    if not names:
        why = f": {result.output_error}" if result.output_error else ""
        raise RnncliError(f"the model has no recurrent layer that could be computed{why}")
    missing = [n for n in names if n.split("/")[0] not in result.layers]
    if missing:
        raise RnncliError(f"layer {missing[0]!r} could not be computed: its input passes "
                          f"through a layer rnncli can't compute")
    for n in names:
        name, _, direction = n.partition("/")
        if direction and direction not in result.layers[name].directions:
            raise UsageError(f"--layer {n!r}: layer {name!r} is not Bidirectional; expected "
                             f"--layer {name}")
    return names, note


def selection(result, steps: str | None, units: str | None) -> Selection:
    """The steps and units asked for, checked against the layers' sizes: an empty
    selection is an error, as an index out of range is."""
    if not result.layers:
        why = f": {result.output_error}" if result.output_error else ""
        raise RnncliError(f"the model has no recurrent layer that could be computed{why}")
    steps_sl = parse_slice(steps, "steps") if steps else None
    if steps_sl is not None:
        T = min(_steps(r) for r in result.layers.values())
        if not len(range(T)[steps_sl]):
            raise UsageError(f"--steps {steps} selects no step; {there_are(T)} "
                              f"({index_range(T)})")
    picked = None
    if units:
        H = min(_width(r) for r in result.layers.values())
        picked = parse_index_list(units, "unit", H)
    return Selection(steps_sl, picked)


def _steps(r):
    seq = r.hidden if r.hidden is not None else next(iter(r.directions.values())).sequence
    return seq.shape[1]


def _width(r):
    if r.hidden is not None:
        return r.hidden.shape[-1]
    return sum(d.sequence.shape[-1] for d in r.directions.values())


def relabel(views, samples):
    """Views of a run on the chosen samples, numbered as in the input."""
    if samples is None:
        return views
    return [replace(v, samples=np.asarray(samples)[v.samples]) for v in views]


def one_sample(view, i):
    """The i-th sample of a view, as a view."""
    return replace(view, samples=view.samples[i:i + 1], values=view.values[i:i + 1],
                   mask=None if view.mask is None else view.mask[i:i + 1])
