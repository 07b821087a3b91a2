"""The command line: parse options, call the library, hand results to the renderers.

Heavy imports (numpy, h5py, rich) happen inside the commands so that
``rnncli --help`` starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import click

FORMATS = ("table", "csv", "tsv", "json", "ndjson", "npy")
EXIT_INTERRUPTED = 130


def note(message: str):
    click.echo(f"rnncli: {message}", err=True)


class Failure(click.ClickException):
    """An expected failure: one line on stderr, exit 1."""

    def show(self, file=None):
        click.echo(f"rnncli: error: {self.format_message()}", err=True)


class UsageFailure(Failure):
    """An option's value can't be used: one line on stderr, exit 2 (click's usage code)."""

    exit_code = 2


class RnncliGroup(click.Group):
    """Turns rnncli's own errors into one line on stderr (exit 1), Ctrl-C into exit 130,
    and a closed pipe into a quiet exit."""

    def invoke(self, ctx):
        from .errors import RnncliError, UsageError

        try:
            return super().invoke(ctx)
        except UsageError as e:
            if ctx.obj and ctx.obj.get("traceback"):
                raise
            raise UsageFailure(str(e)) from None
        except RnncliError as e:
            if ctx.obj and ctx.obj.get("traceback"):
                raise
            raise Failure(str(e)) from None
        except KeyboardInterrupt:
            note("interrupted")
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            _quiet_stdout()
            ctx.exit(0)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # a bug: short message unless asked for the traceback
            if ctx.obj and ctx.obj.get("traceback"):
                raise
            raise Failure(
                f"unexpected error: {type(e).__name__}: {e} (run with --traceback or "
                f"RNNCLI_TRACEBACK=1 for details, and please report it)") from None


def _quiet_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.group(cls=RnncliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnncli", prog_name="rnncli")
@click.option("--traceback", is_flag=True, envvar="RNNCLI_TRACEBACK",
              help="Show the full Python traceback on errors (for bug reports).")
@click.pass_context
def cli(ctx, traceback):
    """Look inside Keras SimpleRNN models: hidden states per timestep and the arithmetic
    z = x·W + h·U + b, h = f(z), without Keras.

    \b
    Example:
      rnncli forward sample_weights/seed000_two_units.keras -i sample_weights/seed000_input.csv
    """
    ctx.obj = {"traceback": traceback}


# ---------------------------------------------------------------- option bundles


def model_options(f):
    """MODEL, or --seed/--units/--input-dim for random weights; --set overrides."""
    opts = [
        click.argument("model", required=False, type=click.Path(dir_okay=True)),
        click.option("--seed", type=int, help="Make random weights from this seed instead of "
                     "loading MODEL (Keras' default initializers)."),
        click.option("--units", type=click.IntRange(min=1),
                     help="With --seed: number of units (Keras' `units`)."),
        click.option("--input-dim", type=click.IntRange(min=1),
                     help="With --seed: features per timestep (default: from the input)."),
        click.option("--set", "overrides", multiple=True, metavar="[LAYER.]KEY=VALUE",
                     help="Change a config value, e.g. activation=relu (every recurrent layer) "
                     "or dense.activation=sigmoid; needed for weights-only files whose config "
                     "is not Keras' default."),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def input_options(f):
    opts = [
        click.option("-i", "--input", "input_path", required=True, metavar="PATH",
                     help="Input sequences: CSV/TSV (rows = timesteps), .npy, .npz, or - for "
                     "stdin."),
        click.option("--key", help="Array name inside an .npz input."),
        click.option("--initial-state", type=click.Path(), metavar="PATH",
                     help="Initial hidden state (.npy or CSV), shape (units,) or (batch, units), "
                     "for the first recurrent layer."),
        click.option("--strict", is_flag=True, help="Treat NaN or Inf in the input as an error."),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def view_options(f):
    opts = [
        click.option("--layer", "layer_keys", multiple=True, metavar="NAME|INDEX",
                     help="Recurrent layer(s) to show (default: all for tables, the last one "
                     "for data formats); NAME/forward or NAME/backward for one direction of "
                     "a Bidirectional layer in trace."),
        click.option("--sample", metavar="LIST", help="Samples to show, e.g. 0 or 0,3 or 0:4."),
        click.option("--steps", metavar="SLICE", help="Timesteps to show, e.g. 0:10 or -5:."),
        click.option("-u", "--unit", "unit_list", metavar="LIST",
                     help="Units to show, e.g. 0,2 or 0:8."),
        click.option("--precision", type=click.IntRange(0, 17),
                     help="Decimals to print (default: the shortest exact form)."),
        click.option("--all", "show_all", is_flag=True,
                     help="Show every sample, row and column; don't elide long tables."),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def output_options(f):
    opts = [
        click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
                     show_default=True, help="Output format."),
        click.option("-o", "--output", default="-", metavar="PATH",
                     help="Write to PATH instead of stdout."),
        click.option("--force", is_flag=True, help="Overwrite an existing output file."),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


# ---------------------------------------------------------------- shared steps


def _parse_overrides(pairs):
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(f"{p!r} is not KEY=VALUE", param_hint="--set")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def get_model(model, seed, units, input_dim, overrides, data=None):
    from .keras.random import random_model
    from .models import load_model

    ov = _parse_overrides(overrides)
    if seed is not None:
        if model:
            raise click.UsageError("give MODEL or --seed, not both")
        if units is None:
            raise click.UsageError("--seed needs --units (the number of units)")
        if input_dim is None:
            if data is None:
                raise click.UsageError("--seed needs --input-dim (or an input to take it from)")
            input_dim = data.array.shape[-1]
        act = ov.pop("activation", "tanh")
        return random_model(seed, units, input_dim, activation=act, overrides=ov)
    if units is not None or input_dim is not None:
        raise click.UsageError("--units and --input-dim go with --seed")
    if not model:
        raise click.UsageError("give a MODEL file, or --seed N --units H for random weights")
    m = load_model(model, overrides=ov)
    for n in m.notes:
        note(n)
    for layer in m.unsupported:
        note(f"{layer.reason}; rnncli shows the layers before it")
    return m


def load_inputs(input_path, key, initial_state, strict):
    from .errors import InputDataError
    from .inputs import read_input

    data = read_input(input_path, key)
    if data.has_nonfinite:
        msg = f"{data.name}: input holds NaN or Inf values"
        if strict:
            raise InputDataError(msg + "; expected finite numbers (--strict)")
        note(msg + "; they propagate through the states")
    h0 = None
    if initial_state:
        h0 = read_input(initial_state).array
        if h0.ndim == 3 and h0.shape[0] == 1:  # a CSV is read as one sequence
            h0 = h0[0]
    return data, h0


def model_input(model, data):
    """The input array as ``model`` takes it; errors name the input file."""
    from .errors import InputDataError
    from .inputs import as_model_input

    try:
        return model.check_input(as_model_input(data, model))
    except InputDataError as e:
        if str(e).startswith(data.name):
            raise
        raise InputDataError(f"{data.name}: {e}") from None


def run_model(model, data, x, h0, trace, sample=None, fmt="csv", show_all=False):
    """Run the model on the samples of ``x`` (``data`` as the model takes it) that the
    command will show, and say which those are (None: all). Rows of a batch never
    interact, so a table of 3 samples out of 10,000 costs 3 samples' work and memory, and
    the numbers are the same as in a run on all of them."""
    from .errors import InputDataError
    from .present.views import parse_index_list

    B = x.shape[0]
    samples = parse_index_list(sample, "sample", B) if sample else None
    if samples is None and fmt == "table" and not show_all and B > TABLE_SAMPLES + 1:
        samples = list(range(TABLE_SAMPLES))
        note(f"showing samples 0 to {TABLE_SAMPLES - 1} of {B}; pick others with --sample, "
             f"or --all for every one")
    from .core.engine import Engine

    try:
        return model.run(x, initial_state=h0, trace=trace, samples=samples,
                         engine=Engine(one_shot=True)), samples
    except InputDataError as e:
        if str(e).startswith(data.name) or "initial state" in str(e):
            raise
        raise InputDataError(f"{data.name}: {e}") from None


TABLE_SAMPLES = 3  # samples a table view shows unless --sample or --all says otherwise


def selection(result, steps, unit_list):
    from .present.views import Selection, parse_index_list, parse_slice

    first = next(iter(result.layers.values()), None)
    if first is None:
        from .errors import RnncliError

        why = f": {result.output_error}" if result.output_error else ""
        raise RnncliError(f"the model has no recurrent layer that could be computed{why}")
    steps_sl = parse_slice(steps, "steps") if steps else None
    units = None
    if unit_list:
        H = min(r.hidden.shape[-1] if r.hidden is not None else
                sum(d.sequence.shape[-1] for d in r.directions.values())
                for r in result.layers.values())
        units = parse_index_list(unit_list, "unit", H)
    return Selection(steps_sl, units)


def relabel(views, samples):
    """Views of a run on the chosen samples, numbered as in the input."""
    from dataclasses import replace

    import numpy as np

    if samples is None:
        return views
    return [replace(v, samples=np.asarray(samples)[v.samples]) for v in views]


def pick_layers(model, result, layer_keys, fmt):
    """Layer names to show; a key may name one direction of a Bidirectional layer,
    ``bidi/forward``, which is returned as is."""
    if layer_keys:
        names = []
        for k in layer_keys:
            name, _, direction = str(k).partition("/")
            if direction and direction not in ("forward", "backward"):
                from .errors import RnncliError

                raise RnncliError(f"--layer {k!r}: expected LAYER/forward or LAYER/backward")
            layer = model.get_layer(name)
            names.append(layer.name + (f"/{direction}" if direction else ""))
    elif fmt == "table" or fmt in ("json", "ndjson"):
        names = list(result.layers)
    else:
        names = list(result.layers)[-1:]
        if len(result.layers) > 1:
            note(f"showing layer {names[0]!r}, the last of {len(result.layers)} recurrent layers; "
                 f"pick others with --layer")
    missing = [n for n in names if n.split("/")[0] not in result.layers]
    if missing:
        from .errors import RnncliError

        raise RnncliError(f"layer {missing[0]!r} could not be computed: its input passes "
                          f"through a layer rnncli can't compute")
    return names


def emit(output, fmt, force, write):
    """Run ``write(stream)`` against stdout or an atomically written file."""
    from .io.atomic import open_output

    binary = fmt == "npy"
    with open_output(output, "wb" if binary else "w", force) as fh:
        write(fh)


# ---------------------------------------------------------------- commands


@cli.command()
@model_options
@input_options
@view_options
@click.option("--with-input", is_flag=True,
              help="Tables: show each step's input features (or token id) beside the states.")
@output_options
def forward(model, seed, units, input_dim, overrides, input_path, key, initial_state, strict,
            layer_keys, sample, steps, unit_list, precision, show_all, with_input, fmt, output,
            force):
    """Run the forward pass and show the hidden state at every timestep.

    \b
    Examples:
      rnncli forward sample_weights/seed000_two_units.keras -i sample_weights/seed000_input.csv
      rnncli forward --seed 1 --units 2 -i x.csv -f csv | sort -t, -k3
      rnncli forward model.keras -i batch.npy --sample 0 --steps -5: --unit 0:4
    """
    from .io.atomic import check_target

    check_target(output, force)
    data, h0 = load_inputs(input_path, key, initial_state, strict)
    m = get_model(model, seed, units, input_dim, overrides, data)
    x = model_input(m, data)
    result, samples = run_model(m, data, x, h0, False, sample, fmt, show_all)
    shown_input = None
    if with_input:
        shown_input = x[..., None] if x.ndim == 2 else x  # token ids: one column
    if result.outputs is None and fmt in ("table", "json"):
        note(f"model output not computed: {result.output_error}")
    sel = selection(result, steps, unit_list)
    names = list(dict.fromkeys(n.split("/")[0] for n in pick_layers(m, result, layer_keys, fmt)))
    from .present.views import states_view

    views = relabel([states_view(result, n, sel) for n in names], samples)
    outputs = result.outputs

    def write(fh):
        import numpy as np

        from .io import formats

        if fmt == "table":
            from .present.render import make_console, output_tables, states_table

            console = make_console(file=fh)
            for v in views:
                layer = m.get_layer(v.layer)
                for i, b in enumerate(v.samples):
                    console.print(states_table(
                        _one_sample(v, i), layer, precision, show_all, width=console.width,
                        inputs=None if shown_input is None else np.asarray(shown_input[b])))
            if outputs is not None:
                shown = {n: result.layers[n].hidden for n in names
                         if result.layers[n].hidden is not None}
                for item in output_tables(outputs, views[0].samples, shown, precision,
                                          show_all, width=console.width):
                    console.print(item)
        elif fmt in ("csv", "tsv", "ndjson"):
            for v in views:
                formats.write_states(v, fmt, fh, precision)
        elif fmt == "json":
            import json

            json.dump(formats.states_document(views, outputs, precision, m.source), fh)
            fh.write("\n")
        elif fmt == "npy":
            if len(views) != 1:
                raise click.UsageError("npy holds one array: choose one layer with --layer")
            fh.write(formats.npy_bytes(views[0].values))

    emit(output, fmt, force, write)


def _one_sample(view, i):
    from dataclasses import replace

    return replace(view, samples=view.samples[i:i + 1], values=view.values[i:i + 1],
                   mask=None if view.mask is None else view.mask[i:i + 1])


@cli.command(short_help="Show z = x·W + h·U + b and h = f(z) for every step and unit.")
@model_options
@input_options
@view_options
@click.option("--terms", is_flag=True, help="Also show each input feature's share x_i·W_ij.")
@output_options
def trace(model, seed, units, input_dim, overrides, input_path, key, initial_state, strict,
          layer_keys, sample, steps, unit_list, precision, show_all, terms, fmt, output, force):
    """Show the arithmetic of every step: z = x·W + h·U + b and h = f(z), per unit.

    Steps are in processing order (reversed input time for go_backwards layers); the `t`
    column names the input timestep. Notes flag saturated units (tanh/sigmoid near their
    bounds) and dead ones (relu with z <= 0).

    \b
    Examples:
      rnncli trace sample_weights/seed000_two_units.keras -i sample_weights/seed000_input.csv
      rnncli trace model.h5 -i x.npy --sample 0 --steps 0:5 --terms
      rnncli trace model.keras -i x.csv -f csv -o trace.csv
    """
    from .io.atomic import check_target

    check_target(output, force)
    data, h0 = load_inputs(input_path, key, initial_state, strict)
    m = get_model(model, seed, units, input_dim, overrides, data)
    result, samples = run_model(m, data, model_input(m, data), h0, True, sample, fmt, show_all)
    sel = selection(result, steps, unit_list)
    names = pick_layers(m, result, layer_keys, "table" if fmt in ("csv", "tsv") else fmt)
    from .present.views import trace_views

    views = []
    for key in names:
        name, _, direction = key.partition("/")
        views += [v for v in trace_views(result, name, sel, terms)
                  if not direction or v.direction == direction]
    views = relabel(views, samples)

    def write(fh):
        from .io import formats

        if fmt == "table":
            from .present.render import make_console, trace_table

            console = make_console(file=fh)
            for v in views:
                layer = m.get_layer(v.layer)
                for i in range(len(v.samples)):
                    console.print(trace_table(v, layer, i, precision, show_all,
                                              width=console.width))
        elif fmt in ("csv", "tsv", "ndjson"):
            formats.write_trace(views, fmt, fh, precision)
        elif fmt == "json":
            import json

            json.dump(formats.trace_document(views, precision, m.source), fh)
            fh.write("\n")
        elif fmt == "npy":
            if len(views) != 1:
                raise click.UsageError("npy holds one array: choose one layer with --layer "
                                       "(LAYER/forward or LAYER/backward for Bidirectional)")
            fh.write(formats.npy_bytes(formats.trace_stack(views[0])))

    emit(output, fmt, force, write)


@cli.command(short_help="Layers, parameters, weight statistics, recurrent-kernel spectra.")
@model_options
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def summary(model, seed, units, input_dim, overrides, fmt):
    """Describe a model: layers, shapes, parameters, weight statistics and how the
    recurrent kernels act on the state (spectral radius, largest singular value).

    \b
    Examples:
      rnncli summary sample_weights/seed001_dense_head.keras
      rnncli summary model.weights.h5 -f json
    """
    m = get_model(model, seed, units, input_dim or (1 if seed is not None else None), overrides)
    from .present.summary import describe

    info = describe(m)
    if fmt == "json":
        import json

        click.echo(json.dumps(info, indent=2))
        return
    from .present.render import make_console, summary_tables

    console = make_console()
    src = m.source
    where = src.get("path") or f"seed {src.get('seed')}"
    version = f", written by Keras {src['keras_version']}" if src.get("keras_version") else ""
    console.print(f"{where}: {src.get('title', '')}{version}")
    for t in summary_tables(info):
        console.print(t)
    for w in info["warnings"]:
        if w not in m.notes:
            note(w)


@cli.command()
@model_options
@click.option("-i", "--input", "input_path", metavar="PATH",
              help="Input sequences (CSV/TSV, .npy, .npz or -); needed unless --weights.")
@click.option("--key", help="Array name inside an .npz input.")
@click.option("--initial-state", type=click.Path(), metavar="PATH",
              help="Initial hidden state (.npy or CSV) for the first recurrent layer.")
@click.option("--strict", is_flag=True, help="Treat NaN or Inf in the input as an error.")
@click.option("-o", "--output", required=True, metavar="PATH",
              help="File to write (- for stdout, binary formats included).")
@click.option("-f", "--format", "fmt", type=click.Choice(["npz", "h5", "csv", "json", "npy",
                                                           "lstmvis", "keras", "weights.h5"]),
              help="Output format (default: from the extension).")
@click.option("--what", metavar="KIND[/LAYER]",
              help="Keep only these arrays, e.g. hidden, or hidden/simple_rnn, or output.")
@click.option("--layers", "layer_names", metavar="NAMES", help="Comma-separated layer names.")
@click.option("--weights", is_flag=True,
              help="Write the model's weights instead of results: .npz, .keras, .weights.h5 "
              "or legacy .h5, readable by Keras 3.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def export(model, seed, units, input_dim, overrides, input_path, key, initial_state, strict,
           output, fmt, what, layer_names, weights, force):
    """Write what forward and trace compute to a file other tools read.

    The .npz holds output, hidden/<layer>, state/<layer>, xw/<layer>, hu/<layer>,
    bias/<layer>, z/<layer> (see docs/export.md).

    \b
    Examples:
      rnncli export sample_weights/seed000_two_units.keras -i sample_weights/seed000_input.csv -o out.npz
      rnncli export model.keras -i x.npy -o states.h5 --layers rnn_a
      rnncli export model.keras -i x.npy -o - -f npy --what hidden/rnn_a > h.npy
      rnncli export model_k2.h5 --weights -o model.keras
      rnncli export --seed 1 --units 4 --input-dim 3 --weights -o random.keras
    """
    from .io.atomic import check_target
    from .io.export import export_results, format_for

    if weights:
        from .models import write_weights, writer_for

        writer_for(output if output != "-" else "x.npz", fmt)  # before any work
        check_target(output, force)
        data = load_inputs(input_path, key, None, strict)[0] if input_path else None
        m = get_model(model, seed, units, input_dim, overrides, data)
        write_weights(m, output, fmt, force)
        return
    fmt = format_for(output, fmt) if output != "-" else (fmt or "npz")
    check_target(output, force)
    if not input_path:
        raise click.UsageError("export needs an input: -i PATH (or --weights)")
    data, h0 = load_inputs(input_path, key, initial_state, strict)
    m = get_model(model, seed, units, input_dim, overrides, data)
    x = model_input(m, data)
    layers = [s.strip() for s in layer_names.split(",")] if layer_names else None
    with progress_bar("exporting") as progress:
        export_results(m, x, output, fmt, initial_state=h0, what=what, layers=layers,
                       force=force, progress=progress)


@contextlib.contextmanager
def progress_bar(label):
    """A rich progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = None

        def update(done, total):
            nonlocal task
            if task is None:
                task = bar.add_task(label, total=total)
            bar.update(task, completed=done)

        yield update


def main():
    try:
        cli.main(prog_name="rnncli")
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)


if __name__ == "__main__":
    main()
