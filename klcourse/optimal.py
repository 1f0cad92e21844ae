"""The optimal KL-regularised policy and the reward–KL frontiers it and best-of-n trace.

For a reward ``r`` and a reference ``π_ref``, the policy that maximises ``E_π[r] − β·KL(π ‖ π_ref)``
is (Korbak et al. 2022; Rafailov et al. 2023, eq. 4)

    π*(y) = π_ref(y) · exp(r(y)/β) / Z,     Z = E_{π_ref}[exp(r/β)],

and two identities follow by substituting it into the objective:

    KL(π* ‖ π_ref) = E_{π*}[r]/β − log Z,        E_{π*}[r] − β·KL(π* ‖ π_ref) = β·log Z.

With prompts ``x`` the policy is a conditional ``π*(y|x) = π_ref(y|x)·exp(r(x,y)/β)/Z(x)``: each
prompt has its own partition function ``Z(x)``, and the prompts keep their own distribution.

Sweeping β traces the best achievable reward at each KL: the frontier that PPO runs are compared
with. With only samples from ``π_ref`` it is estimated by self-normalised importance sampling,
**within each prompt**: weights ``w_i ∝ exp(r_i/β)`` normalised over that prompt's samples. Pooling
the weights across prompts would also reweight the prompts (towards those with higher rewards),
which no policy can do. SNIS is biased (a ratio of averages; the bias shrinks like 1/N, and the KL
estimate is capped at log N), and for small β a handful of samples carry all the weight: the
effective sample size ``ESS = 1/Σ w_i²`` collapses. :func:`snis_split_error` estimates each point's
bias and standard error from the estimates on halves of the samples.

Best-of-n (draw n responses from ``π_ref``, keep the highest-reward one) is the simplest baseline.
Its KL from the reference is at most ``log n − (n − 1)/n`` (Beirami et al. 2024), approached only
with distinct rewards and many samples; a language model repeats its likeliest responses and a
sample is finite, so the real KL is lower, and :func:`best_of_n` computes it exactly for the
empirical distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be positive for π* (β → 0 is the argmax policy), got {beta}")


def optimal_policy(ref_probs: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    """Exact ``π*(y) ∝ π_ref(y)·exp(r(y)/β)`` over an enumerable set of responses.

    Taught in notebook 04.
    """
    _check_beta(beta)
    ref_probs, rewards = np.asarray(ref_probs, float), np.asarray(rewards, float)
    if ref_probs.shape != rewards.shape:
        raise ValueError("ref_probs and rewards must have the same shape")
    logits = np.log(ref_probs, where=ref_probs > 0, out=np.full_like(ref_probs, -np.inf)) + rewards / beta
    w = np.exp(logits - logits.max())
    return w / w.sum()


def fit_policy(loss: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """The policy ``π = softmax(θ)`` over an enumerable set that minimises ``loss(log π)``, found by
    brute force from ``θ = logits`` (float64): 1,000 Adam steps (lr 0.05; L-BFGS alone can stall far
    from the optimum), then L-BFGS with a strong-Wolfe line search to a gradient of 10⁻¹³.
    Returns π. The notebooks check closed forms such as π* against it.

    Taught in notebooks 04 and 08.
    """
    theta = logits.detach().to(torch.float64).clone().requires_grad_(True)
    adam = torch.optim.Adam([theta], lr=0.05)
    for _ in range(1000):
        adam.zero_grad()
        loss(theta.log_softmax(-1)).backward()
        adam.step()
    lbfgs = torch.optim.LBFGS(
        [theta], max_iter=500, tolerance_grad=1e-13, tolerance_change=1e-16, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        value = loss(theta.log_softmax(-1))
        value.backward()
        return value

    lbfgs.step(closure)
    return theta.detach().softmax(-1)


def log_partition(ref_probs: np.ndarray, rewards: np.ndarray, beta: float) -> float:
    """Exact ``log Z = log Σ_y π_ref(y)·exp(r(y)/β)``.

    Taught in notebook 04.
    """
    _check_beta(beta)
    ref_probs, rewards = np.asarray(ref_probs, float), np.asarray(rewards, float)
    a = rewards / beta
    keep = ref_probs > 0
    m = a[keep].max()
    return float(m + np.log((ref_probs[keep] * np.exp(a[keep] - m)).sum()))


@dataclass(frozen=True)
class FrontierPoint:
    """One point on a frontier: expected reward, KL, a second expected value (e.g. gold), the
    effective sample size summed over prompts, the smallest per-prompt ESS share (1 for best-of-n)
    and the smallest per-prompt ESS (for best-of-n: of its weights on each prompt's samples).

    Taught in notebook 04.
    """

    beta: float
    reward: float
    kl: float
    value: float
    ess: float
    min_ess_fraction: float
    min_ess: float = float("nan")


def _check_samples(rewards, values, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rewards = np.asarray(rewards, float)
    values = rewards if values is None else np.asarray(values, float)
    groups = np.zeros(rewards.shape, int) if groups is None else np.asarray(groups)
    if (
        rewards.ndim != 1
        or rewards.size == 0
        or values.shape != rewards.shape
        or groups.shape != rewards.shape
    ):
        raise ValueError("rewards, values and groups must be non-empty 1-D arrays of the same length")
    if not (np.isfinite(rewards).all() and np.isfinite(values).all()):
        raise ValueError("rewards and values must be finite")
    return rewards, values, groups


def effective_sample_size(weights) -> float:
    """Kish's effective sample size of importance weights: ``ESS = (Σ w_i)² / Σ w_i²``, which is
    ``1/Σ w_i²`` for weights that sum to 1; between 1 (one weight carries all) and N (equal weights).

    Taught in notebook 04.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D array, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    if not w.any():
        raise ValueError("weights are all 0")
    return float(w.sum() ** 2 / (w**2).sum())


def snis_weights(rewards: np.ndarray, beta: float, groups: np.ndarray | None = None) -> np.ndarray:
    """π*'s weight on each of N reference samples, by self-normalised importance sampling per prompt.

    Within prompt ``x``: ``w_i = exp(r_i/β) / Σ_{j∈x} exp(r_j/β)``; each prompt's weights are then
    scaled by its share of the samples, so the prompt distribution is kept and the weights sum to 1.
    ``groups`` (default: one group) names the prompt of each sample.

    Taught in notebook 04.
    """
    _check_beta(beta)
    rewards, _, groups = _check_samples(rewards, None, groups)
    weights = np.empty_like(rewards)
    for g in np.unique(groups):
        here = groups == g
        a = rewards[here] / beta
        w = np.exp(a - a.max())
        weights[here] = w / w.sum() * (here.sum() / rewards.size)
    return weights


def snis_frontier(
    rewards: np.ndarray,
    betas: list[float],
    values: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> list[FrontierPoint]:
    """π*'s frontier estimated from samples of ``π_ref`` by self-normalised importance sampling.

    ``rewards`` are the rewards of N reference samples; ``values`` (default: the rewards) another
    quantity to average under π*, e.g. the gold reward when π* is defined by the proxy; ``groups``
    (default: one group) the prompt of each sample. For each β, with the weights ``W_i`` of
    :func:`snis_weights` and the prompts' shares ``s(x)``: ``E*[r] ≈ Σ W_i r_i``,
    ``log Z(x) ≈ log mean_{i∈x} exp(r_i/β)``, ``KL ≈ E*[r]/β − Σ_x s(x)·log Z(x)``, and each prompt's
    ``ESS(x) = 1/Σ_{i∈x} (W_i/s(x))²``.

    Taught in notebooks 04 and 06.
    """
    rewards, values, groups = _check_samples(rewards, values, groups)
    keys = np.unique(groups)
    out = []
    for beta in betas:
        weights = snis_weights(rewards, beta, groups)
        reward = float((weights * rewards).sum())
        mean_log_z = ess = 0.0
        min_fraction, min_ess = 1.0, math.inf
        for g in keys:
            here = groups == g
            share = here.sum() / rewards.size
            a = rewards[here] / beta
            mean_log_z += share * (a.max() + math.log(np.exp(a - a.max()).mean()))
            ess_g = effective_sample_size(weights[here])
            ess += ess_g
            min_fraction = min(min_fraction, ess_g / here.sum())
            min_ess = min(min_ess, ess_g)
        kl = max(reward / beta - mean_log_z, 0.0)
        value = float((weights * values).sum())
        out.append(FrontierPoint(beta, reward, float(kl), value, ess, float(min_fraction), float(min_ess)))
    return out


@dataclass(frozen=True)
class FrontierError:
    """Estimated bias and standard error of one :func:`snis_frontier` point (reward, KL, value).

    Taught in notebook 04.
    """

    beta: float
    reward_bias: float
    reward_se: float
    kl_bias: float
    kl_se: float
    value_bias: float
    value_se: float


def snis_split_error(
    rewards: np.ndarray,
    betas: list[float],
    values: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    splits: int = 8,
    seed: int = 0,
) -> list[FrontierError]:
    """Bias and standard error of :func:`snis_frontier`'s estimates, from the estimates on halves.

    Each of ``splits`` random splits halves every prompt's samples into ``A`` and ``B``. SNIS is a
    ratio estimator: to first order its bias is ``b/N`` and its variance ``σ²/N`` for ``N`` samples
    per prompt. So the halves' estimates ``f_A, f_B`` carry twice the full estimate ``f``'s bias and
    variance, and, averaged over the splits,

        bias(f) ≈ mean((f_A + f_B)/2) − f,        SE(f) ≈ sqrt(mean((f_A − f_B)²) / 4)

    (Richardson's extrapolation for the bias; ``f_A − f_B`` has no bias and variance ``4·SE²``).
    Higher-order terms make a half's bias more than twice the full estimate's at small ``N``, so
    the bias estimate errs on the large side (by up to 2× in ``tests/test_ppo.py``'s checks against
    repeated draws on an enumerable world), while the standard error comes out within 20 %. Near
    the cap ``KL ≤ log N`` of an estimate from ``N`` samples, or once a few samples carry the weight,
    the first-order picture breaks and the bias estimate grows: the point is not to be trusted.

    Taught in notebook 04.
    """
    if splits < 1:
        raise ValueError(f"splits must be at least 1, got {splits}")
    rewards, values, groups = _check_samples(rewards, values, groups)
    if min(np.unique(groups, return_counts=True)[1]) < 2:
        raise ValueError("every prompt needs at least 2 samples to be split in halves")

    def estimates(keep: np.ndarray) -> np.ndarray:  # [len(betas), 3]: reward, KL, value
        points = snis_frontier(rewards[keep], betas, values[keep], groups[keep])
        return np.array([(p.reward, p.kl, p.value) for p in points])

    full = estimates(np.ones(rewards.size, bool))
    rng = np.random.default_rng(seed)
    means, squares = np.zeros_like(full), np.zeros_like(full)
    for _ in range(splits):
        half = np.zeros(rewards.size, bool)
        for g in np.unique(groups):
            here = np.flatnonzero(groups == g)
            half[rng.permutation(here)[: here.size // 2]] = True
        a, b = estimates(half), estimates(~half)
        means += (a + b) / 2 / splits
        squares += (a - b) ** 2 / 4 / splits
    bias, se = means - full, np.sqrt(squares)
    return [
        FrontierError(
            float(beta),
            reward_bias=float(bias[i, 0]),
            reward_se=float(se[i, 0]),
            kl_bias=float(bias[i, 1]),
            kl_se=float(se[i, 1]),
            value_bias=float(bias[i, 2]),
            value_se=float(se[i, 2]),
        )
        for i, beta in enumerate(betas)
    ]


#: The trust rule of :func:`trusted_frontier`: every prompt keeps at least this many effective
#: samples, and the estimated biases stay within these bounds (gold reward, nats of KL).
MIN_ESS, MAX_VALUE_BIAS, MAX_KL_BIAS = 20.0, 0.01, 0.02


def trusted_frontier(
    rewards: np.ndarray,
    betas: list[float],
    values: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[list[FrontierPoint], list[FrontierError], list[FrontierPoint]]:
    """:func:`snis_frontier`'s points split at the first β (in the order given) that fails the trust
    rule: ``(trusted, their errors, the rest)``. A point is trusted when every prompt keeps at least
    :data:`MIN_ESS` effective samples and :func:`snis_split_error` puts its bias within
    :data:`MAX_VALUE_BIAS` (the value, e.g. gold reward) and :data:`MAX_KL_BIAS` nats (the KL).

    Taught in notebooks 04 and 06.
    """
    points = snis_frontier(rewards, betas, values, groups)
    errors = snis_split_error(rewards, betas, values, groups, seed=seed)
    n = next(
        (
            i
            for i, (p, e) in enumerate(zip(points, errors, strict=True))
            if p.min_ess < MIN_ESS or abs(e.value_bias) > MAX_VALUE_BIAS or abs(e.kl_bias) > MAX_KL_BIAS
        ),
        len(points),
    )
    return points[:n], errors[:n], points[n:]


def best_of_n_kl(n: int) -> float:
    """Upper bound on ``KL(best-of-n ‖ π_ref)``: ``log n − (n − 1)/n`` (Beirami et al. 2024).

    Taught in notebook 04.
    """
    if n < 1:
        raise ValueError("n must be ≥ 1")
    return math.log(n) - (n - 1) / n


def best_of_n(
    rewards: np.ndarray, n: int, values: np.ndarray | None = None, groups: np.ndarray | None = None
) -> FrontierPoint:
    """Best-of-n of the empirical distribution of reference samples, per prompt, exactly.

    Within a prompt of ``N`` samples, sort the distinct rewards; a reward value held by the
    samples at sorted ranks ``a+1 … b`` (ties are one response, drawn with probability
    ``q = (b − a)/N``) is the best of n draws with probability ``p = (b/N)^n − (a/N)^n``. Then
    ``E[r] = Σ p·r``, ``E[value] = Σ p·mean(value of the tied samples)`` and
    ``KL(best-of-n ‖ π_ref) = Σ p·log(p/q)`` — at most :func:`best_of_n_kl`, which it approaches
    only when nothing ties and ``N`` is large (with ``N`` samples best-of-n picks among them only).
    ``min_ess`` is the smallest prompt's effective sample size of best-of-n's weights on its samples
    (a tied value's ``p`` shared equally by its samples), ``1/Σ p²/count``: ``N`` at ``n = 1``.
    Prompts are averaged with their share of the samples; ``beta`` is set to ``n``.

    Taught in notebook 04.
    """
    if n < 1:
        raise ValueError("n must be ≥ 1")
    rewards, values, groups = _check_samples(rewards, values, groups)
    keys, inverse = np.unique(groups, return_inverse=True)
    reward = kl = value = 0.0
    min_ess = math.inf
    for g in range(len(keys)):
        r, v = rewards[inverse == g], values[inverse == g]
        big_n = r.size
        distinct, tie_of, counts = np.unique(r, return_inverse=True, return_counts=True)
        upper = np.cumsum(counts) / big_n
        p = upper**n - (upper - counts / big_n) ** n
        q = counts / big_n
        mean_value = np.bincount(tie_of, weights=v) / counts
        share = big_n / rewards.size
        reward += share * float((p * distinct).sum())
        value += share * float((p * mean_value).sum())
        kl += share * float((p * np.log(np.where(p > 0, p / q, 1.0))).sum())
        min_ess = min(min_ess, float(1.0 / (p**2 / counts).sum()))  # tied samples share p equally
    # Σ p·log(p/q) ≥ 0; only rounding (n = 1 gives p = q) can push it a hair below
    return FrontierPoint(
        float(n), reward, max(kl, 0.0), value, ess=float("nan"), min_ess_fraction=1.0, min_ess=min_ess
    )
