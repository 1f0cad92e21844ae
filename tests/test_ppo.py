"""Tests for klcourse.ppo (reward shaping, GAE, clipping, adaptive β) and klcourse.optimal."""

import math

import numpy as np
import pytest
import torch

from klcourse import optimal
from klcourse.config import get_preset
from klcourse.ppo import (
    AdaptiveKLController,
    PPOConfig,
    adjusted_reward,
    clip_gradients,
    config_for,
    explained_variance,
    gae,
    policy_loss,
    shaped_rewards,
    value_loss,
    whiten,
)

# ---------------------------------------------------------------- reward shaping


def test_shaped_rewards_by_hand_with_and_without_eos():
    scores = torch.tensor([2.0, -1.0])
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, -0.1, 0.2, 0.3]])
    # row 0 ended with <eos> at position 2 (mask 1,1,1,0); row 1 never ended (all 4 tokens count)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).float()
    beta = 0.5
    r = shaped_rewards(scores, kl, mask, beta)
    expected = torch.tensor([[-0.05, -0.10, -0.15 + 2.0, 0.0], [-0.25, 0.05, -0.10, -0.15 - 1.0]])
    torch.testing.assert_close(r, expected)
    # the per-token rewards add up to the seed's adjusted reward, score − β·Σ kl
    torch.testing.assert_close(r.sum(1), adjusted_reward(scores, kl, mask, beta))
    torch.testing.assert_close(
        adjusted_reward(scores, kl, mask, beta), torch.tensor([2.0 - 0.3, -1.0 - 0.45])
    )


def test_shaped_rewards_rejects_empty_response():
    with pytest.raises(ValueError, match="at least one token"):
        shaped_rewards(torch.tensor([1.0]), torch.zeros(1, 3), torch.zeros(1, 3), 0.1)


# ---------------------------------------------------------------- GAE


def reference_gae(rewards, values, length, gamma, lam):
    """Plain recursion on one sequence of ``length`` tokens."""
    adv = [0.0] * length
    last = 0.0
    for t in reversed(range(length)):
        next_v = values[t + 1] if t + 1 < length else 0.0
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0)])
def test_gae_matches_reference_recursion(gamma, lam):
    torch.manual_seed(0)
    rewards, values = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    lengths = [6, 3, 1, 5]
    mask = torch.tensor([[1.0] * n + [0.0] * (6 - n) for n in lengths], dtype=torch.float64)
    adv, ret = gae(rewards * mask, values, mask, gamma, lam)
    for i, n in enumerate(lengths):
        ref = reference_gae(rewards[i].tolist(), values[i].tolist(), n, gamma, lam)
        torch.testing.assert_close(adv[i, :n], torch.tensor(ref, dtype=torch.float64))
        assert (adv[i, n:] == 0).all() and (ret[i, n:] == 0).all()
        torch.testing.assert_close(ret[i, :n], adv[i, :n] + values[i, :n])


def test_gae_with_lambda_one_and_gamma_one_is_return_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.5, 0.7]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    torch.testing.assert_close(ret, torch.ones(1, 3))  # Monte Carlo return
    torch.testing.assert_close(adv, 1.0 - values)


def test_whiten_over_mask():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, mask)
    assert w[0, 3] == 0
    assert w[0, :3].mean().abs() < 1e-6 and (w[0, :3].pow(2).mean() - 1).abs() < 1e-4


# ---------------------------------------------------------------- clipping


def test_policy_loss_clips_only_in_the_direction_of_the_advantage():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]])).requires_grad_(True)  # ratios
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    loss, clip_frac = policy_loss(new, old, adv, mask, clip_range=0.2)
    # ratio 1.5 with A > 0: clipped to 1.2; ratio 1.5 with A < 0: unclipped (pessimistic)
    # ratio 0.5 with A > 0: unclipped; ratio 0.5 with A < 0: clipped to 0.8
    expected = (-1.2 + 1.5 - 0.5 + 0.8) / 4
    assert loss.item() == pytest.approx(expected)
    assert clip_frac.item() == pytest.approx(0.5)
    loss.backward()
    # clipped terms pass no gradient
    assert new.grad[0, 0] == 0 and new.grad[0, 3] == 0
    assert new.grad[0, 1] != 0 and new.grad[0, 2] != 0


def test_value_loss_clipping():
    old = torch.tensor([[0.0]])
    ret = torch.tensor([[1.0]])
    mask = torch.ones(1, 1)
    # moving from 0 to 0.5 toward the target: clipped value 0.2 is worse → max picks it
    assert value_loss(torch.tensor([[0.5]]), old, ret, mask, 0.2).item() == pytest.approx(0.5 * 0.8**2)
    # inside the clip range the two agree
    assert value_loss(torch.tensor([[0.1]]), old, ret, mask, 0.2).item() == pytest.approx(0.5 * 0.9**2)


# ---------------------------------------------------------------- adaptive KL


def test_adaptive_controller_known_updates():
    c = AdaptiveKLController(beta=0.1, target=6.0, horizon=10_000)
    # KL 12 → error clipped to +0.2; β ← 0.1·(1 + 0.2·512/10000)
    assert c.update(12.0, 512) == pytest.approx(0.1 * (1 + 0.2 * 512 / 10_000))
    c = AdaptiveKLController(beta=0.1, target=6.0, horizon=10_000)
    # KL 5.4 → error −0.1
    assert c.update(5.4, 1000) == pytest.approx(0.1 * (1 - 0.1 * 1000 / 10_000))
    c = AdaptiveKLController(beta=0.1, target=6.0, horizon=10_000)
    assert c.update(6.0, 1000) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        AdaptiveKLController(beta=0.0, target=6.0, horizon=10)


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="estimator must be one of k1, k2, k3, got 'k4'"):
        PPOConfig(kl_estimator="k4")
    assert PPOConfig(kl_estimator="k2").kl_estimator == "k2"  # every estimator of klcourse.kl.ESTIMATORS
    with pytest.raises(ValueError, match="multiple"):
        PPOConfig(batch_size=10, mini_batch_size=4)
    cfg = config_for(get_preset("smoke"), beta=0.3)
    assert cfg.beta == 0.3 and cfg.steps == get_preset("smoke").ppo_steps


# ---------------------------------------------------------------- the optimal policy π*


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(30))
    rewards = rng.normal(size=30)
    return ref, rewards


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_optimal_policy_identities(toy, beta):
    ref, r = toy
    pi = optimal.optimal_policy(ref, r, beta)
    log_z = optimal.log_partition(ref, r, beta)
    kl = float((pi * np.log(pi / ref)).sum())
    expected_r = float((pi * r).sum())
    assert kl == pytest.approx(expected_r / beta - log_z, rel=1e-9)
    assert expected_r - beta * kl == pytest.approx(beta * log_z, rel=1e-9)
    # π* beats any other policy on the regularised objective, e.g. small perturbations of it
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = pi * np.exp(0.1 * rng.normal(size=pi.size))
        q /= q.sum()
        assert float((q * r).sum()) - beta * float((q * np.log(q / ref)).sum()) <= beta * log_z + 1e-12


def test_snis_frontier_converges_to_exact(toy):
    ref, r = toy
    rng = np.random.default_rng(2)
    idx = rng.choice(ref.size, size=200_000, p=ref)
    for point in optimal.snis_frontier(r[idx], [0.3, 1.0]):
        pi = optimal.optimal_policy(ref, r, point.beta)
        assert point.reward == pytest.approx(float((pi * r).sum()), abs=0.02)
        assert point.kl == pytest.approx(float((pi * np.log(pi / ref)).sum()), abs=0.02)
        assert 0 < point.ess <= idx.size


def test_snis_ess_collapses_for_small_beta():
    r = np.random.default_rng(3).normal(size=10_000)
    big, small = optimal.snis_frontier(r, [10.0, 0.01])
    assert big.ess > 9_000 and small.ess < 5


def test_best_of_n_bound_and_errors():
    assert optimal.best_of_n_kl(1) == 0.0
    assert optimal.best_of_n_kl(4) == pytest.approx(math.log(4) - 0.75)
    with pytest.raises(ValueError):
        optimal.best_of_n_kl(0)
    with pytest.raises(ValueError):
        optimal.best_of_n(np.zeros(3), 0)
    with pytest.raises(ValueError, match="finite"):
        optimal.best_of_n(np.array([0.0, np.nan]), 2)
    with pytest.raises(ValueError, match="beta must be positive"):
        optimal.optimal_policy(np.ones(2) / 2, np.zeros(2), 0.0)


def test_best_of_n_with_ties_by_hand():
    # two responses, each drawn half the time (two tied samples each): best of 2 is the better one
    # unless both draws are the worse: p = (1/4, 3/4), q = (1/2, 1/2)
    point = optimal.best_of_n(np.array([0.0, 0.0, 1.0, 1.0]), 2, values=np.array([5.0, 7.0, 1.0, 3.0]))
    assert point.reward == pytest.approx(0.75)
    assert point.value == pytest.approx(0.25 * 6.0 + 0.75 * 2.0)  # tied samples' values are averaged
    assert point.kl == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert point.kl < optimal.best_of_n_kl(2)
    # each sample's weight is its value's p shared by its 2 samples: 1/8, 1/8, 3/8, 3/8
    assert point.min_ess == pytest.approx(1 / (2 * (1 / 8) ** 2 + 2 * (3 / 8) ** 2))


def test_best_of_n_effective_samples():
    r = np.random.default_rng(5).normal(size=400)
    assert optimal.best_of_n(r, 1).min_ess == pytest.approx(400)  # best-of-1 is the sample itself
    sizes = [optimal.best_of_n(r, n).min_ess for n in (1, 4, 16, 64)]
    assert all(a > b for a, b in zip(sizes, sizes[1:])), "a larger n draws on fewer samples"
    # for distinct rewards and n ≪ N, 1/Σp² ≈ N(2n − 1)/n²
    assert sizes[2] == pytest.approx(400 * 31 / 256, rel=0.05)
    two = optimal.best_of_n(np.concatenate([r, r[:100]]), 4, groups=np.repeat([0, 1], [400, 100]))
    assert two.min_ess == pytest.approx(optimal.best_of_n(r[:100], 4).min_ess), "the smaller prompt's"


def test_best_of_n_without_ties_reaches_the_bound():
    r = np.random.default_rng(4).normal(size=20_000)
    for n in (2, 16, 128):
        assert optimal.best_of_n(r, n).kl == pytest.approx(optimal.best_of_n_kl(n), abs=5e-3)


def test_best_of_n_is_per_prompt():
    # prompt "a" has rewards {0, 1}, prompt "b" {10, 11}: best of 2 picks within each prompt
    r = np.array([0.0, 1.0, 10.0, 11.0])
    g = np.array(["a", "a", "b", "b"])
    assert optimal.best_of_n(r, 2, groups=g).reward == pytest.approx(0.5 * 0.75 + 0.5 * 10.75)


def _two_prompt_world():
    """Two prompts with their own reference distributions over 20 responses and their own rewards."""
    rng = np.random.default_rng(5)
    refs = [rng.dirichlet(np.ones(20)) for _ in range(2)]
    rewards = [rng.normal(size=20), rng.normal(size=20) + 3.0]  # prompt 1 scores higher everywhere
    return refs, rewards


def test_snis_per_prompt_matches_the_exact_conditional_optimum():
    refs, rewards = _two_prompt_world()
    rng = np.random.default_rng(6)
    samples, groups = [], []
    for g, ref in enumerate(refs):
        idx = rng.choice(20, size=100_000, p=ref)
        samples.append(rewards[g][idx])
        groups.append(np.full(idx.size, g))
    r, g = np.concatenate(samples), np.concatenate(groups)
    for beta in (0.5, 2.0):
        exact_r = exact_kl = 0.0
        for ref, rew in zip(refs, rewards):
            pi = optimal.optimal_policy(ref, rew, beta)
            exact_r += 0.5 * float((pi * rew).sum())
            exact_kl += 0.5 * float((pi * np.log(pi / ref)).sum())
        point = optimal.snis_frontier(r, [beta], groups=g)[0]
        assert point.reward == pytest.approx(exact_r, abs=0.02)
        assert point.kl == pytest.approx(exact_kl, abs=0.02)
        assert 0 < point.min_ess_fraction <= 1
        # pooling the weights over both prompts would move weight to the higher-scoring prompt
        pooled = optimal.snis_frontier(r, [beta])[0]
        assert pooled.reward > exact_r + 0.5
        weights = optimal.snis_weights(r, beta, g)
        assert weights.sum() == pytest.approx(1.0) and weights[g == 0].sum() == pytest.approx(0.5)


def test_explained_variance_by_hand():
    returns = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 5.0, 6.0, -99.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])  # the last column is padding
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 3.5), returns, mask) == pytest.approx(0.0)
    # values off by a constant 1: Var[R − V] = 0, all the variance explained
    assert explained_variance(returns + 1, returns, mask) == pytest.approx(1.0)
    # half the deviation from the mean predicted: 1 − (1/4) = 0.75
    assert explained_variance(3.5 + (returns - 3.5) / 2, returns, mask) == pytest.approx(0.75)
    assert math.isnan(explained_variance(returns, torch.ones_like(returns), mask))


def test_split_half_errors_match_the_bias_and_spread_of_repeated_estimates():
    """snis_split_error, from one sample, against the actual bias and standard error over 400 samples."""
    refs, rewards = _two_prompt_world()
    beta, n = 0.4, 150  # few samples per prompt and a tight β: a bias well above rounding
    exact_kl = sum(
        0.5 * float((pi * np.log(pi / ref)).sum())
        for ref, rew in zip(refs, rewards)
        for pi in [optimal.optimal_policy(ref, rew, beta)]
    )
    rng = np.random.default_rng(7)
    estimates, biases, ses = [], [], []
    groups = np.repeat([0, 1], n)
    for rep in range(400):
        r = np.concatenate([rewards[g][rng.choice(20, size=n, p=refs[g])] for g in (0, 1)])
        estimates.append(optimal.snis_frontier(r, [beta], groups=groups)[0].kl)
        error = optimal.snis_split_error(r, [beta], groups=groups, seed=rep)[0]
        biases.append(error.kl_bias)
        ses.append(error.kl_se)
    actual_bias, actual_se = np.mean(estimates) - exact_kl, np.std(estimates)
    assert actual_bias < -0.02, "the setting has a bias to find"
    # first-order extrapolation: the right sign, never much smaller, at most a few times larger (conservative)
    assert 0.8 * actual_bias > np.mean(biases) > 3 * actual_bias
    assert np.mean(ses) == pytest.approx(actual_se, rel=0.2)


def test_trusted_frontier_stops_at_the_first_point_that_fails_the_rule():
    refs, rewards = _two_prompt_world()
    rng = np.random.default_rng(8)
    r = np.concatenate([rewards[g][rng.choice(20, size=2000, p=refs[g])] for g in (0, 1)])
    groups = np.repeat([0, 1], 2000)
    betas = list(np.logspace(1, -2, 13))
    trusted, errors, rest = optimal.trusted_frontier(r, betas, groups=groups)
    assert 0 < len(trusted) < len(betas) and len(errors) == len(trusted)
    assert [p.beta for p in trusted + rest] == pytest.approx(betas)
    assert all(p.min_ess >= optimal.MIN_ESS for p in trusted)
    assert all(abs(e.kl_bias) <= optimal.MAX_KL_BIAS for e in errors)
    failed = optimal.snis_split_error(r, [rest[0].beta], groups=groups)[0]
    assert (
        rest[0].min_ess < optimal.MIN_ESS
        or abs(failed.kl_bias) > optimal.MAX_KL_BIAS
        or abs(failed.value_bias) > optimal.MAX_VALUE_BIAS
    )
    with pytest.raises(ValueError, match="at least 2 samples"):
        optimal.snis_split_error(np.array([0.0, 1.0, 2.0]), [1.0], groups=np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="splits must be at least 1"):
        optimal.snis_split_error(r, [1.0], groups=groups, splits=0)


@pytest.mark.parametrize("scale", [3.0, 0.01])
def test_clip_gradients_is_torchs_rule_over_all_gradients(scale):
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(n)) for n in (3, 50, 7)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for p, q in zip(ours, theirs, strict=True):
        p.grad = torch.randn_like(p) * scale
        q.grad = p.grad.clone()
    norm = clip_gradients(ours, 1.0)
    assert norm.item() == pytest.approx(torch.nn.utils.clip_grad_norm_(theirs, 1.0).item(), rel=1e-6)
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7)
    total = torch.linalg.vector_norm(torch.cat([p.grad for p in ours]))
    assert total.item() == pytest.approx(min(1.0, norm.item()), rel=1e-5), "clipped to 1, or left alone"
