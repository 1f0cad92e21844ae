"""What PPO, the sweep and the evaluations need from a world, written down once.

Two worlds implement it: the synthetic :class:`klcourse.world.World` of notebooks 03–07, and
:class:`klcourse.world.hub.HubWorld`, any causal LM and reward model by hub name or local path with
prompts from a file or a dataset. A world that cannot give a metric returns ``None`` for it (a hub
world has no grammar, and a gold reward only if one is named), and the runs leave that metric out
rather than fake it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from klcourse.config import Preset
from klcourse.sampling import Rollout


@runtime_checkable
class RLWorld(Protocol):
    """The world interface: the models, the prompts, the proxy score and the optional truths.

    * ``tokenizer`` — the policy's (and the reference's) tokenizer, padding on the left;
    * ``reference`` — the frozen reference π_ref, a causal LM; the policy starts as a copy of it;
    * ``reward_model`` — the proxy reward model, which may read text with its own tokenizer;
    * ``value_from_reward`` — whether the value model can start as the reward model [Ouyang 2022]:
      true when the reward model is a decoder with a scalar ``score`` head over the policy's own
      tokens; otherwise it starts as the reference's transformer with a zero head;
    * ``eos_token_ids`` — the tokens that end a response (a model's generation config may add its
      own to the tokenizer's);
    * ``max_new_tokens`` — the longest response a run samples, and ``missing_eos_penalty`` what PPO
      subtracts from the score of a response cut off there (``None``: nothing) [Huang et al. 2024];
    * ``key`` — names of the models and data the world was made from, stored with every run so that
      a stored run is reused only by the world that made it.

    Taught in notebook 03.
    """

    preset: Preset
    device: torch.device
    tokenizer: PreTrainedTokenizerBase
    reference: PreTrainedModel
    reward_model: PreTrainedModel
    value_from_reward: bool
    max_new_tokens: int
    missing_eos_penalty: float | None

    @property
    def eos_token_ids(self) -> list[int]: ...

    @property
    def key(self) -> dict[str, str]: ...

    @property
    def score_normalisation(self) -> tuple[float, float]:
        """``(μ, σ)`` of the reward model's raw score on the reference's own samples."""
        ...

    def prompts(self, n: int, seed: int) -> list[str]:
        """``n`` prompts, reproducible from ``seed``."""
        ...

    def diversity_prompts(self) -> list[str]:
        """The fixed prompts on which a run's final policy is sampled to measure its diversity."""
        ...

    def texts(self, rollout: Rollout) -> list[str]:
        """Prompt and response of each row as one text (what a run shows of its samples)."""
        ...

    def score(self, rollout: Rollout) -> torch.Tensor:
        """The normalised proxy score ``(r − μ)/σ`` of each row, ``[B]``, independent of its batch."""
        ...

    def gold(self, rollout: Rollout) -> torch.Tensor | None:
        """The gold reward of each row, or ``None`` if this world has none."""
        ...

    def well_formed(self, rollout: Rollout) -> float | None:
        """The share of rows that ended and are well formed, or ``None`` if this world cannot tell."""
        ...
