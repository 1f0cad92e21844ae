"""Schulman's Gaussian experiment ("Approximating KL Divergence", 2020), exactly and by sampling.

Setup: samples ``x ~ P = N(0, 1)``, other distribution ``Q = N(μ, 1)``, so
``KL(P ‖ Q) = μ²/2`` and ``log r = log Q(x) − log P(x) = μx − μ²/2 ~ N(−μ²/2, μ²)``.
(Schulman calls the sampler ``q`` and the other ``p``; the numbers are the same.)

Exact moments of the per-sample estimators, derived from ``log r ~ N(−μ²/2, μ²)`` and
``E_P[r] = 1``, ``E_P[r log r] = KL(Q ‖ P) = μ²/2``, ``E_P[r²] = exp(μ²)``:

* k1 = −log r:           bias 0,           variance ``μ²``
* k2 = ½ (log r)²:       bias ``μ⁴/8``,    variance ``μ⁴/2 + μ⁶/4``
* k3 = (r − 1) − log r:  bias 0,           variance ``exp(μ²) − 1 − μ²``
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from klcourse.kl import ESTIMATORS

#: Schulman's published table (10M samples): (bias/KL, std/KL) for each estimator and each μ.
PUBLISHED = {
    0.1: {"k1": (0.0, 20.0), "k2": (0.002, 1.42), "k3": (0.0, 1.42)},
    1.0: {"k1": (0.0, 2.0), "k2": (0.25, 1.73), "k3": (0.0, 1.7)},
}


@dataclass(frozen=True)
class EstimatorStats:
    """Bias and standard deviation of one estimator, relative to the true KL.

    Taught in notebook 02.
    """

    bias_over_kl: float
    std_over_kl: float


def gaussian_kl(mu: float) -> float:
    """``KL(N(0,1) ‖ N(μ,1)) = μ²/2``.

    Taught in notebook 02.
    """
    return 0.5 * mu * mu


def exact_stats(mu: float) -> dict[str, EstimatorStats]:
    """Exact bias/KL and std/KL of k1, k2, k3 for ``P = N(0,1)``, ``Q = N(μ,1)`` (module doc).

    Taught in notebook 02.
    """
    if mu == 0:
        raise ValueError("mu must be non-zero: with KL = 0 the ratios are undefined")
    kl = gaussian_kl(mu)
    m2 = mu * mu
    var = {"k1": m2, "k2": m2 * m2 / 2 + m2**3 / 4, "k3": math.expm1(m2) - m2}
    bias = {"k1": 0.0, "k2": m2 * m2 / 8, "k3": 0.0}
    return {k: EstimatorStats(bias[k] / kl, math.sqrt(var[k]) / kl) for k in ESTIMATORS}


def sample_log_probs(mu: float, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``x ~ N(0, 1)`` ``n`` times; return ``(log P(x), log Q(x))`` in float64.

    Taught in notebook 02.
    """
    x = torch.randn(n, generator=generator, dtype=torch.float64)
    c = -0.5 * math.log(2 * math.pi)
    return c - 0.5 * x * x, c - 0.5 * (x - mu) ** 2


def monte_carlo_stats(mu: float, n: int, generator: torch.Generator) -> dict[str, EstimatorStats]:
    """Bias/KL and std/KL of k1, k2, k3 measured on ``n`` samples, as in Schulman's table.

    Taught in notebook 02.
    """
    logp, logq = sample_log_probs(mu, n, generator)
    kl = gaussian_kl(mu)
    out = {}
    for name, f in ESTIMATORS.items():
        vals = f(logp, logq)
        out[name] = EstimatorStats((vals.mean().item() - kl) / kl, vals.std().item() / kl)
    return out
