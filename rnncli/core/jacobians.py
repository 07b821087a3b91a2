"""||dh_{T-1}/dh_t||_2 at every step t: how much of a change in the hidden state at step t
reaches the last step (``jacobian_norm/<layer>`` of ``Model.gradients``).

The product of the steps' Jacobians is taken backwards, one (H, S·H) matrix per sample,
so the cost is O(B·T·H³) against the backward pass's O(B·T·H²): ``rows`` limits it to
the samples someone will look at (``rnncli grad``'s tables). Samples are independent, so
blocks of them run in threads, each with a single-threaded BLAS (the products and
eigenvalue problems are small per sample; a multi-threaded BLAS spends more time
waiting than computing on them: 10x slower for 64 eigenvalue problems of 128×128 on
this project's busy 2-core machine).
"""

from __future__ import annotations

import threading

import numpy as np

from . import blas
from . import engine as _engine
from .workers import threads


def jacobian_norms(cell, terms, states, initial, mask=None, rows=None):
    """(T, B) norms for a direction's backward pass (the arguments of ``Cell.backward``,
    time-major, and the mask (T, B) or None); ``rows``: the samples to compute (the
    others are NaN), None for all."""
    T, B = states[0].shape[:2]
    picked = np.arange(B) if rows is None else np.unique(np.arange(B)[np.asarray(rows, int)])
    norms = np.full((T, B), np.nan, cell.dtype)
    if not len(picked) or not T:
        return norms
    job = _Blocks(cell, terms, states, initial, mask, picked, norms)
    n = len(picked)
    parts = max(1, min(threads(), n))
    blocks = min(n, parts * _engine.BLOCKS_PER_THREAD)
    with blas.single_threaded():
        job.run_blocks([n * i // blocks for i in range(blocks + 1)], parts)
    return norms


class _Blocks(_engine._Rows):
    """Blocks of the picked samples in threads (the forward loop's, rnncli/core/engine.py)."""

    def __init__(self, cell, terms, states, initial, mask, picked, norms):
        self.cell, self.terms, self.states, self.initial = cell, terms, states, initial
        self.mask, self.picked, self.norms = mask, picked, norms
        self.stop = threading.Event()

    def run(self, i0, i1):
        idx = self.picked[i0:i1]
        r = slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] == len(idx) - 1 else idx
        back = self.cell.backward({k: v[:, r] for k, v in self.terms.items()},
                                  tuple(s[:, r] for s in self.states),
                                  tuple(s[r] for s in self.initial))
        S, H = len(self.cell.state_names), self.cell.units
        mask = None if self.mask is None else self.mask[:, r]
        self.norms[:, r] = product_norms(back, len(self.norms), len(idx), H, S,
                                         self.cell.dtype, mask, self.stop)


def product_norms(back, T, B, H, S, dtype, mask=None, stop=None):
    """||dh_{T-1}/dh_k||_2 (T, B) for every k, from the product of the steps' Jacobians
    taken backwards: Q_{T-1} = [I 0], Q_{k-1} = Q_k·J_k (the h rows only: (B, H, S·H)),
    ``back.left(q, k)`` computing Q·J_k; a masked step's Jacobian is the identity."""
    q = np.zeros((B, H, S * H), dtype)
    q[:, np.arange(H), np.arange(H)] = 1
    norms = np.empty((T, B), dtype)
    for k in range(T - 1, -1, -1):
        if stop is not None and stop.is_set():
            break
        norms[k] = spectral_norms(q[:, :, :H])
        if k:
            stepped = back.left(q, k)
            q = stepped if mask is None else np.where(mask[k][:, None, None], stepped, q)
    return norms


def spectral_norms(q):
    """The largest singular value of each matrix of ``q`` (B, M, N), from the largest
    eigenvalue of q·qᵀ in float64 (no underflow for values above 1e-150)."""
    q = q.astype(np.float64)
    gram = np.matmul(q, q.transpose(0, 2, 1))
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[:, -1], 0))
