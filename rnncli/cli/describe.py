"""``summary``: what a model is, without running it on data."""

from __future__ import annotations

import click

from .app import cli, note
from .options import console_for, get_model, model_options


@cli.command(short_help="Layers, parameters, weight statistics, recurrent-kernel spectra.")
@model_options
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Colour tables: on a terminal (auto), always, never.")
@click.option("--width", type=click.IntRange(40, 1000), help="Table width in columns.")
def summary(model, seed, units, input_dim, cell, overrides, fmt, color, width):
    """Describe a model: layers, shapes, parameters, weight statistics and how the
    recurrent kernels act on the state (spectral radius, largest singular value; per
    gate for LSTM and GRU).

    \b
    Examples:
      rnncli summary sample_weights/seed001_dense_head.keras
      rnncli summary model.weights.h5 -f json
      rnncli summary --seed 1 --units 8 --input-dim 3 --cell lstm
    """
    if seed is not None and input_dim is None and not model:
        raise click.UsageError("--seed needs --input-dim (the features per timestep)")
    m = get_model(model, seed, units, input_dim, overrides, cell=cell)
    from ..present.summary import describe

    info = describe(m)
    if fmt == "json":
        import json

        click.echo(json.dumps(info, indent=2))
        return
    from ..present.summary_tables import summary_tables

    console = console_for(None, color, width)
    src = m.source
    where = src.get("path") or f"seed {src.get('seed')}"
    title = src.get("title", "")
    version = f", written by Keras {src['keras_version']}" if src.get("keras_version") else ""
    if src.get("saved_by") == "rnncli":  # its keras_version: the oldest Keras that reads it
        version = f", written by rnncli for Keras {src.get('keras_version') or 3} and later"
    console.print(f"{where}: {title}{version}")
    for t in summary_tables(info, console.width):
        console.print(t)
    for w in info["warnings"]:
        if w not in m.notes:
            note(w)
