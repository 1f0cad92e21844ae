"""Every notebook's coding exercises, keyed ``"NN.k"``: one module per notebook (``exNN``), each a
list of :class:`klcourse.coding.CodingExercise`; :mod:`klcourse.coding` checks a learner's function
against one."""

from klcourse.coding import CodingExercise
from klcourse.coding_exercises import ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex09

#: Every coding exercise by key, in course order.
CODING: dict[str, CodingExercise] = {
    e.key: e for module in (ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex09) for e in module.EXERCISES
}
