"""``report``: one self-contained HTML page a person can read (docs/report.md)."""

from __future__ import annotations

import click

from .app import cli, note
from .options import get_model, input_options, load_inputs, model_input, model_options, run_model


@cli.command(short_help="Write one offline HTML page: states, gates and weights as pictures.")
@model_options
@input_options
@click.option("-o", "--output", required=True, metavar="PATH", help="The .html file to write.")
@click.option("--sample", default="0", show_default=True, metavar="INDEX",
              help="The sample to show.")
@click.option("--steps", metavar="SLICE", help="Timesteps to show, e.g. 0:100.")
@click.option("-u", "--unit", "unit_list", metavar="LIST", help="Units to show, e.g. 0:16.")
@click.option("--target", metavar="PATH", help="Targets: adds the gradient section.")
@click.option("--loss", default="mse", show_default=True, metavar="LOSS",
              help="With --target: mse, mae, binary_crossentropy, categorical_crossentropy, "
              "sparse_categorical_crossentropy.")
@click.option("--of", "of", metavar="output[:UNIT][@STEP]",
              help="Without --target: the gradient of one output unit (saliency).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def report(model, seed, units, input_dim, cell, overrides, input_path, key, initial_state,
           strict, output, sample, steps, unit_list, target, loss, of, force):
    """Write one HTML page: the model, every recurrent layer's states (and LSTM/GRU
    gates) as heatmaps over time, what each step's z is made of, the weights; with
    --target or --of, how the gradient travels back. Opens offline; nothing is fetched.

    \b
    Examples:
      rnncli report sample_weights/seed002_batch_state.keras -i sample_weights/seed002_input.npy -o report.html
      rnncli report model.keras -i x.npy --sample 3 --steps 0:200 -o r.html
    """
    from ..io.atomic import open_output
    from ..present.select import selection
    from ..present.summary import describe
    from ..present.views import parse_index_list
    from ..report.build import report as build

    if not output.lower().endswith((".html", ".htm")) and output != "-":
        raise click.UsageError(f"-o {output}: expected a .html file")
    from ..io.atomic import check_target

    check_target(output, force)
    data, h0 = load_inputs(input_path, key, initial_state)
    m = get_model(model, seed, units, input_dim, overrides, data, cell)
    x = model_input(m, data, strict)
    chosen = parse_index_list(sample, "sample", x.shape[0])
    if len(chosen) != 1:
        raise click.UsageError(f"--sample {sample}: a report shows one sample")
    result = run_model(m, data, x, h0, True, chosen)
    grads = None
    if target or of:
        from ..core.engine import Engine
        from ..io.inputs import read_target

        # the loss of the whole batch, as `rnncli grad` and Keras compute it (a mean over
        # the batch); the page shows the chosen sample's rows of it
        y = read_target(target, None, m, x) if target else None
        grads = m.gradients(x, y, loss, of, h0, jacobian=chosen,
                            engine=Engine(one_shot=True))
    sel = selection(result, steps, unit_list)  # an empty one is an error, as in forward
    html = build(m, result, 0, chosen[0], grads, describe(m), sel.steps, sel.units,
                 gradient_sample=chosen[0], batch=x.shape[0] if target else None)
    with open_output(output, "w", force) as fh:
        fh.write(html)
    if output != "-":
        note(f"wrote {output} ({len(html) / 1e6:.2f} MB)")
