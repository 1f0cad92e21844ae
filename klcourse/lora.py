"""A reference that costs no memory: a LoRA policy (Hu et al. 2021, ``peft``) whose reference is the
same base model with its adapter switched off.

PPO keeps three models: the policy, the value model and the frozen reference. Fine-tuned in full,
the policy and the reference are two copies of the same architecture (TRL issue #1444: the
reference doubles the model memory). With LoRA the policy is ``W₀ + (α/r)·B·A`` on some of its
layers, ``W₀`` frozen and ``B`` starting at 0, so the base ``W₀`` *is* the reference: a forward pass
with the adapter disabled reads ``π_ref`` from the weights the policy already holds. TRL's trainers
do this when given a ``peft_config`` (their ``ref_model`` is then ``None``); ``PPOConfig.lora_rank``
does it in :mod:`klcourse.ppo`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from torch import nn
from transformers import PreTrainedModel


class AdapterOff(nn.Module):
    """The reference of a LoRA policy: the policy's own base weights, read with its adapter switched
    off (``disable_adapter``) for every forward pass. It holds no weights of its own.

    Taught in notebook 09.
    """

    def __init__(self, policy: nn.Module):
        super().__init__()
        object.__setattr__(self, "_policy", policy)  # not a submodule: its weights are the policy's

    def forward(self, **inputs):
        """The policy's forward with its adapter disabled: ``π_ref``'s logits."""
        with self._policy.disable_adapter():
            return self._policy(**inputs)


def with_lora(policy: PreTrainedModel, rank: int) -> nn.Module:
    """``policy`` with LoRA adapters of ``rank`` (scale α/r = 2) on peft's default modules for its
    architecture (GPT-2's attention projection), the base frozen; B starts at 0, so the adapted
    policy starts as exactly the base.

    Taught in notebook 09.
    """
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    conv = any(isinstance(m, Conv1D) for m in policy.modules())  # GPT-2 stores its layers transposed
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, fan_in_fan_out=conv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls transformers' deprecated names
        return get_peft_model(policy, config)


def held(modules: Iterable[nn.Module]) -> dict[str, int]:
    """What ``modules`` hold together, each tensor counted once however many of them share it:
    ``parameters`` (``Σ numel``), ``bytes`` (``Σ numel·element_size``) and ``trainable`` (the
    parameters that require a gradient).

    Taught in notebook 09.
    """
    seen: dict[int, nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            seen.setdefault(id(p), p)
    params = list(seen.values())
    return {
        "parameters": sum(p.numel() for p in params),
        "bytes": sum(p.numel() * p.element_size() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def reference_check(world, config, steps: int, seed: int = 0) -> list[dict]:
    """A short PPO run with a LoRA policy (``config.lora_rank``) in which, at every step, the
    adapter-off reference's per-token log-probs of the sampled responses are compared with those of
    a deep-copied frozen reference: ``max_abs_diff = max_t |log π_ref^off(y_t) − log π_ref^copy(y_t)|``.
    Also per step: ``policy_moved`` (the largest ``|log π(y_t) − log π_ref(y_t)|``, 0 at the first
    step) and the step's ``seconds``.

    Taught in notebook 09.
    """
    import copy
    import time

    import torch
    from accelerate import Accelerator

    from klcourse.logprobs import response_logprobs
    from klcourse.ppo import adamw, build_models, collect_experience, ppo_update, prompt_seed

    if config.lora_rank is None:
        raise ValueError("reference_check needs a LoRA policy: set config.lora_rank")
    frozen = copy.deepcopy(world.reference).eval()
    model, reference = build_models(world, config, world.device)
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], config.lr)
    accelerator = Accelerator(cpu=world.device.type == "cpu")
    torch.manual_seed(seed)
    rows = []
    for step in range(steps):
        t0 = time.perf_counter()
        prompts = world.prompts(config.batch_size, seed=prompt_seed(seed, step, 0))
        exp = collect_experience(world, model, reference, prompts, config, config.beta)
        ppo_update(model, optimizer, accelerator, exp, config)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            copied = response_logprobs(frozen, exp.rollout, config.temperature)
        rows.append(
            {
                "step": step + 1,
                "max_abs_diff": (exp.ref_logprobs - copied).abs().max().item(),
                "policy_moved": (exp.old_logprobs - exp.ref_logprobs).abs().max().item(),
                "seconds": seconds,
            }
        )
    return rows
