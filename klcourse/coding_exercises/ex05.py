"""Notebook 05's coding exercises (PPO): klcourse's answer, the inputs, and
the slips each names."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from klcourse.coding import Case, CodingExercise, padded_logprobs


def _gae_ref(rewards, values, mask, gamma, lam, part: int = 0) -> torch.Tensor:
    """klcourse's GAE: the advantages (``part=0``) or the returns (``part=1``)."""
    from klcourse.ppo import gae

    return gae(rewards, values, mask, gamma, lam)[part]


def _gae_cases(rng: np.random.Generator) -> list[Case]:
    toy = (torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.8]]), torch.ones(1, 3))
    cases = [Case((*toy, 1.0, 0.95), "exercise 05.1's response: rewards (0, 0, 1), values (0.5, 0.6, 0.8)")]
    for lengths, width, gamma, lam in [([4, 2, 1], 4, 1.0, 0.95), ([6, 3, 5], 6, 0.9, 0.8)]:
        _, _, mask = padded_logprobs(rng, lengths, width)
        rewards = torch.as_tensor(rng.normal(0, 0.2, mask.shape)) * mask
        values = torch.as_tensor(rng.normal(0.5, 0.5, mask.shape))  # junk at padding
        label = (
            f"responses of {', '.join(map(str, lengths))} tokens, γ = {gamma:g}, λ = {lam:g}; "
            "values hold junk at padding"
        )
        cases.append(Case((rewards, values, mask, gamma, lam), label))
    return cases


def _adaptive_ref(beta, kl, target, n_episodes, horizon) -> float:
    from klcourse.ppo import AdaptiveKLController

    return AdaptiveKLController(beta, target, horizon).update(kl, n_episodes)


def _adaptive_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case(
            (0.1, 9.0, 6.0, 1000, 10_000), "β = 0.1, KL 9 nats against a target of 6 (error clipped to +0.2)"
        ),
        Case((0.1, 6.6, 6.0, 64, 10_000), "β = 0.1, KL 6.6 against 6 (error +0.1, not clipped)"),
        Case((0.2, 5.4, 6.0, 512, 10_000), "β = 0.2, KL 5.4 against 6: β must fall"),
        Case((0.05, 0.5, 6.0, 64, 10_000), "β = 0.05, KL 0.5 against 6 (error clipped to −0.2)"),
        Case((float(rng.uniform(0.01, 1)), float(rng.uniform(0, 12)), 6.0, 256, 10_000), "random β and KL"),
    ]


def _adaptive_with(clip: float, sign: float, scaled: bool) -> Callable:
    def update(beta, kl, target, n_episodes, horizon):
        error = min(max(sign * (kl / target - 1), -clip), clip)
        return beta * (1 + error * (n_episodes / horizon if scaled else 1.0))

    return update


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="05.4",
        name="my_gae",
        task="write my_gae(rewards, values, mask, gamma, lam) → the GAE advantages [B, T] of per-token "
        "rewards "
        "and values [B, T], with V and A zero after each response's last token (mask 0).",
        reference=_gae_ref,
        cases=_gae_cases,
        hint="from the last token back: δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}.",
        slips=(
            (
                "λ is missing: A_t = δ_t + γλ·A_{t+1}; you used λ = 1.",
                lambda r, v, m, g, lam: _gae_ref(r, v, m, g, 1.0),
            ),
            (
                "That is λ = 0, the one-step TD error δ_t alone.",
                lambda r, v, m, g, lam: _gae_ref(r, v, m, g, 0.0),
            ),
            (
                "Those are the returns A + V (the value targets); the advantage is A.",
                lambda r, v, m, g, lam: _gae_ref(r, v, m, g, lam, part=1),
            ),
            (
                "No masking: the values hold junk at padding positions, and your recursion bootstraps "
                "from them. V and A are 0 after the last real token.",
                lambda r, v, m, g, lam: _gae_ref(r, v, torch.ones_like(m), g, lam),
            ),
        ),
    ),
    CodingExercise(
        key="05.5",
        name="adaptive_beta",
        task="write adaptive_beta(beta, kl, target, n_episodes, horizon) → the new β after one update of "
        "Ziegler et al.'s adaptive KL controller.",
        reference=_adaptive_ref,
        cases=_adaptive_cases,
        hint="e = clip(KL/target − 1, −0.2, 0.2); β ← β·(1 + e·n/horizon).",
        slips=(
            (
                "The error is clipped to [−0.2, 0.2] before it is used.",
                _adaptive_with(math.inf, 1.0, True),
            ),
            ("Sign: a KL above the target must raise β.", _adaptive_with(0.2, -1.0, True)),
            ("Scale the step by n_episodes/horizon.", _adaptive_with(0.2, 1.0, False)),
        ),
    ),
]
