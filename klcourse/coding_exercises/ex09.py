"""Notebook 09's coding exercises (distillation, the LoRA reference): klcourse's answer, the inputs,
and the slips each names."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from klcourse.coding import Case, CodingExercise


def _forward_kl_ref(student_logits, teacher_logits, mask) -> torch.Tensor:
    from klcourse.logprobs import exact_per_token_kl

    return exact_per_token_kl(teacher_logits.double(), student_logits.double(), mask).double()


def _logits(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 2.0) -> torch.Tensor:
    return torch.as_tensor(rng.normal(0.0, scale, shape))


def _mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.tensor([[1.0] * n + [0.0] * (width - n) for n in lengths], dtype=torch.float64)


def _forward_kl_cases(rng: np.random.Generator) -> list[Case]:
    same = _logits(rng, (1, 3, 5))
    return [
        Case((same, same.clone(), _mask([3], 3)), "a student equal to its teacher: 0 at every token"),
        Case(
            (_logits(rng, (2, 4, 6)), _logits(rng, (2, 4, 6)), _mask([4, 2], 4)),
            "2 responses of 4 and 2 tokens",
        ),
        Case(
            (_logits(rng, (3, 5, 31)), _logits(rng, (3, 5, 31), 4.0), _mask([5, 1, 3], 5)),
            "3 responses over this world's 31 tokens, a peaked teacher",
        ),
        Case(
            (_logits(rng, (1, 2, 4)) + 1000.0, _logits(rng, (1, 2, 4)) + 1000.0, _mask([2], 2)),
            "logits near 1000, where exp overflows",
        ),
    ]


def _forward_kl_with(reverse: bool = False, mask_it: bool = True, normalise: bool = True):
    def kl(student_logits, teacher_logits, mask):
        s, t = student_logits.double(), teacher_logits.double()
        if normalise:
            s, t = s.log_softmax(-1), t.log_softmax(-1)
        if reverse:
            s, t = t, s
        out = (t.exp() * (t - s)).sum(-1)
        return out * mask if mask_it else out

    return kl


def _tiny_lora_policy(seed: int):
    """A 1-layer GPT-2 over 13 tokens with a trained-looking LoRA adapter (B ≠ 0), and a rollout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from klcourse.lora import with_lora
    from klcourse.sampling import Rollout

    torch.manual_seed(seed)
    base = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=13, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=1
        )
    ).eval()
    policy = with_lora(base, rank=2)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    b, plen, rlen = 3, 2, 4
    lengths = [4, 2, 3]
    response_mask = torch.tensor([[1] * n + [0] * (rlen - n) for n in lengths])
    rollout = Rollout(
        prompt_ids=torch.randint(3, 13, (b, plen)),
        prompt_mask=torch.ones(b, plen, dtype=torch.long),
        response_ids=torch.randint(3, 13, (b, rlen)) * response_mask,
        response_mask=response_mask,
        ended=torch.tensor([False, True, True]),
        prompts=[""] * b,
        responses=[""] * b,
        temperature=1.0,
    )
    return policy, rollout


def _reference_ref(policy, rollout) -> torch.Tensor:
    """A frozen copy of the base: the policy with its LoRA modules removed (peft's ``unload``)."""
    from klcourse.logprobs import response_logprobs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls transformers' deprecated names
        base = copy.deepcopy(policy).unload()
    return response_logprobs(base, rollout)


def _reference_cases(rng: np.random.Generator) -> list[Case]:
    seed = int(rng.integers(1 << 30))
    return [Case(_tiny_lora_policy(seed), "a LoRA policy whose adapter has trained (B ≠ 0), 3 responses")]


def _policy_logprobs(policy, rollout) -> torch.Tensor:
    from klcourse.logprobs import response_logprobs

    return response_logprobs(policy, rollout)


def _reference_unmasked(policy, rollout) -> torch.Tensor:
    from klcourse.logprobs import gather_logprobs, response_logits

    with policy.disable_adapter():
        return gather_logprobs(response_logits(policy, rollout), rollout.response_ids)


def _reference_unshifted(policy, rollout) -> torch.Tensor:
    from klcourse.padding import padded_forward

    with policy.disable_adapter():
        logits = padded_forward(policy, rollout.input_ids, rollout.attention_mask).logits
    tail = logits[:, rollout.prompt_ids.shape[1] :].log_softmax(-1)
    return tail.gather(-1, rollout.response_ids.unsqueeze(-1)).squeeze(-1) * rollout.response_mask


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="09.4",
        name="my_forward_kl",
        task="write my_forward_kl(student_logits, teacher_logits, mask) → the forward KL "
        "KL(π_t ‖ π_s) = Σ_v π_t(v)·(log π_t(v) − log π_s(v)) over the whole vocabulary at every "
        "position, [B, R], from logits [B, R, V], 0 where mask [B, R] is 0: supervised KD's loss "
        "per token.",
        reference=_forward_kl_ref,
        cases=_forward_kl_cases,
        hint="log_softmax both logits over the last axis (stable for any logits), then "
        "(p_t · (log p_t − log p_s)).sum(-1) with p_t = exp(log p_t), times the mask.",
        slips=(
            (
                "That is the reverse KL, KL(π_s ‖ π_t): supervised KD weights the log-ratio by the teacher's "
                "probabilities, on the teacher's samples.",
                _forward_kl_with(reverse=True),
            ),
            (
                "No masking: padding positions must be 0. Multiply by the mask.",
                _forward_kl_with(mask_it=False),
            ),
            (
                "The logits are not log-probabilities: normalise them with log_softmax first.",
                _forward_kl_with(normalise=False),
            ),
        ),
        shape_hint="Return one KL per position: [B, R] (do not sum over the response).",
    ),
    CodingExercise(
        key="09.5",
        name="lora_reference_logprobs",
        task="write lora_reference_logprobs(policy, rollout) → log π_ref(y_t) of each sampled response "
        "token, [B, R], 0 at padding, where policy is a peft LoRA model whose reference is its base: "
        "the same model with its adapter switched off.",
        reference=_reference_ref,
        cases=_reference_cases,
        hint="with policy.disable_adapter(): return klcourse.logprobs.response_logprobs(policy, rollout)",
        slips=(
            (
                "Those are the policy's own log-probs: the adapter is still on. Score inside "
                "`with policy.disable_adapter():`.",
                _policy_logprobs,
            ),
            (
                "No masking: padding positions must be 0. Multiply by rollout.response_mask.",
                _reference_unmasked,
            ),
            (
                "Off by one position: the logits at position t predict token t + 1, so the response's "
                "log-probs start at the prompt's last position (klcourse.logprobs.response_positions).",
                _reference_unshifted,
            ),
        ),
        shape_hint="Return one log-prob per response position: [B, R].",
    ),
]
