"""Unit and property tests for klcourse.kl."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from klcourse.kl import (
    bernoulli_kl,
    estimate_kl,
    k1,
    k2,
    k3,
    kl_divergence,
    kl_from_logprobs,
    single_sample_kl,
)


def naive_kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


# ---------------------------------------------------------------- exact values


def test_coin_example_nats_and_bits():
    assert bernoulli_kl(0.7, 0.5) == pytest.approx(0.7 * math.log(1.4) + 0.3 * math.log(0.6))
    assert round(float(bernoulli_kl(0.7, 0.5)), 4) == 0.0823
    assert round(float(bernoulli_kl(0.7, 0.5, unit="bits")), 4) == 0.1187
    assert round(float(bernoulli_kl(0.5, 0.7)), 4) == 0.0872


def test_kl_divergence_matches_naive_sum():
    p, q = [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]
    assert kl_divergence(p, q) == pytest.approx(naive_kl(p, q), rel=1e-12)


def test_bits_are_nats_over_ln2():
    p, q = [0.2, 0.8], [0.6, 0.4]
    assert kl_divergence(p, q, unit="bits") == pytest.approx(kl_divergence(p, q) / math.log(2))


def test_zero_in_p_contributes_nothing():
    assert kl_divergence([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(math.log(2))


def test_missing_support_gives_inf():
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert bernoulli_kl(0.5, 0.0) == math.inf


def test_bernoulli_endpoints_are_finite_where_math_says():
    assert bernoulli_kl(1.0, 0.5) == pytest.approx(math.log(2))
    assert bernoulli_kl(0.0, 0.0) == 0.0


def test_batched_rows_and_torch_roundtrip():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    q = np.array([[0.5, 0.5], [0.5, 0.5]])
    out = kl_divergence(p, q)
    assert out.shape == (2,) and out[0] == 0.0
    t = kl_divergence(torch.tensor(p), torch.tensor(q))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), out)


def test_kl_along_other_axis():
    p = np.array([[0.5, 0.9], [0.5, 0.1]])
    q = np.full((2, 2), 0.5)
    np.testing.assert_allclose(kl_divergence(p, q, dim=0), kl_divergence(p.T, q.T))


def test_kl_from_logprobs_matches_probabilities():
    logits_p, logits_q = (
        torch.randn(3, 50, dtype=torch.float64),
        torch.randn(3, 50, dtype=torch.float64),
    )
    lp, lq = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    torch.testing.assert_close(kl_from_logprobs(lp, lq), kl_divergence(lp.exp(), lq.exp()))


def test_kl_from_logprobs_handles_minus_inf():
    lp = torch.tensor([0.0, -math.inf])
    lq = torch.tensor([math.log(0.5), math.log(0.5)])
    assert kl_from_logprobs(lp, lq).item() == pytest.approx(math.log(2))
    assert kl_from_logprobs(lq, lp).item() == math.inf


def test_float32_softmax_over_big_vocab_is_accepted():
    lp = torch.randn(4, 50_257).log_softmax(-1)
    lq = torch.randn(4, 50_257).log_softmax(-1)
    out = kl_from_logprobs(lp, lq)
    assert torch.isfinite(out).all() and (out > 0).all()


# ---------------------------------------------------------------- estimators


def test_worked_example_is_ln5():
    assert single_sample_kl(0.25, 0.05) == pytest.approx(math.log(5), rel=1e-12)
    assert round(float(single_sample_kl(0.25, 0.05)), 4) == 1.6094


def test_single_sample_can_be_negative():
    assert single_sample_kl(0.3, 0.5) < 0


def test_k_estimators_by_hand():
    lp, lq = math.log(0.1), math.log(0.4)
    r = 4.0
    assert k1(lp, lq) == pytest.approx(-math.log(r))
    assert k2(lp, lq) == pytest.approx(0.5 * math.log(r) ** 2)
    assert k3(lp, lq) == pytest.approx((r - 1) - math.log(r))


def test_k3_precise_near_equal():
    lp = torch.tensor([-1.0], dtype=torch.float64)
    lq = lp + 1e-9
    # (r − 1) − log r ≈ (log r)²/2 for tiny log r; the naive formula would cancel to 0.
    assert k3(lp, lq).item() == pytest.approx(0.5e-18, rel=1e-6)


def test_estimators_with_minus_inf_reference():
    lp = torch.tensor([-1.0])
    lq = torch.tensor([-math.inf])
    for f in (k1, k2, k3):
        assert f(lp, lq).item() == math.inf


def test_estimators_keep_gradients():
    lp = torch.tensor([-1.0, -2.0], requires_grad=True)
    lq = torch.tensor([-1.5, -1.0])
    k3(lp, lq).sum().backward()
    assert torch.isfinite(lp.grad).all()


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_estimate_kl_coin(estimator):
    g = torch.Generator().manual_seed(0)
    heads = torch.rand(400_000, generator=g, dtype=torch.float64) < 0.7
    lp = torch.where(heads, math.log(0.7), math.log(0.3))
    lq = torch.full_like(lp, math.log(0.5))
    est = estimate_kl(lp, lq, estimator).item()
    exact = bernoulli_kl(0.7, 0.5)
    tol = 0.01 if estimator == "k2" else 0.003  # k2 is biased: ~1 % of KL here
    assert est == pytest.approx(exact, abs=tol)


def test_estimate_kl_rejects_unknown_estimator():
    with pytest.raises(ValueError, match="estimator must be one of"):
        estimate_kl([-1.0], [-1.0], "k4")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("p", "q", "match"),
    [
        ([0.5, -0.1, 0.6], [0.3, 0.3, 0.4], "negative"),
        ([0.5, float("nan"), 0.5], [0.3, 0.3, 0.4], "NaN"),
        ([0.5, 0.5, 0.5], [0.3, 0.3, 0.4], "does not sum to 1"),
        ([0.5, 0.5], [0.3, 0.3, 0.4], "shape mismatch"),
        ([], [], "empty"),
        ([0.5, float("inf")], [0.5, 0.5], "inf"),
        (0.5, 0.5, "scalar"),
    ],
)
def test_kl_divergence_bad_input(p, q, match):
    with pytest.raises(ValueError, match=match):
        kl_divergence(p, q)


def test_bad_unit():
    with pytest.raises(ValueError, match="unit must be"):
        kl_divergence([1.0], [1.0], unit="bans")


def test_non_numeric_input():
    with pytest.raises(ValueError, match="numeric"):
        kl_divergence(["a", "b"], [0.5, 0.5])


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [(1.2, 0.5, "in \\[0, 1\\]"), (0.5, float("nan"), "NaN"), ([0.5, 0.5], [0.5], "shape")],
)
def test_bernoulli_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        bernoulli_kl(a, b)


@pytest.mark.parametrize(
    ("logp", "logq", "match"),
    [
        ([0.5], [-1.0], "above 0"),
        ([float("nan")], [-1.0], "NaN"),
        ([-1.0, -2.0], [-1.0], "shape mismatch"),
        ([], [], "empty"),
        ([-math.inf], [-1.0], "sampled from P must have P\\(x\\) > 0"),
    ],
)
@pytest.mark.parametrize("estimator", [k1, k2, k3])
def test_estimator_bad_input(estimator, logp, logq, match):
    with pytest.raises(ValueError, match=match):
        estimator(logp, logq)


@pytest.mark.parametrize(
    ("p_x", "q_x", "match"),
    [(0.0, 0.5, "zero"), (1.5, 0.5, "in \\[0, 1\\]"), (0.2, float("nan"), "NaN")],
)
def test_single_sample_bad_input(p_x, q_x, match):
    with pytest.raises(ValueError, match=match):
        single_sample_kl(p_x, q_x)


def test_kl_from_logprobs_not_normalised():
    with pytest.raises(ValueError, match="does not sum to 1"):
        kl_from_logprobs(torch.tensor([-1.0, -1.0]), torch.tensor([-0.7, -0.7]))


# ---------------------------------------------------------------- properties

probs = arrays(np.float64, st.integers(2, 12), elements=st.floats(1e-3, 1.0))


def normalise(x):
    return x / x.sum()


@settings(max_examples=200, deadline=None)
@given(probs, st.data())
def test_kl_nonnegative_and_zero_iff_equal(raw_p, data):
    p = normalise(raw_p)
    raw_q = data.draw(arrays(np.float64, raw_p.shape, elements=st.floats(1e-3, 1.0)))
    q = normalise(raw_q)
    kl = kl_divergence(p, q)
    assert kl >= -1e-12
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    if np.abs(p - q).max() > 1e-3:
        assert kl > 0


@settings(max_examples=100, deadline=None)
@given(probs, probs, st.data())
def test_kl_additive_over_independent_products(raw_p1, raw_p2, data):
    p1, p2 = normalise(raw_p1), normalise(raw_p2)
    q1 = normalise(data.draw(arrays(np.float64, raw_p1.shape, elements=st.floats(1e-3, 1.0))))
    q2 = normalise(data.draw(arrays(np.float64, raw_p2.shape, elements=st.floats(1e-3, 1.0))))
    joint = kl_divergence(np.outer(p1, p2).ravel(), np.outer(q1, q2).ravel())
    assert joint == pytest.approx(kl_divergence(p1, q1) + kl_divergence(p2, q2), rel=1e-9, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(probs, st.data(), st.integers(0, 2**31 - 1))
def test_estimator_means_converge_to_exact(raw_p, data, seed):
    p = normalise(raw_p)
    q = normalise(data.draw(arrays(np.float64, raw_p.shape, elements=st.floats(1e-3, 1.0))))
    n = 200_000
    g = torch.Generator().manual_seed(seed)
    x = torch.multinomial(torch.from_numpy(p), n, replacement=True, generator=g)
    lp, lq = torch.from_numpy(np.log(p))[x], torch.from_numpy(np.log(q))[x]
    exact = kl_divergence(p, q)
    for f in (k1, k3):
        vals = f(lp, lq)
        se = vals.std().item() / math.sqrt(n)
        assert abs(vals.mean().item() - exact) <= 6 * se + 1e-12
