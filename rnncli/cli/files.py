"""``export`` (results, or weights for scripts that used ``export --weights``) and
``convert`` (a model's weights into another file format)."""

from __future__ import annotations

import click

from ..errors import UsageError
from .app import cli, note
from .options import (
    get_model,
    load_inputs,
    model_input,
    model_options,
    progress_bar,
    selection_options,
)


def _formats():
    from ..io.export import RESULT_FORMATS

    return RESULT_FORMATS


def _weight_formats():
    from ..models import WRITERS

    return tuple(w.name for w in WRITERS)


@cli.command()
@model_options
@click.option("-i", "--input", "input_path", metavar="PATH",
              help="Input sequences (CSV/TSV, .npy, .npz or -); needed unless --weights.")
@click.option("--key", help="Array name inside an .npz input.")
@click.option("--initial-state", type=click.Path(), metavar="PATH",
              help="Initial states (.npy/CSV, or .npz with h, c or LAYER/h ...).")
@click.option("--strict", is_flag=True, help="Treat NaN or Inf in the input as an error.")
@click.option("-o", "--output", required=True, metavar="PATH",
              help="File to write (- for stdout, binary formats included).")
@click.option("-f", "--format", "fmt", metavar="FORMAT",
              help="Output format: npz, h5, csv, tsv, json, ndjson, npy, lstmvis (default: "
              "from the extension); with --weights: a weights format as convert takes.")
@click.option("--what", metavar="KIND[/LAYER],...",
              help="Keep only these arrays, e.g. hidden, or hidden/simple_rnn,state, or output.")
@click.option("--layers", "--layer", "layer_names", multiple=True, metavar="NAME[,NAME]",
              help="Layers to export (default: every recurrent layer).")
@selection_options("write", " Final states (state/...) and the model output keep every "
                   "step: steps don't change a final state.")
@click.option("--weights", is_flag=True,
              help="Write the model's weights instead of results (as `rnncli convert`).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Don't say what was written.")
@click.option("--scheduler", metavar="ADDRESS",
              help=".zarr: run on this Dask cluster (pip install 'rnncli[dask]').")
@click.option("--workers", type=click.IntRange(min=1),
              help=".zarr: start a local Dask cluster of N worker processes.")
@click.option("--resume", is_flag=True,
              help=".zarr: finish an interrupted export, skipping the chunks written.")
def export(model, seed, units, input_dim, cell, overrides, input_path, key, initial_state,
           strict, output, fmt, what, layer_names, sample, steps, unit_list, weights, force,
           quiet, scheduler, workers, resume):
    """Write what forward and trace compute to a file other tools read.

    The .npz holds output, hidden/<layer>, state/<layer>, and the trace: xw/<layer>,
    hu/<layer>, bias/<layer>, z/<layer> (per gate for LSTM and GRU: z/<layer>/<gate>,
    gate/<layer>/<gate>, cell/<layer>); csv, tsv and ndjson hold the trace's rows as
    `trace -f` writes them; see docs/export.md. --sample, --steps and --unit cut every
    array as forward and trace do (output: --sample only); only the batches holding the
    selected samples are computed (with numba, only the selected steps' trace).

    \b
    Examples:
      rnncli export sample_weights/seed000_two_units.keras -i sample_weights/seed000_input.csv -o out.npz
      rnncli export model.keras -i x.npy -o states.h5 --layers rnn_a
      rnncli export model.keras -i x.npy -o - -f npy --what hidden/rnn_a > h.npy
      rnncli export model.keras -i x.npy --sample 0:4 -o - -f ndjson | jq .z
    """
    from ..core.engine import Engine
    from ..io.atomic import check_target
    from ..io.export import export_results, format_for
    from ..present.select import split_names

    chosen = [o for o, v in (("--sample", sample), ("--steps", steps), ("--unit", unit_list))
              if v]
    if weights and chosen:
        raise UsageError(f"{chosen[0]} selects results; --weights writes the whole "
                         f"model's weights")
    if weights:
        _convert(model, seed, units, input_dim, cell, overrides, input_path, key, output, fmt,
                 force, quiet)
        return
    if fmt and fmt not in _formats():  # before -o's extension is weighed against it
        raise click.UsageError(f"-f {fmt}: expected one of {', '.join(_formats())} "
                               f"(or --weights for a weights format)")
    fmt = format_for(output, fmt) if output != "-" else (fmt or "npz")
    if not input_path:
        raise click.UsageError("export needs an input: -i PATH (or --weights)")
    if fmt == "zarr" and chosen:
        raise UsageError(f"{chosen[0]}: a .zarr export writes every sample, step and "
                         f"unit (slice the store when reading it, or export to .npz/.h5)")
    if fmt == "zarr" or scheduler or workers or resume:
        _export_zarr(model, seed, units, input_dim, cell, overrides, input_path, key,
                     initial_state, output, fmt, what, split_names(layer_names) or None,
                     force, quiet, scheduler, workers, resume)
        return
    check_target(output, force, fmt)
    data, h0 = load_inputs(input_path, key, initial_state)
    m = get_model(model, seed, units, input_dim, overrides, data, cell)
    x = model_input(m, data, strict)
    layers = split_names(layer_names) or None
    with progress_bar("exporting") as progress:
        n = export_results(m, x, output, fmt, initial_state=h0, what=what, layers=layers,
                           samples=sample, steps=steps, units=unit_list, force=force,
                           progress=progress, engine=Engine(one_shot=True))
    if not quiet and output != "-":
        of = f" of {len(x)}" if n != len(x) else ""
        cut = "".join(f", {name} {v}" for name, v in (("steps", steps), ("units", unit_list))
                      if v)
        note(f"wrote {output} ({fmt}, {n}{of} sample{'s' if len(x) != 1 else ''}{cut})")


@cli.command(short_help="Write the weights as Keras 3, .npz, PyTorch .safetensors or ONNX.")
@model_options
@click.option("-o", "--output", required=True, metavar="PATH",
              help="File to write (- for stdout): .keras, .weights.h5, .h5, .npz, "
              ".safetensors or .onnx.")
@click.option("-f", "--format", "fmt", metavar="FORMAT",
              help="Weights format (default: from the extension).")
@click.option("-i", "--input", "input_path", metavar="PATH",
              help="With --seed: an input to take --input-dim from.")
@click.option("--key", help="Array name inside an .npz input.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="Don't say what was written.")
def convert(model, seed, units, input_dim, cell, overrides, output, fmt, input_path, key, force,
            quiet):
    """Write a model's weights in another format: Keras 3 (.keras, .weights.h5, legacy .h5),
    .npz, a PyTorch state_dict (.safetensors) or ONNX (.onnx); each computes the same
    numbers in its framework.

    \b
    Examples:
      rnncli convert sample_weights/seed000_two_units_k2.h5 -o seed000.keras
      rnncli convert --seed 1 --units 4 --input-dim 3 --cell lstm -o random.keras
    """
    _convert(model, seed, units, input_dim, cell, overrides, input_path, key, output, fmt,
             force, quiet)


def _convert(model, seed, units, input_dim, cell, overrides, input_path, key, output, fmt,
             force, quiet):
    from importlib import import_module

    from ..io.atomic import check_target
    from ..models import write_weights, writer_for

    w = writer_for(output if output != "-" else "x.npz", fmt)  # a bad name fails first
    check_target(output, force, w.name)
    data = load_inputs(input_path, key, None)[0] if input_path else None
    m = get_model(model, seed, units, input_dim, overrides, data, cell)
    w = write_weights(m, output, fmt, force)
    if not quiet and output != "-":
        note(f"wrote {output} ({w.title})")
        describe = getattr(import_module(w.module), "describe", None)
        if describe is not None:
            note(describe(m))


def _export_zarr(model, seed, units, input_dim, cell, overrides, input_path, key,
                 initial_state, output, fmt, what, layers, force, quiet, scheduler, workers,
                 resume):
    """A Zarr store, chunk by chunk, on this machine or a Dask cluster (docs/scale.md).
    The input is read a chunk at a time where it is needed, never here whole."""
    if fmt != "zarr":
        raise click.UsageError("--scheduler, --workers and --resume go with a .zarr output")
    if scheduler and workers:
        raise click.UsageError("give --scheduler (an existing cluster) or --workers (a local "
                               "one), not both")
    from ..io.states import read_initial_state
    from ..io.zarr_export import export_zarr, open_source

    if seed is not None and input_dim is None:
        input_dim = open_source(input_path, key)[0].shape[-1]
    m = get_model(model, seed, units, input_dim, overrides, cell=cell)
    h0 = read_initial_state(initial_state) if initial_state else None
    summary = export_zarr(m, input_path, output, what=what, layers=layers, key=key,
                          initial_state=h0, scheduler=scheduler, workers=workers,
                          resume=resume, force=force)
    if not quiet:
        note(f"wrote {output} (zarr, {summary['samples']} samples in {summary['chunks']} chunk(s); "
             f"{summary['skipped']} already there)")
