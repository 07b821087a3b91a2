"""Pooling consecutive columns (time steps) of a 2-D array so a picture fits its space.

Columns are cut into groups of ``k`` consecutive steps (the last group may be shorter) and
each group becomes one column: its mean, or its value of largest magnitude ("maxabs",
sign kept, so a single spike survives). NaN or inf in a group shows in its pooled value,
never averaged away. Masked steps are left out of their group; a group whose steps are all
masked is masked. Numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError

HOWS = ("mean", "maxabs")


@dataclass(frozen=True)
class Pooled:
    values: np.ndarray  # (rows, groups)
    starts: np.ndarray  # first column of each group
    stops: np.ndarray  # one past the last column of each group
    masked: np.ndarray | None  # bool per group, or None
    per_group: int  # k, steps per pooled column
    how: str

    @property
    def pooled(self) -> bool:
        return self.per_group > 1

    def describe(self, total: int, unit: str = "steps") -> str:
        """One sentence: how many columns were pooled into how many, and how."""
        if not self.pooled:
            return ""
        how = "the mean" if self.how == "mean" else "the value of largest magnitude"
        last = int(self.stops[-1] - self.starts[-1])
        tail = f"; the last holds {last}" if last != self.per_group else ""
        return (f"{total} {unit} pooled into {len(self.starts)} columns of {self.per_group} "
                f"consecutive {unit} each ({how} of each group{tail}).")


def group_size(n: int, max_groups: int) -> int:
    """Smallest k such that ``n`` columns in groups of k make at most ``max_groups``."""
    return max(1, math.ceil(n / max(1, max_groups)))


def pool_columns(values, max_cols: int, how: str = "mean", masked=None) -> Pooled:
    """Pool ``values`` (rows, cols) into at most ``max_cols`` columns (see module doc)."""
    if how not in HOWS:
        raise InputDataError(f"pooling {how!r} is unknown; expected one of {', '.join(HOWS)}")
    a = np.asarray(values)
    if a.ndim != 2:
        raise InputDataError(f"values of shape {a.shape} cannot be pooled; expected (rows, cols)")
    n = a.shape[1]
    mask = None if masked is None else np.asarray(masked, dtype=bool).reshape(n)
    k = group_size(n, max_cols)
    starts = np.arange(0, n, k)
    stops = np.minimum(starts + k, n)
    if k == 1:
        return Pooled(a, starts, stops, mask, 1, how)
    f = a.astype(np.float64)
    groups = len(starts)
    pad = groups * k - n
    keep = np.ones(n, dtype=bool) if mask is None else ~mask
    keep = np.concatenate([keep, np.zeros(pad, dtype=bool)]).reshape(groups, k)
    f = np.concatenate([f, np.zeros((a.shape[0], pad))], axis=1).reshape(a.shape[0], groups, k)
    counts = keep.sum(axis=1)
    bad = ~np.isfinite(f) & keep
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if how == "mean":
            out = np.where(keep, f, 0.0).sum(axis=2) / counts
        else:
            mag = np.where(keep & np.isfinite(f), np.abs(f), -1.0)
            pick = np.take_along_axis(f, mag.argmax(axis=2)[..., None], axis=2)[..., 0]
            inf_sum = np.where(bad, f, 0.0).sum(axis=2)  # +inf, -inf, or NaN if mixed
            out = np.where(bad.any(axis=2), inf_sum, pick)
        nan = (np.isnan(f) & keep).any(axis=2)
        out = np.where(nan, np.nan, out)
    group_mask = counts == 0
    out = np.where(group_mask, np.nan, out)
    return Pooled(out, starts, stops, group_mask if mask is not None else None, k, how)
