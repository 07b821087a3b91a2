"""The reverse pass over a model's graph (rnncli/core/model.py): record a forward pass that
keeps what the backward pass needs, then walk it backwards.

:func:`record` evaluates the graph node by node as ``Model.run`` does, keeping each call's
inputs and outputs and, for recurrent layers, the traced run (its terms are the forward
quantities back-propagation through time needs). :func:`backpropagate` takes the gradient
of some outputs and returns the gradient of the input, of every weight and, per recurrent
layer, of its hidden states at every step. The backward of a recurrent layer is in
rnncli/core/bptt.py, of the others in rnncli/core/layer_grads.py.

Memory: every tensor of the graph and each recurrent layer's trace, O(B·T·H) per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError, ModelFileError, UnsupportedLayerError
from . import bptt, layer_grads
from .layers import Op
from .model import ALL_OUTPUTS, Ref, _flatten, _strip_masks
from .result import Trace


@dataclass
class Call:
    """One node of the graph as the forward pass ran it."""

    layer: object
    inputs: list  # the values it took (masks stripped); for a recurrent layer x then states
    refs: list  # the Ref each input came from (None for constants and given states)
    outputs: list  # (value, mask) pairs, as Model.run passes them on
    kwargs: dict = field(default_factory=dict)
    result: object = None  # a recurrent layer's LayerResult (traced)
    initial: tuple | None = None  # the states a recurrent layer started from (None: zeros)


@dataclass
class Tape:
    x: np.ndarray  # the input as the model consumed it
    calls: dict  # (layer name, node index) -> Call, in the order they ran
    outputs: list  # the model's outputs: ((layer name, node index), tensor index)
    engine: object = None  # the loop that ran (rnncli.core.engine.Engine): the backward runs its own

    def output(self, i):
        """(value, mask) of model output ``i``."""
        key, t = self.outputs[i]
        return self.calls[key].outputs[t]


@dataclass
class Grads:
    input: np.ndarray | None  # dL/dx
    weights: dict  # layer name -> {weight name: dL/dw}
    recurrent: dict  # layer name -> bptt.LayerGrads


def record(model, x, initial_state=None, engine=None) -> Tape:
    """Run ``model`` on ``x`` keeping every call's inputs and outputs (a traced run for
    recurrent layers). Raises UnsupportedLayerError for a layer on the way that rnncli
    cannot compute."""
    x = model.check_input(x)
    init = model.initial_states(initial_state, x.shape[0])
    input_names = {r.layer for r in model.inputs}
    calls: dict = {}

    def tensor(ref):
        if ref.layer in input_names:
            return (x, None)
        key = (ref.layer, ref.node)
        if key not in calls:
            calls[key] = evaluate(key)
        outs = calls[key].outputs
        if ref.tensor >= len(outs):
            raise ModelFileError(f"layer {ref.layer!r} has no output {ref.tensor}")
        return outs[ref.tensor]

    def resolve(obj):
        if isinstance(obj, Ref):
            return tensor(obj)
        if isinstance(obj, list):
            return [resolve(o) for o in obj]
        if isinstance(obj, dict):
            return {k: resolve(v) for k, v in obj.items()}
        return obj

    def evaluate(key):
        node = model.nodes.get(key)
        if node is None:
            raise ModelFileError(f"the model's graph names layer {key[0]!r}, which is not in it")
        return _call(node, resolve(node.args), resolve(node.kwargs), init, engine)

    outputs = []
    with np.errstate(over="ignore", invalid="ignore"):
        for r in model.outputs:
            tensor(Ref(r.layer, r.node, 0))
            key = (r.layer, r.node)
            if r.layer in input_names:
                raise UnsupportedLayerError("the model's output is its input; there is "
                                            "nothing to differentiate")
            n = len(calls[key].outputs) if r.tensor == ALL_OUTPUTS else 1
            outputs += [(key, t) for t in (range(n) if r.tensor == ALL_OUTPUTS else [r.tensor])]
        for key, node in model.nodes.items():  # recurrent layers off the output path
            if node.layer.recurrent and key not in calls:
                try:
                    calls[key] = evaluate(key)
                except (UnsupportedLayerError, InputDataError):
                    pass
    tensor = resolve = evaluate = None  # noqa: F811, F841  (cut the closures' reference cycle)
    return Tape(x, calls, outputs, engine)


def _call(node, args, kwargs, init, engine) -> Call:
    """One node, as Model._call runs it, keeping what the backward pass needs."""
    layer = node.layer
    if isinstance(layer, Op):
        vals = _strip_masks(args)
        kw = {k: _strip_masks(v) for k, v in kwargs.items() if k not in ("mask", "training")}
        return Call(layer, list(_flatten(vals)), _refs(node.args),
                    [(layer.call(*vals, **kw), None)], kw)
    first, first_ref = args[0], node.args[0]
    extra, extra_refs = (args[1:], node.args[1:]) if layer.recurrent else ([], [])
    if isinstance(first, list) and len(first) and isinstance(first[0], tuple):
        extra, extra_refs = first[1:], first_ref[1:]
        first, first_ref = first[0], first_ref[0]
    xv, mask = first
    if kwargs.get("mask") is not None:
        mask = _strip_masks(kwargs["mask"])
    ref = first_ref if isinstance(first_ref, Ref) else None
    if not layer.recurrent:
        return Call(layer, [xv], [ref], [layer.call(xv, mask)])
    h0 = init.get(layer.name)
    state_refs = []
    given = kwargs.get("initial_state")
    if given is not None:
        extra = given if isinstance(given, list) else [given]
        extra_refs = node.kwargs["initial_state"]
        extra_refs = extra_refs if isinstance(extra_refs, list) else [extra_refs]
    if extra:
        h0 = layer.initial_state_from([s[0] for s in extra], np.shape(xv)[0])
        state_refs = [r if isinstance(r, Ref) else None for r in extra_refs]
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.ndim != 2:
            raise InputDataError(f"layer {layer.name!r}: mask must be (batch, timesteps)")
    if h0 is None:  # the state the file stores (ONNX initial_h), else zeros
        h0 = layer.stored_initial_state(np.shape(xv)[0])
    light = bptt.states_suffice(layer, np.shape(xv), mask, engine)
    trace = False if light else bptt.trace_needed(layer)
    result = layer.call(xv, mask, h0, trace=trace, keep=True, engine=engine)
    if light:
        _state_traces(layer, result, xv, mask)
    return Call(layer, [xv, *[s[0] for s in extra]], [ref, *state_refs], result.outputs,
                result=result, initial=h0)


def _state_traces(layer, result, x, mask):
    """Give each direction of an untraced run the trace its backward pass reads: ``h``
    (its kept sequence), and the input and mask in processing order (as RNN.run makes
    them)."""
    for name, lay in layer.directions.items():
        d = result.directions[name]
        xd = np.asarray(x).astype(lay.dtype, copy=False)
        md = None if mask is None else np.asarray(mask, bool)
        T = xd.shape[1]
        order = np.arange(T)[::-1] if lay.go_backwards else np.arange(T)
        if lay.go_backwards:
            xd, md = xd[:, ::-1], (None if md is None else md[:, ::-1])
        if md is not None and md.all():
            md = None
        d.trace = Trace(lay.cell, {"h": d.sequences["h"]}, md, order, xd)


def _refs(args):
    return [a if isinstance(a, Ref) else None for a in _flatten(args)]


def backpropagate(tape, seeds: dict, logit_seeds: dict | None = None,
                  jacobian=False) -> Grads:
    """Gradients of every input, weight and recurrent layer's hidden states, from
    ``seeds``: {((layer name, node index), tensor index): dL/d(that output)};
    ``logit_seeds``: {(layer name, node index): dL/d(its pre-activation)} from a loss
    that used the logits (rnncli/core/losses.py). ``jacobian``: also each recurrent
    layer's ||dh_{T-1}/dh_t|| (True), or for some samples (a list of indices)."""
    logit_seeds = logit_seeds or {}
    grads: dict = {}
    for (key, t), g in seeds.items():
        _add(grads.setdefault(key, {}), t, g)
    weights: dict = {}
    recurrent: dict = {}
    g_input = None
    for key in reversed(list(tape.calls)):
        call = tape.calls[key]
        layer = call.layer
        g_out = [grads.get(key, {}).get(i) for i in range(len(call.outputs))]
        g_pre = logit_seeds.get(key)
        if layer.recurrent:
            run = bptt.bidirectional_backward if hasattr(layer, "forward_layer") \
                else bptt.rnn_backward
            lg = run(layer, call.result, call.initial, g_out, jacobian, tape.engine)
            recurrent.setdefault(layer.name, lg)
            in_grads = [lg.x, *_state_grads(layer, call, lg.initial)]
            w = {(f"{d}/{k}" if d else k): v for d, dg in lg.directions.items()
                 for k, v in dg.weights.items()}
        elif all(g is None for g in g_out) and g_pre is None:
            continue
        else:
            in_grads, w = layer_grads.backward(layer, call.inputs,
                                               [o[0] for o in call.outputs], g_out, g_pre,
                                               call.kwargs)
        acc = weights.setdefault(layer.name, {})
        for k, v in w.items():
            acc[k] = v if k not in acc else acc[k] + v
        for ref, value, g in zip(call.refs, call.inputs, in_grads):
            if ref is None or g is None:
                continue
            g = np.asarray(g).astype(np.asarray(value).dtype, copy=False)
            if (ref.layer, ref.node) in tape.calls:
                _add(grads.setdefault((ref.layer, ref.node), {}), ref.tensor, g)
            else:  # the model's input
                g_input = g if g_input is None else g_input + g
    return Grads(g_input, weights, recurrent)


def _add(d, i, g):
    d[i] = g if d.get(i) is None else d[i] + g


def _state_grads(layer, call, g_initial):
    """dL/d(each state input) of a recurrent call: one per given state; a Bidirectional
    layer's single (B, 2H) state gets its two halves back side by side."""
    n = len(call.refs) - 1
    if n == 0:
        return []
    if n == len(g_initial):
        return list(g_initial)
    if n == 1 and len(g_initial) == 2:
        return [np.concatenate(g_initial, axis=-1)]
    return [None] * n
