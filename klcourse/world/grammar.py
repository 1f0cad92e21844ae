"""The ground-truth language of the course: a probabilistic grammar of short reviews.

Every well-formed review is one or two clauses and a full stop::

    review  → clause "."  |  clause conj clause "."
    clause  → "the" subject "was" [ "not" ] [ intensifier ] adjective
    conj    → "and" | "but"

Each choice is made independently with the probabilities in :class:`Grammar`, so the probability of
a review is the product of the probabilities of its choices, and the grammar is unambiguous: a
token sequence has at most one parse. That gives three things a course about RLHF needs and a real
corpus cannot give: exact probabilities of every sentence (:meth:`Grammar.log_prob`), exact
next-token distributions after any well-formed prefix (:meth:`Grammar.next_token_probs`), and a
parser that says whether text is well formed (:meth:`Grammar.parse`).

Prompts are review prefixes ``"the <subject>"``; a response continues the prompt to the full stop.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

END = "."


@dataclass(frozen=True)
class Clause:
    """One parsed clause: ``the <subject> was [not] [<intensifier>] <adjective>``.

    Taught in notebook 03.
    """

    subject: str
    negated: bool
    intensifier: str | None
    adjective: str


@dataclass(frozen=True)
class Parse:
    """A parsed review: its clauses and the conjunction between them (``None`` for one clause).

    Taught in notebook 03.
    """

    clauses: tuple[Clause, ...]
    conjunction: str | None


def _normalised(table: dict[str, float], name: str) -> dict[str, float]:
    total = sum(table.values())
    if any(v < 0 for v in table.values()) or not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ValueError(f"{name} probabilities must be non-negative and sum to 1 (sum {total:.6g})")
    return table


@dataclass(frozen=True)
class Grammar:
    """A probabilistic review grammar. Tables map each choice to its probability.

    ``intensifiers`` uses ``""`` for "no intensifier"; ``p_negation`` is the probability of "not";
    ``p_two_clauses`` the probability of a second clause.

    Taught in notebook 03.
    """

    subjects: dict[str, float]
    intensifiers: dict[str, float]
    adjectives: dict[str, float]
    conjunctions: dict[str, float]
    p_negation: float
    p_two_clauses: float
    words: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        for name in ("subjects", "intensifiers", "adjectives", "conjunctions"):
            _normalised(getattr(self, name), name)
        for name in ("p_negation", "p_two_clauses"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        words = ["the", "was", "not", END, *self.subjects, *self.adjectives, *self.conjunctions]
        words += [w for w in self.intensifiers if w]
        object.__setattr__(self, "words", tuple(dict.fromkeys(words)))

    # ------------------------------------------------------------------ sampling

    @functools.cached_property
    def _cumulative(self) -> dict[str, tuple[tuple[str, ...], list[float]]]:
        """Each table's choices and cumulative probabilities, for inverse-CDF sampling."""
        names = ("subjects", "intensifiers", "adjectives", "conjunctions")
        return {
            n: (tuple(getattr(self, n)), list(itertools.accumulate(getattr(self, n).values()))) for n in names
        }

    def _pick(self, name: str, rng: np.random.Generator) -> str:
        """One choice from table ``name``: the first whose cumulative probability exceeds a uniform draw."""
        keys, cumulative = self._cumulative[name]
        return keys[min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(keys) - 1)]

    def sample(self, rng: np.random.Generator, subject: str | None = None) -> list[str]:
        """Draw one review as a list of words; ``subject`` fixes the first clause's subject."""

        def clause(subj: str | None) -> list[str]:
            words = ["the", subj or self._pick("subjects", rng), "was"]
            if rng.random() < self.p_negation:
                words.append("not")
            intens = self._pick("intensifiers", rng)
            if intens:
                words.append(intens)
            return [*words, self._pick("adjectives", rng)]

        words = clause(subject)
        if rng.random() < self.p_two_clauses:
            words += [self._pick("conjunctions", rng), *clause(None)]
        return [*words, END]

    def sample_texts(self, n: int, seed: int) -> list[str]:
        """``n`` reviews as space-separated strings, reproducible from ``seed``."""
        rng = np.random.default_rng(seed)
        return [" ".join(self.sample(rng)) for _ in range(n)]

    # ------------------------------------------------------------------ parsing

    def _parse_clause(self, words: Sequence[str], i: int) -> tuple[Clause, int] | None:
        if words[i : i + 1] != ["the"] or i + 2 >= len(words):
            return None
        subject = words[i + 1]
        if subject not in self.subjects or words[i + 2] != "was":
            return None
        j = i + 3
        negated = j < len(words) and words[j] == "not"
        j += negated
        intensifier = None
        if j < len(words) and words[j] in self.intensifiers and words[j]:
            intensifier = words[j]
            j += 1
        if j >= len(words) or words[j] not in self.adjectives:
            return None
        return Clause(subject, negated, intensifier, words[j]), j + 1

    def parse(self, text: str | Sequence[str]) -> Parse | None:
        """The parse of a review (a string or a word list), or ``None`` if it is malformed."""
        words = text.split() if isinstance(text, str) else list(text)
        first = self._parse_clause(words, 0)
        if first is None:
            return None
        clause, i = first
        if words[i:] == [END]:
            return Parse((clause,), None)
        if i < len(words) and words[i] in self.conjunctions:
            second = self._parse_clause(words, i + 1)
            if second is not None and words[second[1] :] == [END]:
                return Parse((clause, second[0]), words[i])
        return None

    def is_well_formed(self, text: str | Sequence[str]) -> bool:
        """True when ``text`` parses as a review of this grammar."""
        return self.parse(text) is not None

    # ------------------------------------------------------------------ probabilities

    def _clause_log_prob(self, c: Clause, subject_given: bool) -> float:
        lp = 0.0 if subject_given else math.log(self.subjects[c.subject])
        lp += math.log(self.p_negation if c.negated else 1.0 - self.p_negation)
        return lp + math.log(self.intensifiers[c.intensifier or ""]) + math.log(self.adjectives[c.adjective])

    def log_prob(self, text: str | Sequence[str], given_subject: bool = False) -> float:
        """Exact ``log P(review)``: the sum of the log-probabilities of its choices.

        ``-inf`` for malformed text. With ``given_subject=True`` it is ``log P(review | "the
        <subject>")``, the probability of a response given its prompt.
        """
        parse = self.parse(text)
        if parse is None:
            return -math.inf
        lp = self._clause_log_prob(parse.clauses[0], given_subject)
        if parse.conjunction is None:
            return lp + math.log(1.0 - self.p_two_clauses)
        lp += math.log(self.p_two_clauses) + math.log(self.conjunctions[parse.conjunction])
        return lp + self._clause_log_prob(parse.clauses[1], False)

    def next_token_probs(self, prefix: Sequence[str]) -> dict[str, float]:
        """Exact distribution of the next word after a well-formed prefix (``{}`` after ".").

        Raises ``ValueError`` if no review starts with ``prefix``.
        """
        words = list(prefix)
        # Walk the clause structure to find which choice comes next.
        i, clause_index = 0, 0
        while True:
            if i == len(words):
                return {"the": 1.0}
            if words[i] != "the":
                break
            if i + 1 == len(words):
                return dict(self.subjects)
            if words[i + 1] not in self.subjects:
                break
            if i + 2 == len(words):
                return {"was": 1.0}
            if words[i + 2] != "was":
                break
            j = i + 3
            slot = {}
            if j == len(words):  # negation, then intensifier, then adjective
                for w, p in self.intensifiers.items():
                    slot[w or "_adj"] = (1 - self.p_negation) * p
                slot["not"] = self.p_negation
                return self._expand_adjectives(slot)
            if words[j] == "not":
                j += 1
                if j == len(words):
                    return self._expand_adjectives({w or "_adj": p for w, p in self.intensifiers.items()})
            if words[j] in self.intensifiers and words[j]:
                j += 1
                if j == len(words):
                    return dict(self.adjectives)
            if words[j] not in self.adjectives:
                break
            j += 1
            if j == len(words):
                if clause_index == 1:
                    return {END: 1.0}
                out = {END: 1.0 - self.p_two_clauses}
                for w, p in self.conjunctions.items():
                    out[w] = self.p_two_clauses * p
                return out
            if clause_index == 0 and words[j] in self.conjunctions:
                i, clause_index = j + 1, 1
                continue
            if words[j:] == [END]:
                return {}
            break
        raise ValueError(f"no review of this grammar starts with {' '.join(words)!r}")

    def _expand_adjectives(self, slot: dict[str, float]) -> dict[str, float]:
        """Replace the ``_adj`` placeholder (an empty slot) by the adjective distribution."""
        p_skip = slot.pop("_adj", 0.0)
        for w, p in self.adjectives.items():
            slot[w] = slot.get(w, 0.0) + p_skip * p
        return slot

    # ------------------------------------------------------------------ enumeration

    def clauses(self) -> Iterator[tuple[list[str], float]]:
        """Every clause with its probability (the subject included)."""
        for subj, neg, intens, adj in itertools.product(
            self.subjects, (False, True), self.intensifiers, self.adjectives
        ):
            words = [
                "the",
                subj,
                "was",
                *(["not"] if neg else []),
                *([intens] if intens else []),
                adj,
            ]
            p = self.subjects[subj] * (self.p_negation if neg else 1 - self.p_negation)
            yield words, p * self.intensifiers[intens] * self.adjectives[adj]

    def enumerate(self) -> Iterator[tuple[str, float]]:
        """Every well-formed review with its exact probability (use on small grammars)."""
        clauses = list(self.clauses())
        for words, p in clauses:
            yield " ".join([*words, END]), p * (1 - self.p_two_clauses)
        for (w1, p1), conj, (w2, p2) in itertools.product(clauses, self.conjunctions, clauses):
            p = p1 * self.p_two_clauses * self.conjunctions[conj] * p2
            yield " ".join([*w1, conj, *w2, END]), p


#: The course's review grammar.
REVIEWS = Grammar(
    subjects={
        "food": 0.2,
        "service": 0.2,
        "staff": 0.1,
        "room": 0.1,
        "movie": 0.15,
        "plot": 0.1,
        "music": 0.1,
        "price": 0.05,
    },
    intensifiers={"": 0.55, "very": 0.2, "really": 0.15, "quite": 0.1},
    adjectives={
        "good": 0.16,
        "great": 0.12,
        "excellent": 0.06,
        "lovely": 0.06,
        "fine": 0.1,
        "bad": 0.14,
        "awful": 0.08,
        "terrible": 0.06,
        "bland": 0.12,
        "rude": 0.1,
    },
    conjunctions={"and": 0.6, "but": 0.4},
    p_negation=0.15,
    p_two_clauses=0.4,
)
