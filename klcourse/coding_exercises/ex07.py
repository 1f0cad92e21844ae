"""Notebook 07's coding exercises (KL as a reward or a loss): klcourse's answer, the inputs, and
the slips each names."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from klcourse.coding import Case, CodingExercise, log_softmax64


def _top_p_ref(logits, top_p) -> torch.Tensor:
    from klcourse.logprobs import top_p_log_mass

    return top_p_log_mass(logits.double(), top_p)


def _top_p_cases(rng: np.random.Generator) -> list[Case]:
    fixed = torch.tensor([2.0, 1.0, 0.0, -1.0], dtype=torch.float64)
    return [
        Case((fixed, 0.8), "logits [2, 1, 0, −1], top_p = 0.8"),
        Case((fixed, 1.0), "top_p = 1 keeps every token: log S = 0"),
        Case((fixed, 0.1), "top_p = 0.1 keeps the top token alone"),
        Case((torch.as_tensor(rng.normal(0, 2, (3, 10))), 0.9), "3 positions, vocabulary 10, top_p = 0.9"),
    ]


def _top_p_below(logits, top_p) -> torch.Tensor:
    probs = logits.double().softmax(-1).sort(-1, descending=True).values
    return (probs * (probs.cumsum(-1) <= top_p)).sum(-1).log()


def _gradient_ref(logits, ref_logprobs) -> torch.Tensor:
    from klcourse.gradients import expected_gradient

    return expected_gradient(logits, ref_logprobs, "k1", "reward")


def _gradient_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case(
            (torch.zeros(2, dtype=torch.float64), torch.tensor([0.8, 0.2]).double().log()),
            "π = (0.5, 0.5), π_ref = (0.8, 0.2)",
        ),
        Case(
            (torch.tensor([1.0, 0.0, -1.0]).double(), log_softmax64([1.0, 0.0, -1.0])),
            "π = π_ref: the gradient is 0",
        ),
    ]
    for v in (4, 12):
        cases.append(
            Case(
                (torch.as_tensor(rng.normal(0, 1, v)), log_softmax64(rng.normal(0, 1, v))),
                f"random π and π_ref over {v} outcomes",
            )
        )
    return cases


def _gradient_with(baseline: bool) -> Callable:
    def gradient(logits, ref_logprobs):
        logp = logits.log_softmax(-1)
        c = logp - ref_logprobs
        pi = logp.exp()
        return pi * (c - (pi * c).sum()) if baseline else pi * c

    return gradient


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="07.4",
        name="my_top_p_log_mass",
        task="write my_top_p_log_mass(logits, top_p) → log S, the log of the probability mass that top-p "
        "sampling keeps, at each position (logits [..., V] → [...]).",
        reference=_top_p_ref,
        cases=_top_p_cases,
        hint="sort the probabilities, keep the smallest top set whose mass reaches top_p, sum and take "
        "the log.",
        slips=(
            (
                "Off by one: top-p keeps the smallest set whose mass reaches top_p, so the token that "
                "crosses top_p is kept too.",
                _top_p_below,
            ),
            ("That is S itself; the exercise asks for log S.", lambda lg, p: _top_p_ref(lg, p).exp()),
            (
                "That is log(1 − S), the log of the mass dropped; log S is the mass kept.",
                lambda lg, p: (-_top_p_ref(lg, p).exp()).log1p(),
            ),
        ),
        shape_hint="Return one log S per position: the logits' shape without the last axis.",
    ),
    CodingExercise(
        key="07.5",
        name="k1_reward_gradient",
        task="write k1_reward_gradient(logits, ref_logprobs) → the exact expected gradient, with respect "
        "to the logits θ, of k1 used as a reward: E_{x~π}[k1(x)·∇_θ log π(x)] with π = softmax(θ) (1-D "
        "tensors).",
        reference=_gradient_ref,
        cases=_gradient_cases,
        hint="∇_θ log π(x) = e_x − π, so the expectation is π ⊙ (c − E_π[c]) with c = log π − log π_ref.",
        slips=(
            (
                "The baseline term is missing: ∇log π(x) = e_x − π, so subtract π·E_π[c] as well.",
                _gradient_with(baseline=False),
            ),
            (
                "That is π − π_ref, the gradient of the forward KL(π_ref ‖ π) (k3 used as a loss); k1 "
                "as a "
                "reward gives the reverse KL's gradient.",
                lambda lg, ref: lg.softmax(-1) - ref.exp(),
            ),
            (
                "That is 0, k1 used as a loss; as a reward the detached k1 multiplies ∇log π.",
                lambda lg, ref: torch.zeros_like(lg),
            ),
        ),
    ),
]
