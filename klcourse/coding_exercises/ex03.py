"""Notebook 03's coding exercises (per-token KL): klcourse's answer, the inputs, and
the slips each names."""

from __future__ import annotations

import numpy as np
import torch

from klcourse.coding import Case, CodingExercise, padded_logprobs


def _gather_ref(logits, input_ids) -> torch.Tensor:
    from klcourse.logprobs import gather_logprobs

    return gather_logprobs(logits[:, :-1], input_ids[:, 1:])


def _gather_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for b, length, v, scale in [(1, 3, 4, 1.0), (2, 6, 7, 3.0), (3, 5, 11, 30.0)]:
        logits = torch.as_tensor(rng.normal(0, scale, (b, length, v)))
        ids = torch.as_tensor(rng.integers(0, v, (b, length)))
        cases.append(Case((logits, ids), f"{b} sequence(s) of {length} tokens, vocabulary {v}"))
    return cases


def _gather(logits, ids) -> torch.Tensor:
    return logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def _sequence_kl_ref(policy_lp, ref_lp, mask) -> torch.Tensor:
    from klcourse.logprobs import per_token_kl

    return per_token_kl(policy_lp, ref_lp, mask, "k1").sum(1)


def _sequence_kl_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case(padded_logprobs(rng, [3], 3), "one response of 3 tokens, no padding"),
        Case(
            padded_logprobs(rng, [4, 2, 1], 4), "3 responses of 4, 2 and 1 tokens; padding holds junk values"
        ),
        Case(padded_logprobs(rng, [6, 5, 3, 6], 6), "4 random responses with padding"),
    ]


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="03.4",
        name="token_logprobs",
        task="write token_logprobs(logits, input_ids) → log-probability of each token after the first, "
        "[B, L − 1], from a causal LM's logits [B, L, V] on input_ids [B, L].",
        reference=_gather_ref,
        cases=_gather_cases,
        hint="position t's logits predict token t + 1: log_softmax(logits[:, :-1]) gathered at "
        "input_ids[:, 1:].",
        slips=(
            (
                "Off-by-one shift: you read each token's log-prob from its own position. The logits at "
                "position t predict token t + 1: pair logits[:, :-1] with input_ids[:, 1:].",
                lambda lg, ids: _gather(lg[:, 1:], ids[:, 1:]),
            ),
            (
                "Shifted the wrong way: logits[:, :-1] predict input_ids[:, 1:], not the other way round.",
                lambda lg, ids: _gather(lg[:, 1:], ids[:, :-1]),
            ),
            (
                "Those are raw logits, not log-probabilities: take log_softmax over the vocabulary first.",
                lambda lg, ids: lg[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1),
            ),
            (
                "Those are probabilities, not log-probabilities: use log_softmax, not softmax.",
                lambda lg, ids: _gather(lg[:, :-1], ids[:, 1:]).exp(),
            ),
            (
                "Log-softmax over the wrong axis: normalise over the vocabulary (the last axis, dim=-1).",
                lambda lg, ids: lg[:, :-1].log_softmax(1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1),
            ),
        ),
        shape_hint="There is one log-prob per token after the first: shape [B, L − 1] (the first token "
        "has no "
        "prediction, and the last position's logits predict a token that is not there).",
    ),
    CodingExercise(
        key="03.5",
        name="sequence_kl",
        task="write sequence_kl(policy_lp, ref_lp, mask) → the k1 estimate of each response's sequence "
        "KL, [B], from per-token log-probs [B, R] and the response mask [B, R] (1 on real tokens, 0 on "
        "padding).",
        reference=_sequence_kl_ref,
        cases=_sequence_kl_cases,
        hint="Σ_t mask_t·(log π_t − log π_ref,t) over each row.",
        slips=(
            (
                "No masking: the padding positions hold junk values that your sum counts. Multiply by "
                "the mask before summing.",
                lambda lp, ref, m: (lp - ref).sum(1),
            ),
            (
                "Mean vs sum: the sequence KL is the sum of the per-token values (chain rule), not "
                "their mean.",
                lambda lp, ref, m: ((lp - ref) * m).sum(1) / m.sum(1),
            ),
        ),
        shape_hint="Return one value per response: shape [B].",
    ),
]
