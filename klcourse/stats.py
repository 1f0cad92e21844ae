"""The Monte Carlo mean and its standard error, the error bar on every sampled number in the course.

Taught in notebook 02 (§ convergence) and used for the seeds of notebook 06.
"""

from __future__ import annotations

import math

import numpy as np


def mean_and_se(values) -> tuple[float, float]:
    """``(mean, SE)`` of ``N ≥ 2`` samples: ``mean = Σ v_i / N`` and ``SE = s/√N`` with the sample
    standard deviation ``s = √(Σ (v_i − mean)² / (N − 1))``.

    Taught in notebook 02.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2:
        raise ValueError(f"a standard error needs at least 2 values, got {v.size}")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite (found inf or NaN)")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))
