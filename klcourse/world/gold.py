"""The gold reward: the true sentiment of a well-formed review, a fixed penalty otherwise.

The proxy reward model of the course is trained to imitate preferences derived from this score on
well-formed reviews only; PPO optimises the proxy, and the gold reward is how the course sees
whether that optimisation helped or was hacked.

Sentiment of a clause: ``s = clip(m · v, −1, 1)`` with ``v`` the adjective's value and ``m`` the
intensifier's multiplier; negation ("not") flips and halves it, ``s → −s/2`` ("not terrible" is
mildly positive). A review's sentiment is the mean over its clauses, so it lies in ``[−1, 1]``.
Malformed text scores :data:`MALFORMED_PENALTY`.
"""

from __future__ import annotations

from collections.abc import Sequence

from klcourse.world.grammar import REVIEWS, Clause, Grammar

#: Gold reward of any text that does not parse.
MALFORMED_PENALTY = -1.0

ADJECTIVE_VALUES = {
    "excellent": 1.0,
    "great": 0.8,
    "lovely": 0.7,
    "good": 0.5,
    "fine": 0.2,
    "bland": -0.3,
    "rude": -0.6,
    "bad": -0.5,
    "awful": -0.8,
    "terrible": -1.0,
}
INTENSIFIER_MULTIPLIERS = {"very": 1.5, "really": 1.4, "quite": 1.2}


def clause_sentiment(clause: Clause) -> float:
    """``clip(m·v, −1, 1)``, then ``−s/2`` if negated.

    Taught in notebook 03.
    """
    s = ADJECTIVE_VALUES[clause.adjective] * INTENSIFIER_MULTIPLIERS.get(clause.intensifier or "", 1.0)
    s = max(-1.0, min(1.0, s))
    return -0.5 * s if clause.negated else s


def gold_reward(text: str | Sequence[str], grammar: Grammar = REVIEWS) -> float:
    """Mean clause sentiment of a well-formed review; :data:`MALFORMED_PENALTY` otherwise.

    Taught in notebook 03.
    """
    parse = grammar.parse(text)
    if parse is None:
        return MALFORMED_PENALTY
    return sum(clause_sentiment(c) for c in parse.clauses) / len(parse.clauses)
