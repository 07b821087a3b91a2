"""``rnncli grad``: gradients through time, step by step (issue 13).

A click command for rnncli's group, registered in rnncli/cli.py with
``cli.add_command(grad)``; it uses the group's option bundles and shared steps. The
numbers are ``Model.gradients`` (rnncli/core/gradients.py); the readings beside them are
rnncli/core/diagnosis.py.
"""

from __future__ import annotations

import click

from .app import cli, note
from .options import (
    color_option,
    emit,
    get_model,
    input_options,
    load_inputs,
    model_input,
    model_options,
    width_option,
)


def _table_samples():
    from ..present.select import TABLE_SAMPLES  # (numpy: not at --help time)

    return TABLE_SAMPLES


GRAD_FORMATS = ("table", "csv", "json", "npz", "npy")
LOSS_NAMES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy",
              "sparse_categorical_crossentropy")
CHECK_ENTRIES = 12


@cli.command(short_help="Gradients through time: why an RNN forgets, step by step.")
@model_options
@input_options
@click.option("--target", "target_path", metavar="PATH",
              help="Targets, read like inputs (CSV/TSV, .npy, .npz or -): the model's output "
              "shape (class ids for sparse_categorical_crossentropy).")
@click.option("--target-key", help="Array name inside an .npz target.")
@click.option("--loss", type=click.Choice(LOSS_NAMES), default="mse", show_default=True,
              help="The Keras loss, with Keras' default reduction (what model.compile trains "
              "on).")
@click.option("--of", "of", metavar="OUTPUT[:UNIT][@STEP]",
              help="Without a target: differentiate the sum of one output unit (every unit "
              "when left out) at the last step of a sequence output (or @STEP), e.g. output:0.")
@click.option("--sample", metavar="LIST",
              help="Samples to show or write, e.g. 0 or 0,3 or 0:4 (default: the first few in "
              "tables, every one in files); it cuts the per-sample arrays (grad_input, "
              "grad_hidden, jacobian_norm); the loss and weight gradients stay the whole "
              "batch's.")
@click.option("--features", is_flag=True, help="Tables: input saliency per feature too.")
@click.option("--clip", type=click.FloatRange(min=0, min_open=True), metavar="NORM",
              help="Show what clip-by-norm at NORM (Keras' clipnorm, and global_clipnorm) "
              "would do to the weight gradients.")
@click.option("--check", is_flag=True,
              help="Check a few random entries against float64 finite differences and print "
              "the largest relative error.")
@click.option("--what", metavar="NAME", help="npy: the array to write, e.g. grad_input or "
              "grad_hidden/simple_rnn.")
@click.option("--precision", type=click.IntRange(1, 17), default=5, show_default=True,
              help="Significant digits in tables.")
@click.option("-f", "--format", "fmt", type=click.Choice(GRAD_FORMATS),
              help="Output format (default: table on stdout, else from the file's extension).")
@click.option("-o", "--output", default="-", metavar="PATH",
              help="Write to PATH instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@color_option
@width_option
def grad(model, seed, units, input_dim, cell, overrides, input_path, key, initial_state, strict,
         target_path, target_key, loss, of, sample, features, clip, check, what, precision,
         fmt, output, force, color, width):
    """Back-propagate through time: the loss, dL/dh_t at every step, how fast it shrinks
    (the Jacobian norm and its bound), input saliency and weight gradients.

    \b
    Examples:
      rnncli grad model.keras -i x.npy --target y.npy --loss mse
      rnncli grad model.keras -i x.csv --of output:0
      rnncli grad model.keras -i x.npy --target y.npy -o grads.npz
      rnncli grad model.keras -i x.npy --of output --check --clip 1.0
    """
    import numpy as np

    from ..core.engine import Engine
    from ..io.atomic import check_target
    from ..io.inputs import read_target

    fmt = _format_for(output, fmt)
    check_target(output, force, fmt)
    if (target_path is None) == (of is None):
        raise click.UsageError(
            "--target and --of each pick what is differentiated (a loss against targets, "
            "or an output itself): give one, not both" if of is not None else
            "give --target PATH (with --loss) or --of OUTPUT[:UNIT][@STEP]")
    if fmt == "npy" and not what:
        raise click.UsageError("npy holds one array: name it with --what, e.g. grad_input")
    data, h0 = load_inputs(input_path, key, initial_state)
    m = get_model(model, seed, units, input_dim, overrides, data, cell)
    x = model_input(m, data, strict)
    target = None if target_path is None else read_target(target_path, target_key, m, x)
    samples = _chosen(sample, x.shape[0], fmt == "table")
    # the Jacobian norms cost O(B·T·H³): only those of the samples chosen are computed
    g = m.gradients(x, target, loss, of, h0, jacobian=True if samples is None else samples,
                    engine=Engine(one_shot=True))
    checked = None
    if check:
        from ..core.gradients import check as fd_check

        checked = fd_check(m, x, g, target, loss, of, h0, n=CHECK_ENTRIES)
    if fmt == "npy" and what not in g:
        raise click.UsageError(f"--what {what!r}: no such array; expected one of "
                               f"{', '.join(g)}")
    rows = _steps(m, x, g, h0, samples) if fmt in ("table", "csv", "json") else []
    ids = list(range(x.shape[0])) if samples is None else samples
    g = _cut(g, samples)

    def write(fh):
        if fmt == "npz":
            np.savez(fh, **{k: np.asarray(v) for k, v in g.items()})
        elif fmt == "npy":
            from ..io.formats import npy_bytes

            fh.write(npy_bytes(g[what]))
        elif fmt == "csv":
            _write_csv(fh, rows, g, ids)
        elif fmt == "json":
            _write_json(fh, g, rows, clip, checked, ids if samples is not None else None)
        else:
            _write_tables(fh, m, g, rows, loss if of is None else None, of, ids,
                          features, clip, checked, precision, color, width)

    emit(output, "npy" if fmt in ("npy", "npz") else fmt, force, write, fmt)
    if checked is not None and fmt != "table":
        note(f"finite-difference check: largest relative error "
             f"{checked['max_relative_error']:.2e} over {len(checked['entries'])} entries")


def _chosen(sample, B, table):
    """The samples ``--sample`` chooses; without it, a table's first few (with a note),
    and None (every one) for a file."""
    from ..present.views import parse_index_list

    if sample:
        return parse_index_list(sample, "sample", B)
    if not table:
        return None
    if B > _table_samples():
        note(f"showing samples 0 to {_table_samples() - 1} of {B}; pick others with --sample")
    return list(range(min(B, _table_samples())))


def _format_for(output, fmt):
    """-f, else -o's extension, else a table; a -f that contradicts -o's extension is
    refused (CSV text in a .npz would fool whoever opens it)."""
    ext = next((e for e in GRAD_FORMATS[1:] if output.lower().endswith("." + e)), None)
    if fmt and ext and fmt != ext:
        raise click.UsageError(f"-f {fmt} contradicts -o {output} (a .{ext} name holds "
                               f"{ext}); drop -f, or name the file for {fmt}")
    if fmt:
        return fmt
    if output == "-":
        return "table"
    if ext:
        return ext
    raise click.UsageError(f"-o {output}: can't tell the format from the extension; give -f "
                           f"{'|'.join(GRAD_FORMATS[1:])}")


PER_SAMPLE = ("grad_input", "grad_hidden/", "jacobian_norm/")


def _cut(g, samples):
    """``g`` with its per-sample arrays cut to ``samples`` (None: all)."""
    if samples is None:
        return g
    return {k: (v[samples] if k.startswith(PER_SAMPLE) else v) for k, v in g.items()}


def _steps(model, x, g, h0, samples=None):
    """Per recurrent layer and direction: (layer, direction, input timestep of each step
    (T,), dL/dh norms (B, T), Jacobian norms (B, T), bound (B, T) or None, reading per
    sample), in processing order; the rows of ``samples`` only (None: all)."""
    import numpy as np

    from ..core import diagnosis

    result = model.run(x, initial_state=h0, trace=False, sequences=False)  # for the masks
    out = []
    for name, r in result.layers.items():
        for d, layer in r.layer.directions.items():
            where = f"{name}/{d}" if d else name
            if f"grad_hidden/{where}" not in g:
                continue
            pick = slice(None) if samples is None else samples
            norms = np.linalg.norm(np.asarray(g[f"grad_hidden/{where}"], np.float64)[pick],
                                   axis=-1)
            T = norms.shape[1]
            index = np.arange(T)[::-1] if layer.go_backwards else np.arange(T)
            mask = None if r.mask is None else np.asarray(r.mask, bool)[pick][:, index]
            jac = g.get(f"jacobian_norm/{where}")
            bound = diagnosis.jacobian_bound(layer.cell, T, mask)
            if bound is not None:
                bound = np.broadcast_to(bound, norms.shape)
            readings = [diagnosis.read(n, None if mask is None else mask[b])
                        for b, n in enumerate(norms)]
            out.append((name, d, index, norms, None if jac is None else jac[pick], bound,
                        readings))
    return out


def _fmt(v, p=5):
    return "–" if v is None else f"{float(v):.{p}g}"


def _write_csv(fh, rows, g, ids):
    """Long form, one value a line: ``name,sample,step,t,value`` (``sample``: the index in
    the input)."""

    fh.write("name,sample,step,t,value\n")
    for name, d, index, norms, jac, bound, _ in rows:
        where = f"{name}/{d}" if d else name
        for label, arr in (("grad_hidden_norm", norms), ("jacobian_norm", jac),
                           ("jacobian_bound", bound)):
            if arr is None:
                continue
            for b in range(arr.shape[0]):
                for k in range(arr.shape[1]):
                    fh.write(f"{label}/{where},{ids[b]},{k},{index[k]},{float(arr[b, k])!r}\n")
    if "grad_input" in g:
        sal = _saliency(g["grad_input"])
        for b in range(sal.shape[0]):
            for t in range(sal.shape[1]):
                fh.write(f"grad_input_norm,{ids[b]},{t},{t},{float(sal[b, t])!r}\n")


def _saliency(grad_input):
    """‖dL/dx_t‖ (B, T) of dL/dx (B, T, D)."""
    import numpy as np

    return np.linalg.norm(np.asarray(grad_input, np.float64).reshape(
        *np.shape(grad_input)[:2], -1), axis=-1)


def _write_json(fh, g, rows, clip, checked, samples):
    import json

    import numpy as np

    from ..core import diagnosis

    doc = {"loss": float(g["loss"]),
           "arrays": {k: np.asarray(v).tolist() for k, v in g.items() if k != "loss"},
           "readings": {(f"{n}/{d}" if d else n): [r.text for r in rd]
                        for n, d, _, _, _, _, rd in rows},
           "weights": diagnosis.weight_summary(
               {k: v for k, v in g.items() if k.startswith("grad/")}, clip)}
    if samples is not None:
        doc["samples"] = list(samples)
    if clip is not None:
        doc["global_clip_scale"] = diagnosis.global_clip_scale(
            {k: v for k, v in g.items() if k.startswith("grad/")}, clip)
    if checked is not None:
        doc["check_max_relative_error"] = checked["max_relative_error"]
    json.dump(doc, fh)
    fh.write("\n")


NO_INPUT_GRADIENT = "input saliency: none (token ids into an Embedding aren't differentiable)"


def _write_tables(fh, model, g, rows, loss, of, ids, features, clip, checked, p, color,
                  width):
    """Titles and captions are lines of their own (a rich title is padded to the table's
    width, which leaves trailing spaces in a pipe)."""
    import numpy as np
    from rich.table import Table

    from ..core import diagnosis
    from ..present.render import make_console

    console = make_console(file=fh, color=color, width=width)

    def show(title, table, caption=None):
        console.print(f"[bold]{title}[/bold]")
        console.print(table)
        if caption:
            console.print(caption, style="dim")

    what = f"{loss} loss" if loss else f"sum of {of}"
    console.print(f"[bold]{what}[/bold] = {_fmt(g['loss'], p)}")
    for name, d, index, norms, jac, bound, readings in rows:
        why = diagnosis.no_bound(model.get_layer(name).directions[d].cell)
        for b, sample in enumerate(ids):
            t = Table(header_style="bold")
            for col in ("step", "t", "‖dL/dh_t‖", "‖dh_T-1/dh_t‖₂", "bound"):
                t.add_column(col, justify="right")
            for k in range(norms.shape[1]):
                t.add_row(str(k), str(index[k]), _fmt(norms[b, k], p),
                          _fmt(None if jac is None else jac[b, k], p),
                          _fmt(None if bound is None else bound[b, k], p))
            show(f"{name}{' ' + d if d else ''}  sample {sample}", t, why)
            console.print(readings[b].text)
    if "grad_input" in g:
        gi = np.asarray(g["grad_input"], np.float64)
        for b, sample in enumerate(ids):
            t = Table(header_style="bold")
            t.add_column("t", justify="right")
            t.add_column("‖dL/dx_t‖", justify="right")
            if features:
                for f in range(gi.shape[-1]):
                    t.add_column(f"x{f}", justify="right")
            for s in range(gi.shape[1]):
                cells = [_fmt(v, p) for v in gi[b, s]] if features else []
                t.add_row(str(s), _fmt(np.linalg.norm(gi[b, s]), p), *cells)
            show(f"input saliency  sample {sample}", t)
    elif model.takes_token_ids:
        console.print(NO_INPUT_GRADIENT, style="dim")
    weights = {k: v for k, v in g.items() if k.startswith("grad/")}
    t = Table(header_style="bold")
    for col in ("weight", "shape", "norm", "largest"):
        t.add_column(col, justify="right" if col != "weight" else "left")
    if clip is not None:
        t.add_column(f"clipnorm {clip:g}", justify="right")
    split = diagnosis.split_gates(model, weights)
    for row in diagnosis.weight_summary(split, clip):
        cells = [row["name"][5:], str(tuple(np.shape(split[row["name"]]))),
                 _fmt(row["norm"], p), _fmt(row["largest"], p)]
        if clip is not None:
            cells.append("unchanged" if row["clip_scale"] == 1 else f"x{row['clip_scale']:.3g}")
        t.add_row(*cells)
    show("weight gradients", t)
    if clip is not None:
        s = diagnosis.global_clip_scale(weights, clip)
        console.print(f"global_clipnorm {clip:g}: "
                      f"{'unchanged' if s == 1 else f'every gradient x{s:.3g}'}")
    if checked is not None:
        console.print(f"finite-difference check (float64, {len(checked['entries'])} random "
                      f"entries): largest relative error {checked['max_relative_error']:.2e}")
