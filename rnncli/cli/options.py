"""Options shared by several commands, as decorator bundles, and the steps they share:
get the model, read the input, run, and write to stdout or a file."""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import click

from .app import note

CELLS = ("simple_rnn", "lstm", "gru")


def bundle(*opts):
    def apply(f):
        return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)
    return apply


def _max_memory(ctx, _param, value):
    """--max-memory SIZE: the limit stays in force for the whole command."""
    if value is not None:
        from .. import limits
        from ..errors import RnncliError

        try:  # a bad size is a usage error now (exit 2, naming the option), not later
            limits.parse_size(value)
        except RnncliError as e:
            raise click.BadParameter(str(e), ctx, _param) from None
        ctx.with_resource(limits.override(max_memory=value))
    return value


model_options = bundle(
    click.argument("model", required=False, type=click.Path(dir_okay=True)),
    click.option("--seed", type=click.IntRange(min=0),
                 help="Make random weights from this seed instead of loading MODEL "
                 "(Keras' default initializers)."),
    click.option("--units", type=click.IntRange(1, 65536),
                 help="With --seed: number of units (Keras' `units`)."),
    click.option("--input-dim", type=click.IntRange(1, 65536),
                 help="With --seed: features per timestep (default: from the input)."),
    click.option("--cell", type=click.Choice(CELLS), default="simple_rnn", show_default=True,
                 help="With --seed: the recurrent layer to make."),
    click.option("--set", "overrides", multiple=True, metavar="[LAYER.]KEY=VALUE",
                 help="Change a setting, e.g. activation=relu (every recurrent layer) or "
                 "dense.activation=sigmoid; for files that don't hold it (weights only, "
                 "PyTorch state_dicts)."),
    click.option("--max-memory", metavar="SIZE", callback=_max_memory, expose_value=False,
                 help="Raise the memory a file may ask for, e.g. 8G (default: the smaller "
                 "of 2G and a quarter of RAM; RNNCLI_MAX_MEMORY sets it too)."),
)

input_options = bundle(
    click.option("-i", "--input", "input_path", required=True, metavar="PATH",
                 help="Input sequences: CSV/TSV (rows = timesteps), .npy, .npz, or - for stdin."),
    click.option("--key", help="Array name inside an .npz input."),
    click.option("--initial-state", type=click.Path(), metavar="PATH",
                 help="Initial states: .npy/CSV (units,) or (batch, units) for the first "
                 "recurrent layer, or .npz with h (and c for LSTM), or LAYER/h, LAYER/c."),
    click.option("--strict", is_flag=True,
                 help="Treat NaN, Inf or a value the model's dtype can't hold as an error."),
)



def _not_blank(ctx, param, value):
    """A selection given as nothing (``--steps ''``) is a mistake, not "everything"."""
    if value is not None and not value.strip():
        from ..errors import UsageError

        raise UsageError(f"{param.opts[-1]} is empty; expected e.g. "
                         f"{'0:10' if param.name == 'steps' else '0,2'} (or leave it out for all)")
    return value


def selection_options(verb="show", steps_note=""):
    """--sample, --steps, -u/--unit: one spelling for every command that selects."""
    return bundle(
        click.option("--sample", metavar="LIST", callback=_not_blank,
                     help=f"Samples to {verb}, e.g. 0 or 0,3 or 0:4."),
        click.option("--steps", metavar="SLICE", callback=_not_blank,
                     help=f"Timesteps to {verb}, e.g. 0:10 or -5:.{steps_note}"),
        click.option("-u", "--unit", "unit_list", metavar="LIST", callback=_not_blank,
                     help=f"Units to {verb}, e.g. 0,2 or 0:8."),
    )


view_options = bundle(
    click.option("--layer", "layer_keys", multiple=True, metavar="NAME[,NAME]",
                 help="Recurrent layer(s) to show (default: every one; the last for npy); "
                 "NAME/forward or NAME/backward for one direction of a Bidirectional layer."),
    selection_options(),
    click.option("--precision", type=click.IntRange(0, 17),
                 help="Decimals to print (default: the shortest exact form)."),
    click.option("--all", "show_all", is_flag=True,
                 help="Show every sample, row and column; don't elide long tables."),
)


color_option = click.option(
    "--color", type=click.Choice(["auto", "always", "never"]), default="auto",
    show_default=True, help="Colour tables: on a terminal (auto), always (for less -R), or "
    "never. NO_COLOR and FORCE_COLOR are honoured.")
width_option = click.option(
    "--width", type=click.IntRange(40, 1000),
    help="Table width in columns (default: the terminal's, else $COLUMNS, else stderr's "
         "terminal's, else 120).")


def output_options(formats):
    return bundle(
        click.option("-f", "--format", "fmt", type=click.Choice(formats),
                     help="Output format (default: from -o's extension, else table)."),
        click.option("-o", "--output", default="-", metavar="PATH",
                     help="Write to PATH instead of stdout."),
        click.option("--force", is_flag=True, help="Overwrite an existing output file."),
        color_option,
        width_option,
    )


# ---------------------------------------------------------------- shared steps


def parse_overrides(pairs) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(f"{p!r} is not KEY=VALUE", param_hint="--set")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def get_model(model, seed, units, input_dim, overrides, data=None, cell="simple_rnn"):
    """The model file, or seeded random weights; its notes go to stderr once each."""
    from ..keras.random import random_model
    from ..models import load_model

    ov = parse_overrides(overrides)
    if seed is not None:
        if model:
            raise click.UsageError("give MODEL or --seed, not both")
        if units is None:
            raise click.UsageError("--seed needs --units (the number of units)")
        if input_dim is None:
            if data is None:
                raise click.UsageError("--seed needs --input-dim (or an input to take it from)")
            input_dim = data.array.shape[-1]
        return random_model(seed, units, input_dim, cell=cell, overrides=ov)
    ctx = click.get_current_context(silent=True)
    cell_given = ctx is not None and ctx.get_parameter_source("cell") not in (
        None, click.core.ParameterSource.DEFAULT)  # a model file says its own cell
    if units is not None or input_dim is not None or cell_given:
        raise click.UsageError("--units, --input-dim and --cell go with --seed")
    if not model:
        raise click.UsageError("give a MODEL file, or --seed N --units H for random weights")
    m = load_model(model, overrides=ov)
    for n in m.notes:
        note(n)
    for layer in m.unsupported:
        note(f"{layer.reason}; rnncli shows the layers before it")
    return m


def load_inputs(input_path, key, initial_state):
    """(InputData, initial states or None)."""
    from ..io.inputs import is_tty_stdin, read_input
    from ..io.states import read_initial_state

    if input_path == "-" and is_tty_stdin():
        note("reading the input from stdin (end with Ctrl-D); -i PATH reads a file")
    data = read_input(input_path, key)
    return data, read_initial_state(initial_state) if initial_state else None


def model_input(model, data, strict=False):
    """The input array as ``model`` takes it; errors name the input file. NaN, Inf and
    values the model's dtype can't hold are noted, or errors with --strict."""
    from ..errors import InputDataError
    from ..io.inputs import as_model_input

    problem = None
    if data.has_nonfinite:
        problem = "holds NaN or Inf values"
    elif data.array.dtype.kind == "f" and data.overflows(model.dtype):
        problem = (f"holds {data.overflowing_value(model.dtype):g}, beyond what the model's "
                   f"{model.dtype} can hold (it becomes Inf)")
    if problem:
        if strict:
            raise InputDataError(f"{data.name}: input {problem}; expected finite numbers "
                                 f"(--strict)")
        note(f"{data.name}: input {problem}; they propagate through the states")
    try:
        return model.check_input(as_model_input(data, model))
    except InputDataError as e:
        if str(e).startswith(data.name):
            raise
        raise InputDataError(f"{data.name}: {e}") from None


def run_model(model, data, x, h0, trace, samples=None):
    """Run on the rows ``samples`` of ``x`` (None: all); errors name the input file."""
    from ..core.engine import Engine
    from ..errors import InputDataError

    try:
        engine = Engine(one_shot=True)
        if samples is not None and model.batch_size_for(x, trace) >= len(x):
            # in the batch a run without --sample computes them in (as export does:
            # numpy's BLAS may round a row's sums by the rows beside it), where that batch
            # is all of x; a bigger input runs the chosen samples alone
            return model.run(x, initial_state=h0, trace=trace, engine=engine).take(samples)
        return model.run(x, initial_state=h0, trace=trace, samples=samples, engine=engine)
    except InputDataError as e:
        if str(e).startswith(data.name) or "initial state" in str(e):
            raise
        raise InputDataError(f"{data.name}: {e}") from None


def format_for(output, fmt, choices):
    """--format, else -o's extension, else a table; a --format that contradicts -o's
    extension (CSV text into a .npy) is refused."""
    from ..io.formats import EXTENSIONS

    ext = os.path.splitext(output)[1].lower() if output and output != "-" else ""
    found = EXTENSIONS.get(ext)
    if fmt:
        if found and found != fmt:
            raise click.UsageError(f"-f {fmt} contradicts -o {output} (a {ext} name holds "
                                   f"{found}); drop -f, or name the file for {fmt}")
        return fmt
    if output and output != "-":
        if found in choices:
            return found
        raise click.UsageError(f"-o {output}: can't tell the format from {ext or 'no extension'}; "
                               f"use -f with one of {', '.join(choices)}")
    return "table"


def emit(output, fmt, force, write, what=None):
    """Run ``write(stream)`` against stdout or an atomically written file, and say which
    file it wrote (``what``: its format, by default ``fmt``), as export does."""
    from ..io.atomic import open_output

    with open_output(output, "wb" if fmt == "npy" else "w", force) as fh:
        write(fh)
    if output and output != "-":
        note(f"wrote {output} ({what or fmt})")


def console_for(fh, color="auto", width=None):
    from ..present.render import make_console

    return make_console(file=fh, color=color, width=width)


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
