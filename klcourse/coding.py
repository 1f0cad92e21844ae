"""Coding exercises: the learner writes a function, ``check("01.4", kl)`` runs it and says what is wrong.

Each exercise calls the learner's function on fixed inputs (edge cases first: zeros, padding, huge
logits, one-token responses) and on random ones, compares every output with klcourse's own
implementation, and at the first input where they differ explains the mismatch in words. The
explanation comes from the slips learners make — each slip is written out as the wrong function it
is, and the learner's output is compared with it on that same input — or, failing those, from the
generic checks: wrong shape, sign, bits for nats, NaN, a finite value where KL is infinite.

A function that raises, runs longer than :data:`TIME_LIMIT` seconds, or returns something that is
not numbers gets a message saying so, never a traceback. Notebooks 01–07 each pose two of these
exercises; :func:`klcourse.exercises.check` dispatches to :func:`check_function` for them.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

#: Seconds one call of the learner's function may take before it counts as hanging.
TIME_LIMIT = 3.0
#: Agreement with klcourse's answer: ``|got − expected| ≤ ATOL + RTOL·|expected|`` per entry.
RTOL, ATOL = 1e-4, 1e-6
#: Seed of the random inputs, so that feedback is the same every time the check runs.
INPUT_SEED = 1234
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Case:
    """One input: the arguments, and the words that describe it in feedback.

    Taught in notebooks 01–07.
    """

    args: tuple
    label: str


@dataclass(frozen=True)
class CodingExercise:
    """A function to write: what it does, klcourse's version, its inputs and the slips worth naming.

    Taught in notebooks 01–07.
    """

    key: str
    name: str
    task: str
    reference: Callable
    cases: Callable[[np.random.Generator], list[Case]]
    hint: str
    slips: tuple[tuple[str, Callable], ...] = ()
    #: What a wrong output shape most likely means, added to the generic shape message.
    shape_hint: str = ""


class _TooSlow(BaseException):
    """Raised in the learner's function when its time is up (a BaseException, so that a bare
    ``except Exception`` in the learner's code does not swallow it)."""


def _call_with_limit(fn: Callable, args: tuple, seconds: float):
    """``fn(*args)``, raising :class:`_TooSlow` after ``seconds``: by ``SIGALRM`` in the main thread
    (a notebook cell), else by waiting on a helper thread that is then abandoned."""
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():

        def alarm(signum, frame):
            raise _TooSlow

        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args)
        except Exception as err:  # re-raised in the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _TooSlow
    if "error" in box:
        raise box["error"]
    return box["value"]


# ----------------------------------------------------------------------------- comparing outputs


def _numbers(x) -> np.ndarray | tuple | None:
    """``x`` as a float64 array (a tuple of arrays for a tuple answer), or ``None`` if it is not numbers."""
    if isinstance(x, tuple):
        parts = tuple(_numbers(v) for v in x)
        return None if any(p is None for p in parts) else parts
    if isinstance(x, (bool, str, bytes, dict, set)) or x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    try:
        out = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return None
    return out


def _same(a, b) -> bool:
    """Whether two outputs (arrays, or tuples of them) agree in shape and, entry by entry, in value."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return (
            isinstance(a, tuple)
            and isinstance(b, tuple)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))


def _show(x) -> str:
    """A short printout of an input or output: small arrays in full, large ones by shape."""
    if isinstance(x, tuple):
        return "(" + ", ".join(_show(v) for v in x) + ")"
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        if x.size > 12:
            return f"an array of shape {x.shape}"
        if x.ndim == 0:
            return f"{float(x):.6g}"
        return np.array2string(x, precision=4, separator=", ", suppress_small=True)
    if isinstance(x, list) and len(x) > 4:
        return f"a list of {len(x)} items"
    return repr(x)


def _kind(x) -> str:
    if x is None:
        return "None"
    return type(x).__name__


def _describe(expected) -> str:
    if isinstance(expected, tuple):
        return f"a tuple of {len(expected)} numbers"
    if expected.ndim == 0:
        return "one number"
    return f"an array of shape {expected.shape}"


@dataclass(frozen=True)
class Feedback:
    """The checker's verdict, on a function here and on a number in :mod:`klcourse.exercises`: true
    when right; shows as its message in a notebook.

    Taught in notebooks 01–07.
    """

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return self.message


def _generic(got, expected) -> str | None:
    """The mismatches that mean the same in every exercise: NaN, ∞, sign, bits for nats."""
    if np.isnan(got).any() and not np.isnan(expected).any():
        return "your function returned NaN here; look for 0·log 0, ∞ − ∞ or exp of a huge number."
    if np.isinf(expected).any() and not np.isinf(got).any():
        return "the right answer here is ∞, and your function returned a finite number."
    finite = np.isfinite(expected) & np.isfinite(got)
    if finite.all() and np.abs(expected).max() > ATOL:
        if np.allclose(got, -expected, rtol=RTOL, atol=ATOL):
            return "the sign is flipped."
        if np.allclose(got, expected * LN2, rtol=RTOL, atol=ATOL):
            return "that is the value in nats; bits divide the natural log by ln 2."
        if np.allclose(got, expected / LN2, rtol=RTOL, atol=ATOL):
            return "that is the value in bits (log base 2); nats use the natural log."
    return None


def check_function(exercise: CodingExercise, fn: object) -> Feedback:
    """Run ``fn`` on every input of ``exercise``; right when every output agrees with klcourse's.

    Taught in notebooks 01–07.
    """
    key = exercise.key
    if fn is None:
        return Feedback(False, f"… {key} not written yet: {exercise.task}")
    if not callable(fn):
        return Feedback(
            False,
            f"✗ {key}: pass the function itself, as check({key!r}, {exercise.name}), not a "
            f"{_kind(fn)} (its result).",
        )
    cases = exercise.cases(np.random.default_rng(INPUT_SEED))
    for number, case in enumerate(cases, start=1):
        where = f"on input {number} of {len(cases)} ({case.label})"
        expected = _numbers(exercise.reference(*copy.deepcopy(case.args)))  # first: imports are not timed
        try:
            raw = _call_with_limit(fn, copy.deepcopy(case.args), TIME_LIMIT)
        except _TooSlow:
            return Feedback(
                False,
                f"✗ {key}: your function ran longer than {TIME_LIMIT:g} s {where}; "
                "look for a loop that never ends.",
            )
        except Exception as err:
            return Feedback(False, f"✗ {key}: your function raised {type(err).__name__}: {err} — {where}.")
        if raw is None:
            if number == 1:
                return Feedback(
                    False, f"… {key} not written yet (your function returns None): {exercise.task}"
                )
            return Feedback(False, f"✗ {key}: your function returned None {where}; is a `return` missing?")
        got = _numbers(raw)
        if got is None or isinstance(got, tuple) != isinstance(expected, tuple):
            return Feedback(
                False,
                f"✗ {key}: your function returned a {_kind(raw)} {where}; "
                f"it should return {_describe(expected)}.",
            )
        if _same(got, expected):
            continue
        return Feedback(False, f"✗ {key} {where}: " + _explain(exercise, case, got, expected))
    return Feedback(
        True,
        f"✓ {key}: your {exercise.name} agrees with klcourse's on all {len(cases)} inputs, "
        "edge cases included.",
    )


def _explain(exercise: CodingExercise, case: Case, got, expected) -> str:
    """Why ``got`` differs from ``expected`` on ``case``: a named slip, a generic cause, or the values."""
    values = f"expected {_show(expected)}, got {_show(got)}."
    for message, slip in exercise.slips:
        try:
            with np.errstate(all="ignore"):
                slipped = _numbers(slip(*copy.deepcopy(case.args)))
        except Exception:  # a slip that cannot run on this input is not the one made here
            continue
        if slipped is not None and _same(got, slipped):
            return f"{message} ({values})"
    if isinstance(expected, tuple):
        wrong = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if not _same(g, e)]
        return f"item {wrong[0]} of the tuple is off: {values} Hint: {exercise.hint}"
    if got.shape != expected.shape:
        if got.ndim == 0 and expected.ndim > 0:
            reason = (
                f"it returned one number where {_describe(expected)} is expected: "
                "did you average or sum over everything?"
            )
        else:
            reason = f"it returned an array of shape {got.shape} where {_describe(expected)} is expected."
        return f"{reason} {exercise.shape_hint}".strip()
    generic = _generic(got, expected)
    return f"{generic} ({values}) Hint: {exercise.hint}" if generic else f"{values} Hint: {exercise.hint}"


# ----------------------------------------------------------------------------- the exercises


def _dirichlet(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.dirichlet(np.ones(n))


def _log_softmax(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).log_softmax(-1)


# 01 · what KL measures


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
    p = _dirichlet(rng, 5)
    cases.append(Case((p, p.copy()), "p = q: KL is 0"))
    for n in (3, 6, 10):
        cases.append(
            Case((_dirichlet(rng, n), _dirichlet(rng, n)), f"two random distributions over {n} outcomes")
        )
    return cases


def _naive_kl(p, q) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(p * np.log(p / q)))


def _kl_logits_ref(a, b) -> float:
    from klcourse.kl import kl_from_logprobs

    return float(kl_from_logprobs(_log_softmax(a), _log_softmax(b), unit="bits"))


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


# 02 · estimating KL


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


# 03 · per-token KL


def _gather_ref(logits, input_ids) -> torch.Tensor:
    from klcourse.logprobs import gather_logprobs

    return gather_logprobs(logits[:, :-1], input_ids[:, 1:])


def _gather_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for b, length, v, scale in [(1, 3, 4, 1.0), (2, 6, 7, 3.0), (3, 5, 11, 30.0)]:
        logits = torch.as_tensor(rng.normal(0, scale, (b, length, v)))
        ids = torch.as_tensor(rng.integers(0, v, (b, length)))
        cases.append(Case((logits, ids), f"{b} sequence(s) of {length} tokens, vocabulary {v}"))
    return cases


def _gather(logits, ids) -> torch.Tensor:
    return logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def _sequence_kl_ref(policy_lp, ref_lp, mask) -> torch.Tensor:
    from klcourse.logprobs import per_token_kl

    return per_token_kl(policy_lp, ref_lp, mask, "k1").sum(1)


def _padded_logprobs(rng: np.random.Generator, lengths: list[int], width: int) -> tuple:
    """Policy and reference log-probs ``[B, width]`` and the response mask; padding holds junk."""
    mask = torch.tensor([[1.0] * n + [0.0] * (width - n) for n in lengths])
    lp, ref = (torch.as_tensor(np.log(rng.uniform(0.05, 1.0, mask.shape))) for _ in range(2))
    junk = torch.as_tensor(rng.uniform(-5, -1, mask.shape))
    return torch.where(mask.bool(), lp, junk), torch.where(mask.bool(), ref, junk / 2), mask


def _sequence_kl_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case(_padded_logprobs(rng, [3], 3), "one response of 3 tokens, no padding"),
        Case(
            _padded_logprobs(rng, [4, 2, 1], 4), "3 responses of 4, 2 and 1 tokens; padding holds junk values"
        ),
        Case(_padded_logprobs(rng, [6, 5, 3, 6], 6), "4 random responses with padding"),
    ]


# 04 · the adjusted reward


def _shaped_ref(scores, kl, mask, beta) -> torch.Tensor:
    from klcourse.ppo import shaped_rewards

    return shaped_rewards(scores, kl, mask, beta)


def _shaped_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for lengths, width, beta in [([3], 3, 0.1), ([4, 2, 1], 4, 0.1), ([5, 3, 5, 1], 5, 0.05)]:
        _, _, mask = _padded_logprobs(rng, lengths, width)
        kl = torch.as_tensor(rng.normal(0.1, 0.3, mask.shape))  # junk at padding, too
        scores = torch.as_tensor(rng.normal(1.0, 1.0, len(lengths)))
        label = f"{len(lengths)} response(s) of {', '.join(map(str, lengths))} tokens, β = {beta:g}"
        cases.append(
            Case(
                (scores, kl, mask, beta),
                label + ("; kl holds junk at padding" if min(lengths) < width else ""),
            )
        )
    return cases


def _score_at(column: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """A shaped reward that puts the score at ``column(mask)`` instead of at the last real token."""

    def shaped(scores, kl, mask, beta):
        rewards = -beta * kl * mask
        rewards[torch.arange(len(scores)), column(mask)] += scores
        return rewards

    return shaped


def _unmasked_shaped(scores, kl, mask, beta) -> torch.Tensor:
    """04.4 without the mask on the KL term: padding keeps ``−β·kl``."""
    rewards = -beta * kl
    rewards[torch.arange(len(scores)), mask.sum(1).long() - 1] += scores
    return rewards


def _overflowing_optimal(ref_probs, rewards, beta) -> np.ndarray:
    """``π_ref·exp(r/β)`` normalised without guarding against overflow (04.5's overflow slip)."""
    with np.errstate(over="ignore", invalid="ignore"):
        weights = ref_probs * np.exp(rewards / beta)
        return weights / weights.sum()


def _optimal_ref(ref_probs, rewards, beta) -> np.ndarray:
    from klcourse.optimal import optimal_policy

    return optimal_policy(ref_probs, rewards, beta)


def _optimal_cases(rng: np.random.Generator) -> list[Case]:
    toy = (np.array([0.5, 0.3, 0.2]), np.array([0.0, 1.0, 2.0]))
    cases = [
        Case((*toy, 1.0), "π_ref = [0.5, 0.3, 0.2], rewards [0, 1, 2], β = 1"),
        Case((*toy, 0.001), "the same at β = 0.001: exp(r/β) overflows"),
        Case((np.array([0.6, 0.0, 0.4]), np.array([0.0, 5.0, 1.0]), 0.5), "π_ref is 0 on the best response"),
    ]
    for n, beta in [(5, 0.3), (20, 2.0)]:
        cases.append(
            Case((_dirichlet(rng, n), rng.normal(0, 1, n), beta), f"{n} random responses, β = {beta:g}")
        )
    return cases


# 05 · PPO


def _gae_ref(rewards, values, mask, gamma, lam, part: int = 0) -> torch.Tensor:
    """klcourse's GAE: the advantages (``part=0``) or the returns (``part=1``)."""
    from klcourse.ppo import gae

    return gae(rewards, values, mask, gamma, lam)[part]


def _gae_cases(rng: np.random.Generator) -> list[Case]:
    toy = (torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.8]]), torch.ones(1, 3))
    cases = [Case((*toy, 1.0, 0.95), "exercise 05.1's response: rewards (0, 0, 1), values (0.5, 0.6, 0.8)")]
    for lengths, width, gamma, lam in [([4, 2, 1], 4, 1.0, 0.95), ([6, 3, 5], 6, 0.9, 0.8)]:
        _, _, mask = _padded_logprobs(rng, lengths, width)
        rewards = torch.as_tensor(rng.normal(0, 0.2, mask.shape)) * mask
        values = torch.as_tensor(rng.normal(0.5, 0.5, mask.shape))  # junk at padding
        label = (
            f"responses of {', '.join(map(str, lengths))} tokens, γ = {gamma:g}, λ = {lam:g}; "
            "values hold junk at padding"
        )
        cases.append(Case((rewards, values, mask, gamma, lam), label))
    return cases


def _adaptive_ref(beta, kl, target, n_episodes, horizon) -> float:
    from klcourse.ppo import AdaptiveKLController

    return AdaptiveKLController(beta, target, horizon).update(kl, n_episodes)


def _adaptive_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case(
            (0.1, 9.0, 6.0, 1000, 10_000), "β = 0.1, KL 9 nats against a target of 6 (error clipped to +0.2)"
        ),
        Case((0.1, 6.6, 6.0, 64, 10_000), "β = 0.1, KL 6.6 against 6 (error +0.1, not clipped)"),
        Case((0.2, 5.4, 6.0, 512, 10_000), "β = 0.2, KL 5.4 against 6: β must fall"),
        Case((0.05, 0.5, 6.0, 64, 10_000), "β = 0.05, KL 0.5 against 6 (error clipped to −0.2)"),
        Case((float(rng.uniform(0.01, 1)), float(rng.uniform(0, 12)), 6.0, 256, 10_000), "random β and KL"),
    ]


def _adaptive_with(clip: float, sign: float, scaled: bool) -> Callable:
    def update(beta, kl, target, n_episodes, horizon):
        error = min(max(sign * (kl / target - 1), -clip), clip)
        return beta * (1 + error * (n_episodes / horizon if scaled else 1.0))

    return update


# 06 · β ablations


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


# 07 · KL as a reward or a loss


def _top_p_ref(logits, top_p) -> torch.Tensor:
    from klcourse.logprobs import top_p_log_mass

    return top_p_log_mass(logits.double(), top_p)


def _top_p_cases(rng: np.random.Generator) -> list[Case]:
    fixed = torch.tensor([2.0, 1.0, 0.0, -1.0], dtype=torch.float64)
    return [
        Case((fixed, 0.8), "logits [2, 1, 0, −1], top_p = 0.8"),
        Case((fixed, 1.0), "top_p = 1 keeps every token: log S = 0"),
        Case((fixed, 0.1), "top_p = 0.1 keeps the top token alone"),
        Case((torch.as_tensor(rng.normal(0, 2, (3, 10))), 0.9), "3 positions, vocabulary 10, top_p = 0.9"),
    ]


def _top_p_below(logits, top_p) -> torch.Tensor:
    probs = logits.double().softmax(-1).sort(-1, descending=True).values
    return (probs * (probs.cumsum(-1) <= top_p)).sum(-1).log()


def _gradient_ref(logits, ref_logprobs) -> torch.Tensor:
    from klcourse.gradients import expected_gradient

    return expected_gradient(logits, ref_logprobs, "k1", "reward")


def _gradient_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case(
            (torch.zeros(2, dtype=torch.float64), torch.tensor([0.8, 0.2]).double().log()),
            "π = (0.5, 0.5), π_ref = (0.8, 0.2)",
        ),
        Case(
            (torch.tensor([1.0, 0.0, -1.0]).double(), _log_softmax([1.0, 0.0, -1.0])),
            "π = π_ref: the gradient is 0",
        ),
    ]
    for v in (4, 12):
        cases.append(
            Case(
                (torch.as_tensor(rng.normal(0, 1, v)), _log_softmax(rng.normal(0, 1, v))),
                f"random π and π_ref over {v} outcomes",
            )
        )
    return cases


def _gradient_with(baseline: bool) -> Callable:
    def gradient(logits, ref_logprobs):
        logp = logits.log_softmax(-1)
        c = logp - ref_logprobs
        pi = logp.exp()
        return pi * (c - (pi * c).sum()) if baseline else pi * c

    return gradient


CODING: dict[str, CodingExercise] = {
    e.key: e
    for e in [
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
        CodingExercise(
            key="03.4",
            name="token_logprobs",
            task="write token_logprobs(logits, input_ids) → log-probability of each token after the first, "
            "[B, L − 1], from a causal LM's logits [B, L, V] on input_ids [B, L].",
            reference=_gather_ref,
            cases=_gather_cases,
            hint="position t's logits predict token t + 1: log_softmax(logits[:, :-1]) gathered at "
            "input_ids[:, 1:].",
            slips=(
                (
                    "Off-by-one shift: you read each token's log-prob from its own position. The logits at "
                    "position t predict token t + 1: pair logits[:, :-1] with input_ids[:, 1:].",
                    lambda lg, ids: _gather(lg[:, 1:], ids[:, 1:]),
                ),
                (
                    "Shifted the wrong way: logits[:, :-1] predict input_ids[:, 1:], not the other way "
                    "round.",
                    lambda lg, ids: _gather(lg[:, 1:], ids[:, :-1]),
                ),
                (
                    "Those are raw logits, not log-probabilities: take log_softmax over the vocabulary "
                    "first.",
                    lambda lg, ids: lg[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1),
                ),
                (
                    "Those are probabilities, not log-probabilities: use log_softmax, not softmax.",
                    lambda lg, ids: _gather(lg[:, :-1], ids[:, 1:]).exp(),
                ),
                (
                    "Log-softmax over the wrong axis: normalise over the vocabulary (the last axis, dim=-1).",
                    lambda lg, ids: (
                        lg[:, :-1].log_softmax(1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                    ),
                ),
            ),
            shape_hint="There is one log-prob per token after the first: shape [B, L − 1] (the first token "
            "has no "
            "prediction, and the last position's logits predict a token that is not there).",
        ),
        CodingExercise(
            key="03.5",
            name="sequence_kl",
            task="write sequence_kl(policy_lp, ref_lp, mask) → the k1 estimate of each response's sequence "
            "KL, [B], from per-token log-probs [B, R] and the response mask [B, R] (1 on real tokens, 0 on "
            "padding).",
            reference=_sequence_kl_ref,
            cases=_sequence_kl_cases,
            hint="Σ_t mask_t·(log π_t − log π_ref,t) over each row.",
            slips=(
                (
                    "No masking: the padding positions hold junk values that your sum counts. Multiply by "
                    "the mask before summing.",
                    lambda lp, ref, m: (lp - ref).sum(1),
                ),
                (
                    "Mean vs sum: the sequence KL is the sum of the per-token values (chain rule), not "
                    "their mean.",
                    lambda lp, ref, m: ((lp - ref) * m).sum(1) / m.sum(1),
                ),
            ),
            shape_hint="Return one value per response: shape [B].",
        ),
        CodingExercise(
            key="04.4",
            name="my_shaped_rewards",
            task="write my_shaped_rewards(scores, kl, mask, beta) → per-token rewards [B, R]: −β·kl_t on "
            "every response token, plus the score [B] at each response's last real token; 0 on padding.",
            reference=_shaped_ref,
            cases=_shaped_cases,
            hint="rewards = −β·kl·mask; then add scores[i] at position mask[i].sum() − 1 of row i.",
            slips=(
                (
                    "The score is in the last column, but shorter responses end earlier: put it at each "
                    "response's last real token, position mask.sum(1) − 1.",
                    _score_at(lambda m: torch.full((m.shape[0],), m.shape[1] - 1)),
                ),
                (
                    "The score goes at the last response token, not the first.",
                    _score_at(lambda m: torch.zeros(m.shape[0], dtype=torch.long)),
                ),
                (
                    "Sign: the KL penalty is subtracted, r_t = −β·kl_t.",
                    lambda s, kl, m, b: _score_at(lambda mm: mm.sum(1).long() - 1)(s, -kl, m, b),
                ),
                (
                    "The score is missing: add each response's score at its last real token.",
                    lambda s, kl, m, b: -b * kl * m,
                ),
                (
                    "No masking: kl holds junk at padding positions; multiply by the mask so padding gets "
                    "reward 0.",
                    _unmasked_shaped,
                ),
            ),
        ),
        CodingExercise(
            key="04.5",
            name="optimal_policy",
            task="write optimal_policy(ref_probs, rewards, beta) → π*(y) ∝ π_ref(y)·exp(r(y)/β) over an "
            "enumerable set of responses (1-D numpy arrays), without overflow at β = 0.001.",
            reference=_optimal_ref,
            cases=_optimal_cases,
            hint="work in logs: a = log π_ref + r/β; π* = exp(a − max a) / Σ exp(a − max a).",
            slips=(
                (
                    "You dropped π_ref: π* reweights the reference, π*(y) ∝ π_ref(y)·exp(r(y)/β).",
                    lambda ref, r, b: np.exp(r / b - (r / b).max()) / np.exp(r / b - (r / b).max()).sum(),
                ),
                (
                    "Divide the rewards by β, do not multiply: exp(r/β).",
                    lambda ref, r, b: _optimal_ref(ref, r, 1 / b),
                ),
                (
                    "Not normalised: divide by Z = Σ_y π_ref(y)·exp(r(y)/β) so that π* sums to 1.",
                    lambda ref, r, b: ref * np.exp(r / b),
                ),
                (
                    "Overflow: at β = 0.001, exp(r/β) is ∞ and ∞/∞ is NaN. Subtract the largest "
                    "log π_ref + r/β before exponentiating.",
                    _overflowing_optimal,
                ),
            ),
        ),
        CodingExercise(
            key="05.4",
            name="my_gae",
            task="write my_gae(rewards, values, mask, gamma, lam) → the GAE advantages [B, T] of per-token "
            "rewards "
            "and values [B, T], with V and A zero after each response's last token (mask 0).",
            reference=_gae_ref,
            cases=_gae_cases,
            hint="from the last token back: δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}.",
            slips=(
                (
                    "λ is missing: A_t = δ_t + γλ·A_{t+1}; you used λ = 1.",
                    lambda r, v, m, g, lam: _gae_ref(r, v, m, g, 1.0),
                ),
                (
                    "That is λ = 0, the one-step TD error δ_t alone.",
                    lambda r, v, m, g, lam: _gae_ref(r, v, m, g, 0.0),
                ),
                (
                    "Those are the returns A + V (the value targets); the advantage is A.",
                    lambda r, v, m, g, lam: _gae_ref(r, v, m, g, lam, part=1),
                ),
                (
                    "No masking: the values hold junk at padding positions, and your recursion bootstraps "
                    "from them. V and A are 0 after the last real token.",
                    lambda r, v, m, g, lam: _gae_ref(r, v, torch.ones_like(m), g, lam),
                ),
            ),
        ),
        CodingExercise(
            key="05.5",
            name="adaptive_beta",
            task="write adaptive_beta(beta, kl, target, n_episodes, horizon) → the new β after one update of "
            "Ziegler et al.'s adaptive KL controller.",
            reference=_adaptive_ref,
            cases=_adaptive_cases,
            hint="e = clip(KL/target − 1, −0.2, 0.2); β ← β·(1 + e·n/horizon).",
            slips=(
                (
                    "The error is clipped to [−0.2, 0.2] before it is used.",
                    _adaptive_with(math.inf, 1.0, True),
                ),
                ("Sign: a KL above the target must raise β.", _adaptive_with(0.2, -1.0, True)),
                ("Scale the step by n_episodes/horizon.", _adaptive_with(0.2, 1.0, False)),
            ),
        ),
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
        CodingExercise(
            key="07.4",
            name="my_top_p_log_mass",
            task="write my_top_p_log_mass(logits, top_p) → log S, the log of the probability mass that top-p "
            "sampling keeps, at each position (logits [..., V] → [...]).",
            reference=_top_p_ref,
            cases=_top_p_cases,
            hint="sort the probabilities, keep the smallest top set whose mass reaches top_p, sum and take "
            "the log.",
            slips=(
                (
                    "Off by one: top-p keeps the smallest set whose mass reaches top_p, so the token that "
                    "crosses top_p is kept too.",
                    _top_p_below,
                ),
                ("That is S itself; the exercise asks for log S.", lambda lg, p: _top_p_ref(lg, p).exp()),
                (
                    "That is log(1 − S), the log of the mass dropped; log S is the mass kept.",
                    lambda lg, p: (-_top_p_ref(lg, p).exp()).log1p(),
                ),
            ),
            shape_hint="Return one log S per position: the logits' shape without the last axis.",
        ),
        CodingExercise(
            key="07.5",
            name="k1_reward_gradient",
            task="write k1_reward_gradient(logits, ref_logprobs) → the exact expected gradient, with respect "
            "to the logits θ, of k1 used as a reward: E_{x~π}[k1(x)·∇_θ log π(x)] with π = softmax(θ) (1-D "
            "tensors).",
            reference=_gradient_ref,
            cases=_gradient_cases,
            hint="∇_θ log π(x) = e_x − π, so the expectation is π ⊙ (c − E_π[c]) with c = log π − log π_ref.",
            slips=(
                (
                    "The baseline term is missing: ∇log π(x) = e_x − π, so subtract π·E_π[c] as well.",
                    _gradient_with(baseline=False),
                ),
                (
                    "That is π − π_ref, the gradient of the forward KL(π_ref ‖ π) (k3 used as a loss); k1 "
                    "as a "
                    "reward gives the reverse KL's gradient.",
                    lambda lg, ref: lg.softmax(-1) - ref.exp(),
                ),
                (
                    "That is 0, k1 used as a loss; as a reward the detached k1 multiplies ∇log π.",
                    lambda lg, ref: torch.zeros_like(lg),
                ),
            ),
        ),
    ]
}
