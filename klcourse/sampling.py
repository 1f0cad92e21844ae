"""Sampling responses from a policy: the policy generates, nothing else does.

A :class:`Rollout` keeps the token ids the way every later step needs them: prompts left-padded,
responses right-padded after ``<eos>``, and a mask that is 1 on every response token up to and
including the first ``<eos>`` (the tokens whose log-probabilities and KL count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from klcourse import gpt2
from klcourse.padding import position_ids
from klcourse.world.grammar import Grammar


@dataclass
class Rollout:
    """Prompts and the responses a policy sampled for them.

    Taught in notebook 03.
    """

    prompt_ids: torch.Tensor  # [B, P], left-padded
    prompt_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, R], right-padded
    response_mask: torch.Tensor  # [B, R], 1 up to and including the first <eos>
    ended: torch.Tensor  # [B] bool, True when the response produced <eos>
    prompts: list[str]
    responses: list[str]  # each response decoded, without its end token
    temperature: float

    @property
    def input_ids(self) -> torch.Tensor:
        """Prompt and response side by side, ``[B, P + R]``."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """1 on real tokens of the prompt and of the response (through ``<eos>``)."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    def texts(self) -> list[str]:
        """Prompt and response as one review text each."""
        return [f"{p} {r}".strip() for p, r in zip(self.prompts, self.responses, strict=True)]


def every_prompt(grammar: Grammar) -> list[str]:
    """The grammar's prompts ``"the <subject>"``, one per subject, in table order.

    Taught in notebook 03.
    """
    return [f"the {subject}" for subject in grammar.subjects]


def review_prompts(grammar: Grammar, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` prompts ``"the <subject>"`` with subjects drawn from the grammar's distribution.

    Taught in notebook 03.
    """
    prompts = every_prompt(grammar)
    picks = rng.choice(len(prompts), size=n, p=np.fromiter(grammar.subjects.values(), float))
    return [prompts[i] for i in picks]


def response_mask(response_ids: torch.Tensor, eos_id: int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, ended)``: mask is 1 up to and including the first end token of each row (``eos_id``,
    or any of a list of them).

    Taught in notebook 03.
    """
    ends = torch.as_tensor(eos_id if isinstance(eos_id, list) else [eos_id], device=response_ids.device)
    is_eos = torch.isin(response_ids, ends)
    ended = is_eos.any(dim=1)
    # number of eos seen strictly before each position
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (before == 0).long(), ended


@torch.no_grad()
def draw_tokens(
    policy: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    eos_token_id: int | list[int],
    pad_token_id: int,
) -> torch.Tensor:
    """The tokens ``[B, ≤ max_new_tokens]`` that the policy draws after left-padded prompts, one at a
    time from ``softmax(logits / T)`` (renormalised on :func:`klcourse.logprobs.top_p_kept`'s set if
    ``top_p < 1``) with ``torch.multinomial`` on torch's global generator, reusing the keys and
    values of earlier positions (:func:`klcourse.gpt2.cached_forward`), positions from the attention
    mask. A row that has drawn an end token gets ``pad_token_id`` after it; drawing stops when every
    row has ended.

    The loop of transformers' ``generate(do_sample=True)``, the same draws from the same generator
    state, without the logits processors a model's ``generation_config`` may add (a repetition
    penalty, top-k): the sampled distribution is exactly the one the log-probabilities score.
    (:func:`sample` draws with it.)

    Used in notebooks 03–09.
    """
    from klcourse.logprobs import top_p_kept

    ends = torch.as_tensor(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id])
    ends = ends.to(prompt_ids.device)
    step = gpt2.cached_forward(policy)
    mask = prompt_mask
    positions = position_ids(prompt_mask)
    inputs = prompt_ids
    unfinished = torch.ones(len(prompt_ids), dtype=torch.long, device=prompt_ids.device)
    drawn = []
    for _ in range(max_new_tokens):
        scores = step(inputs, mask, positions)[:, -1, :].float() / temperature
        if top_p < 1:
            scores = scores.masked_fill(~top_p_kept(scores, top_p), -math.inf)
        token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        token = token * unfinished + pad_token_id * (1 - unfinished)
        drawn.append(token)
        unfinished = unfinished & ~torch.isin(token, ends)
        if not unfinished.any():
            break
        inputs = token[:, None]
        mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)
        positions = positions[:, -1:] + 1
    return torch.stack(drawn, dim=1)


@torch.no_grad()
def sample(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_token_id: int | list[int] | None = None,
) -> Rollout:
    """Sample one response per prompt from ``policy`` at ``temperature``, using torch's global
    generator (seed it with :func:`klcourse.seeding.set_seed`). Pure sampling by default; with
    ``top_p < 1`` each token is drawn from the smallest set of tokens holding ``top_p`` of the
    mass, renormalised (:func:`klcourse.logprobs.top_p_kept` says which set). A response ends at
    ``eos_token_id`` (one id or a list; default the tokenizer's), and is padded with the tokenizer's
    pad token after it, which may be the same token (GPT-2 has no other): the mask, not the pad id,
    says where each response ends.

    Taught in notebooks 03, 04, 05, 06 and 07.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    device = next(policy.parameters()).device
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    drawn = draw_tokens(
        policy,
        enc["input_ids"],
        enc["attention_mask"],
        max_new_tokens,
        temperature,
        top_p,
        eos,
        tokenizer.pad_token_id,
    )
    mask, ended = response_mask(drawn, eos)
    ends = set(eos if isinstance(eos, list) else [eos])
    response_ids = torch.where(mask.bool(), drawn, tokenizer.pad_token_id)
    words = []
    for row, m in zip(response_ids, mask, strict=True):
        ids = row[m.bool()].tolist()
        words.append(tokenizer.decode([i for i in ids if i not in ends]))
    return Rollout(
        prompt_ids=enc["input_ids"],
        prompt_mask=enc["attention_mask"],
        response_ids=response_ids,
        response_mask=mask,
        ended=ended,
        prompts=list(prompts),
        responses=words,
        temperature=temperature,
    )


def well_formed_rate(rollout: Rollout, grammar: Grammar) -> float:
    """Fraction of rollouts that ended with ``<eos>`` and whose prompt + response parses.

    Taught in notebooks 03 and 05.
    """
    ok = [
        e and grammar.is_well_formed(t) for e, t in zip(rollout.ended.tolist(), rollout.texts(), strict=True)
    ]
    return float(np.mean(ok))
