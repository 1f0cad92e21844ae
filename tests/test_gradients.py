"""KL as a reward or as a loss: every identity, checked against autograd, by sampling and on sequences."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from klcourse.chain_rule import enumerate_responses, tiny_model
from klcourse.gradients import (
    ESTIMATORS,
    PLACEMENTS,
    cosine,
    expected_gradient,
    forward_kl_gradient,
    reverse_kl_gradient,
    sampled_gradient,
    sequence_gradients,
)
from klcourse.kl import k1, k2, k3


def categorical_pair(seed: int, vocab: int, spread: float, batch: tuple = ()):
    g = torch.Generator().manual_seed(seed)
    theta = spread * torch.randn(*batch, vocab, generator=g, dtype=torch.float64)
    ref = (spread * torch.randn(*batch, vocab, generator=g, dtype=torch.float64)).log_softmax(-1)
    return theta, ref


pairs = st.builds(
    categorical_pair,
    seed=st.integers(0, 10_000),
    vocab=st.integers(2, 12),
    spread=st.floats(0.1, 3.0),
    batch=st.sampled_from([(), (3,), (2, 2)]),
)


def autograd_of(objective, theta):
    theta = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(theta).sum(), theta)
    return grad


@settings(max_examples=60, deadline=None)
@given(pairs)
def test_the_identities_of_kl_as_a_reward_or_a_loss(pair):
    theta, ref = pair
    rev, fwd = reverse_kl_gradient(theta, ref), forward_kl_gradient(theta, ref)
    g = {(e, p): expected_gradient(theta, ref, e, p) for e in ESTIMATORS for p in PLACEMENTS}
    close = dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g["k1", "reward"], rev, **close)
    torch.testing.assert_close(g["k3", "reward"], rev - fwd, **close)
    torch.testing.assert_close(g["k3+", "reward"], g["k3", "reward"], **close)
    torch.testing.assert_close(g["k1", "loss"], torch.zeros_like(rev), **close)
    torch.testing.assert_close(g["k2", "loss"], rev, **close)
    torch.testing.assert_close(g["k3+", "loss"], rev, **close)
    torch.testing.assert_close(g["k3", "loss"], fwd, **close)
    torch.testing.assert_close(g["k3", "ratio-loss"], rev, **close)
    torch.testing.assert_close(g["k1", "ratio-loss"], rev, **close)


@settings(max_examples=40, deadline=None)
@given(pairs)
def test_closed_forms_match_autograd(pair):
    theta, ref = pair

    def reverse(t):
        logp = t.log_softmax(-1)
        return (logp.exp() * (logp - ref)).sum(-1)

    def forward(t):
        return (ref.exp() * (ref - t.log_softmax(-1))).sum(-1)

    torch.testing.assert_close(reverse_kl_gradient(theta, ref), autograd_of(reverse, theta))
    torch.testing.assert_close(forward_kl_gradient(theta, ref), autograd_of(forward, theta))
    estimators = {"k1": k1, "k2": k2, "k3": k3, "k3+": lambda a, b: k2(a, b) + (k3(a, b) - k2(a, b)).detach()}
    p = theta.softmax(-1)
    for name, k in estimators.items():
        # loss: the estimate differentiated at fixed samples, weighted by the (fixed) on-policy π
        loss = autograd_of(lambda t, k=k: (p * k(t.log_softmax(-1), ref)).sum(-1), theta)
        torch.testing.assert_close(expected_gradient(theta, ref, name, "loss"), loss)
        # reward: the detached estimate times the score function ∇log π
        value = k(theta.log_softmax(-1), ref).detach()
        reward = autograd_of(lambda t, v=value: (p * v * t.log_softmax(-1)).sum(-1), theta)
        torch.testing.assert_close(expected_gradient(theta, ref, name, "reward"), reward)

        # ratio-loss: TRL GRPO's use_bias_correction_kl, k·exp(log π − sg(log π)) at π_old = π
        def ratio_weighted(t, k=k):
            logp = t.log_softmax(-1)
            return (p * k(logp, ref) * (logp - logp.detach()).exp()).sum(-1)

        ratio = autograd_of(ratio_weighted, theta)
        torch.testing.assert_close(expected_gradient(theta, ref, name, "ratio-loss"), ratio)


def test_k2_as_a_reward_follows_neither_kl():
    theta, ref = categorical_pair(seed=1, vocab=6, spread=2.0)
    g = expected_gradient(theta, ref, "k2", "reward")
    for target in (reverse_kl_gradient(theta, ref), forward_kl_gradient(theta, ref)):
        assert cosine(g, target) < 0.99 or not torch.allclose(g.norm(), target.norm(), rtol=0.05)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_monte_carlo_agrees_with_the_exact_gradient(estimator, placement):
    theta, ref = categorical_pair(seed=7, vocab=5, spread=1.0)
    g = torch.Generator().manual_seed(3)
    samples = torch.multinomial(theta.softmax(-1), 200_000, replacement=True, generator=g)
    mc = sampled_gradient(theta, ref, estimator, placement, samples)
    exact = expected_gradient(theta, ref, estimator, placement)
    assert mc.samples == 200_000
    assert ((mc.mean - exact).abs() <= 5 * mc.se + 1e-12).all(), (mc.mean, exact, mc.se)


def test_sequence_gradients_on_the_enumerable_model():
    reference = tiny_model(11)
    policy = copy.deepcopy(tiny_model(10)).requires_grad_(True)
    prompt = torch.tensor([1, 3])
    enum = enumerate_responses(policy, reference, prompt, max_new_tokens=4, eos_id=0, pad_id=4)
    s = sequence_gradients(policy, reference, prompt, enum)
    scale = s.true.norm()
    assert s.kl > 0 and scale > 0
    torch.testing.assert_close(s.reward_k1, s.true, rtol=1e-7, atol=1e-9 * scale)
    torch.testing.assert_close(s.loss["k2"] + s.future, s.true, rtol=1e-7, atol=1e-9 * scale)
    torch.testing.assert_close(s.loss["k3+"], s.loss["k2"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(s.loss["k3*ratio"] + s.future, s.true, rtol=1e-7, atol=1e-9 * scale)
    assert s.loss["k1"].norm() < 1e-9 * scale  # E[∇log π] = 0 token by token
    assert s.future.norm() > 0.02 * scale, "the token-level loss misses the later tokens' terms"


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(3), torch.zeros(4).log_softmax(-1), "k1", "reward"), "differ in shape"),
        ((torch.tensor([0.0, float("nan")]), torch.zeros(2).log_softmax(-1), "k1", "reward"), "finite"),
        ((torch.zeros(2), torch.tensor([0.0, -float("inf")]), "k1", "reward"), "ref_logprobs must be finite"),
        ((torch.zeros(2), torch.zeros(2), "k1", "reward"), "log-probabilities"),
        ((torch.zeros(2), torch.zeros(2).log_softmax(-1), "k4", "reward"), "estimator must be one of"),
        ((torch.zeros(2), torch.zeros(2).log_softmax(-1), "k1", "advantage"), "placement must be one of"),
        ((torch.zeros(1), torch.zeros(1), "k1", "loss"), "at least 2 outcomes"),
    ],
)
def test_bad_input_is_named(args, message):
    with pytest.raises(ValueError, match=message):
        expected_gradient(*args)


def test_bad_samples_are_named():
    theta, ref = categorical_pair(seed=0, vocab=3, spread=1.0)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        sampled_gradient(theta, ref, "k1", "reward", torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="1-D"):
        sampled_gradient(theta, ref, "k1", "reward", torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="one categorical"):
        sampled_gradient(theta[None], ref[None], "k1", "reward", torch.tensor([0, 1]))
