"""A loaded model: layers, the graph that connects them, and running it.

Sequential models are a chain; functional models are a graph in which each call
of a layer (a *node*) names the tensors it takes, as Keras' config records them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputDataError, ModelFileError, RnncliError, UnsupportedLayerError
from .layers import Layer, Op, Trace

ALL_OUTPUTS = -1  # Ref.tensor meaning "every output of that call"


@dataclass(frozen=True)
class Ref:
    """Output ``tensor`` of call ``node`` of layer ``layer`` (Keras' keras_history)."""

    layer: str
    node: int = 0
    tensor: int = 0


@dataclass
class Node:
    layer: Layer
    args: list  # nested lists of Ref and constants
    kwargs: dict = field(default_factory=dict)


@dataclass
class InputSpec:
    name: str
    shape: tuple  # batch shape, None for unknown
    dtype: str = "float32"


@dataclass
class LayerResult:
    """What one recurrent layer computed."""

    layer: Layer
    hidden: np.ndarray | None  # (B, T, units) in Keras' order; merged for Bidirectional
    state: object  # (B, H), or {"forward": (B, H), "backward": (B, H)}
    traces: dict  # {"": Trace} or {"forward": Trace, "backward": Trace}
    mask: np.ndarray | None  # (B, T) in input time order
    directions: dict = field(default_factory=dict)  # Bidirectional: each direction's own sequence


@dataclass
class Result:
    """The model's outputs and every recurrent layer's hidden states and trace."""

    outputs: list | None
    output_error: str | None
    layers: dict  # layer name -> LayerResult, in model order

    @property
    def output(self) -> np.ndarray:
        """The first model output (``model.predict``); raises if it can't be computed."""
        if self.outputs is None:
            raise UnsupportedLayerError(self.output_error)
        return self.outputs[0]

    @property
    def hidden(self) -> dict:
        return {n: r.hidden for n, r in self.layers.items()}

    @property
    def state(self) -> dict:
        return {n: r.state for n, r in self.layers.items()}

    def trace(self, layer: str, direction: str | None = None) -> Trace:
        r = self.layers[layer]
        key = direction or next(iter(r.traces))
        return r.traces[key]

    def arrays(self) -> dict:
        """Every array in the export schema (docs/export.md), flat: ``"<kind>/<layer>[/<dir>]"``.

        Values are views (time-major arrays seen batch-major); writers copy what they keep."""
        out = {}
        if self.outputs is not None:
            for i, o in enumerate(self.outputs):
                out["output" if i == 0 else f"output_{i}"] = o
        for name, r in self.layers.items():
            if r.hidden is not None:
                out[f"hidden/{name}"] = r.hidden
            for d, seq in r.directions.items():
                out[f"hidden/{name}/{d}"] = seq
            if isinstance(r.state, dict):
                for d, s in r.state.items():
                    out[f"state/{name}/{d}"] = s
            else:
                out[f"state/{name}"] = r.state
            if r.mask is not None:
                out[f"mask/{name}"] = r.mask
            for d, tr in r.traces.items():
                suffix = f"/{d}" if d else ""
                for kind in ("xw", "hu", "bias", "z"):
                    out[f"{kind}/{name}{suffix}"] = getattr(tr, kind)
        return out


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

    # -------------------------------------------------------------- lookup

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
        raise RnncliError(f"no recurrent layer {key!r} in the model; expected a name or index "
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
        from .layers import IDENTITY_CLASSES

        name = self.inputs[0].layer if self.inputs else None
        while name is not None:
            node = next((n for n in self.nodes.values()
                         if any(isinstance(a, Ref) and a.layer == name
                                for a in _flatten(n.args))), None)
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
        return x.astype(dtype, copy=False)

    def run(self, x, initial_state=None, trace=True, sequences=True) -> Result:
        """Run the model on ``x`` ((B, T, D), (T, D), or integer ids (B, T)).

        ``initial_state``: an array ((units,) or (B, units)) for the first recurrent
        layer, or a dict of them by layer name. Returns a :class:`Result`.
        The model output is computed when every layer on its path is supported;
        otherwise ``Result.outputs`` is None and ``Result.output_error`` says why.
        ``sequences=False`` with ``trace=False`` keeps no hidden sequence of a layer that
        does not return one (``Result.hidden`` is None there): memory O(batch x units).
        """
        with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN show in the results
            return self._run(x, initial_state, trace, sequences)

    def _run(self, x, initial_state, trace, sequences=True):
        x = self.check_input(x)
        B = x.shape[0]
        init = self.initial_states(initial_state, B)
        values: dict = {}
        records: dict = {}
        shapes = self.last_shapes = {}  # layer name -> output shapes, for summaries

        def tensor(ref):
            key = (ref.layer, ref.node)
            if key not in values:
                values[key] = evaluate(key)
            outs = values[key]
            if isinstance(outs, _Missing):
                return outs
            if ref.tensor >= len(outs):
                raise RnncliError(f"layer {ref.layer!r} has no output {ref.tensor}")
            return outs[ref.tensor]

        def resolve(obj):
            if isinstance(obj, Ref):
                return tensor(obj)
            if isinstance(obj, list):
                return [resolve(o) for o in obj]
            if isinstance(obj, dict):
                return {k: resolve(v) for k, v in obj.items()}
            return obj

        input_names = {r.layer for r in self.inputs}

        def evaluate(key):
            if key[0] in input_names:
                return [(x, None)]
            node = self.nodes.get(key)
            if node is None:
                return _Missing(f"the model's graph names layer {key[0]!r}, which is not in it")
            args = resolve(node.args)
            kwargs = resolve(node.kwargs)
            missing = [a for a in _flatten([args, list(kwargs.values())]) if isinstance(a, _Missing)]
            if missing:
                return missing[0]
            layer = node.layer
            takes_input = any(isinstance(a, Ref) and a.layer in input_names
                              for a in _flatten(node.args))
            try:
                outs = self._call(layer, args, kwargs, init, trace, records, sequences)
            except UnsupportedLayerError as e:
                return _Missing(str(e))
            except InputDataError as e:
                if takes_input:
                    raise
                if layer.recurrent:
                    raise ModelFileError(
                        f"layer {layer.name!r} can't take what the layer before it gives ({e}); "
                        f"for a weights-only file, the config rnncli assumed is not the "
                        f"model's: see the notes above") from None
                # Past the first layer a shape mismatch means the model's structure is not
                # what rnncli inferred (weights-only files): recurrent results still stand.
                return _Missing(f"layer {layer.name!r} can't be computed: {e}")
            shapes.setdefault(layer.name, [np.shape(o[0]) for o in outs])
            return outs

        outputs = []
        for r in self.outputs:
            if r.tensor == ALL_OUTPUTS:
                first = tensor(Ref(r.layer, r.node, 0))
                outs = values[(r.layer, r.node)]
                outputs += [first] if isinstance(first, _Missing) else list(outs)
            else:
                outputs.append(tensor(r))
        # Recurrent layers off the output path (or behind an unsupported one) still run.
        for key in self.nodes:
            if self.nodes[key].layer.recurrent and key not in values:
                values[key] = evaluate(key)
        missing = [o for o in outputs if isinstance(o, _Missing)]
        flat = None if missing else [o[0] for o in outputs]
        ordered = {la.name: records[la.name] for la in self.layers if la.name in records}
        # The nested functions above refer to each other through their closure cells, a
        # reference cycle that holds every array of this run until the cyclic GC happens
        # to run: a batch-by-batch export grew by a batch per batch. Cut the cycle.
        tensor = resolve = evaluate = None  # noqa: F811, F841
        return Result(flat, missing[0].reason if missing else None, ordered)

    def _call(self, layer, args, kwargs, init, trace, records, sequences=True):
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
        if layer.recurrent:
            h0 = init.get(layer.name)
            given = kwargs.get("initial_state")
            if given is not None:
                states = given if isinstance(given, list) else [given]
                h0 = np.concatenate([s[0] for s in states], axis=-1)
            elif extra_states:
                h0 = np.concatenate([s[0] for s in extra_states], axis=-1)
            if mask is not None:
                mask = np.asarray(mask, bool)
                if mask.ndim != 2:
                    raise InputDataError(f"layer {layer.name!r}: mask must be (batch, timesteps)")
            out = layer.call(xv, mask, h0, trace, keep=sequences)
            traces = out.trace if isinstance(out.trace, dict) else {"": out.trace}
            state = {"forward": out.state[0], "backward": out.state[1]} \
                if isinstance(out.state, tuple) else out.state
            records[layer.name] = LayerResult(layer, out.hidden, state,
                                              traces if trace else {}, mask, out.extra)
            ys = list(out.y) if isinstance(out.y, tuple) else [out.y]
            masks = [out.mask] * len(ys)
            if layer.return_state:
                sts = list(out.state) if isinstance(out.state, tuple) else [out.state]
                ys += sts
                masks += [None] * len(sts)
            return list(zip(ys, masks))
        y, m = layer.call(xv, mask)
        return [(y, m)]

    def initial_states(self, initial_state, batch):
        """``initial_state`` as ``run`` takes it (an array for the first recurrent layer,
        or {layer: array}), checked and spread to ``{layer: (batch, width) array}``."""
        if initial_state is None:
            return {}
        if not isinstance(initial_state, dict):
            rec = self.recurrent_layers
            if not rec:
                raise InputDataError("an initial state was given but the model has no recurrent layer")
            initial_state = {rec[0].name: initial_state}
        out = {}
        for name, s in initial_state.items():
            layer = self.get_layer(name)
            s = np.asarray(s, dtype=layer.dtype)
            width = 2 * layer.forward_layer.units if layer.class_name == "Bidirectional" \
                else layer.units
            if s.ndim == 1:
                s = np.broadcast_to(s, (batch, s.shape[0]))
            if s.ndim != 2 or s.shape[1] != width or s.shape[0] not in (1, batch):
                raise InputDataError(
                    f"initial state for layer {layer.name!r} must have shape ({width},) or "
                    f"({batch}, {width}), got {np.shape(s)}")
            out[layer.name] = np.broadcast_to(s, (batch, width)).copy()
        return out

    # -------------------------------------------------------------- summary

    def count_params(self) -> int:
        return sum(la.count_params() for la in self.layers)

    def __repr__(self):
        return f"<Model {self.name!r}: {', '.join(repr(la) for la in self.layers)}>"


@dataclass
class _Missing:
    reason: str


def _flatten(obj):
    if isinstance(obj, (list, tuple)) and not (isinstance(obj, tuple) and len(obj) == 2
                                                and isinstance(obj[0], np.ndarray)):
        for o in obj:
            yield from _flatten(o)
    else:
        yield obj


def _strip_masks(obj):
    """(value, mask) pairs -> values, recursively."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], np.ndarray):
        return obj[0]
    if isinstance(obj, list):
        return [_strip_masks(o) for o in obj]
    return obj
