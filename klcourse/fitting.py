"""Forward vs reverse KL: fit one Gaussian to a bimodal target on a grid.

Minimising the forward KL ``KL(P ‖ Q)`` over ``Q`` punishes ``Q`` wherever ``P`` has mass that
``Q`` misses, so the fit covers every mode (mass-covering). Minimising the reverse KL
``KL(Q ‖ P)`` punishes ``Q`` wherever it puts mass that ``P`` lacks, so the fit locks onto one
mode (mode-seeking). RLHF's penalty ``KL(π ‖ π_ref)`` is of the second kind, with the policy
in the first slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from klcourse.kl import kl_divergence


def discretized_gaussian(grid: np.ndarray, mu, sigma) -> np.ndarray:
    """``N(mu, sigma²)`` density on ``grid``, normalised to sum to 1 (a distribution on the grid).

    ``mu`` and ``sigma`` may be arrays that broadcast against each other; the grid is the last axis.

    Taught in notebook 01.
    """
    mu = np.asarray(mu, dtype=np.float64)[..., None]
    sigma = np.asarray(sigma, dtype=np.float64)[..., None]
    if (sigma <= 0).any():
        raise ValueError("sigma must be positive")
    logits = -0.5 * ((grid - mu) / sigma) ** 2
    w = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return w / w.sum(axis=-1, keepdims=True)


def gaussian_mixture(grid: np.ndarray, weights, mus, sigmas) -> np.ndarray:
    """``Σ_k w_k N(mu_k, sigma_k²)`` on ``grid``, normalised to sum to 1.

    Taught in notebook 01.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or (weights < 0).any() or not np.isclose(weights.sum(), 1.0):
        raise ValueError("weights must be a 1-D array of non-negative numbers that sums to 1")
    dens = np.exp(-0.5 * ((grid[None, :] - np.asarray(mus)[:, None]) / np.asarray(sigmas)[:, None]) ** 2)
    dens /= np.asarray(sigmas)[:, None]
    mix = (weights[:, None] * dens).sum(axis=0)
    return mix / mix.sum()


@dataclass(frozen=True)
class GaussianFit:
    """The best Gaussian on the search grid and the KL it achieves.

    Taught in notebook 01.
    """

    mu: float
    sigma: float
    kl: float
    q: np.ndarray


def fit_gaussian(
    p: np.ndarray,
    grid: np.ndarray,
    direction: Literal["forward", "reverse"],
    mus: np.ndarray,
    sigmas: np.ndarray,
) -> GaussianFit:
    """Search ``mus × sigmas`` for the Gaussian ``Q`` that minimises the chosen KL to ``P``.

    ``direction="forward"`` minimises ``KL(P ‖ Q)``; ``"reverse"`` minimises ``KL(Q ‖ P)``.
    An exhaustive grid search, so the answer is the global optimum on that grid.

    Taught in notebook 01.
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    mu_g, sigma_g = np.meshgrid(mus, sigmas, indexing="ij")
    q = discretized_gaussian(grid, mu_g, sigma_g)
    pb = np.broadcast_to(p, q.shape)
    kls = kl_divergence(pb, q) if direction == "forward" else kl_divergence(q, pb)
    i, j = np.unravel_index(np.argmin(kls), kls.shape)
    return GaussianFit(mu=float(mus[i]), sigma=float(sigmas[j]), kl=float(kls[i, j]), q=q[i, j])
