"""Back-propagation through time: the reverse of rnncli/core/rnn.py, for every cell.

The layer's part is written once here: the time order (``go_backwards``), masks, what the
layer returned (the sequence or its last output, the final states) and Bidirectional's
merge. Each step's arithmetic backwards is the cell's own (``Cell.backward``, in the
cell's module). The forward pass is the traced run (``RNN.run(..., trace=True)``): its
terms (``z``, gates ...) are what the backward steps need, so nothing is computed twice.

Masks follow Keras: at a masked step every state is carried, so its gradient passes
straight back, and the step's own computation gets none; the step's output is the
previous output (zeros inside Bidirectional), so the output's gradient goes to the last
unmasked step before it (nowhere with zeros).

Memory: the trace and a few arrays of its size, O(B·T·H) per direction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from . import engine as _engine
from . import jacobians


@dataclass
class DirectionGrads:
    """What one direction's backward pass gives, arrays batch-major in processing order
    (reversed time for go_backwards, as ``DirectionResult`` holds its sequences)."""

    x: np.ndarray  # dL/dx (B, T, D) in the layer's input order
    initial: tuple  # dL/d(initial states), (B, H) each
    weights: dict  # dL/dw by Keras name
    hidden: np.ndarray  # dL/dh_t (B, T, H): the total derivative, later steps included
    jacobian: np.ndarray | None = field(default=None)  # ||dh_{T-1}/dh_t||_2 (B, T)
    x_in: np.ndarray | None = field(default=None)  # dL/dx in input time order


def time_major(a):
    return None if a is None else np.asarray(a).transpose(1, 0, *range(2, np.ndim(a)))


def direction_backward(layer, d, initial, g_out=None, g_final=None, jacobian=False,
                       engine=None, zero_output=None):
    """Back-propagate through one direction of a recurrent layer.

    ``layer``: the RNN; ``d``: its DirectionResult from a traced run; ``initial``: the
    states it started from (a tuple of (B, H), or None for zeros); ``g_out``: dL/d(its
    output at every step) (B, T, H) in processing order, or None; ``g_final``:
    dL/d(final states), a tuple with None for none. ``jacobian``: also the spectral norms
    of dh_{T-1}/dh_t (True), or for some samples only (their indices; NaN elsewhere). ``zero_output``: whether masked steps output zeros (None: the
    layer's ``zero_output_for_mask``). Rows of a big batch run in threads, as the forward pass does; a
    long sequence with a small batch runs the cell's compiled loop where it has one."""
    cell, tr = layer.cell, d.trace
    H, dtype = cell.units, cell.dtype
    x = time_major(tr.x)
    T, B, _ = x.shape
    initial = cell.initial_states(B) if initial is None else \
        tuple(np.asarray(s, dtype) for s in initial)
    mask = None if tr.mask is None else np.ascontiguousarray(np.asarray(tr.mask, bool).T)
    terms = {k: time_major(tr[k]) for k in tr if np.ndim(tr[k]) == 3}
    states = _state_sequences(cell, d, terms["h"], mask, initial)
    g = [np.zeros((B, H), dtype) for _ in cell.state_names]
    for i, gi in enumerate(g_final or ()):
        if gi is not None:
            g[i] += gi
    job = _Steps(cell, terms, states, initial, mask, time_major(g_out), g,
                 np.empty((T, B, cell.kernel.shape[1]), dtype), np.empty((T, B, H), dtype),
                 layer.zero_output_for_mask if zero_output is None else zero_output)
    compiled = _compiled(cell, T, B, mask, engine)
    if compiled is not None:
        compiled(job, engine)
    else:
        parts = _engine.split_parts(B, H)
        job.run_blocks(_engine.block_edges(B, parts) if parts > 1 else [0, B], parts)
    fast = compiled is not None or _products_compiled(cell, T * B, engine)
    weights, gx = _products(cell, x, job.dxp, states, initial, terms,
                            compiled=fast and _wide(cell))
    norms = None if jacobian is False or jacobian is None else jacobians.jacobian_norms(
        cell, terms, states, initial, mask, None if jacobian is True else jacobian)
    return DirectionGrads(time_major(gx), tuple(job.g), weights, time_major(job.hidden),
                          None if norms is None else time_major(norms))


def _products(cell, x, dxp, states, initial, terms, compiled=False):
    """The weight gradients and dL/dx = dxp·kernelᵀ (T, B, D): a few large matrix products
    over every step, summed over chunks of steps in threads, each with a single-threaded
    BLAS as the time loops run (a products' reduction over T·B rows splits poorly inside
    BLAS: 3.5x slower with both cores busy on a (50·1024)-row sum here); ``compiled``
    (where numba runs: fast_backward.products_worth_it): the compiled products instead,
    over every step at once, each shared by the threads (fast_backward.Products)."""
    T, B = dxp.shape[:2]
    gx = np.empty((T, B, cell.kernel.shape[0]), dxp.dtype)
    kernel_t = cell.kernel.T
    parts = _engine.split_parts(B * T, cell.units) if T > 1 else 1
    fast = None
    if compiled:  # every step at once, each product shared by the threads
        from .fast import transposed
        from .fast_backward import Products

        fast = Products(transposed(cell)[0], parts)
        parts = 1

    def chunk(t0, t1):
        before = initial if t0 == 0 else tuple(s[t0 - 1] for s in states)
        w = cell.weight_gradients(x[t0:t1], dxp[t0:t1], tuple(s[t0:t1] for s in states),
                                  before, {k: v[t0:t1] for k, v in terms.items()},
                                  gram=fast and fast.gram)
        rows = dxp[t0:t1].reshape((t1 - t0) * B, -1), gx[t0:t1].reshape((t1 - t0) * B, -1)
        if fast is None:
            np.matmul(rows[0], kernel_t, out=rows[1])
        else:
            fast.input_gradient(*rows)
        return w

    if parts == 1:
        return chunk(0, T), gx
    job = _Chunks(chunk)
    n = min(T, 2 * parts)  # two chunks a thread: one waits less on the slower
    job.run_blocks([T * i // n for i in range(n + 1)], parts)
    weights = job.found[0]
    for w in job.found[1:]:
        for k, v in w.items():
            weights[k] = weights[k] + v
    return weights, gx


def _products_compiled(cell, rows, engine):
    from .fast_backward import products_worth_it

    P = cell.kernel.shape[1]
    return products_worth_it(rows * P * (cell.kernel.shape[0] + cell.units), engine)


def _wide(cell):
    """Whether the cell's products are wide enough to run compiled
    (fast_backward.Products.wide); narrower ones run as numpy's, in chunks of steps in
    threads."""
    from .fast_backward import Products

    return Products.wide(cell.kernel.shape[1], cell.dtype)


class _Chunks(_engine._Rows):
    """``fn(t0, t1)`` over chunks of steps, in the forward loop's threads (engine.py);
    ``found`` collects what it returns."""

    def __init__(self, fn):
        self.fn, self.found, self.stop = fn, [], threading.Event()

    def run(self, t0, t1):
        self.found.append(self.fn(t0, t1))


def states_suffice(layer, shape, mask, engine=None) -> bool:
    """Whether the backward pass of ``layer`` on an input of ``shape`` (B, T, D) needs
    only the states of the forward pass, no trace (``Cell.backward_terms``; the gated
    cells' compiled loops read the trace, ``reads_trace``)."""
    B, T = shape[:2]
    mask = None if mask is None or np.all(mask) else mask
    return all(lay.cell.backward_terms() == () and
               getattr(_compiled(lay.cell, T, B, mask, engine), "reads_trace", False) is False
               for lay in layer.directions.values())


def trace_needed(layer):
    """What ``layer``'s forward pass records for the backward pass when it needs a trace:
    "gates" when each direction's cell needs no more (Cell.backward_trace), else "full"."""
    wanted = {lay.cell.backward_trace() for lay in layer.directions.values()}
    return "gates" if wanted == {"gates"} else "full"


def _compiled(cell, T, B, mask, engine):
    loop = getattr(cell, "compiled_backward", lambda: None)()
    if loop is None or mask is not None or not loop.worth_it(T, B, cell.units,
                                                             cell.dtype.itemsize, engine):
        return None
    return loop


class _Steps(_engine._Rows):
    """The time loop backwards over blocks of rows (the forward loop's blocks and threads,
    rnncli/core/engine.py). Writes, time-major: ``hidden`` dL/dh_k (the total derivative
    of the state h after step k), ``dxp`` dL/d(x·kernel + bias); leaves in ``g``
    dL/d(initial states)."""

    def __init__(self, cell, terms, states, initial, mask, g_out, g, dxp, hidden, zero_out):
        self.cell, self.terms, self.states, self.initial = cell, terms, states, initial
        self.mask, self.g_out, self.g, self.dxp, self.hidden = mask, g_out, g, dxp, hidden
        self.zero_out = zero_out
        self.stop = threading.Event()

    def run(self, b0, b1):
        r = slice(b0, b1)
        back = self.cell.backward({k: v[:, r] for k, v in self.terms.items()},
                                  tuple(s[:, r] for s in self.states),
                                  tuple(s[r] for s in self.initial))
        g = [gi[r].copy() for gi in self.g]
        g_out = None if self.g_out is None else self.g_out[:, r]
        hidden, dxp, mask = self.hidden[:, r], self.dxp[:, r], self.mask
        carry = np.zeros_like(g[0])  # an output's gradient waiting for its unmasked step
        for k in range(len(hidden) - 1, -1, -1):
            if self.stop.is_set():
                return
            if mask is None:
                if g_out is None:
                    hidden[k] = g[0]
                else:
                    np.add(g[0], g_out[k], out=hidden[k])
                g = back.step(k, (hidden[k], *g[1:]), dxp[k])
                continue
            m = mask[k, r][:, None]
            hidden[k] = g[0]
            fresh = [np.where(m, gi, 0) for gi in g]
            if g_out is not None:
                out = g_out[k] + carry
                fresh[0] += np.where(m, out, 0)
                hidden[k] += np.where(m, out, 0)
                carry = np.zeros_like(carry) if self.zero_out else np.where(m, 0, out)
            before = back.step(k, tuple(fresh), dxp[k])
            g = [np.where(m, b, gi) for b, gi in zip(before, g)]
        for i, gi in enumerate(g):
            self.g[i][r] = gi


def _state_sequences(cell, d, h_out, mask, initial):
    """Each state after every step, time-major. The output sequence is the ``h`` state
    except at masked steps, where the state is carried (and the output may be zeros)."""
    from .replay import carried

    return [carried(h_out, mask, initial[0]) if i == 0 else time_major(d.sequences[name])
            for i, name in enumerate(cell.state_names)]


# ---------------------------------------------------------------- layers


@dataclass
class LayerGrads:
    """A recurrent layer's backward pass: dL/dx (B, T, D), dL/d(initial states) (a flat
    tuple, forward then backward for Bidirectional), and per direction ("" or
    "forward"/"backward") its DirectionGrads."""

    x: np.ndarray
    initial: tuple
    directions: dict


def rnn_backward(layer, result, initial, g_outputs, jacobian=False, engine=None) -> LayerGrads:
    """A one-way RNN layer: ``result`` its LayerResult; ``g_outputs`` dL/d(each of
    ``result.outputs``) or None, in order (the output, then the final states)."""
    g_y, *g_states = _padded(g_outputs, len(result.outputs))
    dg = _direction(layer, result.directions[""], initial, g_y, g_states,
                    layer.return_sequences, jacobian, engine, last_output=True)
    return LayerGrads(dg.x_in, dg.initial, {"": dg})


def bidirectional_backward(layer, result, initial, g_outputs, jacobian=False,
                           engine=None) -> LayerGrads:
    """Keras' Bidirectional: the merged output's gradient split per direction (rnn.py:
    the forward layer's sequence as it comes, the backward one's flipped to input time;
    without return_sequences, each direction's last output: the same numbers as its final
    h state, but Keras differentiates the output, so behind trailing masked steps the
    gradient reaches the last unmasked step directly, not through the carried states;
    Keras' Bidirectional outputs zeros at masked steps only with return_sequences)."""
    n = len(layer.state_names)
    df, db = result.directions["forward"], result.directions["backward"]
    g = _padded(g_outputs, len(result.outputs))
    if layer.merge_mode is None:
        (gf, gb), g_states = g[:2], g[2:]
    else:
        gf, gb = _unmerge(g[0], df, db, layer)
        g_states = g[1:]
    seqs = layer.return_sequences
    if gb is not None and seqs:
        gb = gb[:, ::-1]  # back to the backward layer's processing order
    init_f = init_b = None
    if initial is not None:
        init_f, init_b = tuple(initial[:n]), tuple(initial[n:])
    parts = {"forward": _direction(layer.forward_layer, df, init_f, gf, g_states[:n], seqs,
                                   jacobian, engine, last_output=True, zero_output=seqs),
             "backward": _direction(layer.backward_layer, db, init_b, gb, g_states[n:], seqs,
                                    jacobian, engine, last_output=True, zero_output=seqs)}
    gx = parts["forward"].x_in + parts["backward"].x_in
    return LayerGrads(gx, parts["forward"].initial + parts["backward"].initial, parts)


def _padded(g, n):
    g = list(g)
    return g + [None] * (n - len(g))


def _direction(lay, d, initial, g_y, g_states, sequences, jacobian, engine=None,
               last_output=False, zero_output=None):
    """One direction from the gradients of what it returned: ``g_y`` its output (the
    sequence in processing order, or its last step: the last output, ``last_output``, or
    else the final ``h`` state), ``g_states`` its final states. Adds ``x_in``: dL/dx in
    input time order."""
    T = d.trace.x.shape[1]
    g_final = list(g_states) + [None] * (len(lay.state_names) - len(g_states))
    g_seq = None
    if g_y is not None:
        if sequences:
            g_seq = g_y
        elif last_output:
            g_seq = np.zeros((g_y.shape[0], T, g_y.shape[-1]), g_y.dtype)
            g_seq[:, -1] = g_y
        else:
            g_final[0] = g_y if g_final[0] is None else g_final[0] + g_y
    dg = direction_backward(lay, d, initial, g_seq, tuple(g_final), jacobian, engine,
                            zero_output)
    dg.x_in = dg.x[:, ::-1] if lay.go_backwards else dg.x
    return dg


def _unmerge(g, df, db, layer):
    """dL/d(each direction's output) from dL/d(their merge), both in input time order."""
    if g is None:
        return None, None
    if layer.return_sequences:
        yf, yb = df.sequence, db.sequence[:, ::-1]
    else:
        yf, yb = df.states["h"], db.states["h"]
    mode = layer.merge_mode
    if mode == "concat":
        H = yf.shape[-1]
        return g[..., :H], g[..., H:]
    if mode == "mul":
        return g * yb, g * yf
    if mode == "ave":
        return g / 2, g / 2
    return g, g  # sum
