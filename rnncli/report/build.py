"""``rnncli report``: one HTML page for a model, an input and a sample — the summary, every
recurrent layer's states (and gates) as heatmaps, how each step's z is made, the weights;
with gradients when asked. The adapter from rnncli's results to the pictures."""

from __future__ import annotations

import numpy as np

from . import Page, heatmap, histogram, line_plot, stacked_bars


def report(model, result, sample=0, sample_label=None, gradients=None, summary=None,
           steps=None, units=None, gradient_sample=None, batch=None) -> str:
    """The page, as HTML text. ``result``: a traced run; ``sample``: the row of ``result``
    to show (numbered ``sample_label`` in the input); ``gradients``: what
    ``rnncli.core.gradients`` returns, or None; ``summary``: rnncli.present.summary's
    ``describe(model)``; ``steps`` (a slice of processing steps) and ``units`` (indices)
    narrow the state pictures. ``gradient_sample``: the row of ``gradients`` to show (default
    ``sample``); ``batch``: how many samples the loss was computed over, said on the page."""
    label = sample if sample_label is None else sample_label
    src = model.source
    import os

    where = src.get("path") or f"seed {src.get('seed')}"
    page = Page(f"rnncli report: {os.path.basename(where)}",
                f"{where}: {src.get('title', '')}; sample {label}")
    if summary is not None:
        _summary(page, summary)
    for name, r in result.layers.items():
        for direction, d in r.directions.items():
            _layer(page, name, direction, d, sample, steps or slice(None), units)
    if gradients is not None:
        _gradients(page, gradients, model,
                   sample if gradient_sample is None else gradient_sample, batch, label)
    for layer in model.layers:
        _weights(page, layer)
    return page.render()


def _summary(page, info):
    page.table([(la["name"], la["class_name"], la["output_shape"], f"{la['params']:,}",
                 la["config"]) for la in info["layers"]],
               header=["layer", "type", "output shape", "params", "config"],
               heading="The model", caption=f"{info['total_params']:,} parameters")
    if info["recurrence"]:
        page.table([(r["name"], f"{r['spectral_radius']:.4f}", f"{r['max_singular_value']:.4f}",
                     r["reading"]) for r in info["recurrence"]],
                   header=["recurrent kernel", "spectral radius ρ", "norm σ", "reading"],
                   heading="Recurrent kernels")


def _layer(page, name, direction, d, b, steps, units):
    where = f"{name} {direction}".strip()
    tr = d.trace
    T, H = d.sequence.shape[1:]
    t = np.arange(T)[steps]
    u = np.arange(H) if units is None else np.asarray(units)
    masked = None
    if tr is not None and tr.mask is not None:
        masked = ~np.asarray(tr.mask[b], bool)[t]
    cols = [f"t={int(i)}" for i in (tr.step_index[t] if tr is not None else t)]

    def grid(a):  # (T, H) of sample b -> (units, steps) as shown
        return np.asarray(a)[b][np.ix_(t, u)].T

    page.section(f"{where}: hidden state h", heatmap(
        grid(d.sequence), row_labels=[f"h{i}" for i in u], col_labels=cols,
        masked_cols=masked, title=f"{where} h (units × steps, processing order)"))
    if "c" in d.sequences:
        page.section(f"{where}: cell state c", heatmap(
            grid(d.sequences["c"]), row_labels=[f"c{i}" for i in u], col_labels=cols,
            masked_cols=masked, title=f"{where} c"))
    if tr is None:
        return
    cell = tr.cell
    if cell.gates:
        for g, values in tr.per_gate("gate").items():
            page.section(f"{where}: gate {g}", heatmap(
                grid(values), row_labels=[f"{g}{i}" for i in u], col_labels=cols,
                masked_cols=masked, diverging=cell.gate_activation(g) == "tanh",
                title=f"{where} {cell.gate_title(g)} = {cell.gate_activation(g)}(z_{g})"))
    parts = {"x·W": np.abs(tr["xw"][b][t]).sum(-1), "h·U": np.abs(tr["hu"][b][t]).sum(-1),
             "b": np.broadcast_to(np.abs(tr["bias"]).sum(), len(t))}
    total = sum(parts.values())
    total = np.where(total > 0, total, 1)
    page.section(f"{where}: what z is made of", stacked_bars(
        {k: v / total for k, v in parts.items()}, x_labels=cols,
        title=f"{where}: share of |x·W|, |h·U| and |b| in each step's z"),
        caption=_saturation(tr, b))


def _saturation(tr, b):
    """Saturated (bounded activation within 1% of a bound) and dead (relu) units."""
    from ..core.activations import BOUNDS

    h, act = tr["h"][b], tr.activation
    if act in BOUNDS:
        lo, hi = BOUNDS[act]
        near = (h - lo < 0.01 * (hi - lo)) | (hi - h < 0.01 * (hi - lo))
        units = np.flatnonzero(near.mean(0) > 0.5)
        return (f"units saturated at most steps: {', '.join(map(str, units))}" if units.size
                else "no unit saturated at most steps")
    if act in ("relu", "relu6") and "z" in tr:
        z = tr["z"][b][..., :h.shape[-1]]
        units = np.flatnonzero((z <= 0).all(0))
        return f"dead units (z <= 0 at every step): {', '.join(map(str, units)) or 'none'}"
    return None


def _weights(page, layer):
    weights = layer.weights()
    if not weights:
        return
    cell = getattr(layer, "cell", None)
    for wname, w in weights.items():
        w = np.asarray(w)
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2:
            continue
        gates = cell.gates if cell is not None and ("kernel" in wname or "bias" in wname) \
            else ()
        H = cell.units if cell is not None else None
        cols = [f"{gates[j // H]}{j % H}" if gates and H and w.shape[1] == len(gates) * H
                else str(j) for j in range(w.shape[1])]
        page.section(f"{layer.name}: {wname}", heatmap(
            w, row_labels=[f"row {i}" for i in range(w.shape[0])], col_labels=cols,
            title=f"{layer.name} {wname} {tuple(np.shape(w))}"), caption=None)
        if w.size >= 8:  # (a histogram of a few values says less than the heatmap)
            page.section(f"{layer.name}: {wname}, histogram", histogram(
                w.ravel(), title=f"{layer.name} {wname}: {w.size} values"))


def _gradients(page, grads, model, b, batch=None, label=None):
    from ..core.diagnosis import jacobian_bound

    if batch is not None:
        loss = float(np.asarray(grads["loss"]))
        page.section("gradients: which loss", "", caption=(
            f"loss = {loss:.6g}, computed over the whole batch of {batch} sample(s) as "
            f"`rnncli grad` and Keras compute it (a mean over the batch: each sample's "
            f"gradient is 1/{batch} of what its loss alone would give); the pictures below "
            f"show sample {label}'s part of it."))

    for key, norms in grads.items():
        if not key.startswith("jacobian_norm/"):
            continue
        layer = key.split("/", 1)[1]
        series = {"‖dh_{T-1}/dh_t‖": norms[b]}
        gh = grads.get(f"grad_hidden/{layer}")
        if gh is not None:
            series["‖dL/dh_t‖"] = np.linalg.norm(gh[b], axis=-1)
        name, _, direction = layer.partition("/")
        found = model.get_layer(name)
        cell = found.directions.get(direction or "", found).cell if found.recurrent else None
        bound = None if cell is None else jacobian_bound(cell, norms.shape[-1])
        if bound is not None:
            series["bound (γ·σ)^(T-1-t)"] = bound[b] if np.ndim(bound) > 1 else bound
        page.section(f"{layer}: gradients through time", line_plot(
            series, log_y=True, title=f"{layer}: how the gradient travels back",
            x_label="step t", y_label="norm", dashed=("bound (γ·σ)^(T-1-t)",)))
    gi = grads.get("grad_input")
    if gi is not None and np.ndim(gi) == 3:
        page.section("input saliency", heatmap(
            np.abs(gi[b]).T, diverging=False, title="|dL/dx| (features × steps)",
            row_labels=[f"x{i}" for i in range(gi.shape[-1])]))
