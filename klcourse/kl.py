"""KL divergence: exact values for discrete distributions and Monte Carlo estimators.

Every function accepts numpy arrays (or Python numbers and lists) and torch tensors. Numpy-like
input gives numpy output (float64); torch input gives a torch tensor on the same device, so the
functions can sit inside a training loop.

Conventions used throughout the course:

* ``KL(P ‖ Q) = Σ_x P(x) · log(P(x) / Q(x))`` in nats (natural log); pass ``unit="bits"`` for
  base-2 logarithms (1 bit = ln 2 nats).
* ``0 · log(0 / q) = 0`` (the limit of ``p log p`` as ``p → 0``), so outcomes that ``P`` never
  produces contribute nothing, whatever ``Q`` says about them.
* ``p > 0`` where ``q = 0`` gives ``inf``: ``Q`` rules out something that ``P`` does.
* The sample estimators take log-probabilities of items **sampled from P** (in RLHF: tokens the
  policy generated) under both distributions, and estimate ``KL(P ‖ Q)``.

Bad input raises :class:`ValueError` with a message that names the problem; valid input never
produces NaN.
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import numpy as np
import torch

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor, float)
Unit = Literal["nats", "bits"]

#: Tolerance on ``|Σ p − 1|`` for float64 input. Lower-precision input gets :data:`SUM_TOL_LOW`.
SUM_TOL = 1e-6
#: Tolerance on ``|Σ p − 1|`` for float32/float16/bfloat16 input.
SUM_TOL_LOW = 1e-3
#: How far above 0 a log-probability may round before it is rejected.
LOGPROB_TOL = 1e-5

__all__ = [
    "SUM_TOL",
    "SUM_TOL_LOW",
    "bernoulli_kl",
    "estimate_kl",
    "k1",
    "k2",
    "k3",
    "kl_divergence",
    "kl_from_logprobs",
    "single_sample_kl",
]


def _to_tensor(x, name: str) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, came_from_torch)``; numpy-like input becomes a float64 tensor."""
    if isinstance(x, torch.Tensor):
        if not (x.is_floating_point()):
            x = x.to(torch.float64)
        return x, True
    try:
        arr = np.array(x, dtype=np.float64)  # a copy: torch needs a writable array
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from exc
    return torch.from_numpy(arr), False


def _out(t: torch.Tensor, as_torch: bool):
    if as_torch:
        return t
    arr = t.detach().cpu().numpy()
    return np.float64(arr) if arr.ndim == 0 else arr


def _scale(unit: Unit) -> float:
    if unit == "nats":
        return 1.0
    if unit == "bits":
        return 1.0 / math.log(2.0)
    raise ValueError(f"unit must be 'nats' or 'bits', got {unit!r}")


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {names} have shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.numel() == 0:
        raise ValueError(f"empty input: {names} have no entries")


def _check_distribution(p: torch.Tensor, name: str, dim: int) -> None:
    if p.ndim == 0:
        raise ValueError(f"{name} must have at least one axis of outcomes, got a scalar")
    if p.shape[dim] == 0:
        raise ValueError(f"empty input: {name} has no outcomes along axis {dim}")
    if torch.isnan(p).any():
        raise ValueError(f"{name} contains NaN")
    if torch.isinf(p).any():
        raise ValueError(f"{name} contains inf; probabilities must be finite")
    if (p < 0).any():
        raise ValueError(f"{name} has negative entries (min {p.min().item():.3g}); probabilities must be ≥ 0")
    tol = SUM_TOL if p.dtype == torch.float64 else SUM_TOL_LOW
    err = (p.sum(dim=dim, dtype=torch.float64) - 1.0).abs().max().item()
    if err > tol:
        raise ValueError(
            f"{name} does not sum to 1 along axis {dim} (off by {err:.3g}, tolerance {tol:g}); "
            "normalise it first"
        )


def _check_probabilities(t: torch.Tensor, name: str) -> None:
    """Single probabilities (not distributions): each in [0, 1], none NaN."""
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    if ((t < 0) | (t > 1)).any():
        raise ValueError(f"{name} must be a probability in [0, 1]")


def _check_logprobs(lp: torch.Tensor, name: str) -> None:
    if torch.isnan(lp).any():
        raise ValueError(f"{name} contains NaN")
    if (lp > LOGPROB_TOL).any():
        raise ValueError(
            f"{name} has entries above 0 (max {lp.max().item():.3g}); log-probabilities must be ≤ 0"
        )


def kl_divergence(p, q, *, dim: int = -1, unit: Unit = "nats"):
    """Exact ``KL(P ‖ Q) = Σ_x P(x) · log(P(x) / Q(x))`` for discrete distributions.

    ``p`` and ``q`` hold probabilities along ``dim`` (other axes are a batch, so rows of
    next-token distributions work). Each row must be non-negative and sum to 1 within
    :data:`SUM_TOL` (float64) or :data:`SUM_TOL_LOW` (lower precision). Terms with ``P(x) = 0``
    contribute 0; ``P(x) > 0`` with ``Q(x) = 0`` makes the result ``inf``.

    Returns nats by default, bits with ``unit="bits"``.

    Taught in notebook 01.
    """
    pt, p_torch = _to_tensor(p, "p")
    qt, q_torch = _to_tensor(q, "q")
    _check_same_shape(pt, qt, "p and q")
    _check_distribution(pt, "p", dim)
    _check_distribution(qt, "q", dim)
    return _out(_kl_rows(pt, qt, dim) * _scale(unit), p_torch or q_torch)


def _kl_rows(p: torch.Tensor, q: torch.Tensor, dim: int) -> torch.Tensor:
    """``Σ_x p log(p/q)`` along ``dim`` for validated inputs, with ``0·log(0/q) = 0``."""
    dtype = torch.promote_types(p.dtype, q.dtype)
    p, q = p.to(dtype), q.to(dtype)
    support = p > 0
    # log p − log q, evaluated only where p > 0; q = 0 there gives +inf, as the math says.
    log_ratio = torch.log(torch.where(support, p, 1.0)) - torch.log(torch.where(support, q, 1.0))
    return torch.where(support, p * log_ratio, 0.0).sum(dim=dim)


def kl_from_logprobs(logp, logq, *, dim: int = -1, unit: Unit = "nats", validate: bool = True):
    """Exact ``KL(P ‖ Q) = Σ_x exp(log P(x)) · (log P(x) − log Q(x))`` from full log-prob vectors.

    The form used for a language model's next-token distributions, where ``log_softmax`` of the
    logits gives ``log P`` over the whole vocabulary. ``-inf`` entries are allowed: an outcome
    with ``log P = -inf`` contributes 0, and ``log Q = -inf`` where ``log P`` is finite gives
    ``inf``. Each row of ``exp(logp)`` must sum to 1 (same tolerances as :func:`kl_divergence`).

    ``validate=False`` skips those checks (three extra passes over the input): for hot loops whose
    inputs come straight from ``log_softmax``.

    Taught in notebooks 02 and 03.
    """
    lp, p_torch = _to_tensor(logp, "logp")
    lq, q_torch = _to_tensor(logq, "logq")
    _check_same_shape(lp, lq, "logp and logq")
    if validate:
        _check_logprobs(lp, "logp")
        _check_logprobs(lq, "logq")
        _check_distribution(lp.exp(), "exp(logp)", dim)
        _check_distribution(lq.exp(), "exp(logq)", dim)
    lq = lq.to(lp.dtype)
    support = lp > -math.inf
    diff = torch.where(support, lp - lq, torch.zeros_like(lp))
    terms = torch.where(support, lp.exp() * diff, torch.zeros_like(lp))
    return _out(terms.sum(dim=dim) * _scale(unit), p_torch or q_torch)


def bernoulli_kl(a, b, *, unit: Unit = "nats"):
    """Exact KL between coins: ``a·log(a/b) + (1−a)·log((1−a)/(1−b))``.

    ``a`` and ``b`` are probabilities of heads in ``[0, 1]`` (scalars or arrays of the same
    shape). The coin example of the course: ``bernoulli_kl(0.7, 0.5) = 0.0823`` nats.

    Taught in notebooks 01 and 02.
    """
    at, a_torch = _to_tensor(a, "a")
    bt, b_torch = _to_tensor(b, "b")
    if at.shape != bt.shape:
        raise ValueError(f"shape mismatch: a and b have shapes {tuple(at.shape)} and {tuple(bt.shape)}")
    _check_probabilities(at, "a")
    _check_probabilities(bt, "b")
    p = torch.stack([at, 1 - at], dim=-1)
    q = torch.stack([bt, 1 - bt], dim=-1)
    return _out(_kl_rows(p, q, -1) * _scale(unit), a_torch or b_torch)


def single_sample_kl(p_x, q_x, *, unit: Unit = "nats"):
    """The seed post's per-item estimate ``log P(x) − log Q(x)`` from probabilities of one item.

    ``p_x`` and ``q_x`` are the probabilities that P and Q give the sampled item ``x`` (with
    ``x ~ P``, so ``p_x > 0``). Worked example: ``single_sample_kl(0.25, 0.05) = ln 5 = 1.6094``.
    A single value can be negative (when ``Q`` likes ``x`` more than ``P`` does); only its mean
    over ``x ~ P`` is the (non-negative) KL. Same as :func:`k1` on ``log p_x, log q_x``.

    Taught in notebook 02.
    """
    pt, p_torch = _to_tensor(p_x, "p_x")
    qt, q_torch = _to_tensor(q_x, "q_x")
    _check_same_shape(pt, qt, "p_x and q_x")
    _check_probabilities(pt, "p_x")
    _check_probabilities(qt, "q_x")
    if (pt == 0).any():
        raise ValueError("p_x has a zero: an item sampled from P cannot have P(x) = 0")
    est = k1(torch.log(pt), torch.log(qt.to(pt.dtype)))
    return _out(est * _scale(unit), p_torch or q_torch)


def _log_ratio(logp, logq) -> tuple[torch.Tensor, bool]:
    """Validate sampled log-probs and return ``(log Q(x) − log P(x), came_from_torch)``."""
    lp, p_torch = _to_tensor(logp, "logp")
    lq, q_torch = _to_tensor(logq, "logq")
    _check_same_shape(lp, lq, "logp and logq")
    _check_logprobs(lp, "logp")
    _check_logprobs(lq, "logq")
    if torch.isinf(lp).any():
        raise ValueError("logp has -inf: an item sampled from P must have P(x) > 0 (was it sampled from Q?)")
    return lq.to(lp.dtype) - lp, p_torch or q_torch


def k1(logp, logq):
    """Schulman's k1, per item: ``−log r = log P(x) − log Q(x)``, with ``x ~ P``, ``r = Q(x)/P(x)``.

    Unbiased for ``KL(P ‖ Q)``, high variance, and single values can be negative. In RLHF,
    ``logp`` is the policy's log-prob of the token it sampled and ``logq`` the reference's.
    (Schulman 2020 samples from his ``q`` and estimates ``KL[q, p]``; his ``q`` is our ``P``.)
    ``logq = -inf`` gives ``inf``.

    Taught in notebook 02.
    """
    neg_log_r, as_torch = _log_ratio(logp, logq)
    return _out(-neg_log_r, as_torch)


def k2(logp, logq):
    """Schulman's k2, per item: ``½ (log r)²`` with ``r = Q(x)/P(x)``, ``x ~ P``.

    Biased (its mean is ``KL(P ‖ Q)`` only to second order as ``Q → P``), low variance, ≥ 0.

    Taught in notebooks 02 and 05.
    """
    log_r, as_torch = _log_ratio(logp, logq)
    return _out(0.5 * log_r.square(), as_torch)


def k3(logp, logq):
    """Schulman's k3, per item: ``(r − 1) − log r`` with ``r = Q(x)/P(x)``, ``x ~ P``.

    Unbiased for ``KL(P ‖ Q)`` (because ``E_P[r] = 1``), always ≥ 0 (``log r ≤ r − 1``), and low
    variance when ``P`` and ``Q`` are close. ``logq = -inf`` gives ``inf``.

    Taught in notebook 02.
    """
    log_r, as_torch = _log_ratio(logp, logq)
    # expm1(log r) − log r is (r − 1) − log r without cancellation when r ≈ 1.
    finite = torch.isfinite(log_r)
    safe = torch.where(finite, log_r, torch.zeros_like(log_r))
    val = torch.where(finite, torch.expm1(safe) - safe, torch.full_like(log_r, math.inf))
    return _out(val, as_torch)


#: Schulman's three per-sample estimators by name: the one table every module and config checks against.
ESTIMATORS = {"k1": k1, "k2": k2, "k3": k3}


def check_estimator(name: str, allowed=ESTIMATORS) -> None:
    """Raise a ``ValueError`` naming ``name`` and the choices unless ``name`` is one of ``allowed``.

    Taught in notebooks 01 and 02.
    """
    if name not in allowed:
        raise ValueError(f"estimator must be one of {', '.join(allowed)}, got {name!r}")


def estimate_kl(logp, logq, estimator: Literal["k1", "k2", "k3"] = "k1", *, unit: Unit = "nats"):
    """Monte Carlo estimate of ``KL(P ‖ Q) ≈ (1/N) Σ_i k(x_i)`` with ``x_i ~ P``.

    ``logp`` and ``logq`` are the log-probabilities of the N samples (any shape; all entries are
    averaged). ``estimator`` picks :func:`k1`, :func:`k2` or :func:`k3`.

    Taught in notebook 02.
    """
    check_estimator(estimator)
    per_item = ESTIMATORS[estimator](logp, logq)
    t, as_torch = _to_tensor(per_item, "estimates")
    return _out(t.mean() * _scale(unit), as_torch)
