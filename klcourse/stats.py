"""The Monte Carlo mean and its standard error, the error bar on every sampled number in the course.

Taught in notebook 02 (§ convergence), used for the seeds of notebook 06 and for the spread of the
reward model's normalised score in notebook 03.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def mean_and_se(values) -> tuple[float, float]:
    """``(mean, SE)`` of ``N ≥ 2`` samples: ``mean = Σ v_i / N`` and ``SE = s/√N`` with the sample
    standard deviation ``s = √(Σ (v_i − mean)² / (N − 1))``.

    Taught in notebook 02.
    """
    v = _samples(values)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def std_and_se(values) -> tuple[float, float]:
    """``(s, SE_s)`` of ``N ≥ 2`` samples: the sample standard deviation ``s`` and its large-sample
    standard error ``SE_s = s·√((κ − 1)/(4N))`` (the delta method on ``s²``), with the sample
    kurtosis ``κ = m₄/m₂²`` of the central moments ``m_k = Σ (v_i − mean)^k / N`` (3 for a normal
    sample, which gives the textbook ``s/√(2N)``).

    Taught in notebook 03.
    """
    v = _samples(values)
    centred = v - v.mean()
    m2, m4 = float((centred**2).mean()), float((centred**4).mean())
    s = float(v.std(ddof=1))
    kurtosis = m4 / m2**2 if m2 > 0 else 1.0
    return s, s * math.sqrt(max(kurtosis - 1.0, 0.0) / (4 * v.size))


def over_seeds(frame: pd.DataFrame, keys, columns, sort: bool = False) -> pd.DataFrame:
    """One row per group of ``frame``'s ``keys`` (one row per seed in each): ``seeds`` and, for each of
    ``columns``, the mean over seeds and its standard error ``<column>_se = std/√seeds`` (0 for one
    seed). ``sort`` orders the groups; by default they keep the order first seen.

    Used in notebooks 06–09.
    """
    grouped = frame.groupby(keys, sort=sort)
    out = grouped.size().rename("seeds").to_frame()
    for col in columns:
        out[col] = grouped[col].mean()
        out[f"{col}_se"] = grouped[col].std(ddof=1).fillna(0.0) / np.sqrt(out["seeds"])
    return out


def _samples(values) -> np.ndarray:
    """``values`` as a flat float array of at least 2 finite samples, or a ``ValueError`` naming why not."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2:
        raise ValueError(f"a standard error needs at least 2 values, got {v.size}")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite (found inf or NaN)")
    return v
