"""How varied a policy's responses are: distinct-n, the modal share and the response entropy per prompt.

A KL penalty keeps the policy near a reference that writes many different reviews; without it,
reward maximisation drifts towards the few responses the reward model likes best (mode collapse),
the behaviour reverse KL allows (notebook 01: KL(π ‖ π_ref) is mode-seeking). Three measures, each
per prompt ``x`` on ``n`` responses sampled from ``π(·|x)``, then averaged over prompts:

* **distinct-n** (Li et al. 2016): distinct n-grams / all n-grams in the responses;
* **modal share**: the fraction of the ``n`` responses equal to the most common one;
* **entropy** ``H(π(·|x)) = E_{y~π}[−log π(y|x)]`` in nats, estimated by the mean of
  ``−Σ_t log π(y_t|x, y_<t)`` over the samples (unbiased), with its standard error.

Taught in notebook 06 (§7, diversity against β).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from klcourse.logprobs import response_logprobs
from klcourse.sampling import sample
from klcourse.seeding import set_seed
from klcourse.stats import mean_and_se


def distinct_n(texts: list[str], n: int) -> float:
    """distinct-n = |distinct n-grams| / |n-grams| over the words of ``texts`` (n-grams do not cross
    texts); 0 when no text has ``n`` words.

    Taught in notebook 06.
    """
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    grams = [
        tuple(words[i : i + n]) for t in texts for words in [t.split()] for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


def modal_share(texts: list[str]) -> float:
    """Fraction of ``texts`` equal to the most common one: ``max_y count(y) / n``.

    Taught in notebook 06.
    """
    if not texts:
        raise ValueError("modal_share needs at least one text")
    return Counter(texts).most_common(1)[0][1] / len(texts)


@dataclass(frozen=True)
class Diversity:
    """Diversity of a policy's responses, averaged over prompts (``entropy_se``: the standard error of
    that average, from the per-prompt sample variances).

    Taught in notebook 06.
    """

    distinct_1: float
    distinct_2: float
    modal_share: float
    entropy: float
    entropy_se: float
    prompts: int
    samples_per_prompt: int

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict (for JSON)."""
        return asdict(self)


@torch.no_grad()
def measure(
    policy: PreTrainedModel,
    tokenizer,
    prompts: list[str],
    *,
    samples_per_prompt: int,
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
    eos_token_id: int | list[int] | None = None,
) -> Diversity:
    """Sample ``samples_per_prompt`` responses to each prompt (seeded with ``seed``; each ends at
    ``eos_token_id``, default the tokenizer's) and measure them.

    Each prompt's entropy is ``mean_i(−log π(y_i|x))`` over its samples; over ``m`` prompts the
    reported entropy is the mean of those and ``entropy_se = √(Σ_x SE_x²) / m``, with each prompt's
    ``SE_x`` from :func:`klcourse.stats.mean_and_se`.

    Taught in notebook 06.
    """
    if samples_per_prompt < 2:
        raise ValueError(f"samples_per_prompt must be ≥ 2 for a standard error, got {samples_per_prompt}")
    if not prompts:
        raise ValueError("measure needs at least one prompt")
    set_seed(seed)
    d1, d2, share, ent, se = [], [], [], [], []
    for prompt in prompts:
        rollout = sample(
            policy,
            tokenizer,
            [prompt] * samples_per_prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            eos_token_id=eos_token_id,
        )
        surprisal = -response_logprobs(policy, rollout).sum(1).double().cpu().numpy()
        d1.append(distinct_n(rollout.responses, 1))
        d2.append(distinct_n(rollout.responses, 2))
        share.append(modal_share(rollout.responses))
        mean, mean_se = mean_and_se(surprisal)
        ent.append(mean)
        se.append(mean_se)
    return Diversity(
        distinct_1=float(np.mean(d1)),
        distinct_2=float(np.mean(d2)),
        modal_share=float(np.mean(share)),
        entropy=float(np.mean(ent)),
        entropy_se=float(np.sqrt(np.sum(np.square(se))) / len(prompts)),
        prompts=len(prompts),
        samples_per_prompt=samples_per_prompt,
    )
