"""Every PPO knob off its default. At step 0 the policy *is* the reference, so whatever the setting
the per-token KL is 0, the shaped reward of a response is its score (less the missing-EOS penalty),
and the first minibatch is on-policy; each knob then has a behavioural test that a plausible wiring
bug fails (the temperature on either model, the EOS mask, γ, whitening, the controller's sign)."""

import copy

import pytest
import torch
from accelerate import Accelerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klcourse.config import get_preset
from klcourse.ppo import (
    PolicyAndValue,
    collect_experience,
    config_for,
    disable_dropout,
    gae,
    masked_mean,
    ppo_update,
    train,
)

pytestmark = pytest.mark.slow

SMOKE = get_preset("smoke")


def _step_zero(world, seed=0, **overrides):
    """The models PPO starts from, and the experience of its first rollout under ``overrides``."""
    config = config_for(SMOKE, **overrides)
    model = disable_dropout(
        PolicyAndValue(copy.deepcopy(world.reference), world.reward_model, world.score_normalisation)
    )
    model.eval().requires_grad_(True)
    reference = disable_dropout(world.reference)
    torch.manual_seed(seed)
    exp = collect_experience(
        world, model, reference, world.prompts(config.batch_size, seed=seed), config, config.beta
    )
    return config, model, exp


@st.composite
def knob_settings(draw):
    batch = draw(st.sampled_from([8, 16, 32]))
    adaptive = draw(st.booleans())
    return dict(
        temperature=draw(st.floats(0.5, 1.5)),
        kl_estimator=draw(st.sampled_from(["k1", "k2", "k3"])),
        adaptive_kl=adaptive,
        beta=draw(st.floats(0.01, 1.0) if adaptive else st.floats(0.0, 1.0)),
        missing_eos_penalty=draw(st.none() | st.floats(0.1, 2.0)),
        gamma=draw(st.floats(0.8, 1.0)),
        lam=draw(st.floats(0.5, 1.0)),
        whiten_advantages=draw(st.booleans()),
        batch_size=batch,
        mini_batch_size=draw(st.sampled_from([d for d in (4, 8, 16, 32) if batch % d == 0])),
        ppo_epochs=draw(st.integers(1, 2)),
        max_new_tokens=draw(st.sampled_from([4, 16])),  # 4: many responses miss <eos>
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(knobs=knob_settings(), seed=st.integers(0, 1000))
def test_step_zero_identities_hold_for_every_setting(smoke_world, knobs, seed):
    config, model, exp = _step_zero(smoke_world, seed, **knobs)
    # the policy is the reference: every estimator's per-token KL is 0, at any temperature
    assert exp.kl.abs().max().item() < 1e-6, (knobs, exp.kl.abs().max().item())
    torch.testing.assert_close(exp.old_logprobs, exp.ref_logprobs, atol=1e-6, rtol=0)
    # so the shaped rewards sum to the score, less the penalty on the responses that missed <eos>
    expected = smoke_world.score(exp.rollout)
    if config.missing_eos_penalty is not None:
        expected = expected - config.missing_eos_penalty * (~exp.rollout.ended).float()
    torch.testing.assert_close(exp.scores, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(exp.rewards.sum(1), exp.scores, atol=1e-5, rtol=0)
    # and the first minibatch of the update is on-policy: ratio 1, nothing clipped
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, eps=1e-5)
    stats = ppo_update(model, optimizer, Accelerator(cpu=True), exp, config)
    assert stats["approx_kl"][0] < 1e-10 and stats["clip_fraction"][0] == 0.0, (knobs, stats)
    assert len(stats["approx_kl"]) == config.ppo_epochs * config.batch_size // config.mini_batch_size


def test_missing_eos_penalty_lowers_exactly_the_responses_without_eos(smoke_world):
    _, _, plain = _step_zero(smoke_world, seed=4, max_new_tokens=4)
    _, _, penalised = _step_zero(smoke_world, seed=4, max_new_tokens=4, missing_eos_penalty=0.7)
    ended = penalised.rollout.ended
    assert ended.any() and not ended.all(), "the test needs responses with and without <eos>"
    assert torch.equal(plain.rollout.response_ids, penalised.rollout.response_ids)
    torch.testing.assert_close(plain.scores - penalised.scores, 0.7 * (~ended).float(), atol=1e-6, rtol=0)


def test_gamma_discounts_the_score_seen_at_the_first_token(smoke_world):
    """With λ = 1 the return is the discounted sum of rewards; at β = 0 the only reward is the score at
    the last token ``L − 1``, so the first token's return is ``γ^(L−1)·score``."""
    config, _, exp = _step_zero(smoke_world, seed=5, beta=0.0, gamma=0.9, lam=1.0)
    lengths = exp.mask.sum(1)
    assert (lengths > 1).any()
    torch.testing.assert_close(exp.returns[:, 0], 0.9 ** (lengths - 1) * exp.scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("whiten", [False, True])
def test_whitening_is_applied_exactly_when_asked(smoke_world, whiten):
    config, _, exp = _step_zero(smoke_world, seed=6, beta=0.1, whiten_advantages=whiten, gamma=0.95)
    raw, _ = gae(exp.rewards, exp.old_values, exp.mask, config.gamma, config.lam)
    mean = masked_mean(exp.advantages, exp.mask).item()
    var = masked_mean((exp.advantages - mean) ** 2, exp.mask).item()
    if whiten:
        assert abs(mean) < 1e-5 and abs(var - 1) < 1e-3
    else:
        torch.testing.assert_close(exp.advantages, raw)
        assert abs(masked_mean(raw, exp.mask).item()) > 1e-3, "raw advantages do not average to 0 here"


@pytest.mark.parametrize(("target", "direction"), [(50.0, -1), (1e-3, 1)])
def test_adaptive_beta_moves_toward_the_target(smoke_world, target, direction):
    """A target far above the run's KL can only lower β; one far below can only raise it."""
    result = train(
        smoke_world,
        config_for(SMOKE, beta=0.5, adaptive_kl=True, kl_target=target, kl_horizon=500, steps=4),
        progress=False,
    )
    betas = result.metrics["beta"]
    kls = result.metrics["kl_k1"]
    assert betas.iloc[0] == 0.5
    steps = betas.diff().dropna()
    if direction < 0:
        assert (kls < target).all() and (steps < 0).all(), (kls.tolist(), betas.tolist())
    else:
        assert (kls.iloc[1:] > target).all() and (steps.iloc[1:] > 0).all(), (kls.tolist(), betas.tolist())
