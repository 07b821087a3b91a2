"""A model's graph: each call of a layer (a *node*) names the tensors it takes, as Keras'
config records them (``Ref``), and one run of it computes every node once, after the nodes
it takes tensors from (``GraphRun``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError, ModelFileError, RnncliError, UnsupportedLayerError
from .layer import Layer

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
class Missing:
    reason: str


class GraphRun:
    """One run of a model's graph: each call of a layer (a node) computed once, after the
    calls it takes tensors from. The order is found with an explicit stack, not recursion,
    so a model of thousands of layers runs; and nothing here refers back to itself, so a
    run's arrays go as soon as its Result does (no reference cycle for the cyclic GC)."""

    def __init__(self, model, x, init, trace, sequences, engine):
        self.model, self.x, self.init = model, x, init
        self.trace, self.sequences, self.engine = trace, sequences, engine
        self.values: dict = {}  # (layer name, node index) -> its outputs, or Missing
        self.records: dict = {}
        self.shapes = model.last_shapes = {}  # layer name -> output shapes, for summaries
        self.input_names = {r.layer for r in model.inputs}

    def tensor(self, ref):
        key = (ref.layer, ref.node)
        outs = self.compute(key)
        if isinstance(outs, Missing):
            return outs
        if ref.tensor >= len(outs):
            raise RnncliError(f"layer {ref.layer!r} has no output {ref.tensor}")
        return outs[ref.tensor]

    def _inputs(self, key):
        """The nodes ``key`` takes tensors from, in the order its arguments name them."""
        node = self.model.nodes.get(key)
        if node is None or key[0] in self.input_names:
            return []
        refs = flatten([node.args, list(node.kwargs.values())])
        return [(r.layer, r.node) for r in refs if isinstance(r, Ref)]

    def compute(self, key):
        """The outputs of node ``key``, computing first what it needs (depth first, in
        argument order: the order a recursive evaluation would take)."""
        values = self.values
        if key in values:
            return values[key]
        stack, on_stack = [(key, iter(self._inputs(key)))], {key}
        while stack:
            current, pending = stack[-1]
            for dep in pending:
                if dep in values:
                    continue
                if dep in on_stack:
                    raise ModelFileError(f"the model's graph is a cycle: layer {dep[0]!r} "
                                         f"takes its own output")
                stack.append((dep, iter(self._inputs(dep))))
                on_stack.add(dep)
                break
            else:
                stack.pop()
                on_stack.discard(current)
                values[current] = self._evaluate(current)
        return values[key]

    def _resolve(self, obj):
        if isinstance(obj, Ref):
            return self.tensor(obj)
        if isinstance(obj, list):
            return [self._resolve(o) for o in obj]
        if isinstance(obj, dict):
            return {k: self._resolve(v) for k, v in obj.items()}
        return obj

    def _evaluate(self, key):
        """Node ``key``, whose inputs are computed."""
        if key[0] in self.input_names:
            return [(self.x, None)]
        node = self.model.nodes.get(key)
        if node is None:
            return Missing(f"the model's graph names layer {key[0]!r}, which is not in it")
        args = self._resolve(node.args)
        kwargs = self._resolve(node.kwargs)
        missing = [a for a in flatten([args, list(kwargs.values())]) if isinstance(a, Missing)]
        if missing:
            return missing[0]
        layer = node.layer
        takes_input = any(isinstance(a, Ref) and a.layer in self.input_names
                          for a in flatten(node.args))
        try:
            outs = self.model._call(layer, args, kwargs, self.init, self.trace, self.records,
                                    self.sequences, self.engine)
        except UnsupportedLayerError as e:
            return Missing(str(e))
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
            return Missing(f"layer {layer.name!r} can't be computed: {e}")
        self.shapes.setdefault(layer.name, [np.shape(o[0]) for o in outs])
        return outs


def flatten(obj):
    """Refs and constants of nested lists, in order; (value, mask) pairs stay whole."""
    if isinstance(obj, (list, tuple)) and not (isinstance(obj, tuple) and len(obj) == 2
                                                and isinstance(obj[0], np.ndarray)):
        for o in obj:
            yield from flatten(o)
    else:
        yield obj
