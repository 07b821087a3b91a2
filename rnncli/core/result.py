"""What a run computed: per layer, per direction, its sequence, final states and trace.

A one-way layer has one direction, named ``""``; a Bidirectional layer ``"forward"`` and
``"backward"``. Names of arrays in exports follow one schema (docs/export.md), made
here from the cells' own declarations, so a new cell's terms are exported with no
change to this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import RnncliError, UnsupportedLayerError, UsageError

STATIC_TERMS = ("bias", "recurrent_bias")  # the same at every step: (width,), not (B, T, ...)


class Terms(Mapping):
    """A trace's arrays by name, in order. Those not ``given`` come from ``derive`` (a
    :class:`rnncli.core.replay.Deferred`, giving them all at once, or those of a window of
    steps) the first time one is read: a compiled scan's trace is computed when read
    (rnncli/core/replay.py). Checking a name (``"z" in terms``) computes nothing; a pickle
    or copy holds every array."""

    def __init__(self, names, given, derive=None):
        self._names = tuple(names)
        self._given = dict(given)
        self._derive = derive

    def __getitem__(self, name):
        if name in self._given:
            return self._given[name]
        if name not in self._names or self._derive is None:
            raise KeyError(name)
        return self._derive()[name]

    def __contains__(self, name):
        return name in self._names

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    @property
    def computed(self) -> bool:
        """Whether every array is at hand (none is left to derive)."""
        return self._derive is None or self._derive.done

    def arranged(self, names, more=None) -> Terms:
        """These terms (and ``more``, given) in the order ``names``, those present only;
        what is derived is still derived once for both."""
        given = {**self._given, **(more or {})}
        kept = [n for n in names if n in self._names or n in given]
        return Terms(kept, {k: v for k, v in given.items() if k in kept}, self._derive)

    def window(self, k0, k1) -> Terms:
        """Steps k0 .. k1 of every per-step term (static ones whole). Terms not computed
        yet are computed for those steps alone (rnncli/core/replay.py)."""
        return self._narrowed(lambda a: a[:, k0:k1], lambda derive: derive.window(k0, k1),
                              "window")

    def take(self, rows) -> Terms:
        """Some samples' terms (``rows`` of the batch; static ones whole). Terms not
        computed yet are computed for those samples alone."""
        return self._narrowed(lambda a: a[rows], lambda derive: derive.take(rows), "take")

    def _narrowed(self, cut, narrow, how) -> Terms:
        """Every per-step term ``cut``; those still to derive from ``narrow(derive)`` where
        the derivation can narrow itself (``how``), else computed now and cut."""
        def cut_terms(arrays):
            return {k: a if np.ndim(a) < 3 else cut(a) for k, a in arrays.items()}

        given = cut_terms(self._given)
        derive = self._derive
        if derive is not None and (derive.done or not hasattr(derive, how)):
            given.update(cut_terms(derive()))
            derive = None
        return Terms(self._names, given, None if derive is None else narrow(derive))

    def __reduce__(self):
        return Terms, (self._names, dict(self.items()))


class Trace(Mapping):
    """One direction's arithmetic, per sample and step, in processing order.

    A mapping of the cell's named terms: ``xw`` (x·kernel), ``bias``, the cell's own
    (SimpleRNN ``hu`` and ``z``; LSTM/GRU: per gate), and ``h``, each (B, T, width) but
    the static biases (width,). ``trace.z`` reads ``trace["z"]``. At masked steps ``h`` is
    what Keras outputs there (the previous output, or zeros); ``mask`` (B, T) is in
    processing order and ``step_index[k]`` is the input timestep processed at step k
    (reversed for ``go_backwards``).
    """

    def __init__(self, cell, terms: Mapping, mask, step_index, x):
        self.cell = cell
        self._terms = terms if isinstance(terms, Terms) else dict(terms)
        self.mask = mask
        self.step_index = step_index
        self.x = x  # (B, T, D) the layer's input, in processing order

    def __getitem__(self, name):
        return self._terms[name]

    def __iter__(self):
        return iter(self._terms)

    def __len__(self):
        return len(self._terms)

    def __contains__(self, name):
        return name in self._terms

    def __getattr__(self, name):
        terms = self.__dict__.get("_terms", {})
        if name in terms:
            return terms[name]
        raise AttributeError(name)

    @property
    def activation(self) -> str:
        return self.cell.activation

    @property
    def kernel(self):
        return self.cell.kernel

    @property
    def gates(self) -> tuple:
        return self.cell.gates

    def window(self, k0, k1) -> Trace:
        """Steps k0 .. k1 (processing order) alone: where the terms are computed when read,
        only those steps' are."""
        terms = self._as_terms().window(k0, k1)
        mask = None if self.mask is None else self.mask[:, k0:k1]
        return Trace(self.cell, terms, mask, self.step_index[k0:k1], self.x[:, k0:k1])

    def only_steps(self, k0, k1) -> Trace:
        """The same trace, its per-step terms at full length but computed for steps k0 ..
        k1 alone (as :meth:`window`), the other steps left unwritten: for a writer that
        reads no other step. Memory never written costs no page of RAM."""
        part = self._as_terms().window(k0, k1)
        states = self.cell.state_names
        terms = {}
        for name in self:
            a = self[name] if name in states else part[name]
            if name not in states and np.ndim(a) == 3:
                whole = np.empty((a.shape[0], len(self.step_index), *a.shape[2:]), a.dtype)
                whole[:, k0:k1] = a
                a = whole
            terms[name] = a
        return Trace(self.cell, terms, self.mask, self.step_index, self.x)

    def take(self, rows) -> Trace:
        """Some samples (``rows`` of the batch) alone: where the terms are computed when
        read, only theirs are."""
        mask = None if self.mask is None else self.mask[rows]
        return Trace(self.cell, self._as_terms().take(rows), mask, self.step_index,
                     self.x[rows])

    def _as_terms(self) -> Terms:
        """The terms as a :class:`Terms` (a trace may be made from a plain dict)."""
        return self._terms if isinstance(self._terms, Terms) else \
            Terms(self._terms, self._terms)

    def per_gate(self, name) -> dict:
        """A term split into the cell's gate blocks ({"": term} for a one-block cell)."""
        a = self._terms[name]
        if not self.gates or name not in self.cell.gate_terms():
            return {"": a}
        H = self.cell.units
        return {g: a[..., i * H:(i + 1) * H] for i, g in enumerate(self.gates)}

    def feature_terms(self) -> np.ndarray:
        """Each input feature's share of ``xw``: (B, T, D, width), summing over D to ``xw``."""
        return self.x[..., :, None] * self.cell.kernel

    terms = feature_terms  # the name rnncli 0.1 used


@dataclass
class DirectionResult:
    """One direction of a recurrent layer."""

    sequences: dict  # state name -> (B, T, H) every step, Keras' order; "h" is the output
    states: dict  # state name -> (B, H), the final states
    trace: Trace | None = None

    @property
    def sequence(self):
        return self.sequences.get("h")


@dataclass
class LayerResult:
    """What one recurrent layer computed."""

    layer: object
    directions: dict  # "" or "forward"/"backward" -> DirectionResult
    hidden: np.ndarray | None  # (B, T, units) in Keras' order; merged for Bidirectional
    mask: np.ndarray | None  # (B, T) in input time order
    outputs: list = field(default_factory=list)  # what the layer returns in Keras

    @property
    def state(self):
        """The final state: (B, H), {"h", "c"} for several states, or per direction."""
        def one(d):
            s = d.states
            return s["h"] if len(s) == 1 else dict(s)

        if list(self.directions) == [""]:
            return one(self.directions[""])
        return {k: one(d) for k, d in self.directions.items()}

    @property
    def traces(self) -> dict:
        return {k: d.trace for k, d in self.directions.items() if d.trace is not None}


class _ByLayer(dict):
    """``{layer name: value}`` that also takes an index into the recurrent layers."""

    def __getitem__(self, key):
        if isinstance(key, int) and not isinstance(key, bool) and key not in self:
            names = list(self)
            if not -len(names) <= key < len(names):
                raise UsageError(f"no recurrent layer {key}; there are {len(names)} "
                                  f"({', '.join(names) or 'none'})")
            key = names[key]
        if key not in self:
            raise UsageError(f"no recurrent layer {key!r} in the result; expected one of: "
                              f"{', '.join(self) or 'none'}")
        return super().__getitem__(key)


@dataclass
class Result:
    """The model's outputs and every recurrent layer's hidden states and trace."""

    outputs: list | None
    output_error: str | None
    layers: dict  # layer name -> LayerResult, in model order

    def __post_init__(self):
        self.layers = _ByLayer(self.layers)

    @property
    def output(self) -> np.ndarray:
        """The first model output (``model.predict``); raises if it can't be computed."""
        if self.outputs is None:
            raise UnsupportedLayerError(self.output_error)
        return self.outputs[0]

    @property
    def hidden(self) -> dict:
        return _ByLayer({n: r.hidden for n, r in self.layers.items()})

    @property
    def state(self) -> dict:
        return _ByLayer({n: r.state for n, r in self.layers.items()})

    def take(self, rows) -> Result:
        """The same run, for some of its samples only (``rows`` of the batch, in that
        order): the numbers are those of this run, not of a new one on fewer rows."""
        def t(a):
            return None if a is None else a[rows]

        def direction(d):
            return DirectionResult({k: t(v) for k, v in d.sequences.items()},
                                   {k: t(v) for k, v in d.states.items()},
                                   None if d.trace is None else d.trace.take(rows))

        layers = {n: LayerResult(r.layer, {k: direction(d) for k, d in r.directions.items()},
                                 t(r.hidden), t(r.mask), [(t(a), t(m)) for a, m in r.outputs])
                  for n, r in self.layers.items()}
        outputs = None if self.outputs is None else [t(o) for o in self.outputs]
        return Result(outputs, self.output_error, layers)

    def trace(self, layer, direction: str | None = None) -> Trace:
        r = self.layers[layer]
        traces = r.traces
        if not traces:
            raise RnncliError(f"layer {r.layer.name!r} was run without a trace; use "
                              f"model.run(x, trace=True)")
        key = direction if direction is not None else next(iter(traces))
        if key not in traces:
            raise RnncliError(f"layer {r.layer.name!r} has no direction {key!r}; expected "
                              f"one of: {', '.join(repr(k) for k in traces)}")
        return traces[key]

    def arrays(self) -> dict:
        """Every array in the export schema (docs/export.md), flat:
        ``"<kind>/<layer>[/<direction>][/<gate or state>]"``.

        Values are views (time-major arrays seen batch-major); writers copy what they keep."""
        out = {}
        if self.outputs is not None:
            for i, o in enumerate(self.outputs):
                out["output" if i == 0 else f"output_{i}"] = o
        for name, r in self.layers.items():
            if r.hidden is not None:
                out[f"hidden/{name}"] = r.hidden
            for d, dr in r.directions.items():
                where = f"{name}/{d}" if d else name
                if d and dr.sequence is not None:
                    out[f"hidden/{where}"] = dr.sequence
                for s, seq in dr.sequences.items():
                    if s != "h" and seq is not None:
                        out[f"{_STATE_KINDS.get(s, s)}/{where}"] = seq
                several = len(dr.states) > 1
                for s, v in dr.states.items():
                    out[f"state/{where}/{s}" if several else f"state/{where}"] = v
            if r.mask is not None:
                out[f"mask/{name}"] = r.mask
            for d, dr in r.directions.items():
                if dr.trace is None:
                    continue
                where = f"{name}/{d}" if d else name
                for term in dr.trace:
                    if term in dr.trace.cell.state_names:  # exported above (hidden, cell)
                        continue
                    kind = "gate" if term == "gate" else term
                    for g, a in dr.trace.per_gate(term).items():
                        out[f"{kind}/{where}/{g}" if g else f"{kind}/{where}"] = a
        return out


_STATE_KINDS = {"c": "cell"}  # LSTM's cell state at every step: cell/<layer>
