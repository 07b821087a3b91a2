"""``rnncli grad``: gradients through time, step by step (issue 13).

A click command for rnncli's group, registered in rnncli/cli.py with
``cli.add_command(grad)``; it uses the group's option bundles and shared steps. The
numbers are ``Model.gradients`` (rnncli/core/gradients.py); the readings beside them are
rnncli/core/diagnosis.py.
"""

from __future__ import annotations

import click

from .app import cli, note
from .options import emit, get_model, input_options, load_inputs, model_input, model_options


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
@click.option("--sample", metavar="LIST", help="Samples to show in tables, e.g. 0 or 0,3 or 0:4.")
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
def grad(model, seed, units, input_dim, cell, overrides, input_path, key, initial_state, strict,
         target_path, target_key, loss, of, sample, features, clip, check, what, precision,
         fmt, output, force):
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

    fmt = fmt or _format_for(output)
    check_target(output, force)
    if (target_path is None) == (of is None):
        raise click.UsageError("give --target PATH (with --loss) or --of OUTPUT[:UNIT][@STEP]")
    if fmt == "npy" and not what:
        raise click.UsageError("npy holds one array: name it with --what, e.g. grad_input")
    data, h0 = load_inputs(input_path, key, initial_state)
    m = get_model(model, seed, units, input_dim, overrides, data, cell)
    x = model_input(m, data, strict)
    target = None if target_path is None else _read_target(target_path, target_key, m, x)
    samples = _shown(sample, x.shape[0]) if fmt == "table" else None
    # the Jacobian norms cost O(B·T·H³): a table computes those of the samples it shows
    g = m.gradients(x, target, loss, of, h0, jacobian=True if samples is None else samples,
                    engine=Engine(one_shot=True))
    checked = None
    if check:
        from ..core.gradients import check as fd_check

        checked = fd_check(m, x, g, target, loss, of, h0, n=CHECK_ENTRIES)
    if fmt == "npy" and what not in g:
        raise click.UsageError(f"--what {what!r}: no such array; expected one of "
                               f"{', '.join(g)}")
    rows = _steps(m, x, g, h0) if fmt in ("table", "csv", "json") else []

    def write(fh):
        if fmt == "npz":
            np.savez(fh, **{k: np.asarray(v) for k, v in g.items()})
        elif fmt == "npy":
            from ..io.formats import npy_bytes

            fh.write(npy_bytes(g[what]))
        elif fmt == "csv":
            _write_csv(fh, rows, g)
        elif fmt == "json":
            _write_json(fh, g, rows, clip, checked)
        else:
            _write_tables(fh, m, g, rows, x, loss if of is None else None, of, samples,
                          features, clip, checked, precision)

    emit(output, "npy" if fmt in ("npy", "npz") else fmt, force, write)
    if checked is not None and fmt != "table":
        note(f"finite-difference check: largest relative error "
             f"{checked['max_relative_error']:.2e} over {len(checked['entries'])} entries")


def _shown(sample, B):
    """The samples a table shows: ``--sample``, else the first few (with a note)."""
    from ..present.views import parse_index_list

    if sample:
        return parse_index_list(sample, "sample", B)
    if B > _table_samples():
        note(f"showing samples 0 to {_table_samples() - 1} of {B}; pick others with --sample")
    return list(range(min(B, _table_samples())))


def _format_for(output):
    if output == "-":
        return "table"
    for ext in GRAD_FORMATS[1:]:
        if output.lower().endswith("." + ext):
            return ext
    raise click.UsageError(f"{output}: can't tell the format from the extension; give -f "
                           f"{'|'.join(GRAD_FORMATS[1:])}")


def _read_target(path, key, model, x):
    """The target array; a CSV's rows are the samples when the model's output has no
    time axis (a CSV reads as one sequence)."""
    from ..io.inputs import read_input

    data = read_input(path, key)
    t = data.array
    if data.tabular and t.ndim == 3 and t.shape[0] == 1 and \
            model.run(x[:1], trace=False, sequences=False).output.ndim == 2:
        t = t[0]
    return t


def _steps(model, x, g, h0):
    """Per recurrent layer and direction: (layer, direction, input timestep of each step
    (T,), dL/dh norms (B, T), Jacobian norms (B, T), bound (B, T) or None, reading per
    sample), in processing order."""
    import numpy as np

    from ..core import diagnosis

    result = model.run(x, initial_state=h0, trace=False, sequences=False)  # for the masks
    out = []
    for name, r in result.layers.items():
        for d, layer in r.layer.directions.items():
            where = f"{name}/{d}" if d else name
            if f"grad_hidden/{where}" not in g:
                continue
            norms = np.linalg.norm(np.asarray(g[f"grad_hidden/{where}"], np.float64), axis=-1)
            T = norms.shape[1]
            index = np.arange(T)[::-1] if layer.go_backwards else np.arange(T)
            mask = None if r.mask is None else np.asarray(r.mask, bool)[:, index]
            bound = diagnosis.jacobian_bound(layer.cell, T, mask)
            if bound is not None:
                bound = np.broadcast_to(bound, norms.shape)
            readings = [diagnosis.read(n, None if mask is None else mask[b])
                        for b, n in enumerate(norms)]
            out.append((name, d, index, norms, g.get(f"jacobian_norm/{where}"), bound,
                        readings))
    return out


def _fmt(v, p=5):
    return "–" if v is None else f"{float(v):.{p}g}"


def _write_csv(fh, rows, g):
    """Long form, one value a line: ``name,sample,step,t,value``."""
    import numpy as np

    fh.write("name,sample,step,t,value\n")
    for name, d, index, norms, jac, bound, _ in rows:
        where = f"{name}/{d}" if d else name
        for label, arr in (("grad_hidden_norm", norms), ("jacobian_norm", jac),
                           ("jacobian_bound", bound)):
            if arr is None:
                continue
            for b in range(arr.shape[0]):
                for k in range(arr.shape[1]):
                    fh.write(f"{label}/{where},{b},{k},{index[k]},{float(arr[b, k])!r}\n")
    if "grad_input" in g:
        sal = np.linalg.norm(np.asarray(g["grad_input"], np.float64), axis=-1)
        for b in range(sal.shape[0]):
            for t in range(sal.shape[1]):
                fh.write(f"grad_input_norm,{b},{t},{t},{float(sal[b, t])!r}\n")


def _write_json(fh, g, rows, clip, checked):
    import json

    import numpy as np

    from ..core import diagnosis

    doc = {"loss": float(g["loss"]),
           "arrays": {k: np.asarray(v).tolist() for k, v in g.items() if k != "loss"},
           "readings": {(f"{n}/{d}" if d else n): [r.text for r in rd]
                        for n, d, _, _, _, _, rd in rows},
           "weights": diagnosis.weight_summary(
               {k: v for k, v in g.items() if k.startswith("grad/")}, clip)}
    if clip is not None:
        doc["global_clip_scale"] = diagnosis.global_clip_scale(
            {k: v for k, v in g.items() if k.startswith("grad/")}, clip)
    if checked is not None:
        doc["check_max_relative_error"] = checked["max_relative_error"]
    json.dump(doc, fh)
    fh.write("\n")


def _write_tables(fh, model, g, rows, x, loss, of, samples, features, clip, checked, p):
    import numpy as np
    from rich.table import Table

    from ..core import diagnosis
    from ..present.render import make_console

    console = make_console(file=fh)
    what = f"{loss} loss" if loss else f"sum of {of}"
    console.print(f"[bold]{what}[/bold] = {_fmt(g['loss'], p)}")
    for name, d, index, norms, jac, bound, readings in rows:
        why = diagnosis.no_bound(model.get_layer(name).directions[d].cell)
        for b in samples:
            t = Table(title=f"{name}{' ' + d if d else ''}  sample {b}", title_justify="left",
                      header_style="bold", caption=why, caption_justify="left")
            for col in ("step", "t", "‖dL/dh_t‖", "‖dh_T-1/dh_t‖₂", "bound"):
                t.add_column(col, justify="right")
            for k in range(norms.shape[1]):
                t.add_row(str(k), str(index[k]), _fmt(norms[b, k], p),
                          _fmt(None if jac is None else jac[b, k], p),
                          _fmt(None if bound is None else bound[b, k], p))
            console.print(t)
            console.print(readings[b].text)
    if "grad_input" in g:
        gi = np.asarray(g["grad_input"], np.float64)
        for b in samples:
            t = Table(title=f"input saliency  sample {b}", title_justify="left",
                      header_style="bold")
            t.add_column("t", justify="right")
            t.add_column("‖dL/dx_t‖", justify="right")
            if features:
                for f in range(gi.shape[-1]):
                    t.add_column(f"x{f}", justify="right")
            for s in range(gi.shape[1]):
                cells = [_fmt(v, p) for v in gi[b, s]] if features else []
                t.add_row(str(s), _fmt(np.linalg.norm(gi[b, s]), p), *cells)
            console.print(t)
    weights = {k: v for k, v in g.items() if k.startswith("grad/")}
    t = Table(title="weight gradients", title_justify="left", header_style="bold")
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
    console.print(t)
    if clip is not None:
        s = diagnosis.global_clip_scale(weights, clip)
        console.print(f"global_clipnorm {clip:g}: "
                      f"{'unchanged' if s == 1 else f'every gradient x{s:.3g}'}")
    if checked is not None:
        console.print(f"finite-difference check (float64, {len(checked['entries'])} random "
                      f"entries): largest relative error {checked['max_relative_error']:.2e}")
