"""The optimal KL-regularised policy and the reward–KL frontiers it and best-of-n trace.

For a reward ``r`` and a reference ``π_ref``, the policy that maximises ``E_π[r] − β·KL(π ‖ π_ref)``
is (Korbak et al. 2022; Rafailov et al. 2023, eq. 4)

    π*(y) = π_ref(y) · exp(r(y)/β) / Z,     Z = E_{π_ref}[exp(r/β)],

and two identities follow by substituting it into the objective:

    KL(π* ‖ π_ref) = E_{π*}[r]/β − log Z,        E_{π*}[r] − β·KL(π* ‖ π_ref) = β·log Z.

Sweeping β traces the best achievable reward at each KL: the frontier that PPO runs are compared
with. With only samples from ``π_ref`` it is estimated by self-normalised importance sampling:
weights ``w_i ∝ exp(r_i/β)``; the estimate is trustworthy while the effective sample size
``ESS = 1/Σ w_i²`` stays large — for small β a handful of samples carry all the weight.

Best-of-n (draw n responses from ``π_ref``, keep the highest-reward one) is the simplest baseline:
its KL from the reference is at most ``log n − (n − 1)/n`` (Beirami et al. 2024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be positive for π* (β → 0 is the argmax policy), got {beta}")


def optimal_policy(ref_probs: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    """Exact ``π*(y) ∝ π_ref(y)·exp(r(y)/β)`` over an enumerable set of responses."""
    _check_beta(beta)
    ref_probs, rewards = np.asarray(ref_probs, float), np.asarray(rewards, float)
    if ref_probs.shape != rewards.shape:
        raise ValueError("ref_probs and rewards must have the same shape")
    logits = np.log(ref_probs, where=ref_probs > 0, out=np.full_like(ref_probs, -np.inf)) + rewards / beta
    w = np.exp(logits - logits.max())
    return w / w.sum()


def log_partition(ref_probs: np.ndarray, rewards: np.ndarray, beta: float) -> float:
    """Exact ``log Z = log Σ_y π_ref(y)·exp(r(y)/β)``."""
    _check_beta(beta)
    ref_probs, rewards = np.asarray(ref_probs, float), np.asarray(rewards, float)
    a = rewards / beta
    keep = ref_probs > 0
    m = a[keep].max()
    return float(m + np.log((ref_probs[keep] * np.exp(a[keep] - m)).sum()))


@dataclass(frozen=True)
class FrontierPoint:
    """One β on a frontier: expected reward (and optionally a second value, e.g. gold), KL, ESS."""

    beta: float
    reward: float
    kl: float
    value: float
    ess: float


def snis_frontier(
    rewards: np.ndarray, betas: list[float], values: np.ndarray | None = None
) -> list[FrontierPoint]:
    """π*'s frontier estimated from samples of ``π_ref`` by self-normalised importance sampling.

    ``rewards`` are the rewards of N reference samples; ``values`` (default: the rewards) another
    quantity to average under π*, e.g. the gold reward when π* is defined by the proxy. For each β:
    ``w_i = exp(r_i/β) / Σ_j exp(r_j/β)``, ``E*[r] ≈ Σ w_i r_i``, ``log Z ≈ log mean exp(r/β)``,
    ``KL ≈ E*[r]/β − log Z``, ``ESS = 1/Σ w_i²``.
    """
    rewards = np.asarray(rewards, float)
    values = rewards if values is None else np.asarray(values, float)
    if rewards.ndim != 1 or rewards.size == 0 or values.shape != rewards.shape:
        raise ValueError("rewards and values must be non-empty 1-D arrays of the same length")
    out = []
    for beta in betas:
        _check_beta(beta)
        a = rewards / beta
        m = a.max()
        w = np.exp(a - m)
        log_z = m + math.log(w.mean())
        w /= w.sum()
        reward = float((w * rewards).sum())
        kl = max(reward / beta - log_z, 0.0)
        out.append(FrontierPoint(beta, reward, kl, float((w * values).sum()), float(1.0 / (w**2).sum())))
    return out


def best_of_n_kl(n: int) -> float:
    """Upper bound on ``KL(best-of-n ‖ π_ref)``: ``log n − (n − 1)/n`` (Beirami et al. 2024)."""
    if n < 1:
        raise ValueError("n must be ≥ 1")
    return math.log(n) - (n - 1) / n


def best_of_n_expectation(rewards: np.ndarray, n: int, values: np.ndarray | None = None) -> float:
    """Expected ``values`` of the highest-reward of n draws from the empirical distribution of
    ``rewards`` (exact order statistics, no resampling noise):
    ``Σ_i v_(i) · [(i/N)^n − ((i−1)/N)^n]`` with samples sorted by reward."""
    rewards = np.asarray(rewards, float)
    values = rewards if values is None else np.asarray(values, float)
    order = np.argsort(rewards, kind="stable")
    big_n = rewards.size
    i = np.arange(1, big_n + 1)
    p_max = (i / big_n) ** n - ((i - 1) / big_n) ** n
    return float((p_max * values[order]).sum())
