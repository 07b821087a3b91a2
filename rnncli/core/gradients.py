"""``Model.gradients``: the exact backward pass of a model, by the names ``rnncli grad``
writes (docs/export.md).

    >>> g = model.gradients(x, target=y, loss="mse")
    >>> g["loss"], g["grad_input"], g["grad/simple_rnn/recurrent_kernel"]
    >>> g["grad_hidden/simple_rnn"], g["jacobian_norm/simple_rnn"]

What is differentiated is either a Keras loss against a target (rnncli/core/losses.py:
what ``model.compile(loss=...)`` trains on) or, without a target, ``of``: the sum over
the batch of one output unit (saliency).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import InputDataError, UsageError
from . import backprop, layer_grads, losses

OF_PATTERN = re.compile(r"^(?P<out>output(?:_\d+)?)(?::(?P<unit>-?\d+))?(?:@(?P<step>-?\d+))?$")


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def gradients(model, x, target=None, loss="mse", of=None, initial_state=None, jacobian=True,
              engine=None) -> dict:
    """The gradients of a loss (or of one output, ``of``) for input ``x``, by name:

    - ``loss``: the value differentiated, a 0-d array (with ``of``: the output's sum);
    - ``grad_input``: dL/dx, the input's shape (float inputs into a first layer that
      takes features only: token ids into an Embedding, even as floats, have none);
    - ``grad/<layer>/<weight>``: dL/dw for every weight, by Keras' names
      (``grad/<layer>/forward/<weight>`` and ``.../backward/...`` for Bidirectional);
    - ``grad_hidden/<layer>`` (``/forward``, ``/backward``): dL/dh_t (B, T, H), the total
      derivative (through later steps too), in the order the layer's hidden states are
      (reversed time for go_backwards);
    - ``jacobian_norm/<layer>`` (same): ||dh_{T-1}/dh_t||_2 (B, T), 1 at the last step;
      it costs O(B·T·H³) (the rest O(B·T·H²)): ``jacobian=False`` skips it, a list of
      sample indices computes those rows only (NaN in the others).

    ``target``: an array like the model's output (class ids for
    ``sparse_categorical_crossentropy``), or a list of them, one per model output (their
    losses add up, as Keras sums a model's losses); one array with several outputs goes
    with the first. ``loss``: ``mse``, ``mae``, ``binary_crossentropy``,
    ``categorical_crossentropy`` or ``sparse_categorical_crossentropy``, with Keras'
    default reduction. ``of``: ``"output[_N][:UNIT][@STEP]"``: the sum over the batch of
    output N's unit UNIT (every unit when left out) at step STEP of a sequence output (the
    last when left out). ``initial_state`` as ``Model.run`` takes it.
    """
    if (target is None) == (of is None):
        raise UsageError("gradients need either a target (and a loss) or of=OUTPUT[:UNIT]"
                         "[@STEP]; expected exactly one of them")
    tape = backprop.record(model, x, initial_state, engine)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if of is not None:
            value, seeds, logit_seeds = _of(tape, of)
        else:
            value, seeds, logit_seeds = _loss(tape, target, loss)
        g = backprop.backpropagate(tape, seeds, logit_seeds, jacobian)
    out = {"loss": value}
    if tape.x.dtype.kind == "f" and not model.takes_token_ids:
        out["grad_input"] = g.input if g.input is not None else np.zeros_like(tape.x)
    for layer in model.layers:
        got = g.weights.get(layer.name, {})
        for name, w in layer.weights().items():
            gw = got.get(name)
            out[f"grad/{layer.name}/{name}"] = np.zeros_like(w) if gw is None else \
                np.asarray(gw).astype(w.dtype, copy=False)
    for name, lg in g.recurrent.items():
        for d, dg in lg.directions.items():
            out[f"grad_hidden/{name}/{d}" if d else f"grad_hidden/{name}"] = dg.hidden
    if jacobian is not False and jacobian is not None:
        for name, lg in g.recurrent.items():
            for d, dg in lg.directions.items():
                out[f"jacobian_norm/{name}/{d}" if d else f"jacobian_norm/{name}"] = \
                    dg.jacobian
    return out


def _loss(tape, target, loss):
    loss = losses.normalize(loss)
    n = len(tape.outputs)
    targets = list(target) if isinstance(target, (list, tuple)) and n > 1 else [target]
    if len(targets) > n:
        raise InputDataError(f"{len(targets)} targets for a model of {n} outputs; expected "
                             f"at most one per output")
    total, seeds, logit_seeds = None, {}, {}
    for i, t in enumerate(targets):
        y, mask = tape.output(i)
        key, ti = tape.outputs[i]
        call = tape.calls[key]
        logits = layer_grads.logits(call.layer, call.inputs) if ti == 0 and \
            loss in losses.CROSSENTROPIES else None
        lv = losses.compute(loss, y, t, mask, logits)
        (logit_seeds if lv.through_logits else seeds)[key if lv.through_logits else
                                                      (key, ti)] = lv.grad
        total = lv.value if total is None else total + lv.value
    return np.asarray(total), seeds, logit_seeds


def parse_of(of) -> tuple:
    """``"output[_N][:UNIT][@STEP]"`` -> (N, UNIT or None, STEP or None)."""
    m = OF_PATTERN.match(str(of).strip())
    if not m:
        raise UsageError(f"of={of!r} is not OUTPUT[:UNIT][@STEP]; expected e.g. output, "
                         f"output:0, output_1:3@-1")
    name = m["out"]
    index = int(name.split("_")[1]) if "_" in name else 0
    unit = None if m["unit"] is None else int(m["unit"])
    step = None if m["step"] is None else int(m["step"])
    return index, unit, step


def _of(tape, of):
    index, unit, step = parse_of(of)
    n = len(tape.outputs)
    if index >= n:
        raise UsageError(f"of={of!r}: the model has {n} output(s); expected output"
                         f"{'' if n == 1 else f' to output_{n - 1}'}")
    y, _ = tape.output(index)
    y = np.asarray(y)
    sel = [slice(None)] * y.ndim
    if y.ndim == 3:
        T = y.shape[1]
        s = -1 if step is None else step
        if not -T <= s < T:
            raise UsageError(f"of={of!r}: step {s} is out of range; the output has "
                             f"{_count(T, 'step')} (0 to {T - 1}, or from -1 back)")
        sel[1] = s
    elif step is not None:
        raise UsageError(f"of={of!r}: output {index} has no steps (shape {y.shape}); "
                         f"leave out @STEP")
    if unit is not None:
        U = y.shape[-1]
        if not -U <= unit < U:
            raise UsageError(f"of={of!r}: unit {unit} is out of range; the output has "
                             f"{_count(U, 'unit')} (0 to {U - 1}, or from -1 back)")
        sel[-1] = unit
    g = np.zeros_like(y)
    g[tuple(sel)] = 1
    value = np.asarray(np.sum(y[tuple(sel)], dtype=y.dtype))
    return value, {tape.outputs[index]: g}, {}


def objective(model, x, target=None, loss="mse", of=None, initial_state=None, engine=None):
    """The value :func:`gradients` differentiates, from the forward pass alone."""
    tape = backprop.record(model, x, initial_state, engine)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return (_of(tape, of) if of is not None else _loss(tape, target, loss))[0]


def in_float64(model):
    """A copy of ``model`` computing in float64 (every weight cast)."""
    import copy

    model = copy.deepcopy(model)
    for layer in model.layers:
        holders = [d.cell for d in layer.directions.values()] if layer.recurrent else \
            [getattr(layer, "inner", layer)]
        for obj in holders:
            for attr in ("kernel", "recurrent_kernel", "bias", "embeddings"):
                v = getattr(obj, attr, None)
                if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                    # C order: check perturbs entries through reshape(-1), which must be
                    # a view (a random LSTM's orthogonal recurrent_kernel is a transpose)
                    setattr(obj, attr, v.astype(np.float64, order="C"))
    return model


def check(model, x, grads, target=None, loss="mse", of=None, initial_state=None, n=12,
          seed=0) -> dict:
    """Central finite differences, in float64, of a few random entries of ``grads`` (what
    :func:`gradients` returned): ``{"entries": [(name, index, gradient, finite
    difference, relative error)], "max_relative_error": float}``. Costs two forward
    passes per entry."""
    rng = np.random.default_rng(seed)
    m64 = in_float64(model)
    x = model.check_input(x)
    x64 = x.astype(np.float64) if x.dtype.kind == "f" else x
    arrays = {}
    if "grad_input" in grads and x64.dtype.kind == "f" and not model.takes_token_ids:
        arrays["grad_input"] = x64
    for layer in m64.layers:
        for name, w in layer.weights().items():
            arrays[f"grad/{layer.name}/{name}"] = w
    names = list(arrays)
    picks = [names[i % len(names)] for i in rng.permutation(max(n, len(names)))[:n]] \
        if names else []
    entries = []
    for name in picks:
        a = arrays[name]
        # a cell's weights are read-only (rnncli/core/cell.py); while writeable, the
        # compiled loop packs them afresh every scan instead of keeping their packing
        frozen = not a.flags.writeable
        a.flags.writeable = True
        try:
            flat = a.reshape(-1)
            i = int(rng.integers(flat.size))
            old = flat[i]
            eps = 1e-6 * max(1.0, abs(old))
            values = []
            for v in (old + eps, old - eps):
                flat[i] = v
                values.append(float(objective(m64, x64, target, loss, of, initial_state)))
            flat[i] = old
        finally:
            a.flags.writeable = not frozen
        fd = (values[0] - values[1]) / (2 * eps)
        got = float(np.asarray(grads[name]).reshape(-1)[i])
        err = abs(got - fd) / max(abs(got), abs(fd), 1e-12)
        entries.append((name, np.unravel_index(i, a.shape), got, fd, err))
    return {"entries": entries,
            "max_relative_error": max((e[-1] for e in entries), default=0.0)}
