"""Notebook 02's coding exercises (estimating KL): klcourse's answer, the inputs, and
the slips each names."""

from __future__ import annotations

import math

import numpy as np
import torch

from klcourse.coding import Case, CodingExercise


def _k3_ref(logp, logq) -> torch.Tensor:
    from klcourse.kl import k3

    return k3(logp, logq)


def _sampled_logprobs(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities that a sampler P and another distribution Q give sampled items."""
    logp = torch.as_tensor(np.log(rng.uniform(0.05, 1.0, shape)))
    logq = torch.as_tensor(np.log(rng.uniform(0.01, 1.0, shape)))
    return logp, logq


def _k3_cases(rng: np.random.Generator) -> list[Case]:
    p, q = torch.tensor([0.1, 0.5, 0.9]).double().log(), torch.tensor([0.4, 0.5, 0.3]).double().log()
    cases = [
        Case((p, q), "P(x) = [0.1, 0.5, 0.9], Q(x) = [0.4, 0.5, 0.3]"),
        Case((p, p.clone()), "P = Q on every sample: k3 is 0"),
    ]
    cases += [Case(_sampled_logprobs(rng, s), f"random log-probs of shape {s}") for s in [(6,), (2, 5)]]
    return cases


def _mean_se_ref(values) -> tuple[float, float]:
    from klcourse.stats import mean_and_se

    return mean_and_se(values)


def _mean_se_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case((np.array([1.0, 2.0, 3.0, 4.0]),), "values [1, 2, 3, 4]"),
        Case((np.full(5, 0.7),), "five equal values: the standard error is 0"),
        Case((rng.normal(0.1, 1.0, 10),), "10 random values"),
        Case((rng.exponential(1.0, 1000),), "1,000 random values"),
    ]


def _se_with(values, ddof: int, divide) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=ddof) / divide(v.size))


EXERCISES: list[CodingExercise] = [
    CodingExercise(
        key="02.4",
        name="my_k3",
        task="write my_k3(logp, logq) → Schulman's k3 for each sample, from torch tensors of log P(x) "
        "and log Q(x) of samples x ~ P (same shape in, same shape out).",
        reference=_k3_ref,
        cases=_k3_cases,
        hint="k3 = (r − 1) − log r with r = Q(x)/P(x) = exp(logq − logp).",
        slips=(
            (
                "Swapped arguments: r is Q(x)/P(x), the other distribution over the sampler.",
                lambda lp, lq: _k3_ref(lq, lp),
            ),
            ("That is k2 = ½(log r)², not k3.", lambda lp, lq: 0.5 * (lq - lp) ** 2),
            ("That is k1 = −log r; k3 adds r − 1, whose mean is 0.", lambda lp, lq: lp - lq),
        ),
        shape_hint="Return one k3 value per sample, the shape of logp.",
    ),
    CodingExercise(
        key="02.5",
        name="mean_and_se",
        task="write mean_and_se(values) → (mean, standard error of the mean) of a 1-D numpy array of "
        "Monte Carlo samples.",
        reference=_mean_se_ref,
        cases=_mean_se_cases,
        hint="SE = s/√N, with s the sample standard deviation (divide by N − 1).",
        slips=(
            (
                "The standard error is off: that is the standard deviation of the samples; the "
                "standard error of their mean divides it by √N.",
                lambda v: _se_with(v, 1, lambda n: 1.0),
            ),
            (
                "The standard error is off: use the sample standard deviation, which divides by "
                "N − 1 (np.std(values, ddof=1)); dividing by N underestimates it.",
                lambda v: _se_with(v, 0, math.sqrt),
            ),
            ("The standard error is s/√N, not s/N.", lambda v: _se_with(v, 1, float)),
        ),
    ),
]
