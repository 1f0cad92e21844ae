"""The chain rule of KL for sequences, checked exactly by enumerating every response.

For responses ``y = (y_1, …, y_T)`` to a prompt ``x``,

    KL(π(·|x) ‖ ρ(·|x)) = E_{y~π} [ Σ_t log π(y_t|x,y_<t) − log ρ(y_t|x,y_<t) ]      (sum of k1)
                        = E_{y~π} [ Σ_t KL(π(·|x,y_<t) ‖ ρ(·|x,y_<t)) ]            (sum of exact per-token KL)

because ``log π(y|x) = Σ_t log π(y_t|x,y_<t)``. So the per-token k1 values summed over a sampled
response are an unbiased estimate of the sequence KL. This module computes the left-hand side by
brute force — every response of at most ``max_new_tokens`` tokens — which is feasible only for
tiny vocabularies; it exists to check the identity, not to be used in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedModel

from klcourse.sampling import Rollout


@dataclass
class Enumeration:
    """Every response (right-padded with ``pad_id`` after it ends) and its log-probability under
    each model. A response ends at ``<eos>`` or after ``max_new_tokens`` tokens.

    Taught in notebook 03.
    """

    responses: torch.Tensor  # [N, max_new_tokens]
    mask: torch.Tensor  # [N, max_new_tokens], 1 on the response's tokens
    logp_policy: torch.Tensor  # [N]
    logp_reference: torch.Tensor  # [N]

    def as_rollout(self, prompt_ids: torch.Tensor, temperature: float = 1.0) -> Rollout:
        """Every response as one batch, so the same per-token code that scores sampled rollouts
        can score all of them (weight row ``i`` by ``exp(logp_policy[i])`` to take expectations)."""
        n = self.responses.shape[0]
        prompt = prompt_ids.reshape(1, -1).expand(n, -1)
        return Rollout(
            prompt_ids=prompt,
            prompt_mask=torch.ones_like(prompt),
            response_ids=self.responses,
            response_mask=self.mask,
            ended=torch.ones(n, dtype=torch.bool),
            prompts=[""] * n,
            responses=[""] * n,
            temperature=temperature,
        )

    def exact_kl(self) -> float:
        """``Σ_y π(y) (log π(y) − log ρ(y))`` over every response."""
        p = self.logp_policy.exp()
        return float((p * (self.logp_policy - self.logp_reference)).sum())


def tiny_model(seed: int, vocab: int = 5) -> GPT2LMHeadModel:
    """A randomly initialised one-layer GPT-2 over ``vocab`` tokens: small enough that every
    response of a few tokens can be enumerated, so expectations become exact sums.

    Taught in notebook 07.
    """
    torch.manual_seed(seed)
    shape = dict(n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, **shape)).eval()


@torch.no_grad()
def _next_logprobs(model: PreTrainedModel, prompt: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
    ids = torch.cat([prompt.expand(prefixes.shape[0], -1), prefixes], dim=1)
    return model(input_ids=ids).logits[:, -1].double().log_softmax(-1)


def enumerate_responses(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    prompt_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    max_sequences: int = 200_000,
) -> Enumeration:
    """Enumerate all responses to one prompt (``prompt_ids``: ``[P]``) breadth first.

    Raises ``ValueError`` if the tree would exceed ``max_sequences`` open prefixes.

    Taught in notebook 03.
    """
    vocab = policy.config.vocab_size
    if vocab**max_new_tokens > max_sequences * vocab:
        raise ValueError(
            f"{vocab}^{max_new_tokens} responses is too many to enumerate (limit {max_sequences:,})"
        )
    prompt = prompt_ids.reshape(1, -1)
    open_ids = torch.empty(1, 0, dtype=torch.long)
    open_lp = torch.zeros(1, 2, dtype=torch.float64)  # columns: policy, reference
    done_ids, done_lp = [], []
    for depth in range(max_new_tokens):
        lp_pol = _next_logprobs(policy, prompt, open_ids)
        lp_ref = _next_logprobs(reference, prompt, open_ids)
        n = open_ids.shape[0]
        tokens = torch.arange(vocab).repeat(n)
        parents = torch.arange(n).repeat_interleave(vocab)
        ids = torch.cat([open_ids[parents], tokens[:, None]], dim=1)
        lp = open_lp[parents] + torch.stack([lp_pol.reshape(-1), lp_ref.reshape(-1)], dim=1)
        finished = (tokens == eos_id) | (depth == max_new_tokens - 1)
        done_ids.append(torch.nn.functional.pad(ids[finished], (0, max_new_tokens - depth - 1), value=pad_id))
        done_lp.append(lp[finished])
        open_ids, open_lp = ids[~finished], lp[~finished]
    responses = torch.cat(done_ids)
    lengths = torch.cat([torch.full((d.shape[0],), i + 1) for i, d in enumerate(done_ids)])
    mask = (torch.arange(max_new_tokens)[None, :] < lengths[:, None]).long()
    lp = torch.cat(done_lp)
    return Enumeration(responses=responses, mask=mask, logp_policy=lp[:, 0], logp_reference=lp[:, 1])
