"""Tests for the small helper modules: fitting, schulman, exercises, config, seeding, widgets."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from klcourse import config, seeding, settings
from klcourse.exercises import EXERCISES, check
from klcourse.fitting import discretized_gaussian, fit_gaussian, gaussian_mixture
from klcourse.kl import kl_divergence
from klcourse.schulman import PUBLISHED, exact_stats, gaussian_kl, monte_carlo_stats
from klcourse.widgets import coin_explorer, coin_kl_map, coin_kl_text

# ---------------------------------------------------------------- fitting

GRID = np.linspace(-8, 8, 801)


def test_discretized_gaussian_is_a_distribution():
    q = discretized_gaussian(GRID, [0.0, 1.0], [1.0, 2.0])
    assert q.shape == (2, GRID.size)
    np.testing.assert_allclose(q.sum(-1), 1.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        discretized_gaussian(GRID, 0.0, 0.0)


def test_mixture_validates_weights():
    with pytest.raises(ValueError, match="sums to 1"):
        gaussian_mixture(GRID, [0.5, 0.6], [0, 1], [1, 1])


def test_fit_recovers_a_single_gaussian_both_ways():
    p = discretized_gaussian(GRID, 1.0, 1.5)
    mus, sigmas = np.arange(-2, 2.01, 0.1), np.arange(0.5, 3.01, 0.1)
    for direction in ("forward", "reverse"):
        fit = fit_gaussian(p, GRID, direction, mus, sigmas)
        assert fit.mu == pytest.approx(1.0, abs=1e-9) and fit.sigma == pytest.approx(1.5, abs=1e-9)
        assert fit.kl == pytest.approx(0.0, abs=1e-12)


def test_forward_covers_reverse_seeks():
    p = gaussian_mixture(GRID, [0.5, 0.5], [-3.0, 3.0], [0.5, 0.5])
    mus, sigmas = np.arange(-4, 4.01, 0.1), np.arange(0.2, 4.01, 0.05)
    fwd = fit_gaussian(p, GRID, "forward", mus, sigmas)
    rev = fit_gaussian(p, GRID, "reverse", mus, sigmas)
    assert abs(fwd.mu) < 0.15 and fwd.sigma > 2.5
    assert abs(abs(rev.mu) - 3.0) < 0.15 and rev.sigma < 1.0
    # each fit is optimal for its own objective
    assert kl_divergence(p, fwd.q) <= kl_divergence(p, rev.q)
    assert kl_divergence(rev.q, p) <= kl_divergence(fwd.q, p)
    with pytest.raises(ValueError, match="direction"):
        fit_gaussian(p, GRID, "sideways", mus, sigmas)


# ---------------------------------------------------------------- schulman


def test_exact_stats_match_published_table_within_rounding():
    for mu, table in PUBLISHED.items():
        exact = exact_stats(mu)
        for name, (bias, std) in table.items():
            assert exact[name].bias_over_kl == pytest.approx(bias, abs=1e-3)
            assert exact[name].std_over_kl == pytest.approx(std, abs=0.01)


def test_exact_stats_against_numerical_integration():
    mu = 0.7
    x = np.linspace(-12, 12, 200_001)
    w = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) * (x[1] - x[0])
    log_r = mu * x - mu * mu / 2
    vals = {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": np.expm1(log_r) - log_r}
    kl = gaussian_kl(mu)
    for name, s in exact_stats(mu).items():
        mean = (w * vals[name]).sum()
        std = math.sqrt((w * (vals[name] - mean) ** 2).sum())
        assert (mean - kl) / kl == pytest.approx(s.bias_over_kl, abs=1e-6)
        assert std / kl == pytest.approx(s.std_over_kl, rel=1e-6)


def test_monte_carlo_stats_agree_with_exact():
    measured = monte_carlo_stats(1.0, 400_000, torch.Generator().manual_seed(1))
    for name, e in exact_stats(1.0).items():
        assert measured[name].bias_over_kl == pytest.approx(e.bias_over_kl, abs=6 * e.std_over_kl / 632)
        assert measured[name].std_over_kl == pytest.approx(e.std_over_kl, rel=0.05)


def test_exact_stats_reject_zero_kl():
    with pytest.raises(ValueError, match="non-zero"):
        exact_stats(0.0)


# ---------------------------------------------------------------- exercises


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_every_exercise_accepts_its_answer_and_names_its_slips(key):
    ex = EXERCISES[key]
    assert check(key, ex.answer())
    assert "not answered" in repr(check(key, None))
    for hint, wrong in ex.slips:
        fb = check(key, wrong())
        assert not fb and hint in fb.message


def test_check_unknown_wrong_and_bad_answers():
    fb = check("01.2", 123.0)
    assert not fb and "Hint" in fb.message
    assert "NaN" in check("01.3", float("nan")).message


def _raises():
    raise RuntimeError("a learner's bug")


@pytest.mark.parametrize(
    "answer, says",
    [
        ("zero point three", "remove the quotes"),
        ("abc", "remove the quotes"),
        (float("nan"), "NaN"),
        (np.array([0.1, 0.2]), "shape (2,)"),
        (torch.zeros(2, 3), "shape (2, 3)"),
        ([0.1, 0.2], "list of 2 items"),
        (_raises, "call it"),
        (True, "truth value"),
        (object(), "object"),
    ],
)
def test_checker_answers_any_input_with_feedback(answer, says):
    fb = check("01.1", answer)
    assert not fb and says in fb.message, fb.message


def test_checker_reads_one_element_arrays_and_names_unknown_exercises():
    right = EXERCISES["01.1"].answer()
    assert check("01.1", np.array([right])) and check("01.1", torch.tensor(right))
    fb = check("99.9", 1.0)
    assert not fb and "no exercise '99.9'" in fb.message and "01.1" in fb.message


# ---------------------------------------------------------------- config and seeding


def test_preset_from_env_and_device(monkeypatch):
    monkeypatch.delenv(settings.PRESET_ENV, raising=False)
    assert config.get_preset(device=torch.device("cpu")).name == "laptop"
    assert config.get_preset(device=torch.device("cuda")).name == "gpu"
    monkeypatch.setenv(settings.PRESET_ENV, "smoke")
    assert config.get_preset(device=torch.device("cuda")).name == "smoke"
    assert config.get_preset("gpu").name == "gpu"
    monkeypatch.setenv(settings.PRESET_ENV, "huge")
    with pytest.raises(settings.SettingError, match="KLCOURSE_PRESET='huge' is not a preset"):
        config.get_preset()


def test_presets_share_fields_and_grow():
    smoke, laptop, gpu = (config.PRESETS[n] for n in ("smoke", "laptop", "gpu"))
    assert smoke.mc_samples < laptop.mc_samples <= gpu.mc_samples


def test_set_seed_reproduces_streams():
    seeding.set_seed(3)
    a = (torch.rand(3), np.random.rand(3))
    g = seeding.set_seed(3)
    b = (torch.rand(3), np.random.rand(3))
    torch.testing.assert_close(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="non-negative"):
        seeding.set_seed(-1)


# ---------------------------------------------------------------- widgets


def test_static_fallback_outside_ipython():
    fig = coin_explorer()  # no IPython kernel under pytest: falls back to the static map
    assert fig.axes and "KL" in fig.axes[0].get_title()
    assert coin_kl_map(n=11, mark=None).axes


def test_coin_kl_text_states_both_directions_in_nats():
    a, b = 0.7, 0.5
    forward = a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))
    backward = b * math.log(b / a) + (1 - b) * math.log((1 - b) / (1 - a))
    assert coin_kl_text(a, b) == f"KL(A‖B) = {forward:.4f} nats   KL(B‖A) = {backward:.4f} nats"
    assert coin_kl_text(a, b).startswith("KL(A‖B) = 0.0823 nats")  # the seed post's coin example
