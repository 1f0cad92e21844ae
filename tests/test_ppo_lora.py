"""PPO with a LoRA policy (``PPOConfig.lora_rank``): the reference is the same model with its adapter
switched off, as TRL's trainers do given a peft model, and it scores exactly as a frozen copy of the
reference would, at every step, while only the adapters and the value model train."""

import copy

import pytest
import torch
from accelerate import Accelerator

from klcourse.logprobs import response_logprobs
from klcourse.ppo import PPOConfig, adamw, build_models, collect_experience, config_for, ppo_update, train
from klcourse.world.core import MAX_RESPONSE_TOKENS


def _bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def test_the_adapter_off_reference_scores_as_a_frozen_copy_at_every_step(smoke_world):
    config = config_for(smoke_world.preset, lora_rank=4, lr=3e-3, batch_size=16, mini_batch_size=8)
    frozen = copy.deepcopy(smoke_world.reference)
    model, reference = build_models(smoke_world, config, torch.device("cpu"))
    base = {n: p.detach().clone() for n, p in model.policy.named_parameters() if "lora_" not in n}
    assert list(reference.parameters()) == []  # it holds no weights of its own
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(trainable, config.lr)
    torch.manual_seed(0)
    moved = []
    for step in range(4):
        prompts = smoke_world.prompts(config.batch_size, seed=step)
        exp = collect_experience(smoke_world, model, reference, prompts, config, config.beta)
        expected = response_logprobs(frozen, exp.rollout, config.temperature)
        assert (exp.ref_logprobs - expected).abs().max() <= 1e-6, step
        moved.append((exp.old_logprobs - exp.ref_logprobs).abs().max().item())
        ppo_update(model, optimizer, Accelerator(cpu=True), exp, config)
    assert moved[0] == 0.0 and moved[-1] > 1e-3  # the policy starts as the reference, then trains
    for name, p in model.policy.named_parameters():  # the base never moves: only the adapters train
        if "lora_" not in name:
            assert torch.equal(p, base[name]), name


def test_lora_holds_one_copy_of_the_base(smoke_world):
    full, full_ref = build_models(smoke_world, config_for(smoke_world.preset), torch.device("cpu"))
    lora, lora_ref = build_models(
        smoke_world, config_for(smoke_world.preset, lora_rank=4), torch.device("cpu")
    )
    held_full = _bytes(full.parameters()) + _bytes(full_ref.parameters())  # policy + value, reference
    held_lora = _bytes(lora.parameters()) + _bytes(lora_ref.parameters())  # base + adapters + value
    adapters = _bytes(p for n, p in lora.policy.named_parameters() if "lora_" in n)
    reference = _bytes(smoke_world.reference.parameters())
    assert adapters > 0 and held_lora == held_full - reference + adapters
    trains = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    value = sum(p.numel() for p in (*lora.value_backbone.parameters(), *lora.value_head.parameters()))
    assert trains == value + adapters // 4  # float32: the adapters and the value model, nothing else


def test_a_lora_run_trains_from_kl_zero(smoke_world):
    config = config_for(smoke_world.preset, lora_rank=4, steps=2, max_new_tokens=MAX_RESPONSE_TOKENS)
    result = train(smoke_world, config, progress=False, data_parallel=False)
    assert result.metrics.kl_k1.iloc[0] == 0.0 and len(result.metrics) == 2
    assert hasattr(result.policy, "disable_adapter")  # the trained policy keeps its adapter


def test_lora_rank_must_be_positive():
    with pytest.raises(ValueError, match="lora_rank"):
        PPOConfig(lora_rank=0)
