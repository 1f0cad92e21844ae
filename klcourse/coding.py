"""Coding exercises: the learner writes a function, ``check("01.4", kl)`` runs it and says what is wrong.

Each exercise calls the learner's function on fixed inputs (edge cases first: zeros, padding, huge
logits, one-token responses) and on random ones, compares every output with klcourse's own
implementation, and at the first input where they differ explains the mismatch in words. The
explanation comes from the slips learners make — each slip is written out as the wrong function it
is, and the learner's output is compared with it on that same input — or, failing those, from the
generic checks: wrong shape, sign, bits for nats, NaN, a finite value where KL is infinite.

A function that raises, runs longer than :data:`TIME_LIMIT` seconds, or returns something that is
not numbers gets a message saying so, never a traceback. Each numbered notebook poses two of these
exercises (:mod:`klcourse.coding_exercises`, one module per notebook); :func:`klcourse.exercises.check`
dispatches to :func:`check_function` for them.
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

    Taught in notebooks 01–09.
    """

    args: tuple
    label: str


@dataclass(frozen=True)
class CodingExercise:
    """A function to write: what it does, klcourse's version, its inputs and the slips worth naming.

    Taught in notebooks 01–09.
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

    Taught in notebooks 01–09.
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

    Taught in notebooks 01–09.
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


# ----------------------------------------------------------------------------- inputs


def dirichlet(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random probability vector of length ``n``, uniform over the simplex (Dirichlet(1, …, 1)).

    The coding exercises draw their random inputs with it. Used in notebooks 01 and 04.
    """
    return rng.dirichlet(np.ones(n))


def log_softmax64(x) -> torch.Tensor:
    """``log softmax(x)`` over the last axis, in float64: ``x − logsumexp(x)``.

    The coding exercises' answers use it. Used in notebooks 01 and 07.
    """
    return torch.as_tensor(x, dtype=torch.float64).log_softmax(-1)


def padded_logprobs(rng: np.random.Generator, lengths: list[int], width: int) -> tuple:
    """Policy and reference log-probs ``[B, width]`` of responses of ``lengths`` tokens, and the
    response mask; padding holds junk that a correct answer must ignore.

    The coding exercises draw their random inputs with it. Used in notebooks 03, 04, 05 and 08.
    """
    mask = torch.tensor([[1.0] * n + [0.0] * (width - n) for n in lengths])
    lp, ref = (torch.as_tensor(np.log(rng.uniform(0.05, 1.0, mask.shape))) for _ in range(2))
    junk = torch.as_tensor(rng.uniform(-5, -1, mask.shape))
    return torch.where(mask.bool(), lp, junk), torch.where(mask.bool(), ref, junk / 2), mask
