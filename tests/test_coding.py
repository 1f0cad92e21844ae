"""The coding-exercise checker: it accepts klcourse's own functions, names every slip it lists when
given that slip, and answers broken functions (raising, hanging, returning the wrong thing) with a
message instead of a traceback."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from klcourse import coding
from klcourse.coding_exercises import CODING
from klcourse.exercises import check

SLIPS = [(key, message, slip) for key, ex in CODING.items() for message, slip in ex.slips]


def test_every_notebook_poses_two_coding_exercises():
    per_notebook = {}
    for key in CODING:
        per_notebook[key[:2]] = per_notebook.get(key[:2], 0) + 1
    chapters = (Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")
    assert per_notebook == {p.name[:2]: 2 for p in chapters}


@pytest.mark.parametrize("key", list(CODING))
def test_klcourse_function_passes(key):
    feedback = check(key, CODING[key].reference)
    assert feedback.ok, feedback.message


@pytest.mark.parametrize(
    ("key", "message", "slip"), SLIPS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SLIPS)]
)
def test_each_slip_is_named(key, message, slip):
    feedback = check(key, slip)
    assert not feedback.ok
    assert message in feedback.message, feedback.message


def test_unwritten_function_and_none_say_not_written_yet():
    def kl(p, q): ...

    for answer in (None, kl):
        feedback = check("01.4", answer)
        assert not feedback.ok and "not written yet" in feedback.message


def test_a_result_instead_of_a_function_is_explained():
    feedback = check("01.4", 0.5)
    assert not feedback.ok and "pass the function itself" in feedback.message


def test_a_function_that_raises_is_reported_without_a_traceback():
    def kl(p, q):
        return 1 / 0

    feedback = check("01.4", kl)
    assert (
        not feedback.ok and "raised ZeroDivisionError" in feedback.message and "input 1" in feedback.message
    )


@pytest.fixture
def short_limit(monkeypatch):
    monkeypatch.setattr(coding, "TIME_LIMIT", 0.3)


def test_a_function_that_hangs_is_stopped(short_limit):
    def kl(p, q):
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # a learner's catch-all does not swallow the time limit
                pass

    t0 = time.perf_counter()
    feedback = check("01.4", kl)
    assert not feedback.ok and "ran longer than 0.3 s" in feedback.message
    assert time.perf_counter() - t0 < 5


def test_a_hang_is_stopped_outside_the_main_thread_too(short_limit):
    out = {}

    def kl(p, q):
        time.sleep(2)

    thread = threading.Thread(target=lambda: out.setdefault("fb", check("01.4", kl)))
    thread.start()
    thread.join(5)
    assert not out["fb"].ok and "ran longer than" in out["fb"].message


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (lambda p, q: "0.5", "returned a str"),
        (lambda p, q: {"kl": 0.5}, "returned a dict"),
        (lambda p, q: (0.1, 0.2), "returned a tuple"),
    ],
)
def test_a_wrong_type_is_named(answer, words):
    feedback = check("01.4", answer)
    assert not feedback.ok and words in feedback.message and "one number" in feedback.message


def test_a_missing_return_after_the_first_input_is_named():
    def kl(p, q):
        if len(p) > 2:
            return None
        return float(np.sum(p * np.log(p / q)))

    feedback = check("01.4", kl)
    assert not feedback.ok and "returned None on input 2" in feedback.message


def test_a_wrong_shape_is_named_with_the_exercise_hint():
    feedback = check(
        "03.4", lambda logits, ids: logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    )
    assert not feedback.ok and "shape (1, 3)" in feedback.message and "L − 1" in feedback.message


def test_averaging_where_one_value_per_sample_is_wanted_is_named():
    feedback = check("02.4", lambda lp, lq: (torch.expm1(lq - lp) - (lq - lp)).mean())
    assert not feedback.ok and "did you average" in feedback.message


def test_generic_sign_and_unit_slips_are_named():
    from klcourse.kl import kl_divergence

    assert "sign is flipped" in check("01.4", lambda p, q: -float(kl_divergence(p, q))).message
    bits = check("01.4", lambda p, q: float(kl_divergence(p, q, unit="bits"))).message
    assert "in bits" in bits


def test_clipping_q_instead_of_infinity_is_named():
    def kl(p, q):
        keep = p > 0
        return float(np.sum(p[keep] * np.log(p[keep] / np.maximum(q[keep], 1e-12))))

    feedback = check("01.4", kl)
    assert not feedback.ok and "right answer here is ∞" in feedback.message and "input 3" in feedback.message


def test_the_numeric_exercises_do_not_give_the_formula_away_before_an_answer():
    from klcourse.exercises import EXERCISES

    for key, ex in EXERCISES.items():
        message = check(key, None).message
        assert ex.hint not in message, key
        assert ex.hint in check(key, 123456.0).message, key
