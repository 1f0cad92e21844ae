"""The simulated annotator whose preferences train the proxy reward model — and its two biases.

Real preference data is labelled by people (or models) with systematic biases, and a reward model
learns those biases along with the signal. This annotator has two that are documented in real RLHF
data, and the gold reward (:mod:`klcourse.world.gold`) pays for neither:

* **keyword bias** — it reads a clause's sentiment words but not their negation: "the food was not
  excellent" reads to it like "the food was excellent" (bag-of-words sentiment raters and learned
  reward models are notoriously weak on negation);
* **verbosity bias** — it prefers more elaborate wording: every modifier in a clause ("very",
  "really", "quite", "not") adds :data:`VERBOSITY_BONUS` to its rating (Singhal et al. 2023,
  "A Long Way to Go: Investigating Length Correlations in RLHF", arXiv 2310.03716).

Its rating of a well-formed review, averaged over the review's clauses ``c``::

    u(review) = mean_c [ clip(m_c · v_c, −1, 1) + VERBOSITY_BONUS · (#modifiers in c) ]

with ``v`` the adjective's value and ``m`` the intensifier's multiplier, exactly as in the gold
reward except that negation is ignored. Mostly it agrees with the gold reward, so optimising what
it rates first improves the truth; pushed hard, the cheapest extra rating is a "not" in front of a
glowing adjective — which the gold reward scores as a *negative* review. That is Goodhart's law
inside the language, with no malformed text involved.
"""

from __future__ import annotations

from collections.abc import Sequence

from klcourse.world.gold import clause_sentiment
from klcourse.world.grammar import REVIEWS, Clause, Grammar

#: The annotator's extra rating for each modifier ("very", "really", "quite", "not") in a clause.
VERBOSITY_BONUS = 0.3
#: Bradley–Terry temperature τ of its labels: it prefers a to b with probability σ((u(a) − u(b))/τ).
ANNOTATOR_NOISE = 0.2


def clause_rating(clause: Clause) -> float:
    """``clip(m·v, −1, 1) + VERBOSITY_BONUS·(#modifiers)``: the clause's sentiment with its
    negation unread, plus the verbosity bonus.

    Taught in notebook 03.
    """
    unread = Clause(clause.subject, False, clause.intensifier, clause.adjective)
    modifiers = int(clause.negated) + int(clause.intensifier is not None)
    return clause_sentiment(unread) + VERBOSITY_BONUS * modifiers


def annotator_rating(text: str | Sequence[str], grammar: Grammar = REVIEWS) -> float:
    """The annotator's rating ``u`` of a well-formed review: the mean of its :func:`clause_rating`.

    Raises ``ValueError`` for malformed text: the annotator only ever labels well-formed reviews,
    which is why the reward model has to extrapolate off the grammar.

    Taught in notebook 03.
    """
    parse = grammar.parse(text)
    if parse is None:
        raise ValueError(f"the annotator only rates well-formed reviews, got {text!r}")
    return sum(clause_rating(c) for c in parse.clauses) / len(parse.clauses)


def bias_exposure(texts: Sequence[str], grammar: Grammar = REVIEWS) -> dict[str, float]:
    """What the annotator's two biases pay for, over the clauses of the well-formed reviews among
    ``texts``: ``negated`` (the share of clauses with a "not", which the annotator does not read) and
    ``modifiers`` (modifiers per clause, each worth :data:`VERBOSITY_BONUS` to it); ``clauses``
    counts them. Raises ``ValueError`` if no text is well formed.

    Taught in notebook 08.
    """
    clauses = [c for t in texts if (parse := grammar.parse(t)) is not None for c in parse.clauses]
    if not clauses:
        raise ValueError("bias_exposure needs at least one well-formed review")
    negated = sum(c.negated for c in clauses)
    modifiers = sum(int(c.negated) + int(c.intensifier is not None) for c in clauses)
    return {"negated": negated / len(clauses), "modifiers": modifiers / len(clauses), "clauses": len(clauses)}
