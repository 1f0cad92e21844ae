"""Notebook 08's coding exercises (DPO): klcourse's answer, the inputs, and the slips each names."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from klcourse.coding import Case, CodingExercise, padded_logprobs


def _dpo_loss_ref(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> torch.Tensor:
    from klcourse.dpo import dpo_loss

    return dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)


def _sequence_logprobs(rng: np.random.Generator, b: int, scale: float) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(-rng.uniform(1, 10, b) * scale) for _ in range(4))


def _dpo_loss_cases(rng: np.random.Generator) -> list[Case]:
    ones = torch.full((1,), -3.0, dtype=torch.float64)
    return [
        Case((ones, ones, ones, ones, 0.1), "one pair where the policy is the reference: margin 0"),
        Case((*_sequence_logprobs(rng, 4, 1.0), 0.1), "4 pairs of summed log-probs, β = 0.1"),
        Case((*_sequence_logprobs(rng, 3, 1.0), 0.5), "3 pairs, β = 0.5"),
        Case(
            (
                torch.tensor([-1.0, -5000.0], dtype=torch.float64),
                torch.tensor([-5000.0, -1.0], dtype=torch.float64),
                torch.tensor([-3.0, -3.0], dtype=torch.float64),
                torch.tensor([-3.0, -3.0], dtype=torch.float64),
                1.0,
            ),
            "margins of ±4999 nats, where σ(·) rounds to 0 or 1",
        ),
    ]


def _naive_dpo_loss(pc, pr, rc, rr, beta) -> torch.Tensor:
    return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr))))


def _margin_ref(policy_lp, ref_lp, mask, beta) -> torch.Tensor:
    from klcourse.dpo import implicit_reward

    rewards = implicit_reward((policy_lp * mask).sum(1), (ref_lp * mask).sum(1), beta)
    chosen, rejected = rewards.chunk(2)
    return chosen - rejected


def _margin_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case((*padded_logprobs(rng, [3, 3], 3), 0.1), "one pair of 3-token responses, no padding, β = 0.1"),
        Case(
            (*padded_logprobs(rng, [4, 2, 1, 4], 4), 0.1),
            "2 pairs (rows 0–1 chosen, 2–3 rejected) of 4, 2, 1 and 4 tokens; padding holds junk values",
        ),
        Case((*padded_logprobs(rng, [5, 3, 6, 2, 6, 6], 6), 0.5), "3 random pairs with padding, β = 0.5"),
    ]


def _margin_with(mask_it: bool, mean: bool, beta_in: bool, swap: bool):
    def margin(policy_lp, ref_lp, mask, beta):
        m = mask if mask_it else torch.ones_like(mask)
        h = ((policy_lp - ref_lp) * m).sum(1)
        if mean:
            h = h / m.sum(1)
        h = beta * h if beta_in else h
        chosen, rejected = h.chunk(2)
        return rejected - chosen if swap else chosen - rejected

    return margin


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="08.4",
        name="my_dpo_loss",
        task="write my_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) → the "
        "DPO loss of each pair, [B], from the summed log-probs [B] of the chosen and rejected responses "
        "under the policy and the reference, without overflow for margins of thousands of nats.",
        reference=_dpo_loss_ref,
        cases=_dpo_loss_cases,
        hint="−log σ(β·[(log π − log π_ref)(y_w) − (log π − log π_ref)(y_l)]); "
        "torch.nn.functional.logsigmoid computes log σ without overflow.",
        slips=(
            (
                "The reference is missing: DPO's reward is the log-ratio log π − log π_ref, not log π.",
                lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)),
            ),
            (
                "Chosen and rejected are swapped: the loss is small when the chosen response's log-ratio is "
                "the larger one.",
                lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pr - rr) - (pc - rc))),
            ),
            (
                "β is missing: the margin is multiplied by β inside the sigmoid.",
                lambda pc, pr, rc, rr, b: -F.logsigmoid((pc - rc) - (pr - rr)),
            ),
            (
                "Overflow: σ of a margin of −5000 rounds to 0 and its log is −∞. Use logsigmoid, which "
                "computes log σ(x) = −log(1 + e^(−x)) stably.",
                _naive_dpo_loss,
            ),
        ),
        shape_hint="Return one loss per pair: shape [B] (do not average over the batch).",
    ),
    CodingExercise(
        key="08.5",
        name="reward_margin",
        task="write reward_margin(policy_lp, ref_lp, mask, beta) → the implicit reward margin "
        "β·(h(y_w) − h(y_l)) of each pair, [B], with h = Σ_t (log π − log π_ref) over a response's real "
        "tokens, from per-token log-probs and the response mask [2B, R] laid out as TRL's DPOTrainer "
        "batches them: the B chosen responses first, then the B rejected ones in the same order.",
        reference=_margin_ref,
        cases=_margin_cases,
        hint="h = ((policy_lp − ref_lp)·mask).sum(1); split it into the first and second halves "
        "(h.chunk(2)); margin = β·(h_chosen − h_rejected).",
        slips=(
            (
                "No masking: the padding positions hold junk values that your sum counts. Multiply by "
                "the mask before summing.",
                _margin_with(False, False, True, False),
            ),
            (
                "That averages the log-ratio over each response's tokens, as TRL's IPO does; DPO's "
                "implicit reward sums it.",
                _margin_with(True, True, True, False),
            ),
            ("β is missing: the implicit reward is β·h.", _margin_with(True, False, False, False)),
            (
                "Chosen and rejected are swapped: the chosen responses are the first half of the batch.",
                _margin_with(True, False, True, True),
            ),
        ),
        shape_hint="Return one margin per pair: [B], half the rows of the batch.",
    ),
]
