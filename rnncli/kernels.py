"""The hot loop of a SimpleRNN, kept apart from the layer's bookkeeping.

Per step, as Keras: ``z = (x_t·W + b) + h_{t-1}·U`` and ``h_t = f(z)``. ``x·W + b`` has
no recurrence in it, so it is one matrix product per *chunk* of timesteps, just ahead of
the steps that use it. A chunk is about 1 MiB, in buffers reused from chunk to chunk: the
input is never copied whole, the chunk is still in cache when the steps read it, fresh
memory (whose first touch costs page faults) is only the output itself, and a caller that
needs only the final state keeps O(batch x units) memory. Arrays are time-major
(T, B, H) inside, so every step reads and writes contiguous rows.

A big batch is split into row blocks run side by side in threads, each with a
single-threaded BLAS (rnncli/blas.py): rows of a batch never interact, so the threads
never wait on each other, and the elementwise work runs on every core too. Each row
gets exactly the arithmetic it would get unsplit.
"""

from __future__ import annotations

import threading

import numpy as np

CHUNK_BYTES = 2**20
# Split the batch only when each step has at least this many values (batch x units) and
# every block gets at least MIN_ROWS rows. The split parallelizes the elementwise work; BLAS
# parallelizes the products either way; below this, threads cost more than they save
# (measured on 2 cores from (64, 128) to (1024, 256): 0.6-0.7x at 16k values, 1.0-1.3x
# from 32k).
SPLIT_MIN_VALUES = 2**15
MIN_ROWS = 32


class _Projection:
    """``x·W [+ b]`` for chunks of up to ``c`` steps of ``n`` rows, in reused buffers.

    With ``bias``, it rides in the same product as a column of ones in x and a row in
    the kernel (BLAS adds it last: Keras' ``x·W + b``), saving a pass over the array.
    """

    def __init__(self, n, c, kernel, bias=None):
        D, H = kernel.shape
        dtype = kernel.dtype
        self.kernel = kernel if bias is None else np.concatenate([kernel, bias[None]], axis=0)
        self.xa = np.empty((c, n, self.kernel.shape[0]), dtype)
        if bias is not None:
            self.xa[..., D] = 1
        self.res = np.empty((c * n, H), dtype)

    def __call__(self, x):
        """x (n, c', D), c' <= c -> (c', n, H), a view of the buffer."""
        n, c, D = x.shape
        xa = self.xa[:c]
        xa[..., :D] = x.transpose(1, 0, 2)
        res = np.matmul(xa.reshape(c * n, -1), self.kernel, out=self.res[:c * n])
        return res.reshape(c, n, -1)


def matmul_rows(x, w):
    """``x @ w``, where a single row takes BLAS's matrix-matrix path like every row of a
    batch (the matrix-vector one sums in another order): a sample's numbers never depend
    on the batch it came in."""
    if x.ndim == 2 and x.shape[0] == 1:
        return (np.repeat(x, 2, axis=0) @ w)[:1]
    return x @ w


def chunk_steps(B, H, itemsize, T, chunk_bytes=CHUNK_BYTES):
    return int(max(1, min(T, chunk_bytes // max(1, B * H * itemsize))))


def split_parts(B, H):
    """How many row blocks to run side by side (1: don't split)."""
    if B * H < SPLIT_MIN_VALUES:
        return 1
    from . import blas

    return max(1, min(blas.threads(), B // MIN_ROWS))


def scan(x, kernel, recurrent_kernel, bias, act, act_name, h, mask=None,
         zero_output_for_mask=False, trace=False, keep=True):
    """Run the layer over x (B, T, D) from state h (B, H).

    mask: (B, T) bool or None. ``keep=False`` (and no trace) keeps no sequence.
    Returns (outputs (B, T, H) or None, final state (B, H), xw, hu, z) where the last
    three are None unless ``trace``; all (B, T, H) are views of time-major arrays.
    """
    B, T, _ = x.shape
    H = kernel.shape[1]
    dtype = kernel.dtype
    keep = keep or trace
    h = np.array(h, dtype=dtype, copy=True)
    from . import fast

    compiled = T > 0 and mask is None and fast.worth_it(T, B, H, act_name, dtype.itemsize)
    rows = B
    if B == 1 and T > 0 and not compiled:
        # BLAS takes one row through its matrix-vector product, which sums in another order
        # than the matrix-matrix product every batch gets. Two copies of the sample keep
        # its numbers what they are in any batch (at a few percent of a step's time).
        rows = 2
        x = np.broadcast_to(x, (2, T, x.shape[2]))
        h = np.repeat(h, 2, axis=0)
        mask = None if mask is None else np.broadcast_to(mask, (2, T))
    # One block for all of them: numpy asks for huge pages from 4 MiB, so first touches
    # fault far less often (a (64, 100, 32, 128) float32 trace: 11.8 -> 4.0 ms here).
    block = np.empty((4 if trace else int(keep), T, rows, H), dtype)
    arrays = (*block, None, None, None, None)[:4]  # out, xw, hu, z; time-major
    if T and compiled:
        h = _compiled(x, kernel, recurrent_kernel, bias, act_name, h, *arrays)
    elif T:
        mask_t = None if mask is None else \
            np.ascontiguousarray(np.asarray(mask, bool).T)[..., None]
        job = _Rows(x, kernel, recurrent_kernel, bias, act, act_name, h, mask_t,
                    zero_output_for_mask, *arrays)
        parts = split_parts(rows, H)
        if parts == 1:
            job.run(0, rows)
        else:
            job.run_split(parts)
        h = job.h
    out, xw, hu, z = (None if a is None else a[:, :B].transpose(1, 0, 2) for a in arrays)
    return out, h[:B], xw, hu, z


class _Rows:
    """The numpy loop over rows b0:b1 of the batch; writes the shared time-major arrays'
    rows b0:b1 and the final state ``self.h[b0:b1]``."""

    def __init__(self, x, kernel, recurrent_kernel, bias, act, act_name, h, mask_t,
                 zero_output_for_mask, out, xw, hu, z):
        self.x, self.kernel, self.u, self.bias = x, kernel, recurrent_kernel, bias
        self.act, self.tanh = act, act_name == "tanh"
        self.h, self.mask_t, self.zero_out = h, mask_t, zero_output_for_mask
        self.out, self.xw, self.hu, self.z = out, xw, hu, z
        self.stop = threading.Event()

    def run_split(self, parts):
        from . import blas

        B = self.x.shape[0]
        edges = [B * i // parts for i in range(parts + 1)]
        errors = []

        def work(b0, b1):
            try:
                self.run(b0, b1)
            except BaseException as e:  # re-raised in the calling thread
                errors.append(e)
                self.stop.set()

        with blas.single_threaded():
            threads = [threading.Thread(target=work, args=edges[i:i + 2], daemon=True)
                       for i in range(1, parts)]
            try:
                for t in threads:
                    t.start()
                work(edges[0], edges[1])
            except BaseException:
                self.stop.set()
                raise
            finally:
                interrupted = None
                for t in threads:
                    while t.is_alive():
                        try:
                            t.join()
                        except BaseException as e:  # Ctrl-C: the others stop at their next step
                            self.stop.set()
                            interrupted = interrupted or e
            if interrupted is not None:
                raise interrupted
        if errors:
            raise errors[0]

    def run(self, b0, b1):
        x, W, U, bias, act = self.x[b0:b1], self.kernel, self.u, self.bias, self.act
        n, T, D = x.shape
        H = W.shape[1]
        dtype = W.dtype
        trace, mask_t = self.z is not None, self.mask_t
        C = chunk_steps(n, H, dtype.itemsize, T)
        if trace:
            project = _Projection(n, C, W)
            xwb = np.empty((C, n, H), dtype)
        else:
            project = _Projection(n, C, W, bias)
        buf = np.empty((n, H), dtype)
        ring = None if self.out is not None else np.empty((2, n, H), dtype)
        h = self.h[b0:b1]
        prev_out = np.zeros((n, H), dtype)
        stopped = self.stop.is_set
        matmul, add, tanh = np.matmul, np.add, np.tanh
        for t0 in range(0, T, C):
            c = min(C, T - t0)
            chunk = project(x[:, t0:t0 + c])
            outs = self.out[t0:t0 + c, b0:b1] if ring is None else None
            if trace:
                self.xw[t0:t0 + c, b0:b1] = chunk
                if bias is not None:
                    chunk = add(chunk, bias, out=xwb[:c])
                hus, zs = self.hu[t0:t0 + c, b0:b1], self.z[t0:t0 + c, b0:b1]
            if not trace and mask_t is None:  # the common case, with the least per step
                for k in range(c):
                    if stopped():  # another block failed, or Ctrl-C
                        return
                    matmul(h, U, out=buf)
                    add(chunk[k], buf, out=buf)
                    o = ring[k % 2] if outs is None else outs[k]
                    if self.tanh:
                        tanh(buf, out=o)
                    else:
                        o[...] = act(buf)
                    h = o
                continue
            for k in range(c):
                if stopped():
                    return
                if trace:  # h·U and z land in the trace's own rows: no copies
                    z = add(chunk[k], matmul(h, U, out=hus[k]), out=zs[k])
                else:
                    z = add(chunk[k], matmul(h, U, out=buf), out=buf)
                o = ring[k % 2] if outs is None else outs[k]
                if mask_t is None:
                    if self.tanh:
                        tanh(z, out=o)
                    else:
                        o[...] = act(z)
                    h = o
                else:
                    # A masked step keeps the state; its output is the previous output
                    # (zeros with zero_output_for_mask), as Keras' rnn() does.
                    h_new = act(z)
                    m = mask_t[t0 + k, b0:b1]
                    h = np.where(m, h_new, h)
                    o[...] = np.where(m, h_new, 0 if self.zero_out else prev_out)
                    prev_out = o
        self.h[b0:b1] = h


def _compiled(x, kernel, recurrent_kernel, bias, act_name, h, out, xw, hu, z):
    """The numba loop (rnncli/fast.py), a few MiB of x·W + b at a time."""
    from . import fast

    B, T, _ = x.shape
    H = kernel.shape[1]
    C = chunk_steps(B, H, kernel.dtype.itemsize, T, chunk_bytes=4 * CHUNK_BYTES)
    project = _Projection(B, C, kernel, None if xw is not None else bias)
    scratch = np.empty((C, B, H), kernel.dtype) if out is None else None
    for t0 in range(0, T, C):
        t1 = min(T, t0 + C)
        xwb = project(x[:, t0:t1])
        if xw is not None:
            xw[t0:t1] = xwb
            if bias is not None:
                xwb = xwb + bias
        o = out[t0:t1] if out is not None else scratch[:t1 - t0]
        h = fast.recurrence(xwb, recurrent_kernel, h, o, act_name,
                            None if hu is None else hu[t0:t1], None if z is None else z[t0:t1])
    return h
