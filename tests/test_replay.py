"""A compiled scan's trace is computed when read (rnncli/core/replay.py): the same bits as
the terms the loop writes itself (``trace="full"``), computed once, and only when read."""

import copy
import pickle

import numpy as np
import pytest
from test_fast import layer_of

from rnncli.core import engine as E
from rnncli.core import planning, replay
from rnncli.core.rnn import Bidirectional

pytest.importorskip("numba")

NUMBA = E.Engine("numba")


@pytest.fixture
def replayed(monkeypatch):
    """The steps of every replay run from here on (x's length), in order."""
    steps, real = [], replay.replay

    def counted(cell, loop, x, *rest, **kw):
        steps.append(x.shape[1])
        return real(cell, loop, x, *rest, **kw)

    monkeypatch.setattr(replay, "replay", counted)
    return steps


def assert_same_terms(derived, recorded):
    assert list(derived) == list(recorded)
    for name in recorded:
        np.testing.assert_array_equal(derived[name], recorded[name], err_msg=name)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
def test_terms_computed_when_read_are_those_the_loop_writes(cell, dtype, masked, zero_output):
    rng = np.random.default_rng(1)
    layer = layer_of(cell, dtype, units=37)  # 37: a panel's tail
    layer.zero_output_for_mask = zero_output
    for B, T in [(1, 30), (11, 25)]:
        x = rng.normal(size=(B, T, 3)).astype(dtype)
        # masks with leading masked steps: the state found there is the initial one
        mask = (rng.random((B, T)) > 0.4) if masked else None
        if masked:
            mask[:, :3] = False
        h0 = tuple(rng.normal(size=(B, 37)).astype(dtype) for _ in layer.cell.state_names)
        derived = layer.run(x, mask, h0, trace=True, engine=NUMBA).trace
        recorded = layer.run(x, mask, h0, trace="full", engine=NUMBA).trace
        assert not derived._terms.computed
        assert_same_terms(derived, recorded)
        assert derived._terms.computed


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_trace_of_a_step_split_by_units_or_rows_in_threads_is_the_loops(cell):
    """One sample of a wide LSTM or GRU: the forward pass splits each step's units across
    threads (split.split_scan), and a trace now scans the same way; its rows are replayed
    in threads."""
    layer = layer_of(cell, np.float32, units=512)
    layer.go_backwards = True
    x = np.random.default_rng(2).normal(size=(1, 60, 3)).astype(np.float32)
    two = E.Engine("numba", threads=2)
    assert E.plan(layer.cell, 1, 60, None, two, trace=True).split == 2
    derived = layer.run(x, trace=True, engine=two).trace
    assert_same_terms(derived, layer.run(x, trace="full", engine=E.Engine("numba", 1)).trace)


def test_bidirectional_traces_are_computed_per_direction():
    layer = Bidirectional("bi", layer_of("lstm", units=8), layer_of("lstm", units=8, seed=5))
    layer.backward_layer.go_backwards = True
    x = np.random.default_rng(3).normal(size=(4, 12, 3)).astype(np.float32)
    derived = layer.call(x, trace=True, engine=NUMBA)
    recorded = layer.call(x, trace="full", engine=NUMBA)
    for d in ("forward", "backward"):
        assert_same_terms(derived.directions[d].trace, recorded.directions[d].trace)


def test_nothing_is_computed_until_a_term_is_read_and_then_once(replayed):
    layer = layer_of("lstm", units=8)
    x = np.random.default_rng(4).normal(size=(3, 10, 3)).astype(np.float32)
    tr = layer.run(x, trace=True, engine=NUMBA).trace
    assert list(tr) == ["xw", "hu", "bias", "z", "gate", "c_prev", "fc", "ig", "c", "h"]
    assert "z" in tr and "nothing" not in tr and tr.h.shape == (3, 10, 8)
    assert replayed == []  # names, h and c are at hand
    z, gate = tr["z"], tr.per_gate("gate")["f"]
    assert replayed == [10] and tr["z"] is z and gate.shape == (3, 10, 8)
    np.testing.assert_array_equal(tr["gate"], tr["gate"])
    assert replayed == [10]


def test_copies_and_pickles_of_a_trace_hold_every_term():
    layer = layer_of("gru", units=8)
    x = np.random.default_rng(5).normal(size=(3, 10, 3)).astype(np.float32)
    recorded = layer.run(x, trace="full", engine=NUMBA).trace
    for made in (lambda t: pickle.loads(pickle.dumps(t._terms)),
                 lambda t: copy.deepcopy(t._terms)):
        terms = made(layer.run(x, trace=True, engine=NUMBA).trace)
        assert terms.computed
        assert_same_terms(terms, {k: recorded[k] for k in recorded})


def test_a_state_is_carried_through_masked_steps():
    """carried: the state after each step from the outputs, where masked steps output
    zeros (or the previous output) and keep the state; before any unmasked step, the
    initial state."""
    out = np.arange(1, 6, dtype=float)[:, None, None] * np.ones((5, 2, 1))
    mask = np.array([[0, 1], [1, 1], [0, 0], [1, 0], [0, 1]], bool)
    out[~mask] = 0  # zeros at masked steps
    initial = np.array([[-1.0], [-2.0]])
    got = replay.carried(out, mask, initial)[..., 0]
    np.testing.assert_array_equal(got, [[-1, 1], [2, 2], [2, 2], [4, 2], [4, 5]])
    assert replay.carried(out, None, initial) is out


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_an_empty_batch_has_empty_terms(cell):
    """No samples (``model.run(x, samples=[])``): each term is (0, T, width), as the
    loop writes it."""
    layer = layer_of(cell, units=8)
    x = np.zeros((0, 5, 3), np.float32)
    assert_same_terms(layer.run(x, trace=True, engine=NUMBA).trace,
                      layer.run(x, trace="full", engine=NUMBA).trace)
    assert layer.run(x, trace=True, engine=NUMBA).trace["xw"].shape == (0, 5, 8 * {
        "simple_rnn": 1, "lstm": 4, "gru": 3}[cell])


@pytest.mark.parametrize("trace", [1, np.True_])
def test_any_true_trace_is_true_where_the_scan_splits_units(trace):
    """A split scan writes no terms: a trace given as 1 or numpy's True is computed after
    it as True's is, not left as the empty memory the loop never wrote."""
    layer = layer_of("lstm", np.float32, units=512)
    x = np.random.default_rng(9).normal(size=(1, 20, 3)).astype(np.float32)
    two = E.Engine("numba", threads=2)
    assert E.plan(layer.cell, 1, 20, None, two, trace=trace).split == 2
    recorded = layer.run(x, trace="full", engine=E.Engine("numba", 1)).trace
    assert_same_terms(layer.run(x, trace=trace, engine=two).trace, recorded)


def test_a_runs_sequences_stay_the_callers_to_write_into():
    """The terms are computed from copies taken when the scan ends: the outputs a run
    returns are writeable as the numpy loop's are, and writing into them (or into the
    input and mask the caller gave) changes no term computed after."""
    layer = layer_of("lstm", units=8)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1, 10, 3)).astype(np.float32)  # one sample: mask.T is a view
    mask = np.ones((1, 10), bool)
    mask[0, 4] = False
    recorded = layer.run(x, mask, trace="full", engine=NUMBA).trace
    want = {k: np.array(recorded[k]) for k in recorded if k not in ("h", "c")}
    d = layer.run(x, mask, trace=True, engine=NUMBA)
    for seq in d.sequences.values():
        assert seq.flags.writeable
        seq *= 2
    x[:], mask[:] = 0, False
    assert not d.trace._terms.computed
    assert_same_terms({k: d.trace[k] for k in want}, want)


def test_a_models_output_is_writeable_whatever_the_engine():
    from rnncli.keras.random import random_model

    model = random_model(0, 8, 3, cell="gru")
    x = np.random.default_rng(7).normal(size=(4, 10, 3)).astype(np.float32)
    for engine in ("numpy", "numba"):
        result = model.run(x, engine=engine)  # traced: trace=True is the default
        out = result.output
        out *= 2
        np.testing.assert_array_equal(result.hidden[0], out)


def test_a_replay_stopped_part_way_starts_again(monkeypatch):
    """Ctrl-C during the replay: a row block that finished wrote its final states into
    the states it started from; the next read computes them afresh."""
    layer = layer_of("gru", units=8)
    x = np.random.default_rng(8).normal(size=(3, 10, 3)).astype(np.float32)
    recorded = layer.run(x, trace="full", engine=NUMBA).trace
    tr = layer.run(x, trace=True, engine=NUMBA).trace
    monkeypatch.setattr(planning, "compiled_rows", lambda N, threads, idle=None: (1, [0, N // 2, N]))
    real = E._Rows.run_compiled

    def interrupted(job, b0, b1):
        if b0:
            raise KeyboardInterrupt
        real(job, b0, b1)

    monkeypatch.setattr(E._Rows, "run_compiled", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tr["z"]
    monkeypatch.setattr(E._Rows, "run_compiled", real)
    assert_same_terms(tr, recorded)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("kw", [{"recurrent_activation": "hard_sigmoid", "keras_major": 2},
                                {"activation": "relu"}])
def test_other_activations_are_replayed_as_the_loop_ran_them(cell, kw):
    """Keras 2's hard_sigmoid (its own kernel code) and relu: a runtime choice in the loop,
    the replay's too."""
    layer = layer_of(cell, units=16, **kw)
    assert layer.cell.compiled() is not None
    rng = np.random.default_rng(10)
    x = rng.normal(size=(5, 12, 3)).astype(np.float32)
    mask = rng.random((5, 12)) > 0.3
    assert_same_terms(layer.run(x, mask, trace=True, engine=NUMBA).trace,
                      layer.run(x, mask, trace="full", engine=NUMBA).trace)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("window", [(0, 4), (5, 9), (13, 20), (0, 20)])
def test_a_window_of_steps_computes_those_steps_alone(replayed, cell, window):
    """Trace.window: the terms of steps k0 .. k1 from a trace computed when read are the
    loop's, computed from the states step k0 found (carried over masked steps before it,
    from an initial state) and for those steps alone."""
    rng = np.random.default_rng(9)
    layer = layer_of(cell, units=6)
    layer.zero_output_for_mask = True
    layer.go_backwards = True
    x = rng.normal(size=(3, 20, 3)).astype(np.float32)
    mask = rng.random((3, 20)) > 0.5
    h0 = tuple(rng.normal(size=(3, 6)).astype(np.float32) for _ in layer.cell.state_names)
    recorded = layer.run(x, mask, h0, trace="full", engine=NUMBA).trace
    k0, k1 = window
    part = layer.run(x, mask, h0, trace=True, engine=NUMBA).trace.window(k0, k1)
    np.testing.assert_array_equal(part.step_index, recorded.step_index[k0:k1])
    np.testing.assert_array_equal(part.mask, recorded.mask[:, k0:k1])
    for name in recorded:
        want = recorded[name]
        np.testing.assert_array_equal(part[name], want if want.ndim == 1 else
                                      want[:, k0:k1], err_msg=name)
    assert replayed == [k1 - k0]


def test_a_window_of_a_computed_trace_is_a_slice_of_it(monkeypatch):
    layer = layer_of("lstm", units=4)
    x = np.random.default_rng(10).normal(size=(2, 12, 3)).astype(np.float32)
    tr = layer.run(x, trace=True, engine=NUMBA).trace
    z = tr["z"]  # computed now, whole
    monkeypatch.setattr(replay, "replay", None)  # nothing more is computed
    part = tr.window(3, 7)
    assert np.shares_memory(part["z"], z)
    np.testing.assert_array_equal(part["z"], z[:, 3:7])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_trace_steps_in_the_cli_are_the_whole_traces_rows(tmp_path, monkeypatch, replayed,
                                                          cell):
    """rnncli trace --steps computes only those steps' terms (after the scan); its rows
    are those of the whole trace, which the loop writes as it scans."""
    import csv

    from click.testing import CliRunner

    from rnncli.cli import cli

    monkeypatch.setenv("RNNCLI_ENGINE", "numba")
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(11).normal(size=(3, 30, 3)).astype(np.float32))
    args = ["trace", "--seed", "2", "--units", "5", "--cell", cell, "-i", str(path), "-f", "csv"]
    whole = CliRunner().invoke(cli, args, catch_exceptions=False).output
    replayed.clear()
    part = CliRunner().invoke(cli, [*args, "--steps", "10:13"], catch_exceptions=False).output
    rows = [r for r in csv.DictReader(whole.splitlines()) if 10 <= int(r["step"]) < 13]
    assert list(csv.DictReader(part.splitlines())) == rows and rows
    assert replayed and max(replayed) <= 3  # the steps shown (and one to name columns)


@pytest.mark.parametrize("masked", [False, True])
def test_some_samples_compute_their_terms_alone(monkeypatch, masked):
    """Trace.take (Result.take: export --sample) of a trace computed when read replays
    those samples alone, and a window of them those steps alone: the same bits."""
    shapes, real = [], replay.replay

    def spy(cell, loop, x, *rest, **kw):
        shapes.append(x.shape[:2])
        return real(cell, loop, x, *rest, **kw)

    monkeypatch.setattr(replay, "replay", spy)
    rng = np.random.default_rng(5)
    layer = layer_of("lstm", np.float32, units=6)
    x = rng.normal(size=(7, 12, 3)).astype(np.float32)
    mask = rng.random((7, 12)) > 0.3 if masked else None
    traced = layer.run(x, mask, trace=True, engine=NUMBA).trace
    whole = layer.run(x, mask, trace="full", engine=NUMBA).trace
    part = traced.take([5, 2])
    assert_same_terms(part, {k: v[[5, 2]] if np.ndim(v) == 3 else v for k, v in whole.items()})
    assert shapes == [(2, 12)]
    shapes.clear()
    window = traced.take([4]).window(3, 6)
    np.testing.assert_array_equal(window["z"], whole["z"][[4], 3:6])
    assert shapes == [(1, 3)]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_export_steps_rows_compute_those_steps_alone(tmp_path, monkeypatch, replayed, fmt):
    """rnncli export -f csv/ndjson --steps writes the whole trace's rows of those steps,
    computing only their terms (after the scan), as trace --steps does."""
    import json

    from click.testing import CliRunner

    from rnncli.cli import cli

    monkeypatch.setenv("RNNCLI_ENGINE", "numba")
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(12).normal(size=(3, 40, 3)).astype(np.float32))
    args = ["export", "--seed", "2", "--units", "5", "--cell", "lstm", "-i", str(path),
            "-f", fmt, "-o", "-"]
    whole = CliRunner().invoke(cli, args, catch_exceptions=False).output.splitlines()
    replayed.clear()
    part = CliRunner().invoke(cli, [*args, "--steps", "20:23"],
                              catch_exceptions=False).output.splitlines()
    if fmt == "csv":
        step = whole[0].split(",").index("step")
        rows = [whole[0]] + [r for r in whole[1:] if 20 <= int(r.split(",")[step]) < 23]
    else:
        rows = [r for r in whole if 20 <= json.loads(r)["step"] < 23]
    assert part == rows and len(rows) > 3
    # computed after the scan (the loop wrote no terms), those steps alone (and one
    # step to name the columns)
    assert sorted(replayed) == [1, 3]


@pytest.mark.parametrize("read", [False, True])
def test_a_deferred_trace_goes_with_its_result(read):
    """No reference cycle keeps a deferred trace (and its copies of the input and states)
    alive once its result is dropped: it would wait for the garbage collector, and every
    trace would take fresh memory, faulted in page by page. (Unread is the case that
    matters: once read, the trace lets go of what computed it.)"""
    import gc
    import weakref

    layer = layer_of("lstm", np.float32, units=8)
    x = np.random.default_rng(0).normal(size=(3, 20, 3)).astype(np.float32)
    gc.collect()
    gc.disable()
    try:
        result = layer.run(x, trace=True, engine=NUMBA)
        derive = weakref.ref(result.trace._terms._derive)
        if read:
            result.trace["z"]
        del result
        assert derive() is None
    finally:
        gc.enable()
