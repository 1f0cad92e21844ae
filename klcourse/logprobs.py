"""Per-token log-probabilities of sampled tokens, and per-token KL between policy and reference.

The reference never generates: it is run once on the policy's own tokens (prompt + response) and
its log-probability of each sampled token is read off. Both models are scored with their logits
divided by the sampling temperature ``T``, because the policy actually sampled from
``softmax(logits / T)``; scoring either model at another temperature measures the KL to a
distribution nobody sampled from.
"""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedModel

from klcourse.kl import ESTIMATORS, check_estimator, kl_from_logprobs
from klcourse.padding import padded_forward
from klcourse.sampling import Rollout


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / T)[token]`` at every position: ``logits_t[token] − logsumexp(logits_t)``.

    ``logits`` is ``[..., V]`` and ``tokens`` ``[...]``; the result has the shape of ``tokens``.
    Only the log-sum-exp touches the whole vocabulary; the ``[..., V]`` log-softmax is never stored.

    Taught in notebooks 03, 05 and 07.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)} need tokens of shape {tuple(logits.shape[:-1])}, "
            f"got {tuple(tokens.shape)}"
        )
    scaled = logits.float() / temperature
    picked = scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(scaled, dim=-1)


def response_positions(x: torch.Tensor, rollout: Rollout) -> torch.Tensor:
    """The positions of ``x`` (``[B, P + R, …]``, one entry per input token) that predict the
    response tokens: shifted by one, since position ``t`` of the input predicts token ``t + 1``.

    Taught in notebook 05.
    """
    p = rollout.prompt_ids.shape[1]
    return x[:, p - 1 : -1]


def response_logits(model: PreTrainedModel, rollout: Rollout) -> torch.Tensor:
    """Logits that predict each response token, ``[B, R, V]``, from one forward pass over
    prompt + response (:func:`response_positions`), with positions from the attention mask
    (:func:`klcourse.padding.padded_forward`), as the sampler numbered them when it drew them.

    Taught in notebooks 03 and 07.
    """
    device = next(model.parameters()).device
    out = padded_forward(model, rollout.input_ids.to(device), rollout.attention_mask.to(device))
    return response_positions(out.logits, rollout)


def response_logprobs(
    model: PreTrainedModel, rollout: Rollout, temperature: float | None = None
) -> torch.Tensor:
    """``log π(y_t | x, y_<t)`` of each sampled response token at temperature ``T`` (default: the
    rollout's sampling temperature), ``[B, R]``; 0 at padding positions.

    Taught in notebooks 04 and 05.
    """
    t = rollout.temperature if temperature is None else temperature
    logits = response_logits(model, rollout)
    lp = gather_logprobs(logits, rollout.response_ids.to(logits.device), t)
    return lp * rollout.response_mask.to(lp.device)


def per_token_kl(
    policy_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    estimator: str = "k1",
) -> torch.Tensor:
    """Per-token KL estimates ``kl_t`` on the sampled tokens, 0 where ``mask`` is 0.

    ``estimator`` is a name of :data:`klcourse.kl.ESTIMATORS`. ``k1``: ``log π(y_t) − log π_ref(y_t)``
    (InstructGPT, TRL's RLOO); ``k3``: ``(r − 1) − log r`` with ``r = π_ref(y_t)/π(y_t)``. Summed over
    ``t``, either is an unbiased estimate of the sequence KL ``KL(π(·|x) ‖ π_ref(·|x))`` (chain rule);
    ``k2 = ½(log r)²`` is biased.

    Taught in notebooks 03, 04 and 05.
    """
    check_estimator(estimator)
    m = mask.bool()
    # padding positions hold 0 in both; give them a valid dummy so validation sees real log-probs only
    kl = ESTIMATORS[estimator](torch.where(m, policy_logprobs, -1.0), torch.where(m, ref_logprobs, -1.0))
    return torch.where(m, kl, 0.0)


def exact_per_token_kl(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Exact next-token KL at each position, ``Σ_v π(v|·) log(π(v|·)/π_ref(v|·))`` over the whole
    vocabulary, both at temperature ``T``; ``[B, R]``, 0 where ``mask`` is 0.

    Its sum over positions, averaged over sampled prefixes, is also the sequence KL (chain rule),
    with lower variance than summed k1 — at the price of touching every vocabulary entry.

    Taught in notebook 03.
    """
    lp = (policy_logits.float() / temperature).log_softmax(-1)
    lq = (ref_logits.float() / temperature).log_softmax(-1)
    return kl_from_logprobs(lp, lq, validate=False) * mask.to(lp.device)


def top_p_kept(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Which tokens top-p (nucleus) sampling keeps at each position, ``[..., V]`` booleans: the
    smallest set of most likely tokens whose probability reaches ``top_p`` (at least one token),
    the rule of ``transformers``' ``TopPLogitsWarper``. The kept mass is
    ``S = Σ_{x kept} π(x)``; the sampler draws from ``π(x)/S`` on the kept set.

    Taught in notebook 07.
    """
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    sorted_logits, order = logits.sort(-1)  # ascending, as transformers does
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop = cumulative <= 1 - top_p
    drop[..., -1] = False
    return ~drop.scatter(-1, order, drop)


def top_p_log_mass(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``log S = log Σ_{x kept} π(x)`` at each position, ``[...]``, for the kept set of
    :func:`top_p_kept`: by how much a kept token's untruncated log-probability falls short of the
    log-probability it was sampled with, ``log π(x) = log(π(x)/S) + log S``.

    Taught in notebook 07.
    """
    return torch.where(top_p_kept(logits, top_p), logits.log_softmax(-1), -math.inf).logsumexp(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Next-token entropy ``H = −Σ_v π(v) log π(v)`` with ``π = softmax(logits)``, at each position.

    Taught in notebook 05.
    """
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)
