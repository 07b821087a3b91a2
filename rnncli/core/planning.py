"""How a scan runs: which loop (numpy's, or the cell's compiled one), in how many threads,
over which row blocks, or with each step's units split across threads.

The rules come from measurements on this project's machine (benchmarks/choices.py redoes
them; docs/performance.md): a compiled loop where it beats numpy's (``fast.worth_it``),
one thread unless sharing the rows saves more than threads cost (``compiled_threads``),
row blocks of at least one group of the compiled products' rows, and, for batches too
small for that, a split of the units (``fast.split_parts``) or one block of rows a
thread, each only while another core is idle (a fixed share on a core another process
holds makes the whole scan wait), except where the threads can be kept on different
cores (workers.keep_apart): then the split, and blocks of one group of rows or more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import fast
from .workers import can_keep_apart, idle_cores, threads

# Split the batch only when each step has at least this many values (batch x units) and
# every block gets at least MIN_ROWS rows: below that, threads cost more than they save
# (measured on 2 cores from (64, 128) to (1024, 256): 0.6-0.7x at 16k values, 1.0-1.3x
# from 32k). Up to BLOCKS_PER_THREAD blocks a thread, so a thread slowed by another
# process leaves its share to the others.
SPLIT_MIN_VALUES = 2**15
MIN_ROWS = 32
BLOCKS_PER_THREAD = 4
# A compiled forward scan's blocks: each reads all of U every step, so fewer, bigger ones
# (LSTM (64, 20, 32, 256): 16-row blocks 0.95x the time of 8-row ones quiet, 1.00x with a
# busy process; 32-row ones 0.88x quiet but 1.10x busy; LSTM and GRU, 64-1024 rows,
# 64-512 units, 3 runs each). A replay (one step of T x B rows) reads U once a group of
# rows whatever its blocks, and the backward loop was not measured: both keep
# BLOCKS_PER_THREAD.
COMPILED_BLOCKS_PER_THREAD = 2


@dataclass(frozen=True)
class Engine:
    """Which loop runs: ``auto`` (the compiled loop where it wins), ``numpy`` or ``numba``.

    ``one_shot``: the process runs one input and exits (the CLI), so the compiled loop
    must also pay for importing numba (about 0.3 s). ``threads``: run row blocks in this
    many threads, where the batch allows, instead of the engine's choice (benchmarks)."""

    name: str = ""
    one_shot: bool = False
    threads: int | None = None

    @property
    def kind(self) -> str:
        return (self.name or os.environ.get("RNNCLI_ENGINE", "auto")).lower()


DEFAULT = Engine()


def as_engine(engine) -> Engine:
    if engine is None:
        return DEFAULT
    if isinstance(engine, str):
        return Engine(engine)
    return engine


def split_parts(B, H):
    """How many threads to run numpy row blocks in (1: don't split)."""
    if B * H < SPLIT_MIN_VALUES:
        return 1
    return max(1, min(threads(), B // MIN_ROWS))


def block_edges(B, parts, min_rows=None, per_thread=None):
    """Row blocks for ``parts`` threads: up to ``per_thread`` (BLOCKS_PER_THREAD) each,
    ``min_rows`` rows (MIN_ROWS) or more."""
    min_rows = MIN_ROWS if min_rows is None else min_rows
    per_thread = BLOCKS_PER_THREAD if per_thread is None else per_thread
    blocks = max(parts, min(parts * per_thread, B // min_rows))
    return [B * i // blocks for i in range(blocks + 1)]


@dataclass(frozen=True)
class Plan:
    """How a scan runs: the cell's compiled loop or None (numpy), in ``threads`` threads
    over the row blocks ``edges``; ``split``: the compiled loop splits each step's units
    into this many parts instead (0: it doesn't)."""

    compiled: object
    threads: int
    edges: list
    split: int = 0


def compiled_threads(cell, B, T, engine=None, seconds=None, usable=None) -> int:
    """Threads for a compiled loop over B rows and T steps: the engine's, or those rnncli
    may use (``usable`` when the caller has counted them: ``threads``) where sharing the
    rows between them saves more than threads cost (fast.THREAD_SECONDS, against
    fast.one_thread_seconds of all rows, ``seconds`` when the caller has it, and of a
    thread's share); else one."""
    engine = as_engine(engine)
    if engine.threads:
        return engine.threads
    parts = threads() if usable is None else usable
    if parts < 2:
        return 1
    whole = _seconds(cell, B, T) if seconds is None else seconds
    saved = whole - _seconds(cell, -(-B // parts), T)
    return parts if saved > fast.THREAD_SECONDS else 1


def forced_idle(engine):
    """The idle cores to plan with when the engine names its threads (benchmarks, tests):
    as many as it names, whatever else runs; None: read them (workers.idle_cores)."""
    engine = as_engine(engine)
    return engine.threads if engine.threads else None


def _seconds(cell, B, T):
    return fast.one_thread_seconds(B, T, cell.input_dim, cell.units, len(cell.gates) or 1,
                                   cell.dtype.itemsize)


def compiled_rows(B, available, per_thread=None, idle=None, apart=False) -> tuple[int, list]:
    """(threads, row block edges) for a compiled loop over B rows with ``available``
    threads: blocks of at least one group of rows (fast.min_block_rows), up to
    ``per_thread`` (BLOCKS_PER_THREAD) a thread. Where there are only as many blocks as
    threads (fewer rows than three groups for two threads; one block a thread below two
    groups), each thread has a fixed share, and one whose core another process holds
    makes the scan wait: threads then only if ``idle`` cores (None: workers.idle_cores,
    read now) leave one for each helper. Measured with a busy process beside the scan,
    one thread's time over two's: LSTM (4, 1000, 32, 64) float32 0.56-0.70x (quiet
    1.20-1.25x); 16 rows of LSTM, GRU and SimpleRNN, 16-512 units, float32 and float64,
    0.86-1.05x in 13 cells, 11 below 1 (LSTM (16, 1000, 32, 16) 0.86x, SimpleRNN (16,
    100, 32, 512) 1.05x); LSTM (20, 500, 32, 64) 0.80x. Measured again with the threads
    kept on different cores (workers.keep_apart), two threads' time over one's, 28 cells
    of 1-16 rows, 2 runs: GRU 0.53-1.06, but LSTM (4, 1000, 32, 16) 1.50-1.53 and
    SimpleRNN (4, 200, 32, 512) 1.21-1.71, and the two runs of a cell apart by up to
    0.4. So with ``apart`` (a scan writing no trace, where workers.keep_apart can pin),
    shares of one whole group of rows or more take the threads whatever the idle cores:
    at 16 rows kept apart, two threads' time over one's was 0.57-0.99 in 21 of 24 runs
    of 12 cells (the others LSTM (16, 1000, 32, 16) 1.15 twice, (16, 500, 32, 64) 1.09),
    and in the grid's own timing beside ONNX Runtime LSTM (16, 1000, 32, 16) 0.63-0.85,
    (16, 500, 32, 64) 0.72-1.04, GRU (16, 20, 32, 512) 0.59-0.62, 4 runs each; shares
    of fewer rows keep the rule (LSTM (4, 1000, 32, 64) 0.78-1.38, GRU (4, 1000, 32, 16)
    1.17-1.21). The compiled backward loop's blocks keep it too (not measured there)."""
    min_rows = fast.min_block_rows()
    parts = max(1, min(available, B // min_rows))
    if parts > 1:
        edges = block_edges(B, parts, min_rows, per_thread)
        if apart and can_keep_apart():
            return parts, edges  # whole groups a thread, kept on different cores
    else:
        parts = min(available, B)
        if parts < 2 or B >= 2 * min_rows:
            return 1, [0, B]
        edges = [B * i // parts for i in range(parts + 1)]
    if len(edges) - 1 == parts and (idle_cores() if idle is None else idle) < parts - 1:
        return 1, [0, B]  # fixed shares, and a core another process needs
    return parts, edges


def plan(cell, B, T, mask, engine, trace=False) -> Plan:
    """The loop, threads and row blocks for a scan of B rows and T steps."""
    engine = as_engine(engine)
    loop = _compiled_loop(cell, T, B, mask, engine)
    if loop is not None:
        seconds = _seconds(cell, B, T)
        if seconds <= fast.THREAD_SECONDS and not engine.threads:
            return Plan(loop, 1, [0, B])  # threads can't save more than they cost
        idle = forced_idle(engine)
        usable = engine.threads or threads()  # counted once for both choices
        # threads kept apart where a core is busy: for scans that write no trace (with
        # every term written, beside a busy process, two threads took longer than one:
        # the grid's LSTM (16, 1000, 32, 16) float32 2.16 -> 3.15 ms, (4, 200, 32, 256)
        # 3.45 -> 5.94, the split's terms computed after it; a gradient's recording of
        # the gates was not measured so, and keeps the idle-core rule too)
        apart = trace not in ("full", "gates")
        # a split scan writes of the trace only a gated cell's gates (the others are
        # computed after it: scan)
        if mask is None and (trace != "gates" or getattr(loop, "kind", None) in
                             fast.GATE_TERMS):
            split = _units_split(cell, B, seconds, engine, usable)
            # its items go to whichever thread is free: where its threads can be kept on
            # different cores (workers.keep_apart), split whatever the idle cores (beside
            # a busy process, kept apart, split time over one thread's: 0.43-1.07, 20
            # runs of 8 LSTM and GRU cells of 1-4 rows and 256-512 units, median 0.8)
            if split and not (apart and can_keep_apart()):
                idle = idle_cores() if idle is None else idle  # read once for both choices
                split = split if idle >= split - 1 else 0
            if split:
                return Plan(loop, split, list(range(split + 1)), split)
        available = compiled_threads(cell, B, T, engine, seconds, usable)
        return Plan(loop, *compiled_rows(B, available, COMPILED_BLOCKS_PER_THREAD, idle,
                                         apart))
    rows = 2 if B == 1 else B
    width = cell.term_width("z") if cell.gates else cell.units
    parts = split_parts(rows, width) if engine.threads is None else \
        max(1, min(engine.threads, rows // MIN_ROWS))
    return Plan(None, parts, block_edges(rows, parts) if parts > 1 else [0, rows])


def _units_split(cell, B, seconds, engine, usable) -> int:
    """fast.split_parts for a scan that takes one thread ``seconds``: in ``usable``
    threads where it is long enough for them (or the engine names them), else none."""
    long = seconds > 2 * fast.THREAD_SECONDS
    return fast.split_parts(B, cell.units, len(cell.gates) or 1, cell.dtype.itemsize,
                            usable if engine.threads or long else 1)


def backward_split(cell, B, T, engine=None) -> int:
    """Into how many parts an LSTM's compiled backward loop over B rows and T steps splits
    each step's units (rnncli/core/_numba_backward_split.py), or 0 (row blocks): up to 4
    rows (those measured), as the forward pass splits its steps (``plan``,
    fast.split_parts), while a core is idle for each helper. (Its steps have the forward
    pass's products, by Uᵀ, and more elementwise work; the thresholds are the forward
    pass's.)"""
    engine = as_engine(engine)
    seconds = _seconds(cell, B, T)
    if getattr(cell.compiled(), "kind", None) != "lstm" or B > 4 or \
            seconds <= fast.THREAD_SECONDS and not engine.threads:
        return 0
    split = _units_split(cell, B, seconds, engine, engine.threads or threads())
    idle = forced_idle(engine)
    if split and (idle_cores() if idle is None else idle) >= split - 1:
        return split
    return 0


def _compiled_loop(cell, T, B, mask, engine):
    kind = engine.kind  # read from the environment: once
    if T == 0 or not fast.available(engine, kind):
        return None
    loop = cell.compiled()
    if loop is None:
        return None
    if kind == "numba":
        return loop
    gates = len(cell.gates) or 1
    if engine.one_shot and T < fast.ONE_SHOT_MIN_STEPS and \
            T * B * gates * cell.units**2 < fast.ONE_SHOT_MIN_PRODUCTS:
        return None
    return loop if fast.worth_it(B, cell.units, gates, cell.dtype.itemsize) else None
