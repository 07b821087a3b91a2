"""The compiled (numba) loops give the numpy loop's numbers, and Keras' numbers."""

import os

import numpy as np
import pytest
from conftest import CASES, WITH_CONFIG, assert_outputs_match_keras

from rnncli.core import engine as E
from rnncli.core import fast, planning, split
from rnncli.core.gru import GRUCell
from rnncli.core.lstm import LSTMCell
from rnncli.core.rnn import RNN
from rnncli.core.simple_rnn import SimpleRNN
from rnncli.keras.random import random_weights

pytest.importorskip("numba")


@pytest.fixture
def engine(monkeypatch):
    def use(name):
        monkeypatch.setenv("RNNCLI_ENGINE", name)

    return use


def layer_of(cell, dtype=np.float32, units=16, dim=3, seed=4, **kw):
    """A layer with random weights, a bias, and a recurrence that contracts (rounding
    differences can't grow without bound)."""
    gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[cell]
    k, u, b = random_weights(seed, units, dim, dtype=dtype, gates=gates,
                             bias_rows=2 if cell == "gru" and kw.get("reset_after", True) else 1)
    b = b + (np.random.default_rng(seed).normal(size=b.shape) * 0.3).astype(dtype)
    u = u * dtype(0.9)
    if cell == "simple_rnn":
        return SimpleRNN("r", k, u, b, return_sequences=True, **kw)
    cls = LSTMCell if cell == "lstm" else GRUCell
    return RNN("r", cls(k, u, b, **kw), return_sequences=True)


# an ulp or so per step, as BLAS and the compiled loop sum in different orders, and float32
# tanh and sigmoid are Eigen's rational tanh
TOL = {np.float32: {"atol": 2e-6, "rtol": 1e-5}, np.float64: {"atol": 1e-12, "rtol": 1e-11}}


def assert_close_runs(d0, d1, dtype, scale=1):
    """d1's outputs, states and trace within TOL of d0's, atol times ``scale``."""
    tol = dict(TOL[dtype], atol=TOL[dtype]["atol"] * scale)
    for name in d0.sequences:
        np.testing.assert_allclose(d1.sequences[name], d0.sequences[name], **tol)
    for name in d0.states:
        np.testing.assert_allclose(d1.states[name], d0.states[name], **tol)
    if d0.trace is not None:
        assert list(d0.trace) == list(d1.trace)
        for name in d0.trace:
            np.testing.assert_allclose(d1.trace[name], d0.trace[name], **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", fast.ACTIVATIONS)
@pytest.mark.parametrize("trace", [False, True])
def test_simple_rnn_numba_matches_numpy(dtype, act, trace):
    layer = layer_of("simple_rnn", dtype, activation=act)
    x = np.random.default_rng(0).normal(size=(2, 700, 3)).astype(dtype)
    d0 = layer.run(x, trace=trace, engine="numpy")
    d1 = layer.run(x, trace=trace, engine="numba")
    assert_close_runs(d0, d1, dtype)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("acts", [("tanh", "sigmoid"), ("relu", "hard_sigmoid"),
                                  ("linear", "tanh")])
@pytest.mark.parametrize("trace", [False, True])
@pytest.mark.parametrize("rows", [5, 19])  # one group of rows; groups and a tail
def test_gated_numba_matches_numpy(cell, dtype, acts, trace, rows):
    layer = layer_of(cell, dtype, activation=acts[0], recurrent_activation=acts[1])
    x = np.random.default_rng(0).normal(size=(rows, 300, 3)).astype(dtype)
    d0 = layer.run(x, trace=trace, engine="numpy")
    d1 = layer.run(x, trace=trace, engine="numba")
    assert_close_runs(d0, d1, dtype)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
# one vector of units (AVX-512); vectors and a tail; 1-2 rows get x·W ahead (W and U > 40 KiB)
@pytest.mark.parametrize("units", [16, 40, 64])
@pytest.mark.parametrize("rows", [1, 4, 19])
@pytest.mark.parametrize("masked", [False, True])
def test_each_units_gates_in_one_loop_give_the_gate_by_gate_bits(cell, units, rows, masked):
    """An untraced float32 LSTM or GRU with tanh and sigmoid runs each unit's gates in one
    loop (rnncli/core/_numba_rows.py); traced whole by the loop itself (trace="full";
    trace=True is computed after an untraced loop), gate by gate. The states are the
    same bits, masked steps too. (The split loop, gate by gate, is checked against the
    one loop too: test_steps_split_by_units_give_one_threads_numbers.)"""
    from rnncli.core._numba_kernels import KERNELS

    layer = layer_of(cell, np.float32, units=units, dim=5)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(19, 200, 5)).astype(np.float32)
    mask = rng.random((19, 200)) > 0.2 if masked else None
    one = E.Engine("numba", threads=1)
    fused = layer.run(x[:rows], mask=None if mask is None else mask[:rows], engine=one)
    gate_by_gate = layer.run(x, mask=mask, trace="full", engine=one)
    for name in fused.sequences:
        np.testing.assert_array_equal(fused.sequences[name],
                                      gate_by_gate.sequences[name][:rows])
    assert np.abs(fused.sequences["h"]).max() > 0.1  # not a saturated or vanished run
    # the one loop ran: it needs the states and outputs typed C-contiguous
    states_and_outs = [a for sig in KERNELS[cell, True, False].signatures for a in sig[6:8]]
    assert states_and_outs and all(t.layout == "C" for a in states_and_outs for t in a)


def test_c_contiguous_is_the_arrays_layout_type():
    import numba

    from rnncli.core._numba_rows import c_contiguous

    @numba.njit
    def layout(a):
        return c_contiguous(a)

    assert layout(np.zeros((2, 6), np.float32))
    assert not layout(np.zeros((2, 6), np.float32)[:, ::2])
    assert not layout(np.zeros((2, 6), np.float32)[:, 1:4])


@pytest.mark.parametrize("rows", [11, 4, 3, 2, 1])  # groups of 8 and a tail; small groups
@pytest.mark.parametrize("panels", [2, 3])  # an even and an odd count, the last part-filled
def test_compiled_products_sum_each_row_in_order(rows, panels):
    """h·U in the compiled loop is, for every row and column, h[0]·U[0] + h[1]·U[1] + ...
    in that order, one fused multiply-add each (emulated in float64, where a float32
    product is exact), whichever of the products (rows at once, panels at once) runs."""
    from rnncli.core._numba_panels import panel_width

    dtype = np.float32
    units = (panels - 1) * panel_width(4) + 5
    layer = layer_of("simple_rnn", dtype, units=units, activation="linear")
    x = np.random.default_rng(0).normal(size=(rows, 70, 3)).astype(dtype)
    d = layer.run(x, trace="full", engine=E.Engine("numba", threads=1))  # h·U as the loop has it
    u = layer.cell.recurrent_kernel
    h_prev = np.concatenate([np.zeros_like(d.sequence[:, :1]), d.sequence[:, :-1]], 1)
    for t in (1, 40, 69):
        h = h_prev[:, t]
        acc = np.zeros((len(h), u.shape[1]), dtype)
        for i in range(u.shape[0]):
            acc = (h[:, i:i + 1].astype(np.float64) * u[i] + acc).astype(dtype)
        np.testing.assert_array_equal(d.trace["hu"][:, t], acc)


def test_keras2_hard_sigmoid_is_compiled_as_keras_2_computes_it():
    layer = layer_of("lstm", recurrent_activation="hard_sigmoid", keras_major=2)
    assert layer.cell.compiled() is fast.lstm_recurrence
    x = np.random.default_rng(0).normal(size=(3, 200, 3)).astype(np.float32)
    assert_close_runs(layer.run(x, engine="numpy"), layer.run(x, engine="numba"), np.float32)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("zero_output", [False, True])
@pytest.mark.parametrize("trace", [False, True])
def test_masks_in_the_compiled_loop(monkeypatch, cell, zero_output, trace):
    """A masked step keeps the states and outputs the previous output (or zeros)."""
    monkeypatch.setattr(E, "CHUNK_BYTES", 700)  # chunks of a few steps: prev carries over
    layer = layer_of(cell)
    layer.zero_output_for_mask = zero_output
    x = np.random.default_rng(0).normal(size=(6, 90, 3)).astype(np.float32)
    mask = np.random.default_rng(1).random((6, 90)) > 0.4
    mask[2] = False  # a row that is never live
    d0 = layer.run(x, mask=mask, trace=trace, engine="numpy")
    d1 = layer.run(x, mask=mask, trace=trace, engine="numba")
    assert_close_runs(d0, d1, np.float32)
    np.testing.assert_array_equal(d1.sequences["h"][2], 0)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("trace", [False, True])
def test_first_step_from_a_zero_state_skips_h_u_with_the_same_bits(monkeypatch, cell, trace):
    """From a zero state the first step's h·U is +0 and is not computed: the numbers are
    the bits computing it gives; from another state, or where U holds an inf (0·inf is
    nan, as in Keras), it is computed."""
    layer = layer_of(cell, units=24)
    x = np.random.default_rng(0).normal(size=(11, 9, 3)).astype(np.float32)
    skipped = layer.run(x, trace=trace, engine="numba")
    calls, real_packed = [], fast.packed

    def never_fresh(cell, parts=0):
        """The packed weights, with U counted as not finite: h·U is always computed."""
        calls.append(parts)
        q = fast.Packed.__new__(fast.Packed)
        q.__dict__.update(real_packed(cell, parts).__dict__, finite=False)
        return q

    monkeypatch.setattr(fast, "packed", never_fresh)
    full = layer.run(x, trace=trace, engine="numba")
    assert calls
    for name in full.sequences:
        np.testing.assert_array_equal(skipped.sequences[name], full.sequences[name])
    if trace:
        for name in full.trace:
            np.testing.assert_array_equal(skipped.trace[name], full.trace[name])
    monkeypatch.undo()

    names = layer.cell.state_names
    start = tuple(np.random.default_rng(2).normal(size=(11, 24)).astype(np.float32) * 0.5
                  for _ in names)
    assert_close_runs(layer.run(x, initial_state=start, engine="numpy"),
                      layer.run(x, initial_state=start, engine="numba"), np.float32)

    u = np.array(layer.cell.recurrent_kernel)
    u[5, 7] = np.inf
    bad = layer_of(cell, units=24)
    bad.cell.recurrent_kernel = u
    with np.errstate(invalid="ignore"):
        want = bad.run(x, engine="numpy").sequences["h"]
        got = bad.run(x, engine="numba").sequences["h"]
    assert np.isnan(want[:, 0]).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("trace", [False, True])
@pytest.mark.parametrize("rows", [3, 21])
def test_compiled_row_blocks_in_threads_give_identical_numbers(monkeypatch, cell, trace, rows):
    """Rows never interact: blocks, threads and a sample's batch change no number."""
    monkeypatch.setattr(E, "CHUNK_BYTES", 2000)
    layer = layer_of(cell)
    x = np.random.default_rng(0).normal(size=(rows, 60, 3)).astype(np.float32)
    whole = layer.run(x, trace=trace, engine=E.Engine("numba", threads=1))
    split = layer.run(x, trace=trace, engine=E.Engine("numba", threads=3))
    for name in whole.sequences:
        np.testing.assert_array_equal(split.sequences[name], whole.sequences[name])
    if trace:
        for name in whole.trace:
            np.testing.assert_array_equal(split.trace[name], whole.trace[name])
    for b in (0, 2, rows - 1):
        one = layer.run(x[b:b + 1], trace=trace, engine="numba")
        np.testing.assert_array_equal(one.sequences["h"], whole.sequences["h"][b:b + 1])


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trace", [False, "full"])
@pytest.mark.parametrize("chunk", [None, 45, 7])  # steps a chunk: not AHEAD's multiples
@pytest.mark.parametrize("units", [16, 64])  # W and U in L1, or not
def test_rows_projected_ahead_have_the_numbers_they_have_in_a_batch(monkeypatch, cell, dtype,
                                                                     trace, chunk, units):
    """One or two rows get x·W + b computed AHEAD steps ahead of their recurrence; five
    rows, one step at a time. Every number, x·W of the trace included, is the same, masked
    steps and chunks that end between two projections too."""
    from rnncli.core import _numba_kernels as K

    if chunk:
        chunks = []

        def steps(B, width, itemsize, T, chunk_bytes=None):
            chunks.append(min(T, chunk))
            return chunks[-1]

        monkeypatch.setattr(E, "chunk_steps", steps)
    layer = layer_of(cell, dtype, units=2 * units if cell == "simple_rnn" else units, dim=32)
    assert K.AHEAD_ROWS < 5
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 3 * K.AHEAD + 11, 32)).astype(dtype)
    mask = rng.random(x.shape[:2]) > 0.2
    one = E.Engine("numba", threads=1)
    whole = layer.run(x, mask=mask, trace=trace, engine=one)
    for rows in (slice(0, 1), slice(2, 4)):
        part = layer.run(x[rows], mask=mask[rows], trace=trace, engine=one)
        for name in whole.sequences:
            np.testing.assert_array_equal(part.sequences[name], whole.sequences[name][rows])
        for name in whole.trace or ():  # every (batch, step, width) term; the bias is one
            if whole.trace[name].ndim == 3:
                np.testing.assert_array_equal(part.trace[name], whole.trace[name][rows], name)
    assert trace is False or {"xw", "z"} <= set(whole.trace)
    assert not chunk or chunks == [chunk] * len(chunks)


def test_auto_picks_numba_for_small_steps(engine):
    engine("auto")
    assert fast.worth_it(1, 512, 4) and fast.worth_it(4, 512, 1, itemsize=8)  # few rows
    assert fast.worth_it(1024, 128, 4) and fast.worth_it(1024, 512, 3)  # float32 gated
    assert fast.worth_it(1024, 64, 1) and not fast.worth_it(1024, 16, 1)  # half padding
    assert fast.worth_it(1024, 16, 3, itemsize=8)  # float64 GRU
    assert fast.worth_it(256, 512, 4, itemsize=8) and fast.worth_it(1024, 16, 4, itemsize=8)
    assert fast.worth_it(64, 64, 1, itemsize=8)  # float64 tanh is the loop's own: vectorized
    assert not fast.worth_it(64, 16, 1, itemsize=8)  # float64 SimpleRNN of 16 units: a tie
    lstm = layer_of("lstm", units=64).cell
    assert E.plan(lstm, 1, 100, None, None).compiled is fast.lstm_recurrence
    assert E.plan(lstm, 1024, 3, None, None).compiled is fast.lstm_recurrence  # any length
    narrow = layer_of("simple_rnn", units=16, dtype=np.float64).cell
    assert E.plan(narrow, 1024, 100, None, None).compiled is None  # numpy's loop ahead there
    assert layer_of("simple_rnn", activation="gelu").cell.compiled() is None  # not compiled
    assert layer_of("gru", reset_after=False).cell.compiled() is None
    # one input per process (the CLI): only where the saved time pays for importing numba
    once = E.Engine(one_shot=True)
    assert E.plan(lstm, 1, 10000, None, once).compiled is None
    assert E.plan(lstm, 1, 200_000, None, once).compiled is not None
    assert E.plan(lstm, 256, 100, None, once).compiled is None  # 0.4G multiply-adds
    assert E.plan(lstm, 256, 2000, None, once).compiled is not None  # 8.4G
    engine("numpy")
    assert E.plan(lstm, 1, 200_000, None, None).compiled is None
    assert E.plan(lstm, 1, 200_000, None, E.Engine("numpy")).compiled is None


@pytest.mark.parametrize("case,fmt,path", [c for c in CASES if c.values[1] in WITH_CONFIG])
def test_numba_path_matches_keras(engine, case, fmt, path):
    engine("numba")
    assert_outputs_match_keras(case, path)
    assert os.environ["RNNCLI_ENGINE"] == "numba"


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("sequences", [True, False])
@pytest.mark.parametrize("rows,chunks", [(1, True), (2, False), (3, False), (5, True)])
def test_steps_split_by_units_give_one_threads_numbers(monkeypatch, cell, dtype, threads,
                                                       sequences, rows, chunks):
    """A batch too small to split by rows has each step's units split across threads
    (rnncli/core/_numba_split.py): the same bits as one thread, over chunks of steps or
    in one (x·W computed AHEAD steps at once for up to AHEAD_ROWS rows), from
    given initial states, keeping the sequence or only the final states."""
    if chunks:
        monkeypatch.setattr(E, "CHUNK_BYTES", 2**14)  # several chunks, shorter than AHEAD
    # past the split's thresholds (SimpleRNN at 1-2 rows: 1024 units); 2 and 3 divide H
    units = (864 if rows > 2 else 1152) if cell == "simple_rnn" else 384
    layer = layer_of(cell, dtype, units=units)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, 90, 3)).astype(dtype)
    h0 = tuple(rng.normal(size=(rows, units)).astype(dtype) * 0.5
               for _ in layer.cell.state_names)
    how = E.plan(layer.cell, rows, 90, None, E.Engine("numba", threads=threads))
    assert how.split == threads
    ahead = split.split_ahead(fast.packed(layer.cell, threads), rows)
    assert (ahead is not None) == (rows <= 2)

    def run(engine):
        return layer.run(x, initial_state=h0, keep=sequences, engine=engine)

    one = run(E.Engine("numba", threads=1))
    many = run(E.Engine("numba", threads=threads))
    assert bool(many.sequences) == sequences
    for name in one.sequences:
        np.testing.assert_array_equal(many.sequences[name], one.sequences[name])
    for name in one.states:
        np.testing.assert_array_equal(many.states[name], one.states[name])
    assert_close_runs(run("numpy"), many, dtype, scale=units / 384)  # sums of H products


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("rows,chunks", [(1, True), (3, False)])
def test_a_split_scan_records_the_gates_a_backward_pass_reads(monkeypatch, cell, dtype,
                                                              threads, rows, chunks):
    """Recording a forward pass for its gradients (trace="gates"), a batch too small to
    split by rows has its units split across threads too: each part writes its own
    units' gates (and a GRU's h·U), put in place after (split.put_in_place). The same bits
    as one thread's, over chunks of steps or in one; the gates those of numpy's trace."""
    if chunks:
        monkeypatch.setattr(E, "CHUNK_BYTES", 2**14)
    layer = layer_of(cell, dtype, units=384)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(rows, 90, 3)).astype(dtype)
    h0 = tuple(rng.normal(size=(rows, 384)).astype(dtype) * 0.5
               for _ in layer.cell.state_names)
    split_engine = E.Engine("numba", threads=threads)
    assert E.plan(layer.cell, rows, 90, None, split_engine, trace="gates").split == threads

    def record(engine):
        return E.scan(layer.cell, x, h0, trace="gates", engine=engine)

    one, many = record(E.Engine("numba", threads=1)), record(split_engine)
    names = fast.GATE_TERMS[cell]
    assert [n for n in many.terms if n in names] == list(names)
    for name in names:
        np.testing.assert_array_equal(many.terms[name], one.terms[name])
    for name in one.sequences:
        np.testing.assert_array_equal(many.sequences[name], one.sequences[name])
    numpy = E.scan(layer.cell, x, h0, trace="full", engine=E.Engine("numpy"))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for name in names:
        np.testing.assert_allclose(many.terms[name], numpy.terms[name], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("columns", [7, 96, 300])  # 1 panel; 3-19: groups of 2 and 4, tails
def test_panels_read_last_to_first_give_the_same_bits(dtype, rows, columns):
    """The split loop reads U's panels last to first on odd steps, so that the cache keeps
    the ones it read last (rnncli/core/_numba_split.py): every column's sum is the same
    multiply-adds in the same order either way, and h·U to rounding."""
    from rnncli.core._numba_panels import BLOCK, ROWS, pack, panel_product

    rng = np.random.default_rng(4)
    h = rng.normal(size=(rows, 40)).astype(dtype)
    u = rng.normal(size=(40, columns)).astype(dtype)
    panels = pack(u)
    width = panels.shape[0] * panels.shape[2]
    forward, backward = (np.full((BLOCK + ROWS, width), np.nan, dtype) for _ in range(2))
    panel_product(h, 0, rows, panels, forward, False)
    panel_product(h, 0, rows, panels, backward, True)
    np.testing.assert_array_equal(backward[:rows], forward[:rows])
    np.testing.assert_allclose(forward[:rows, :columns], h.astype(np.float64) @ u,
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    assert not np.isnan(forward[:rows, :width]).any()  # every panel written


def test_a_split_part_out_of_range_is_refused_before_the_kernel():
    """The split kernel reads its claim counters unchecked: a thread's own part must be
    one the weights have."""
    cell = layer_of("lstm", units=384).cell
    weights = fast.packed(cell, 2)
    for home in (-1, 2):
        with pytest.raises(ValueError, match=f"part {home} of 2"):
            split.split_steps(cell, weights, None, 0, None, None, None, 0, None, home, 1)


def test_split_is_only_for_small_batches_with_big_steps():
    assert fast.split_parts(1, 512, 4, 4, threads=2) == 2
    assert fast.split_parts(4, 128, 4, 4, threads=2) == 2  # 0.79x measured
    assert fast.split_parts(4, 32, 4, 4, threads=2) == 0  # 1.37x measured
    assert fast.split_parts(1, 64, 4, 4, threads=2) == 0  # behind unsplit when loaded
    assert fast.split_parts(1, 32, 4, 8, threads=2) == 2  # float64: 0.80x
    assert fast.split_parts(8, 64, 4, 4, threads=2) == 0  # 1.10x measured
    assert fast.split_parts(1, 512, 1, 4, threads=2) == 0 and fast.split_parts(8, 512, 1, 4, 2)
    assert fast.split_parts(4, 128, 1, 8, threads=2) == 2  # float64
    assert fast.split_parts(64, 512, 4, 4, threads=2) == 0  # rows split instead
    assert fast.split_parts(1, 511, 4, 4, threads=2) == 0  # no even split of the units
    assert fast.split_parts(1, 512, 4, 4, threads=1) == 0
    lstm = layer_of("lstm", units=512).cell
    assert E.plan(lstm, 1, 100, None, E.Engine("numba", threads=2)).split == 2
    # the backward pass's trace: a gated cell's split kernels write its gates; a
    # SimpleRNN's whole trace is written by the loop, which no split kernel does
    assert E.plan(lstm, 1, 100, None, E.Engine("numba", threads=2), "gates").split == 2
    simple = layer_of("simple_rnn", units=1024).cell
    assert E.plan(simple, 1, 100, None, E.Engine("numba", threads=2)).split == 2
    assert E.plan(simple, 1, 100, None, E.Engine("numba", threads=2), "gates").split == 0
    # a trace computed after the scan (rnncli/core/replay.py) scans as the forward pass does
    for trace in (True, "full"):
        assert E.plan(lstm, 1, 100, None, E.Engine("numba", threads=2), trace).split == 2
    assert E.plan(lstm, 1, 100, np.ones((1, 100), bool), E.Engine("numba", threads=2)).split == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,M,P", [(17, 5, 7), (300, 11, 70), (1000, 16, 64), (600, 40, 96),
                                   (300, 131, 70), (260, 128, 64)])  # packed from 128
@pytest.mark.parametrize("threads", [1, 2])
def test_backward_products_equal_blas_to_rounding(monkeypatch, dtype, N, M, P, threads):
    """The compiled backward pass's aᵀ·b and d·Wᵀ (rnncli/core/_numba_products.py): b's
    columns in whole panels, past them (a panel padded with zeros), or both; a's columns
    in groups of ROWS and a part group; rows in chunks of DEPTH and a part chunk; in one
    thread or shared by two (aᵀ·b by panels, d·Wᵀ by rows). Each within float rounding of
    the exact product (float64 of float32 numbers, or longdouble sums), as close as
    BLAS's."""
    from rnncli.core._numba_panels import pack
    from rnncli.core.fast_backward import Products

    monkeypatch.setattr(Products, "SHARED_MIN", 0)  # shared however small
    monkeypatch.setattr(Products, "PANELS_MIN", 0)  # compiled however narrow

    r = np.random.default_rng(N + M + P)
    a, b = r.normal(size=(N, M)).astype(dtype), r.normal(size=(N, P)).astype(dtype)
    w = r.normal(size=(M, P)).astype(dtype)  # a kernel (D, P): dL/dx = b·wᵀ
    wide = np.longdouble
    exact, exact_x = a.astype(wide).T @ b.astype(wide), b.astype(wide) @ w.astype(wide).T
    products = Products(pack(np.ascontiguousarray(w.T)), threads)
    found = products.gram(a, b)
    gx = np.empty((N, M), dtype)
    products.input_gradient(b, gx)
    assert found.dtype == gx.dtype == dtype
    eps = np.finfo(dtype).eps
    for ours, blas, want in ((found, a.T @ b, exact), (gx, b @ w.T, exact_x)):
        scale = float(np.abs(want).max())
        error = float(np.abs(ours - want).max())
        assert error <= max(4 * float(np.abs(blas - want).max()), 8 * eps * scale)


HASWELL_PRODUCTS = """
import numpy as np
from rnncli.core import _numba_panels
from rnncli.core._numba_panels import pack
from rnncli.core.fast_backward import Products
assert _numba_panels.VECTOR_BYTES == 32  # 8 float64 numbers a panel
Products.SHARED_MIN = Products.PANELS_MIN = 0
r = np.random.default_rng(0)
worst = 0.0
for dtype in (np.float32, np.float64):
    for N, M, P in [(300, 131, 70), (513, 9, 33), (260, 128, 64)]:
        a, b = r.normal(size=(N, M)).astype(dtype), r.normal(size=(N, P)).astype(dtype)
        w = r.normal(size=(M, P)).astype(dtype)
        for threads in (1, 2):
            products = Products(pack(np.ascontiguousarray(w.T)), threads)
            gx = np.empty((N, M), dtype)
            products.input_gradient(b, gx)
            for ours, exact in ((products.gram(a, b), a.astype(np.longdouble).T @ b),
                                (gx, b.astype(np.longdouble) @ w.T)):
                error = np.abs(ours - exact).max() / np.abs(exact).max()
                worst = max(worst, float(error) / np.finfo(dtype).eps)
print(worst)
"""


def test_backward_products_on_a_cpu_without_avx512():
    """Without AVX-512 a panel is 32 bytes wide a vector (8 float64 numbers a panel here
    against 16 or 32 on this machine's CPU): the products, compiled for a Haswell CPU in
    a process of their own, stay within rounding and inside their buffers (copying a
    panel 16 numbers at a time wrote past one and aborted the process)."""
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CPU_NAME": "haswell"}
    done = subprocess.run([sys.executable, "-c", HASWELL_PRODUCTS], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 64  # in units of the dtype's epsilon


def test_backward_gram_adds_chunk_sums_as_blas_adds_blocks():
    """aᵀ·b over 12800 rows: one chain of multiply-adds per number had 4.3e-6 of the
    largest value's error in float32 (10x BLAS's); sums of DEPTH rows added one to the
    next keep it to BLAS's (3.9e-7)."""
    from rnncli.core.fast_backward import Products

    r = np.random.default_rng(0)
    a, b = (r.standard_normal((12800, n), np.float32) for n in (64, 256))
    exact = a.astype(np.float64).T @ b.astype(np.float64)
    error = np.abs(Products(None).gram(a, b) - exact).max() / np.abs(exact).max()
    assert error < 1.5e-6


def test_kernel_caches_follow_every_source_they_inline(tmp_path):
    """numba keys a cached kernel on its own bytecode and closure: each kernel keeps a hash
    of the sources it inlines in its closure, so editing _numba_panels.py (or the rows
    in _numba_rows.py) compiles them again instead of loading stale code."""
    from rnncli.core import _numba_kernels, _numba_panels, _numba_split

    def stamps(kernel):
        return [c.cell_contents for c in kernel.py_func.__closure__]

    from rnncli.core import _numba_backward

    ours = _numba_panels.source_stamp("_numba_panels", "_numba_activations", "_numba_kernels",
                                      "_numba_rows", "_numba_borrowed")
    split = _numba_panels.source_stamp("_numba_panels", "_numba_activations", "_numba_rows",
                                       "_numba_split", "_numba_borrowed", "_numba_atomics")
    backward = _numba_panels.source_stamp("_numba_panels", "_numba_backward", "fast_backward",
                                          "_numba_borrowed", "_numba_activations")
    assert all(stamps(k) == [ours] for k in _numba_kernels.KERNELS.values())
    assert all(stamps(k) == [split] for k in _numba_split.KERNELS.values())
    assert all(stamps(k) == [backward] for k in _numba_backward.KERNELS.values())
    from rnncli.core import _numba_backward_split

    backward_split = _numba_panels.source_stamp(
        "_numba_panels", "_numba_backward_split", "_numba_backward", "fast_backward",
        "_numba_borrowed", "_numba_activations", "_numba_atomics")
    assert all(stamps(k) == [backward_split] for k in _numba_backward_split.KERNELS.values())
    from rnncli.core import _numba_products

    products = _numba_panels.source_stamp("_numba_panels", "_numba_products",
                                          "_numba_borrowed")
    assert stamps(_numba_products._gram) == stamps(_numba_products.times_packed) == [products]
    without = _numba_panels.source_stamp("_numba_panels", "_numba_activations", "_numba_kernels")
    assert len({ours, split, backward, products, without}) == 5


def test_scans_one_thread_does_quickly_run_in_one(monkeypatch):
    """Threads cost a tenth of a millisecond or two a scan (an idle core woken, the GIL
    handed between blocks): a short scan stays in the calling thread, a long one does
    not, and a thread count asked for is what runs."""
    monkeypatch.setattr(planning, "threads", lambda: 2)
    monkeypatch.setattr(planning, "idle_cores", lambda: 1)
    lstm = layer_of("lstm").cell  # 3 features, 8 units
    big = LSTMCell(*(np.zeros(s, np.float32) for s in ((32, 256), (64, 256), (256,))))
    assert E.plan(big, 64, 1, None, E.Engine("numba")).threads == 1  # ~0.02 ms
    assert E.plan(big, 64, 200, None, E.Engine("numba")).threads == 2  # ~5 ms
    assert E.plan(lstm, 64, 10, None, E.Engine("numba", threads=2)).threads == 2
    # measured, one thread: 1.41-1.46 ms (LSTM, float32, 64 units) and 0.21-0.22 ms
    assert fast.one_thread_seconds(4, 1000, 32, 64, 4) == pytest.approx(1.44e-3, rel=0.3)
    assert fast.one_thread_seconds(2, 1000, 32, 16, 4) == pytest.approx(0.21e-3, rel=0.3)
    wide = LSTMCell(*(np.zeros(s, np.float32) for s in ((32, 2048), (512, 2048), (2048,))))
    assert E.plan(wide, 1, 5, None, E.Engine("numba")).split == 0  # 0.16 ms
    assert E.plan(wide, 1, 50, None, E.Engine("numba")).split == 2  # 1.6 ms


@pytest.mark.parametrize("apart", [False, True])
def test_a_few_rows_share_the_threads_only_where_cores_are_idle(monkeypatch, apart):
    """Fewer rows than two groups of the compiled products' go one block a thread when
    that saves more than threads cost, and only with a core idle for the other thread:
    each then has a fixed share, and a share whose core a busy process holds would hold
    up the scan. Two blocks for two threads likewise, and units split across threads;
    except, where the threads can be kept on different cores (``apart``:
    workers.keep_apart), the split and shares of whole row groups."""
    monkeypatch.setattr(planning, "threads", lambda: 2)
    monkeypatch.setattr(planning, "can_keep_apart", lambda: apart)
    idle = [1]
    monkeypatch.setattr(planning, "idle_cores", lambda: idle[0])
    cell = LSTMCell(*(np.zeros(s, np.float32) for s in ((32, 256), (64, 256), (256,))))
    wide = LSTMCell(*(np.zeros(s, np.float32) for s in ((32, 2048), (512, 2048), (2048,))))
    numba = E.Engine("numba")
    groups = 2 * fast.min_block_rows()  # rows enough for two blocks a thread can claim

    def run(cell, B, T, engine=numba):
        p = E.plan(cell, B, T, None, engine)
        return p.threads, p.edges

    def busy():
        raise AssertionError("a short scan asked for the idle cores")

    monkeypatch.setattr(planning, "idle_cores", busy)
    assert run(cell, 4, 10) == (1, [0, 4])  # not worth a thread: no /proc/loadavg read
    monkeypatch.setattr(planning, "idle_cores", lambda: idle[0])
    assert run(cell, 4, 1000) == (2, [0, 2, 4])  # 0.36 ms saved
    assert run(cell, 2, 1000) == (2, [0, 1, 2])  # 0.25 ms saved
    assert run(cell, 4, 100) == (1, [0, 4])  # 0.04 ms saved
    assert run(cell, groups, 1000)[0] == 2  # blocks of whole row groups
    assert E.plan(wide, 1, 50, None, numba).split == 2
    idle[0] = 0  # another process runs
    assert run(cell, 4, 1000) == (1, [0, 4])  # shares of part of a group: never
    two = (2, [0, groups // 2, groups]) if apart else (1, [0, groups])
    assert run(cell, groups, 1000) == two  # a whole group a thread: kept apart only
    three = groups + groups // 2
    assert run(cell, three, 1000)[0] == 2  # three blocks the threads claim
    assert E.plan(wide, 1, 50, None, numba).split == (2 if apart else 0)
    for written in ("full", "gates"):  # a loop writing a trace keeps the idle-core rule
        assert E.plan(wide, 1, 50, None, numba, written).split == 0
        assert E.plan(cell, groups, 1000, None, numba, written).threads == 1
    forced = E.Engine("numba", threads=2)  # a benchmark's threads: whatever runs beside
    assert run(cell, 4, 1000, forced) == (2, [0, 2, 4])
    assert E.plan(wide, 1, 50, None, forced).split == 2


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_packed_weights_are_writeable_whatever_the_cells_bias(kind):
    """numba compiles a read-only array as another type: the packed arrays the kernels
    take are writeable copies, so a cell with a (read-only) bias and one without share
    one compiled kernel (each compiles for seconds the first time)."""
    from rnncli.core._numba_kernels import KERNELS

    rng = np.random.default_rng(4)
    P = (4 if kind == "lstm" else 3) * 8
    make = LSTMCell if kind == "lstm" else GRUCell
    x = rng.normal(size=(2, 6, 5)).astype(np.float32)
    for bias in (rng.normal(size=P if kind == "lstm" else (2, P)).astype(np.float32), None):
        cell = make(*(rng.normal(size=s).astype(np.float32) for s in ((5, P), (8, P))), bias)
        p = fast.packed(cell)
        assert all(a.flags.writeable for a in (p.kernel, p.recurrent_kernel, p.bias,
                                               p.recurrent_bias))
        RNN("l", cell).run(x, engine="numba")
    signatures = KERNELS[kind, True, False].signatures  # x, x0, kernel, bias, panels, rb
    assert signatures and not any("readonly" in str(t) for s in signatures for t in s[2:6])


def test_packed_weights_are_kept_with_the_cell_until_a_weight_is_replaced():
    """A cell's weights are read-only, so their packing is done once per cell; assigning
    a new array packs again, and the numbers follow the new weights."""
    rng = np.random.default_rng(3)
    k, u, b = (rng.normal(size=s).astype(np.float32) * 0.3 for s in ((5, 32), (8, 32), (32,)))
    cell = LSTMCell(k, u, b)
    first = fast.packed(cell)
    assert fast.packed(cell) is first and fast.packed(cell, 2) is not first
    assert fast.packed(cell, 2) is fast.packed(cell, 2)
    with pytest.raises(ValueError, match="read-only"):
        cell.recurrent_kernel[0, 0] = 1.0
    k[0, 0] += 1  # the caller's array is not the cell's
    assert cell.kernel[0, 0] != k[0, 0]
    x = rng.normal(size=(2, 7, 5)).astype(np.float32)
    layer = RNN("l", cell, return_sequences=True)
    before = layer.run(x, engine="numba").sequences["h"]
    cell.recurrent_kernel = u * np.float32(0.5)
    assert fast.packed(cell) is not first
    after = layer.run(x, engine="numba").sequences["h"]
    reference = layer.run(x, engine="numpy").sequences["h"]
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(after, reference, atol=2e-6)


def test_the_backward_passs_transposed_weights_are_kept_as_the_forward_ones():
    """Wᵀ and Uᵀ packed for the backward pass are kept with the cell's packed weights
    (packed once per cell, not per gradient), and follow a replaced weight."""
    from rnncli.core._numba_panels import pack

    rng = np.random.default_rng(4)
    k, u, b = (rng.normal(size=s).astype(np.float32) for s in ((5, 32), (8, 32), (32,)))
    cell = LSTMCell(k, u, b)
    first = fast.transposed(cell)
    assert fast.transposed(cell) is first
    np.testing.assert_array_equal(first[0], pack(np.ascontiguousarray(k.T)))
    np.testing.assert_array_equal(first[1], pack(np.ascontiguousarray(u.T)))
    cell.recurrent_kernel = u * np.float32(0.5)
    again = fast.transposed(cell)
    assert again is not first
    np.testing.assert_array_equal(again[1], pack(np.ascontiguousarray((u * 0.5).T)))



@pytest.mark.parametrize("threads", [1, 2])
def test_inputs_in_any_layout_or_dtype_give_the_same_bits(monkeypatch, threads):
    """The kernels take the input C-contiguous: a strided or float64 input is copied a chunk
    at a time, with the same numbers, in the row-block loop and the split one."""
    monkeypatch.setattr(E, "CHUNK_BYTES", 2**14)
    layer = layer_of("lstm", units=384 if threads == 2 else 16)
    x = np.random.default_rng(0).normal(size=(90, 3, 3))  # float64, time-major
    strided = x.transpose(1, 0, 2)[:, ::-1]
    plain = np.ascontiguousarray(strided, np.float32)
    engine = E.Engine("numba", threads=threads)
    assert E.plan(layer.cell, 3, 90, None, engine).split == (2 if threads == 2 else 0)
    want = layer.run(plain, engine=engine)
    for given in (strided, strided.astype(np.float32), plain.astype(np.float64)):
        got = layer.run(given, engine=engine)
        np.testing.assert_array_equal(got.sequences["h"], want.sequences["h"])


def test_float64_tanh_and_sigmoid_are_within_a_few_ulp_of_libm():
    """The compiled loops' own float64 tanh and sigmoid (vectorized, from e^x - 1): within
    4 ulp of libm's over the whole range, NaN kept, the limits at +-inf."""
    import math

    from rnncli.core._numba_activations import SIGMOID, TANH, activate64

    xs = np.concatenate([np.linspace(-40, 40, 40001), np.geomspace(1e-300, 1, 600),
                         -np.geomspace(1e-300, 1, 600), [0.0, -0.0, 700.0, -700.0]])
    for code, exact in ((TANH, math.tanh), (SIGMOID, lambda v: 1 / (1 + math.exp(-v)))):
        got = np.array([activate64(v, code) for v in xs])
        want = np.array([exact(v) for v in xs])
        assert np.all(np.abs(got - want) <= 4 * np.spacing(np.abs(want))), code
    assert math.isnan(activate64(math.nan, TANH)) and math.isnan(activate64(math.nan, SIGMOID))
    assert activate64(math.inf, TANH) == 1 and activate64(-math.inf, TANH) == -1
    assert activate64(math.inf, SIGMOID) == 1 and activate64(-math.inf, SIGMOID) < 1e-300
    assert math.copysign(1, activate64(-0.0, TANH)) == -1


def test_read_only_inputs_reuse_the_compiled_kernels():
    """A read-only input (a memory-mapped .npy, stdin's bytes) is a type of its own to
    numba: it is copied a chunk at a time instead of compiling every kernel again."""
    from rnncli.core._numba_kernels import KERNELS

    layer = layer_of("lstm")
    x = np.random.default_rng(2).normal(size=(3, 20, 3)).astype(np.float32)
    want = layer.run(x, engine="numba").sequences["h"]
    kernel = KERNELS["lstm", True, False]
    compiled = len(kernel.signatures)
    x.flags.writeable = False
    np.testing.assert_array_equal(layer.run(x, engine="numba").sequences["h"], want)
    assert len(kernel.signatures) == compiled
