"""Notebook 06's coding exercises (β ablations): klcourse's answer, the inputs, and
the slips each names."""

from __future__ import annotations

import numpy as np

from klcourse.coding import Case, CodingExercise


def _distinct_ref(texts, n) -> float:
    from klcourse.diversity import distinct_n

    return distinct_n(texts, n)


def _distinct_cases(rng: np.random.Generator) -> list[Case]:
    two = ["the food was good .", "the food was bad ."]
    words = ["the", "food", "room", "was", "very", "good", "bad", "."]
    random_texts = [" ".join(rng.choice(words, rng.integers(2, 8))) for _ in range(6)]
    return [
        Case((two, 1), f"texts {two}, n = 1"),
        Case((two, 2), f"texts {two}, n = 2"),
        Case(
            (["the room was great .", "great", "the room was great ."], 2),
            "a one-word text (no bigram) and a repeat, n = 2",
        ),
        Case((random_texts, 2), "6 random texts, n = 2"),
        Case((random_texts, 3), "6 random texts, n = 3"),
    ]


def _distinct_joined(texts, n) -> float:
    words = " ".join(texts).split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams)


def _distinct_chars(texts, n) -> float:
    grams = [t[i : i + n] for t in texts for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams)


def _ess_ref(weights) -> float:
    from klcourse.optimal import effective_sample_size

    return effective_sample_size(weights)


def _ess_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case((np.array([0.5, 0.25, 0.25]),), "normalised weights [0.5, 0.25, 0.25]"),
        Case((np.array([2.0, 1.0, 1.0]),), "the same weights, not normalised: ESS does not change"),
        Case((np.ones(8),), "8 equal weights: ESS = 8"),
        Case((np.exp(rng.normal(0, 2, 50)),), "50 random weights exp(r/β)"),
    ]


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="06.4",
        name="distinct_n",
        task="write distinct_n(texts, n) → the number of distinct word n-grams divided by the number of "
        "n-grams, over a list of texts (n-grams do not cross from one text to the next).",
        reference=_distinct_ref,
        cases=_distinct_cases,
        hint="split each text into words; collect tuple(words[i:i + n]) per text; len(set) / len(list).",
        slips=(
            (
                "Your n-grams cross from one text into the next: collect them per text, then pool.",
                _distinct_joined,
            ),
            (
                "Those are character n-grams: split each text into words with text.split().",
                _distinct_chars,
            ),
        ),
    ),
    CodingExercise(
        key="06.5",
        name="effective_sample_size",
        task="write effective_sample_size(weights) → Kish's effective sample size of importance weights "
        "(a 1-D numpy array, not necessarily normalised).",
        reference=_ess_ref,
        cases=_ess_cases,
        hint="ESS = (Σ w)² / Σ w², which is 1/Σ w² once the weights sum to 1.",
        slips=(
            (
                "Normalise the weights first (w/Σw): 1/Σ w² holds only for weights that sum to 1.",
                lambda w: 1 / np.sum(w**2),
            ),
            ("That is the number of samples, not the effective number.", lambda w: float(len(w))),
            ("Square the weights: ESS = (Σ w)²/Σ w².", lambda w: np.sum(w) / np.sum(w)),
        ),
    ),
]
