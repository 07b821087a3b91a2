"""A loaded model: layers, the graph that connects them, and running it.

Sequential models are a chain; functional models are a graph in which each call
of a layer (a *node*) names the tensors it takes, as Keras' config records them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError, UnsupportedLayerError, UsageError
from .engine import Engine
from .graph import ALL_OUTPUTS, Node, Ref  # noqa: F401  (Node: rnncli.core.model.Node, as before)
from .graph import GraphRun as _GraphRun
from .graph import Missing as _Missing
from .graph import flatten as _flatten
from .layer import Layer
from .layers import IDENTITY_CLASSES, Op
from .result import Result

BATCH_BYTES = 64 * 2**20  # roughly how much one batch's results may take (run_batches)


@dataclass
class InputSpec:
    name: str
    shape: tuple  # batch shape, None for unknown
    dtype: str = "float32"


class Model:
    """A Keras model rnncli can run: layers in order and the graph between them.

    ``source`` describes where it came from (format, Keras version, path);
    ``notes`` lists what the loader had to assume.
    """

    def __init__(self, name, layers, nodes, inputs, outputs, *, input_specs=None,
                 source=None, notes=None):
        self.name = name
        self.layers: list[Layer] = layers
        self.nodes: dict = nodes  # (layer name, node index) -> Node
        self.inputs: list[Ref] = inputs
        self.outputs: list[Ref] = outputs
        self.input_specs: list[InputSpec] = input_specs or []
        self.source: dict = source or {}
        self.notes: list[str] = notes or []
        self.original_config: dict | None = None  # a Keras 3 config, when the file had one

    @classmethod
    def chain(cls, name, layers, *, input_spec=None, source=None, notes=None) -> Model:
        """A Sequential model: each layer takes the one before it; the model returns every
        output of the last (return_state, merge_mode=None)."""
        nodes, prev = {}, Ref("__input__")
        for layer in layers:
            nodes[(layer.name, 0)] = Node(layer, [prev])
            prev = Ref(layer.name)
        last = Ref(prev.layer, 0, ALL_OUTPUTS) if layers else prev
        return cls(name, list(layers), nodes, [Ref("__input__")], [last],
                   input_specs=[input_spec] if input_spec else [], source=source, notes=notes)

    def chain_layers(self) -> list | None:
        """The layers in order when each takes only the one before's first output (the first
        takes the input) and the model's output is the last one's: a Sequential model, or a
        functional one of that shape. None otherwise."""
        prev = self.inputs[0] if len(self.inputs) == 1 else None
        for layer in self.layers:
            node = self.nodes.get((layer.name, 0))
            if prev is None or node is None or (layer.name, 1) in self.nodes or \
                    node.args != [Ref(prev.layer, prev.node, 0)] or \
                    any(v is not None for v in node.kwargs.values()):
                return None
            prev = Ref(layer.name)
        first = self.outputs[0] if self.outputs else None
        if first is None or first.layer != prev.layer or first.tensor not in (0, ALL_OUTPUTS):
            return None
        return list(self.layers)

    # -------------------------------------------------------------- lookup

    @property
    def unsupported(self) -> list:
        """Layers rnncli loads but cannot compute (rnncli.core.layers.Unsupported)."""
        return [la for la in self.layers if hasattr(la, "reason")]

    @property
    def recurrent_layers(self) -> list:
        return [la for la in self.layers if la.recurrent]

    def get_layer(self, key) -> Layer:
        """A layer by name, or by index into ``recurrent_layers`` (an int or a digit string)."""
        for la in self.layers:
            if la.name == key:
                return la
        rec = self.recurrent_layers
        if isinstance(key, int) or (isinstance(key, str) and key.lstrip("-").isdigit()):
            i = int(key)
            if -len(rec) <= i < len(rec):
                return rec[i]
        names = ", ".join(la.name for la in rec) or "none"
        # a UsageError (an RnncliError too): the CLI's --layer nope exits 2, as bad options do
        raise UsageError(f"no recurrent layer {key!r} in the model; expected a name or index "
                          f"of one of: {names}")

    @property
    def dtype(self):
        rec = self.recurrent_layers
        return rec[0].dtype if rec else np.dtype("float32")

    @property
    def takes_token_ids(self) -> bool:
        return any(la.class_name == "Embedding" for la in self.layers) and \
            self._first_consumer_class() == "Embedding"

    def _first_consumer(self):
        """The first layer that computes on the input, past Masking and pass-through layers."""
        consumers = {}  # layer name -> the first node (in the graph's order) that takes it
        for node in self.nodes.values():
            for a in _flatten(node.args):
                if isinstance(a, Ref):
                    consumers.setdefault(a.layer, node)
        name, seen = (self.inputs[0].layer if self.inputs else None), set()
        while name is not None and name not in seen:
            seen.add(name)
            node = consumers.get(name)
            if node is None or node.layer.class_name not in IDENTITY_CLASSES | {"Masking"}:
                return node.layer if node else None
            name = node.layer.name
        return None

    def _first_consumer_class(self):
        layer = self._first_consumer()
        return layer.class_name if layer is not None else None

    @property
    def input_dim(self):
        """Features per timestep the model takes (None for token ids or unknown)."""
        if self.input_specs and len(self.input_specs[0].shape) == 3:
            return self.input_specs[0].shape[-1]
        if self.takes_token_ids:
            return None
        first = self._first_consumer()
        if first is not None and first.recurrent:
            return first.input_dim
        return None

    # -------------------------------------------------------------- running

    def check_input(self, x):
        """Validate and convert an input array; returns it as the model consumes it."""
        if len(self.inputs) > 1:
            raise UnsupportedLayerError(
                f"the model has {len(self.inputs)} inputs; rnncli runs models with one input "
                f"(rnncli summary still describes it)")
        x = np.asarray(x)
        if self.takes_token_ids:
            if x.ndim == 1:
                x = x[None]
            if x.ndim != 2:
                raise InputDataError(
                    f"this model starts with an Embedding and expects integer token ids of shape "
                    f"(batch, timesteps) or (timesteps,), got shape {x.shape}")
            return x
        if x.dtype.kind not in "fiub":
            raise InputDataError(f"input must be numeric, got dtype {x.dtype}")
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3:
            raise InputDataError(
                f"input must have shape (batch, timesteps, features) or (timesteps, features), "
                f"got shape {x.shape}")
        d = self.input_dim
        if d is not None and x.shape[-1] != d:
            raise InputDataError(
                f"input has {x.shape[-1]} features per timestep; the model expects {d}")
        if x.shape[1] == 0:
            raise InputDataError("input has no timesteps; expected at least one")
        dtype = self.dtype if x.dtype.kind != "f" or x.dtype != self.dtype else x.dtype
        with np.errstate(over="ignore"):  # beyond the dtype: Inf, as the CLI warns
            return x.astype(dtype, copy=False)

    def run(self, x, initial_state=None, trace=True, sequences=True,
            engine: Engine | str | None = None, samples=None) -> Result:
        """Run the model on ``x`` ((B, T, D), (T, D), or integer ids (B, T)).

        ``initial_state``: the first recurrent layer's, or a dict of them by layer name;
        each an array ((units,) or (B, units)) for a one-state cell, a tuple of them in
        the cell's state order (LSTM: ``(h, c)``) or a dict by state name.
        ``engine``: "auto", "numpy" or "numba" (rnncli.core.engine.Engine); the
        environment variable RNNCLI_ENGINE sets the default. ``samples``: run only these
        rows of the batch (rows never interact; the compiled loop gives the numbers of a
        run on all, numpy's BLAS may round a row's sums by the rows beside it, in the last
        bits; initial states are checked against the whole batch). Returns a :class:`Result`.
        The model output is computed when every layer on its path is supported;
        otherwise ``Result.outputs`` is None and ``Result.output_error`` says why.
        ``sequences=False`` with ``trace=False`` keeps no hidden sequence of a layer that
        does not return one (``Result.hidden`` is None there): memory O(batch x units).
        """
        if samples is not None:
            x = self.check_input(x)
            initial_state = self.select_states(
                self.initial_states(initial_state, x.shape[0]), samples)
            x = x[samples]
        with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN show in the results
            return self._run(x, initial_state, trace, sequences, engine)

    def gradients(self, x, target=None, loss="mse", of=None, initial_state=None, **options):
        """The exact backward pass, by name (rnncli/core/gradients.py has the details)."""
        from .gradients import gradients

        return gradients(self, x, target, loss, of, initial_state, **options)

    def run_batches(self, x, initial_state=None, batch_size=None, trace=True, engine=None):
        """Yield ``(start, Result)`` for consecutive batches of ``x``'s samples, each batch
        about BATCH_BYTES of results (``batch_size`` samples when given)."""
        x = self.check_input(x)
        n = len(x)
        size = batch_size or self.batch_size_for(x, trace)
        states = self.initial_states(initial_state, n)
        for start in range(0, n, size):
            rows = slice(start, start + size)
            yield start, self.run(np.asarray(x[rows]), initial_state=self.select_states(
                states, rows), trace=trace, engine=engine)

    def batch_size_for(self, x, trace=True) -> int:
        """Samples per batch so one batch's results stay near BATCH_BYTES."""
        steps = x.shape[1] if x.ndim > 1 else 1
        units = sum(sum(d.units * len(d.state_names) for d in la.directions.values())
                    for la in self.recurrent_layers) or 1
        per_unit = 2 + (sum(la.cell.term_width(t) // la.cell.units
                            for la in self.recurrent_layers for t in la.cell.terms) + 2
                        if trace else 0)
        per_sample = steps * units * np.dtype(self.dtype).itemsize * per_unit + x[0].nbytes
        return max(1, min(len(x), BATCH_BYTES // max(per_sample, 1)))

    def _run(self, x, initial_state, trace, sequences, engine):
        x = self.check_input(x)
        init = self.initial_states(initial_state, x.shape[0])
        run = _GraphRun(self, x, init, trace, sequences, engine)
        outputs = []
        for r in self.outputs:
            if r.tensor == ALL_OUTPUTS:
                first = run.tensor(Ref(r.layer, r.node, 0))
                outs = run.values[(r.layer, r.node)]
                outputs += [first] if isinstance(first, _Missing) else list(outs)
            else:
                outputs.append(run.tensor(r))
        # Recurrent layers off the output path (or behind an unsupported one) still run.
        for key in self.nodes:
            if self.nodes[key].layer.recurrent:
                run.compute(key)
        missing = [o for o in outputs if isinstance(o, _Missing)]
        flat = None if missing else [o[0] for o in outputs]
        ordered = {la.name: run.records[la.name] for la in self.layers if la.name in run.records}
        return Result(flat, missing[0].reason if missing else None, ordered)

    def _call(self, layer, args, kwargs, init, trace, records, sequences, engine):
        if isinstance(layer, Op):
            vals = _strip_masks(args)
            kw = {k: _strip_masks(v) for k, v in kwargs.items() if k not in ("mask", "training")}
            return [(layer.call(*vals, **kw), None)]
        first = args[0] if args else None
        if isinstance(first, list) and len(first) and isinstance(first[0], tuple):
            extra_states = first[1:]
            first = first[0]
        else:
            extra_states = args[1:] if layer.recurrent else []
        xv, mask = first
        if kwargs.get("mask") is not None:
            mask = _strip_masks(kwargs["mask"])
        if not layer.recurrent:
            return [layer.call(xv, mask)]
        h0 = init.get(layer.name)
        given = kwargs.get("initial_state")
        if given is not None:  # a functional model's states, as tensors of the graph
            states = given if isinstance(given, list) else [given]
            h0 = layer.initial_state_from([s[0] for s in states], np.shape(xv)[0])
        elif extra_states:
            h0 = layer.initial_state_from([s[0] for s in extra_states], np.shape(xv)[0])
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.ndim != 2:
                raise InputDataError(f"layer {layer.name!r}: mask must be (batch, timesteps)")
        result = layer.call(xv, mask, h0, trace, keep=sequences, engine=engine)
        if not trace:
            for d in result.directions.values():
                d.trace = None
        records[layer.name] = result
        return result.outputs

    def initial_states(self, initial_state, batch):
        """``initial_state`` as ``run`` takes it (the first recurrent layer's, or
        {layer: state}), checked and spread to ``{layer: tuple of (batch, H) arrays}``."""
        if initial_state is None or (isinstance(initial_state, dict) and not initial_state):
            return {}
        rec = self.recurrent_layers
        if not isinstance(initial_state, dict) or \
                (rec and set(initial_state) <= set(rec[0].state_names)):
            if not rec:
                raise InputDataError("an initial state was given but the model has no recurrent layer")
            initial_state = {rec[0].name: initial_state}
        elif rec and any(k in rec[0].state_names for k in initial_state) and \
                any(k not in {la.name for la in rec} for k in initial_state):
            # the first layer's states with one more: name that one, not "no layer 'h'"
            extra = next(k for k in initial_state if k not in rec[0].state_names)
            raise InputDataError(
                f"initial state {extra!r}: layer {rec[0].name!r} has the state(s) "
                f"{', '.join(rec[0].state_names)}; expected those, or states by layer name")
        return {self.get_layer(name).name: self.get_layer(name).initial_state_from(s, batch)
                for name, s in initial_state.items()}

    def select_states(self, states: dict, rows) -> dict:
        """Initial states (as ``initial_states`` returns them) for some rows of the batch."""
        return {k: tuple(s[rows] for s in v) for k, v in states.items()}

    # -------------------------------------------------------------- summary

    def summary(self) -> dict:
        """What ``rnncli summary`` shows, as data: layers (shapes, parameters, settings),
        weight statistics, recurrent-kernel spectra, warnings."""
        from ..present.summary import describe

        return describe(self)

    def count_params(self) -> int:
        return sum(la.count_params() for la in self.layers)

    def __repr__(self):
        return f"<Model {self.name!r}: {', '.join(repr(la) for la in self.layers)}>"


def _strip_masks(obj):
    """(value, mask) pairs -> values, recursively."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], np.ndarray):
        return obj[0]
    if isinstance(obj, list):
        return [_strip_masks(o) for o in obj]
    return obj
