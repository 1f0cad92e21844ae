"""KL as a reward or as a loss: the exact expected gradient of each estimator's penalty.

What decides training is not an estimator's *value* but its *gradient*, and that depends on where
the estimate goes. Notation: ``θ`` are the policy's logits over ``V`` outcomes, ``π = softmax(θ)``,
``ρ`` the reference, samples ``x ~ π``; with the conventions of :mod:`klcourse.kl`,

    k1(x) = log π(x) − log ρ(x),   k2(x) = ½ k1(x)²,   k3(x) = (r − 1) − log r,   r = ρ(x)/π(x).

verl's straight-through ``k3+`` has the value of k3 and the gradient of k2 (``k2 + sg(k3 − k2)``).
Because ``∇_θ log π(x) = e_x − π``, every gradient here has the form ``E_{x~π}[c(x)·(e_x − π)]``:

* placement ``"reward"`` — the estimate is detached and enters as a penalty in a score-function
  gradient (PPO, RLOO), ``E[sg(k(x))·∇log π(x)]``: ``c = k``;
* placement ``"loss"`` — the estimate is differentiated through ``log π(x)`` at fixed on-policy
  samples (GRPO with ``use_bias_correction_kl=False``), ``E[∇k(x)]``: ``c = ∂k/∂log π(x)``, i.e.
  k1 → 1, k2 → k1, k3 → 1 − r, k3+ → k1;
* placement ``"ratio-loss"`` — the loss multiplied by the importance ratio ``π(x)/sg(π_old(x))``
  and differentiated at ``π_old = π`` (TRL's GRPO with ``use_bias_correction_kl=True``, its default
  since TRL 1.10; DeepSeek-V3.2): ``∇(ratio·k) = k·∇log π + ∇k``, so ``c = k + ∂k/∂log π(x)``, the
  sum of the two placements above.

All gradients are of the *penalty*: descending them lowers it. The identities (exact):

* reward: k1 → ∇KL(π‖ρ);  k3 → ∇KL(π‖ρ) − ∇KL(ρ‖π);  k2 → neither;
* loss:   k1 → 0;  k2 (and k3+) → ∇KL(π‖ρ);  k3 → ∇KL(ρ‖π), the *forward* KL's gradient;
* ratio-loss: k3 → ∇KL(π‖ρ) (reward k3 + loss k3: the forward-KL terms cancel);  k1 → ∇KL(π‖ρ).

On sequences (:func:`sequence_gradients`) a token-level loss differentiates each token's own
log-probability only, and misses the terms through the later tokens (Tang & Munos 2025).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PreTrainedModel

from klcourse import kl
from klcourse.chain_rule import Enumeration
from klcourse.kl import k1, k2, k3

Estimator = Literal["k1", "k2", "k3", "k3+"]
Placement = Literal["reward", "loss", "ratio-loss"]
#: :data:`klcourse.kl.ESTIMATORS` plus verl's straight-through ``k3+`` (a gradient, not a new value).
ESTIMATORS: tuple[str, ...] = (*kl.ESTIMATORS, "k3+")
PLACEMENTS: tuple[str, ...] = ("reward", "loss", "ratio-loss")
#: How far ``Σ ρ`` may be from 1 for ``ref_logprobs`` to count as a distribution.
SUM_TOL = 1e-4


def _inputs(policy_logits: torch.Tensor, ref_logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log π, log ρ)`` in float64, after checking shapes, finiteness and normalisation."""
    theta, ref = torch.as_tensor(policy_logits), torch.as_tensor(ref_logprobs)
    if theta.shape != ref.shape:
        raise ValueError(
            f"policy_logits {tuple(theta.shape)} and ref_logprobs {tuple(ref.shape)} differ in shape"
        )
    if theta.ndim == 0 or theta.shape[-1] < 2:
        raise ValueError(f"need at least 2 outcomes on the last axis, got shape {tuple(theta.shape)}")
    if not torch.isfinite(theta).all():
        raise ValueError("policy_logits must be finite (found inf or NaN)")
    if not torch.isfinite(ref).all():
        raise ValueError("ref_logprobs must be finite: a reference with zero mass makes KL(π‖ρ) infinite")
    total = ref.double().exp().sum(-1)
    if ((total - 1).abs() > SUM_TOL).any():
        raise ValueError(
            f"ref_logprobs must be log-probabilities: exp sums to {total.min():.6g}…{total.max():.6g}"
        )
    return theta.double().log_softmax(-1), ref.double()


def _check_choice(estimator: str, placement: str) -> None:
    kl.check_estimator(estimator, ESTIMATORS)
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")


def coefficients(
    policy_logits: torch.Tensor, ref_logprobs: torch.Tensor, estimator: Estimator, placement: Placement
) -> torch.Tensor:
    """``c(x)`` for every outcome ``x``: the per-sample gradient is ``c(x)·(e_x − π)``.

    ``"reward"``: ``c = k(x)``; ``"loss"``: ``c = ∂k/∂log π(x)`` (k1 → 1, k2 and k3+ → k1, k3 → 1 − r);
    ``"ratio-loss"``: ``c = k(x) + ∂k/∂log π(x)``.

    Taught in notebook 07.
    """
    _check_choice(estimator, placement)
    logp, logr = _inputs(policy_logits, ref_logprobs)
    kl1 = k1(logp, logr)
    value = {"k1": kl1, "k2": k2(logp, logr), "k3": k3(logp, logr), "k3+": k3(logp, logr)}[estimator]
    slope = {
        "k1": torch.ones_like(kl1),
        "k2": kl1,
        "k3": -torch.expm1(logr - logp),  # 1 − r
        "k3+": kl1,
    }[estimator]
    return {"reward": value, "loss": slope, "ratio-loss": value + slope}[placement]


def expected_gradient(
    policy_logits: torch.Tensor, ref_logprobs: torch.Tensor, estimator: Estimator, placement: Placement
) -> torch.Tensor:
    """The exact expected gradient, with respect to the policy's logits ``θ`` (``[V]`` or
    ``[..., V]``), of the KL penalty estimated by ``estimator`` and used as ``placement``:

        E_{x~π}[c(x)·(e_x − π)] = π ⊙ (c − Σ_x π(x) c(x))

    with ``c`` from :func:`coefficients`. ``ref_logprobs`` are the reference's log-probabilities.

    Taught in notebook 07.
    """
    c = coefficients(policy_logits, ref_logprobs, estimator, placement)
    p = torch.as_tensor(policy_logits).double().softmax(-1)
    return p * (c - (p * c).sum(-1, keepdim=True))


def reverse_kl_gradient(policy_logits: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``∇_θ KL(π‖ρ) = π ⊙ (log π − log ρ − KL(π‖ρ))``: the gradient an RLHF penalty should have.

    Taught in notebook 07.
    """
    logp, logr = _inputs(policy_logits, ref_logprobs)
    p = logp.exp()
    kl1 = logp - logr
    return p * (kl1 - (p * kl1).sum(-1, keepdim=True))


def forward_kl_gradient(policy_logits: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``∇_θ KL(ρ‖π) = π − ρ``: the mass-covering direction (what k3 as a loss follows).

    Taught in notebook 07.
    """
    logp, logr = _inputs(policy_logits, ref_logprobs)
    return logp.exp() - logr.exp()


@dataclass(frozen=True)
class MonteCarloGradient:
    """A Monte Carlo gradient: the mean over samples and its standard error, per logit.

    Taught in notebook 07.
    """

    mean: torch.Tensor
    se: torch.Tensor
    samples: int


def sampled_gradient(
    policy_logits: torch.Tensor,
    ref_logprobs: torch.Tensor,
    estimator: Estimator,
    placement: Placement,
    samples: torch.Tensor,
) -> MonteCarloGradient:
    """The same gradient from ``N`` samples ``x_i ~ π`` of one categorical (logits ``[V]``,
    ``samples`` ``[N]`` of outcome indices): ``(1/N) Σ_i c(x_i)·(e_{x_i} − π)``, with standard error
    ``std/√N`` per logit. What a trainer computes from one batch.

    Taught in notebook 07.
    """
    theta = torch.as_tensor(policy_logits)
    if theta.ndim != 1:
        raise ValueError(
            f"sampled_gradient takes one categorical: logits of shape [V], got {tuple(theta.shape)}"
        )
    samples = torch.as_tensor(samples)
    if samples.ndim != 1 or samples.numel() < 2:
        raise ValueError(
            f"samples must be a 1-D tensor of at least 2 outcome indices, got shape {tuple(samples.shape)}"
        )
    if samples.dtype.is_floating_point or samples.min() < 0 or samples.max() >= theta.shape[-1]:
        raise ValueError(f"samples must be integer outcome indices in [0, {theta.shape[-1]})")
    c = coefficients(theta, ref_logprobs, estimator, placement)
    p = theta.double().softmax(-1)
    per_sample = c[samples, None] * (torch.nn.functional.one_hot(samples, theta.shape[-1]).double() - p)
    n = samples.numel()
    return MonteCarloGradient(per_sample.mean(0), per_sample.std(0) / n**0.5, n)


# ------------------------------------------------------------------------------------ sequences


@dataclass(frozen=True)
class SequenceGradients:
    """Exact gradients, over every parameter of a policy (flattened), of the sequence KL penalty
    on one prompt, from enumerating every response ``y`` (the expectations are exact sums).

    ``true = ∇ KL(π(·|x) ‖ ρ(·|x))``; ``reward_k1 = E[sg(Σ_t k1_t)·∇log π(y)]`` (the sequence-level
    score function, as PPO and RLOO use it); ``loss[k] = E[Σ_t ∇k_t]``, a token-level KL loss (GRPO),
    for k1, k2, k3, k3+ and ``"k3*ratio"`` (``k3_t·π/π_old`` at ``π_old = π``, TRL GRPO's default);
    ``future = E[Σ_t ∇log π(y_t|y_<t)·sg(Σ_{s>t} k1_s)]``, the terms through later tokens, so that
    ``true = reward_k1 = loss["k2"] + future = loss["k3*ratio"] + future`` exactly.

    Taught in notebook 07.
    """

    kl: float
    responses: int
    true: torch.Tensor
    reward_k1: torch.Tensor
    loss: dict[str, torch.Tensor]
    future: torch.Tensor


def sequence_gradients(
    policy: PreTrainedModel, reference: PreTrainedModel, prompt_ids: torch.Tensor, enum: Enumeration
) -> SequenceGradients:
    """:class:`SequenceGradients` of ``policy`` against ``reference`` on one prompt (``[P]``), over
    every response of ``enum`` (:func:`klcourse.chain_rule.enumerate_responses` of the same models
    and prompt; tiny vocabularies only). The gradients are computed in float64, on copies; their
    entries follow ``policy.parameters()``.

    Taught in notebook 07.
    """
    # float64 copies: the identities are exact only as far as the arithmetic is
    policy, reference = copy.deepcopy(policy).double(), copy.deepcopy(reference).double()
    n, steps = enum.responses.shape
    ids = torch.cat([prompt_ids.reshape(1, -1).expand(n, -1), enum.responses], dim=1)
    start = prompt_ids.numel() - 1  # logits at position start + t predict response token t
    mask = enum.mask.double()

    def token_logprobs(model: PreTrainedModel) -> torch.Tensor:
        logits = model(input_ids=ids).logits[:, start : start + steps].double()
        return logits.log_softmax(-1).gather(-1, enum.responses[..., None]).squeeze(-1) * mask

    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters (call requires_grad_(True) on it)")
    with torch.no_grad():
        lr = token_logprobs(reference)
    lp = token_logprobs(policy)
    weight = lp.sum(1).exp().detach()  # π(y), summing to 1 over the enumeration
    kl1 = (lp - lr) * mask
    later = kl1.detach().flip(1).cumsum(1).flip(1) - kl1.detach()  # Σ_{s>t} k1_s

    def grad(objective: torch.Tensor) -> torch.Tensor:
        parts = torch.autograd.grad(objective, params, retain_graph=True, allow_unused=True)
        return torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(parts, params, strict=True)
            ]
        )

    seq_logp = lp.sum(1)
    seq_kl = kl1.sum(1)
    k3_plus = k2(lp, lr) + (k3(lp, lr) - k2(lp, lr)).detach()
    ratio = (lp - lp.detach()).exp()  # π/π_old at π_old = π: 1 in value, ∇log π in gradient
    token = {
        "k1": k1(lp, lr),
        "k2": k2(lp, lr),
        "k3": k3(lp, lr),
        "k3+": k3_plus,
        "k3*ratio": k3(lp, lr) * ratio,
    }
    return SequenceGradients(
        kl=float((weight * seq_kl.detach()).sum()),
        responses=n,
        true=grad((seq_logp.exp() * seq_kl).sum()),
        reward_k1=grad((weight * seq_kl.detach() * seq_logp).sum()),
        loss={name: grad((weight * (k * mask).sum(1)).sum()) for name, k in token.items()},
        future=grad((weight * (lp * later).sum(1)).sum()),
    )


#: Below this norm a gradient counts as the zero vector, whose direction is undefined.
ZERO_NORM = 1e-12


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """``a·b / (‖a‖ ‖b‖)``; NaN when either is (numerically) the zero vector, which has no direction.

    Taught in notebook 07.
    """
    na, nb = a.norm(), b.norm()
    return math.nan if na <= ZERO_NORM or nb <= ZERO_NORM else float((a * b).sum() / (na * nb))
