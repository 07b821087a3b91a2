"""``forward`` and ``trace``: run the model on an input and show states or arithmetic."""

from __future__ import annotations

import click

from .app import cli, note
from .options import (
    console_for,
    emit,
    format_for,
    get_model,
    input_options,
    load_inputs,
    model_input,
    model_options,
    output_options,
    run_model,
    view_options,
)

FORMATS = ("table", "csv", "tsv", "json", "ndjson", "npy")


def _prepare(model, seed, units, input_dim, cell, overrides, input_path, key, initial_state,
             strict, sample, fmt, show_all, trace):
    """Model, input, and a run on the samples the command will show."""
    from ..present.select import samples_to_show

    data, h0 = load_inputs(input_path, key, initial_state)
    m = get_model(model, seed, units, input_dim, overrides, data, cell)
    x = model_input(m, data, strict)
    samples, message = samples_to_show(x.shape[0], sample, fmt, show_all)
    if message:
        note(message)
    return m, x, run_model(m, data, x, h0, trace, samples), samples


@cli.command()
@model_options
@input_options
@view_options
@click.option("--with-input", is_flag=True,
              help="Tables: show each step's input features (or token id) beside the states.")
@click.option("--heatmap", is_flag=True,
              help="Show the states as a units × steps heatmap (steps pooled to fit) instead "
              "of a table.")
@output_options(FORMATS)
def forward(model, seed, units, input_dim, cell, overrides, input_path, key, initial_state,
            strict, layer_keys, sample, steps, unit_list, precision, show_all, with_input,
            heatmap, fmt, output, force, color, width):
    """Run the forward pass and show the hidden state at every timestep.

    \b
    Examples:
      rnncli forward sample_weights/seed000_two_units.keras -i sample_weights/seed000_input.csv
      rnncli forward --seed 1 --units 2 -i x.csv -f csv | sort -t, -k3
      rnncli forward model.keras -i batch.npy --sample 0 --steps -5: --unit 0:4
    """
    from ..io.atomic import check_target
    from ..present.select import layers_to_show, relabel, selection
    from ..present.views import states_view

    fmt = format_for(output, fmt, FORMATS)
    check_target(output, force, fmt)
    m, x, result, samples = _prepare(model, seed, units, input_dim, cell, overrides,
                                     input_path, key, initial_state, strict, sample, fmt,
                                     show_all, trace=False)
    if result.outputs is None and fmt in ("table", "json") and \
            not any(la.reason in result.output_error for la in m.unsupported):
        note(f"model output not computed: {result.output_error}")
    sel = selection(result, steps, unit_list)
    keys, message = layers_to_show(m, result, layer_keys, fmt)
    if message:
        note(message)
    views = relabel([states_view(result, n, sel, d)
                     for n, _, d in (k.partition("/") for k in dict.fromkeys(keys))], samples)
    shown_input = None
    if with_input:
        shown_input = x[..., None] if x.ndim == 2 else x  # token ids: one column
        if samples is not None:
            shown_input = shown_input[samples]

    def write(fh):
        from ..io import formats

        if fmt == "table":
            from ..present.render import heatmaps, output_tables, states_tables

            console = console_for(fh, color, width)
            items = heatmaps(views, m, console) if heatmap else \
                states_tables(views, m, precision, show_all, console.width, shown_input)
            for item in items:
                console.print(item)
            if result.outputs is not None:
                shown = {v.layer: result.layers[v.layer].hidden for v in views
                         if not v.direction and result.layers[v.layer].hidden is not None}
                for item in output_tables(result.outputs, views[0].samples, shown, precision,
                                          show_all, width=console.width):
                    console.print(item)
        elif fmt in ("csv", "tsv", "ndjson"):
            formats.write_states(views, fmt, fh, precision)
        elif fmt == "json":
            import json

            json.dump(formats.states_document(views, result.outputs, precision, m.source), fh)
            fh.write("\n")
        elif fmt == "npy":
            if len(views) != 1:
                raise click.UsageError("npy holds one array: choose one layer with --layer")
            fh.write(formats.npy_bytes(views[0].values))

    emit(output, fmt, force, write)


@cli.command(short_help="Show the arithmetic of every step (per gate for LSTM and GRU).")
@model_options
@input_options
@view_options
@click.option("--gate", "gates", multiple=True, metavar="NAME[,NAME]",
              help="LSTM/GRU: the gates to show (i f c o; z r h) and/or state (default: "
              "all).")
@click.option("--terms", is_flag=True, help="Also show each input feature's share x_i·W_ij.")
@click.option("--heatmap", "heatmap_term", metavar="COLUMN",
              help="Show one column of the trace (e.g. z, hu, or gate with --gate f) as a "
              "units × steps heatmap instead of tables.")
@output_options(FORMATS)
def trace(model, seed, units, input_dim, cell, overrides, input_path, key, initial_state,
          strict, layer_keys, sample, steps, unit_list, precision, show_all, gates, terms,
          heatmap_term, fmt, output, force, color, width):
    """Show the arithmetic of every step, per unit: z = x·W + h·U + b and h = f(z) for a
    SimpleRNN; each gate's x·W, h·U, b, z and value, then the state update, for LSTM
    and GRU.

    Steps are in processing order (reversed input time for go_backwards layers); the `t`
    column names the input timestep. Notes flag saturated units (tanh/sigmoid near their
    bounds, gates below 0.1 or above 0.9), dead ones (relu with z <= 0) and masked steps.

    \b
    Examples:
      rnncli trace sample_weights/seed000_two_units.keras -i sample_weights/seed000_input.csv
      rnncli trace model.h5 -i x.npy --sample 0 --steps 0:5 --terms
      rnncli trace lstm.keras -i x.npy --gate f,state -f csv -o trace.csv
    """
    from ..io.atomic import check_target
    from ..present.select import layers_to_show, relabel, selection, split_names
    from ..present.views import gated_sections, trace_views

    fmt = format_for(output, fmt, FORMATS)
    check_target(output, force, fmt)
    # every step's terms are written by the loop as it scans; with --steps, those steps'
    # alone are computed after it (rnncli/core/replay.py)
    trace = True if steps else "full"
    m, x, result, samples = _prepare(model, seed, units, input_dim, cell, overrides,
                                     input_path, key, initial_state, strict, sample, fmt,
                                     show_all, trace=trace)
    sel = selection(result, steps, unit_list)
    keys, message = layers_to_show(m, result, layer_keys, fmt)
    if message:
        note(message)
    sections = split_names(gates) or None
    views = []
    for k in keys:
        name, _, direction = k.partition("/")
        views += [v for v in trace_views(result, name, sel, terms, sections)
                  if not direction or v.direction == direction]
    unknown = [s for s in sections or () if s not in {v.section for v in views}]
    if unknown:  # each layer has one of the names at least; this one none has
        from ..errors import UsageError

        raise UsageError(f"--gate {unknown[0]}: no layer shown has that gate or section; "
                         f"expected one of {gated_sections()}")
    views = relabel(views, samples)

    def write(fh):
        from ..io import formats

        if fmt == "table":
            from ..present.render import heatmaps, trace_digits, trace_table

            console = console_for(fh, color, width)
            if heatmap_term:
                for item in heatmaps(views, m, console, heatmap_term):
                    console.print(item)
                return
            digits = trace_digits(views, precision, show_all, console.width)
            for v in views:
                layer = m.get_layer(v.layer)
                for i in range(len(v.samples)):
                    console.print(trace_table(v, layer, i, precision, show_all,
                                              width=console.width, digits=digits))
        elif fmt in ("csv", "tsv", "ndjson"):
            formats.write_trace(views, fmt, fh, precision)
        elif fmt == "json":
            import json

            json.dump(formats.trace_document(views, precision, m.source), fh)
            fh.write("\n")
        elif fmt == "npy":
            if len(views) != 1:
                raise click.UsageError(_one_array(views))
            fh.write(formats.npy_bytes(formats.trace_stack(views[0])))

    emit(output, fmt, force, write)


def _one_array(views):
    """Why a trace's views don't make one npy array: only what is missing is asked for."""
    where = {(v.layer, v.direction) for v in views}
    want = []
    if len({v.layer for v in views}) > 1:
        want.append("one layer with --layer")
    elif len(where) > 1:
        want.append("one direction with --layer LAYER/forward or LAYER/backward")
    sections = sorted({v.section for v in views}, key=[v.section for v in views].index)
    if len(sections) > 1:
        want.append(f"one --gate ({', '.join(sections)})")
    return f"npy holds one array: choose {' and '.join(want)}"
