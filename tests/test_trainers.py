"""TRL's RLOO and GRPO on the smoke world, the common evaluation, and top-p's kept set."""

import math

import pytest
import torch
from transformers.generation.logits_process import TopPLogitsWarper

from klcourse.logprobs import response_logits, top_p_kept
from klcourse.ppo import ADAM_EPS
from klcourse.sampling import sample
from klcourse.trainers import evaluate, train_trl, trl_config
from klcourse.world import MAX_RESPONSE_TOKENS


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, beta", [("rloo", 0.1), ("grpo", 0.1), ("grpo", 0.0)])
def test_trl_trainers_train_on_the_world(smoke_world, algorithm, beta):
    run = train_trl(smoke_world, algorithm, beta=beta, episodes=64, batch=16, mini_batch=8, epochs=1)
    moved = [
        (p - q).abs().max().item()
        for p, q in zip(run.policy.parameters(), smoke_world.reference.parameters(), strict=True)
    ]
    assert max(moved) > 0, "the policy was trained"
    assert run.log and run.seconds > 0
    # PPO's optimiser (klcourse.ppo.adamw), at a constant learning rate, is the one TRL stepped
    assert run.optimiser == {
        "class": "AdamW",
        "lr": 1e-4,
        "betas": (0.9, 0.999),
        "eps": ADAM_EPS,
        "weight_decay": 0.01,
    }
    rates = [row["learning_rate"] for row in run.log if "learning_rate" in row]
    assert rates and all(r == pytest.approx(1e-4) for r in rates), "the learning rate stays constant"
    stats = evaluate(smoke_world, run.policy, n=64)
    assert all(math.isfinite(v) for v in stats.values())
    assert stats["kl_sequence"] != 0 and stats["kl_forward"] != 0, "unlike the reference, at KL exactly 0"
    assert stats["kl_sequence"] == pytest.approx(stats["kl_token"] * stats["tokens_per_response"], rel=1e-6)


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_trl_loads_its_reference_as_the_course_loads_the_policy(smoke_world, algorithm):
    """TRL loads its own reference model from the policy's folder: with the course's loading
    arguments (GELU as one kernel) it computes exactly the policy's function at the start."""
    from klcourse.trainers import _trl_trainer

    settings = dict(beta=0.1, rounds=1, batch=16, mini_batch=8, epochs=1, lr=1e-4, generations=4, seed=0)
    args = trl_config(algorithm, **settings)
    trainer = _trl_trainer(smoke_world, algorithm, args, smoke_world.prompts(8, seed=0), 1e-4, None)
    ids = torch.randint(3, len(smoke_world.tokenizer), (4, 10))
    with torch.no_grad():  # the backbones: TRL patches both models' LM heads
        policy = trainer.model.base_model(input_ids=ids).last_hidden_state
        reference = trainer.ref_model.base_model(input_ids=ids).last_hidden_state
    assert torch.equal(policy, reference)


def test_the_reference_is_at_kl_zero_from_itself(smoke_world):
    stats = evaluate(smoke_world, smoke_world.reference, n=32)
    assert stats["kl_sequence"] == 0 and stats["kl_token"] == 0 and stats["kl_forward"] == 0
    assert 0 <= stats["well_formed"] <= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(algorithm="ppo"), "algorithm must be"),
        (dict(beta=-0.1), "β must be ≥ 0"),
        (dict(batch=10), "multiple of mini_batch"),
    ],
)
def test_bad_trl_settings_are_named(kwargs, message):
    settings = dict(algorithm="rloo", beta=0.1, rounds=1, batch=16, mini_batch=8, epochs=1, lr=1e-4)
    settings |= dict(generations=4, seed=0) | kwargs
    algorithm = settings.pop("algorithm")
    with pytest.raises(ValueError, match=message):
        trl_config(algorithm, **settings)


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
@pytest.mark.parametrize(
    "schedule, correction, scaling", [("linear", True, "group"), ("constant", False, "none")]
)
def test_every_trl_setting_the_course_passes_reaches_the_config(algorithm, schedule, correction, scaling):
    config = trl_config(
        algorithm,
        beta=0.07,
        rounds=3,
        batch=32,
        mini_batch=8,
        epochs=2,
        lr=2e-5,
        generations=4,
        seed=11,
        lr_schedule=schedule,
        kl_correction=correction,
        scale_rewards=scaling,
    )
    assert type(config).__name__ == {"rloo": "RLOOConfig", "grpo": "GRPOConfig"}[algorithm]
    assert config.beta == 0.07 and config.learning_rate == 2e-5 and config.seed == 11
    assert config.num_iterations == 2 and config.num_generations == 4 and config.temperature == 1.0
    assert config.per_device_train_batch_size == 8 and config.steps_per_generation == 32 // 8
    assert config.max_steps == 3 * (32 // 8) * 2  # rounds × minibatches per round × epochs
    assert config.max_completion_length == MAX_RESPONSE_TOKENS and config.disable_dropout
    assert str(config.lr_scheduler_type).rsplit(".", 1)[-1].lower() == schedule
    if algorithm == "grpo":
        assert config.use_bias_correction_kl is correction and config.scale_rewards == scaling
    else:
        assert not hasattr(config, "use_bias_correction_kl") and not hasattr(config, "scale_rewards")


@pytest.mark.parametrize("top_p", [0.3, 0.8, 0.95, 1.0])
def test_top_p_kept_matches_transformers(top_p):
    logits = torch.randn(4, 6, 50, generator=torch.Generator().manual_seed(0))
    warped = TopPLogitsWarper(top_p)(None, logits.reshape(-1, 50).clone()).reshape(logits.shape)
    assert torch.equal(top_p_kept(logits, top_p), torch.isfinite(warped))


def test_sample_draws_what_generate_draws_with_top_p(smoke_world, temperature=1.3, top_p=0.8):
    """The course's sampling loop and transformers' ``generate(do_sample=True)`` make the same
    draws from the same generator state, top-p and temperature included: the same tokens, up to and
    including each first <eos>, and as many steps (without top-p: tests/test_padding.py)."""
    tok, prompts = smoke_world.tokenizer, smoke_world.prompts(48, seed=3)
    eos = smoke_world.eos_token_ids
    torch.manual_seed(11)
    rollout = sample(
        smoke_world.reference,
        tok,
        prompts,
        max_new_tokens=12,
        temperature=temperature,
        top_p=top_p,
        eos_token_id=eos,
    )
    torch.manual_seed(11)
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = smoke_world.reference.generate(
        **enc,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=top_p,
        max_new_tokens=12,
        pad_token_id=tok.pad_token_id,
        eos_token_id=eos,
    )
    theirs = out[:, enc["input_ids"].shape[1] :]
    m = rollout.response_mask.bool()
    assert theirs.shape == rollout.response_ids.shape
    assert torch.equal(theirs[m], rollout.response_ids[m])
    assert rollout.ended.any() and m.sum() > 48


def test_top_p_samples_stay_in_the_kept_set(smoke_world):
    torch.manual_seed(0)
    rollout = sample(
        smoke_world.reference,
        smoke_world.tokenizer,
        smoke_world.prompts(32, seed=0),
        max_new_tokens=MAX_RESPONSE_TOKENS,
        top_p=0.5,
    )
    with torch.no_grad():
        kept = top_p_kept(response_logits(smoke_world.reference, rollout), 0.5)
    inside = kept.gather(-1, rollout.response_ids[..., None]).squeeze(-1) | ~rollout.response_mask.bool()
    assert inside.all()
    with pytest.raises(ValueError, match="top_p"):
        top_p_kept(kept.float(), 0.0)
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1, got 0"):
        sample(smoke_world.reference, smoke_world.tokenizer, ["the food"], max_new_tokens=0)
