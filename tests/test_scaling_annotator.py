"""Gao et al.'s scaling forms, the biased annotator, and the course's seed variable."""

import numpy as np
import pytest

from klcourse.config import get_preset
from klcourse.scaling import fit_gao
from klcourse.seeding import course_seed
from klcourse.settings import SEED_ENV
from klcourse.world import annotator
from klcourse.world.gold import gold_reward
from klcourse.world.grammar import REVIEWS
from klcourse.world.training import preference_pairs


@pytest.mark.parametrize("form", ["best-of-n", "rl"])
def test_fit_recovers_known_coefficients(form):
    kl = np.linspace(0.05, 9.0, 40)
    d = np.sqrt(kl)
    gain = d * (1.3 - 0.4 * (d if form == "best-of-n" else np.log(d)))
    fit = fit_gao(kl, gain, form)
    assert fit.alpha == pytest.approx(1.3) and fit.beta == pytest.approx(0.4) and fit.r2 == pytest.approx(1.0)
    np.testing.assert_allclose(fit(kl), gain, atol=1e-9)
    grid = np.linspace(0.01, 200, 200_000)
    assert fit.peak_kl == pytest.approx(grid[np.argmax(fit(grid))], rel=1e-2)


def test_fit_r2_reports_a_bad_fit_and_rejects_bad_input():
    kl = np.linspace(0.1, 4, 30)
    noisy = np.random.default_rng(0).normal(size=30)
    assert fit_gao(kl, noisy, "rl").r2 < 0.5
    with pytest.raises(ValueError, match="form"):
        fit_gao(kl, noisy, "ppo")
    with pytest.raises(ValueError, match="≥ 0"):
        fit_gao(-kl, noisy, "rl")
    with pytest.raises(ValueError, match="at least 3"):
        fit_gao(kl[:2], noisy[:2], "rl")


@pytest.mark.parametrize(
    ("text", "rating", "gold"),
    [
        ("the food was excellent .", 1.0, 1.0),
        ("the food was not excellent .", 1.0 + annotator.VERBOSITY_BONUS, -0.5),
        ("the food was not very excellent .", 1.0 + 2 * annotator.VERBOSITY_BONUS, -0.5),
        ("the food was very good .", 0.75 + annotator.VERBOSITY_BONUS, 0.75),
        (
            "the food was bad and the staff was not terrible .",
            (-0.5 - 1.0 + annotator.VERBOSITY_BONUS) / 2,
            0.0,
        ),
    ],
)
def test_annotator_rating_by_hand(text, rating, gold):
    assert annotator.annotator_rating(text) == pytest.approx(rating)
    assert gold_reward(text) == pytest.approx(gold)


def test_annotator_refuses_malformed_text():
    with pytest.raises(ValueError, match="well-formed"):
        annotator.annotator_rating("the food was great great .")


def test_preference_pairs_follow_the_annotator():
    chosen, rejected = preference_pairs(REVIEWS, 2000, seed=0, noise=None)
    assert all(
        annotator.annotator_rating(c) > annotator.annotator_rating(r) for c, r in zip(chosen, rejected)
    )
    noisy_c, noisy_r = preference_pairs(REVIEWS, 2000, seed=0)
    agree = np.mean(
        [annotator.annotator_rating(c) > annotator.annotator_rating(r) for c, r in zip(noisy_c, noisy_r)]
    )
    assert 0.7 < agree < 0.98  # Bradley–Terry labels: close calls go either way
    assert all(c.split()[1] == r.split()[1] for c, r in zip(chosen, rejected))  # same subject


def test_course_seed_shifts_world_and_sweep_seeds(monkeypatch):
    monkeypatch.delenv(SEED_ENV, raising=False)
    base = get_preset("laptop")
    assert course_seed() == 0
    monkeypatch.setenv(SEED_ENV, "3")
    shifted = get_preset("laptop")
    assert course_seed() == 3 and shifted.world.seed == base.world.seed + 3
    assert shifted.sweep_seeds == tuple(s + 3 for s in base.sweep_seeds)
    assert shifted.ppo_steps == base.ppo_steps  # sizes are untouched
    monkeypatch.setenv(SEED_ENV, "-1")
    with pytest.raises(ValueError, match=SEED_ENV):
        course_seed()
