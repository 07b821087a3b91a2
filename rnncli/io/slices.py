"""``export --sample/--steps/--unit``: which samples, steps and units of the export schema's
arrays (rnncli/core/result.py ``Result.arrays``) are written.

Spelled, checked and worded as forward and trace take them (rnncli/present/select.py).
Samples are picked before the run: only the batches holding them are computed, each as an
unselected export computes it, so the numbers are the same to the last bit. Steps and
units are positions along each array's own axes, so every written array is exactly a
slice of the array an unselected export writes:

- ``hidden``, ``cell`` and the trace's terms (B, T, H): samples, steps, units;
- ``state`` (B, H), final states: samples and units (steps don't change a final state);
- ``bias``, ``recurrent_bias`` (H,): units;
- ``mask`` (B, T): samples and steps;
- ``output``, ``output_1`` ...: samples only (their axes are the model's, not a layer's);
- the source framework's own arrays: ``h_n``, ``c_n``, ``Y_h``, ``Y_c`` samples and units;
  ONNX's ``Y`` samples and units, and is left out with ``--steps``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError, index_range, there_are
from ..present.views import parse_index_list, parse_slice

NO_STEPS = ("state", "bias", "recurrent_bias", "h_n", "c_n", "Y_h", "Y_c")  # (…, H): no time axis
PER_SAMPLE = ("output",)  # output, output_1 ...: the model's axes, not a layer's
TIME_MAJOR = ("Y",)  # ONNX's Y: the time axis is not the second one


@dataclass
class Pick:
    """What ``--sample``, ``--steps`` and ``--unit`` asked for. ``samples`` are resolved
    against the input at once; ``steps`` and ``units`` stay text until the arrays' sizes
    are known (``resolve``)."""

    samples: list | None = None
    steps: str | None = None
    units: str | None = None

    def __bool__(self):
        return bool(self.samples is not None or self.steps or self.units)

    @classmethod
    def parse(cls, total, sample=None, steps=None, units=None) -> Pick:
        """Samples within ``total`` (forward's errors; text such as ``"0,3"`` or ``"0:4"``,
        or a list of indices); the syntax of steps and units."""
        if sample is not None and not isinstance(sample, str):
            if not len(sample):
                raise UsageError(f"--sample selects nothing ({there_are(total)})")
            sample = ",".join(str(int(s)) for s in sample)
        samples = parse_index_list(sample, "sample", total) if sample else None
        if steps:
            parse_slice(steps, "steps")
        for part in units.split(",") if units else ():  # the syntax now, the range later
            part = part.strip()
            if ":" in part:
                parse_slice(part, "unit")
                continue
            try:
                int(part)
            except ValueError:
                raise UsageError(f"--unit {units!r}: {part!r} is not an index; expected e.g. "
                                 f"0,2 or 0:4") from None
        return cls(samples, steps or None, units or None)

    def numbers(self, positions):
        """Input sample numbers of rows ``positions`` of the selected batch."""
        return positions if self.samples is None else np.asarray(self.samples)[positions]


@dataclass
class Resolved:
    steps: slice | None
    units: list | None
    total_steps: int | None = None

    def step_positions(self):
        return None if self.steps is None else list(range(self.total_steps)[self.steps])


def _axes(key):
    """(step axis, unit axis) of an array in the schema; None where it has no such axis."""
    kind = key.split("/")[0]
    if kind.startswith("output"):
        return None, None
    if kind == "mask":
        return 1, None
    if kind in NO_STEPS:
        return None, -1
    if kind in TIME_MAJOR:
        return "time-major", -1
    return 1, -1


def resolve(pick: Pick, arrays: dict) -> Resolved:
    """Check ``pick``'s steps and units against the arrays to be written (their sizes, as in
    forward: the smallest layer's); an empty or out-of-range selection is a usage error, as
    is one that applies to none of the arrays."""
    keys = list(arrays)
    steps = units = T = None
    if pick.steps:
        sizes = [arrays[k].shape[_axes(k)[0]] for k in keys if isinstance(_axes(k)[0], int)]
        if not sizes:
            raise UsageError(f"--steps {pick.steps}: none of the arrays written has timesteps "
                             f"(state is the final state, output the model's); drop --steps "
                             f"or --what a sequence such as hidden")
        T = min(sizes)
        steps = parse_slice(pick.steps, "steps")
        if not len(range(T)[steps]):
            raise UsageError(f"--steps {pick.steps} selects no step; {there_are(T)} "
                             f"({index_range(T)})")
    if pick.units:
        sizes = [arrays[k].shape[-1] for k in keys if _axes(k)[1] is not None]
        if not sizes:
            raise UsageError(f"--unit {pick.units}: none of the arrays written has the layers' "
                             f"units (output is the model's); drop --unit or --what hidden, "
                             f"state or the trace")
        units = parse_index_list(pick.units, "unit", min(sizes))
    return Resolved(steps, units, T)


def apply(arrays: dict, sel: Resolved) -> dict:
    """The arrays sliced by ``sel`` (samples were picked before the run). ONNX's time-major
    ``Y`` is left out when steps are selected."""
    if sel.steps is None and sel.units is None:
        return arrays
    out = {}
    for k, v in arrays.items():
        step_axis, unit_axis = _axes(k)
        if sel.steps is not None and step_axis == "time-major":
            continue
        if sel.steps is not None and isinstance(step_axis, int):
            v = v[(slice(None),) * step_axis + (sel.steps,)]
        if sel.units is not None and unit_axis is not None:
            v = v[..., sel.units]
        out[k] = v
    return out


def picked_batches(model, x, initial_state, size, trace, samples, engine=None):
    """``(start, result)`` for the chosen samples, in their order. Each sample is computed
    in the batch an unselected export computes it in, and only the batches holding a chosen
    sample are: BLAS rounds a row's sums by where the row sits in the product, so the same
    batch is what gives the same numbers to the last bit."""
    states = model.initial_states(initial_state, len(x))
    done, batch, result = 0, None, None
    for b, group in itertools.groupby(samples, key=lambda s: s // size):
        rows = np.asarray(list(group)) - b * size
        if b != batch:
            span = slice(b * size, min(len(x), (b + 1) * size))
            batch, result = b, model.run(np.asarray(x[span]), trace=trace, engine=engine,
                                         initial_state=model.select_states(states, span))
        yield done, result.take(rows)
        done += len(rows)


SELECTION = " selection"  # where selected() leaves the selection for a sink to record


def selected(batches, arrays, pick, sink=None):
    """``(start, result, arrays sliced by pick)`` per batch; the steps and units are checked
    against the first batch's arrays, before anything is written. A sink that records the
    selection (json, h5) is told it once."""
    sel = None
    for start, result in batches:
        got = arrays(result)
        if sel is None:
            sel = resolve(pick, got)
            if pick and sink is not None:
                record = {"samples": pick.samples, "steps": sel.step_positions(),
                          "units": sel.units}
                if isinstance(sink, dict):
                    sink[SELECTION] = record
                elif hasattr(sink, "record"):
                    sink.record(record)
        yield start, result, apply(got, sel)
