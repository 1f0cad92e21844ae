"""Notebook 04's coding exercises (the adjusted reward): klcourse's answer, the inputs, and
the slips each names."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from klcourse.coding import Case, CodingExercise, dirichlet, padded_logprobs


def _shaped_ref(scores, kl, mask, beta) -> torch.Tensor:
    from klcourse.ppo import shaped_rewards

    return shaped_rewards(scores, kl, mask, beta)


def _shaped_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for lengths, width, beta in [([3], 3, 0.1), ([4, 2, 1], 4, 0.1), ([5, 3, 5, 1], 5, 0.05)]:
        _, _, mask = padded_logprobs(rng, lengths, width)
        kl = torch.as_tensor(rng.normal(0.1, 0.3, mask.shape))  # junk at padding, too
        scores = torch.as_tensor(rng.normal(1.0, 1.0, len(lengths)))
        label = f"{len(lengths)} response(s) of {', '.join(map(str, lengths))} tokens, β = {beta:g}"
        cases.append(
            Case(
                (scores, kl, mask, beta),
                label + ("; kl holds junk at padding" if min(lengths) < width else ""),
            )
        )
    return cases


def _score_at(column: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """A shaped reward that puts the score at ``column(mask)`` instead of at the last real token."""

    def shaped(scores, kl, mask, beta):
        rewards = -beta * kl * mask
        rewards[torch.arange(len(scores)), column(mask)] += scores
        return rewards

    return shaped


def _unmasked_shaped(scores, kl, mask, beta) -> torch.Tensor:
    """04.4 without the mask on the KL term: padding keeps ``−β·kl``."""
    rewards = -beta * kl
    rewards[torch.arange(len(scores)), mask.sum(1).long() - 1] += scores
    return rewards


def _overflowing_optimal(ref_probs, rewards, beta) -> np.ndarray:
    """``π_ref·exp(r/β)`` normalised without guarding against overflow (04.5's overflow slip)."""
    with np.errstate(over="ignore", invalid="ignore"):
        weights = ref_probs * np.exp(rewards / beta)
        return weights / weights.sum()


def _optimal_ref(ref_probs, rewards, beta) -> np.ndarray:
    from klcourse.optimal import optimal_policy

    return optimal_policy(ref_probs, rewards, beta)


def _optimal_cases(rng: np.random.Generator) -> list[Case]:
    toy = (np.array([0.5, 0.3, 0.2]), np.array([0.0, 1.0, 2.0]))
    cases = [
        Case((*toy, 1.0), "π_ref = [0.5, 0.3, 0.2], rewards [0, 1, 2], β = 1"),
        Case((*toy, 0.001), "the same at β = 0.001: exp(r/β) overflows"),
        Case((np.array([0.6, 0.0, 0.4]), np.array([0.0, 5.0, 1.0]), 0.5), "π_ref is 0 on the best response"),
    ]
    for n, beta in [(5, 0.3), (20, 2.0)]:
        cases.append(
            Case((dirichlet(rng, n), rng.normal(0, 1, n), beta), f"{n} random responses, β = {beta:g}")
        )
    return cases


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="04.4",
        name="my_shaped_rewards",
        task="write my_shaped_rewards(scores, kl, mask, beta) → per-token rewards [B, R]: −β·kl_t on "
        "every response token, plus the score [B] at each response's last real token; 0 on padding.",
        reference=_shaped_ref,
        cases=_shaped_cases,
        hint="rewards = −β·kl·mask; then add scores[i] at position mask[i].sum() − 1 of row i.",
        slips=(
            (
                "The score is in the last column, but shorter responses end earlier: put it at each "
                "response's last real token, position mask.sum(1) − 1.",
                _score_at(lambda m: torch.full((m.shape[0],), m.shape[1] - 1)),
            ),
            (
                "The score goes at the last response token, not the first.",
                _score_at(lambda m: torch.zeros(m.shape[0], dtype=torch.long)),
            ),
            (
                "Sign: the KL penalty is subtracted, r_t = −β·kl_t.",
                lambda s, kl, m, b: _score_at(lambda mm: mm.sum(1).long() - 1)(s, -kl, m, b),
            ),
            (
                "The score is missing: add each response's score at its last real token.",
                lambda s, kl, m, b: -b * kl * m,
            ),
            (
                "No masking: kl holds junk at padding positions; multiply by the mask so padding gets "
                "reward 0.",
                _unmasked_shaped,
            ),
        ),
    ),
    CodingExercise(
        key="04.5",
        name="optimal_policy",
        task="write optimal_policy(ref_probs, rewards, beta) → π*(y) ∝ π_ref(y)·exp(r(y)/β) over an "
        "enumerable set of responses (1-D numpy arrays), without overflow at β = 0.001.",
        reference=_optimal_ref,
        cases=_optimal_cases,
        hint="work in logs: a = log π_ref + r/β; π* = exp(a − max a) / Σ exp(a − max a).",
        slips=(
            (
                "You dropped π_ref: π* reweights the reference, π*(y) ∝ π_ref(y)·exp(r(y)/β).",
                lambda ref, r, b: np.exp(r / b - (r / b).max()) / np.exp(r / b - (r / b).max()).sum(),
            ),
            (
                "Divide the rewards by β, do not multiply: exp(r/β).",
                lambda ref, r, b: _optimal_ref(ref, r, 1 / b),
            ),
            (
                "Not normalised: divide by Z = Σ_y π_ref(y)·exp(r(y)/β) so that π* sums to 1.",
                lambda ref, r, b: ref * np.exp(r / b),
            ),
            (
                "Overflow: at β = 0.001, exp(r/β) is ∞ and ∞/∞ is NaN. Subtract the largest "
                "log π_ref + r/β before exponentiating.",
                _overflowing_optimal,
            ),
        ),
    ),
]
