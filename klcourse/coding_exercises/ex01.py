"""Notebook 01's coding exercises (what KL measures): klcourse's answer, the inputs, and
the slips each names."""

from __future__ import annotations

import numpy as np

from klcourse.coding import Case, CodingExercise, dirichlet, log_softmax64


def _kl_ref(p, q) -> float:
    from klcourse.kl import kl_divergence

    return float(kl_divergence(np.asarray(p, float), np.asarray(q, float)))


def _kl_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((np.array([0.5, 0.5]), np.array([0.9, 0.1])), "two coins, p = [0.5, 0.5], q = [0.9, 0.1]"),
        Case(
            (np.array([0.5, 0.5, 0.0, 0.0]), np.full(4, 0.25)),
            "p is 0 on two outcomes: 0·log(0/q) counts as 0",
        ),
        Case((np.full(3, 1 / 3), np.array([0.5, 0.5, 0.0])), "q is 0 where p is not: KL is ∞"),
    ]
    p = dirichlet(rng, 5)
    cases.append(Case((p, p.copy()), "p = q: KL is 0"))
    for n in (3, 6, 10):
        cases.append(
            Case((dirichlet(rng, n), dirichlet(rng, n)), f"two random distributions over {n} outcomes")
        )
    return cases


def _naive_kl(p, q) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(p * np.log(p / q)))


def _kl_logits_ref(a, b) -> float:
    from klcourse.kl import kl_from_logprobs

    return float(kl_from_logprobs(log_softmax64(a), log_softmax64(b), unit="bits"))


def _kl_logits_cases(rng: np.random.Generator) -> list[Case]:
    a = np.array([2.0, 1.0, 0.0])
    cases = [
        Case((a, np.zeros(3)), "logits [2, 1, 0] against uniform [0, 0, 0]"),
        Case((a + 100.0, np.zeros(3)), "the same logits shifted by +100: softmax, and KL, do not change"),
        Case((np.array([1000.0, 0.0, -1000.0]), np.zeros(3)), "huge logits [1000, 0, −1000]: exp overflows"),
    ]
    for n in (2, 8, 50):
        cases.append(Case((rng.normal(0, 2, n), rng.normal(0, 2, n)), f"random logits over {n} outcomes"))
    return cases


def _naive_kl_logits(a, b) -> float:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p, q = np.exp(a) / np.exp(a).sum(), np.exp(b) / np.exp(b).sum()
        return float(np.sum(p * np.log2(p / q)))


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="01.4",
        name="kl",
        task="write kl(p, q) → KL(p ‖ q) in nats for two 1-D numpy arrays of probabilities, following "
        "KL's conventions where p or q is 0.",
        reference=_kl_ref,
        cases=_kl_cases,
        hint="sum p(x)·log(p(x)/q(x)) over the outcomes with p(x) > 0.",
        slips=(
            (
                "Swapped arguments: that is KL(q ‖ p). p comes first and weights the log-ratio.",
                lambda p, q: _kl_ref(q, p),
            ),
            (
                "No zero convention: where p(x) = 0 the term p·log(p/q) is NaN in floating point, but "
                "0·log(0/q) counts as 0. Sum only over p(x) > 0.",
                _naive_kl,
            ),
        ),
    ),
    CodingExercise(
        key="01.5",
        name="kl_bits_from_logits",
        task="write kl_bits_from_logits(a, b) → KL(softmax(a) ‖ softmax(b)) in bits, for two 1-D numpy "
        "arrays of logits, without overflow for logits as large as 1000.",
        reference=_kl_logits_ref,
        cases=_kl_logits_cases,
        hint="log softmax(a) = a − logsumexp(a), with logsumexp(a) = max(a) + log Σ exp(a − max(a)).",
        slips=(
            (
                "Overflow: exp(1000) is ∞ in floating point, and ∞/∞ is NaN. Work with log-softmax, "
                "a − max(a) − log Σ exp(a − max(a)).",
                _naive_kl_logits,
            ),
            (
                "Swapped arguments: that is KL(softmax(b) ‖ softmax(a)).",
                lambda a, b: _kl_logits_ref(b, a),
            ),
        ),
    ),
]
