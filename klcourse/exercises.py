"""Exercise checker: ``check("01.1", answer)`` says whether an answer is right, and if not, why.

Each exercise knows its right answer (computed here with :mod:`klcourse.kl`, never typed in) and
the answers that common slips produce (nats for bits, swapped arguments, a dropped sign), so a
wrong answer gets a hint about the slip it most likely is rather than a bare "no".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from klcourse.coding import Feedback, check_function
from klcourse.coding_exercises import CODING
from klcourse.kl import bernoulli_kl, k1, k3, kl_divergence

_POLICY_LP = (-0.5, -1.2, -0.1)
_REF_LP = (-0.7, -2.0, -0.1)
_LOGITS = np.array([2.0, 1.0, 0.0])


_KL_TOKENS = (0.1, 0.3, -0.05, 0.2)
_REF3 = np.array([0.5, 0.3, 0.2])
_R3 = np.array([0.0, 1.0, 2.0])


def _pi_star_last(beta: float) -> float:
    """π*(y₃) ∝ π_ref(y₃)·exp(r₃/β) for the three-response toy of exercise 04.2."""
    w = _REF3 * np.exp(_R3 / beta)
    return float(w[2] / w.sum())


_GAE_R = (0.0, 0.0, 1.0)
_GAE_V = (0.5, 0.6, 0.8)


def _gae_first(lam: float, gamma: float = 1.0) -> float:
    """Advantage at t = 0 by the GAE recursion for exercise 05.1 (values 0 after the last token)."""
    adv, next_v = 0.0, 0.0
    for r, v in zip(reversed(_GAE_R), reversed(_GAE_V), strict=True):
        adv = r + gamma * next_v - v + gamma * lam * adv
        next_v = v
    return adv


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    return x - np.log(np.exp(x - x.max()).sum()) - x.max()


@dataclass(frozen=True)
class Exercise:
    """One exercise: its question, how to compute its answer, and the slips worth naming.

    Taught in notebooks 01–09.
    """

    key: str
    question: str
    answer: Callable[[], float]
    hint: str
    rel_tol: float = 1e-3
    slips: tuple[tuple[str, Callable[[], float]], ...] = field(default_factory=tuple)


def _die_fair() -> np.ndarray:
    return np.full(6, 1 / 6)


def _die_loaded() -> np.ndarray:
    return np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.5])


def _k1_variance_coins(a: float, b: float) -> float:
    """Exact ``Var_{x~A}[log A(x) − log B(x)]`` for two coins."""
    pa = np.array([a, 1 - a])
    lr = np.log(pa) - np.log(np.array([b, 1 - b]))
    return float((pa * lr**2).sum() - (pa * lr).sum() ** 2)


def _first_logit_07_1(gradient: str) -> float:
    """07.1's π = (0.5, 0.5), π_ref = (0.8, 0.2): the first logit's component of the expected gradient
    of k3 as a loss (``"k3 loss"``) or of ∇KL(π‖ref) (``"reverse"``)."""
    from klcourse.gradients import expected_gradient, reverse_kl_gradient

    theta, ref = torch.zeros(2, dtype=torch.float64), torch.tensor([0.8, 0.2], dtype=torch.float64).log()
    grad = (
        expected_gradient(theta, ref, "k3", "loss")
        if gradient == "k3 loss"
        else reverse_kl_gradient(theta, ref)
    )
    return float(grad[0])


EXERCISES: dict[str, Exercise] = {
    e.key: e
    for e in [
        Exercise(
            key="01.1",
            question="KL(fair die ‖ die loaded with 1/2 on six and 1/10 elsewhere), in bits.",
            answer=lambda: float(kl_divergence(_die_fair(), _die_loaded(), unit="bits")),
            hint="Sum P(x)·log2(P(x)/Q(x)) over the six faces, with P the fair die.",
            slips=(
                (
                    "That is the value in nats; divide by ln 2 for bits.",
                    lambda: float(kl_divergence(_die_fair(), _die_loaded())),
                ),
                (
                    "That is KL(loaded ‖ fair): the fair die goes in the first slot.",
                    lambda: float(kl_divergence(_die_loaded(), _die_fair(), unit="bits")),
                ),
                (
                    "That looks like log base 10; bits use log base 2.",
                    lambda: float(kl_divergence(_die_fair(), _die_loaded())) / math.log(10),
                ),
            ),
        ),
        Exercise(
            key="01.2",
            question="Coins A = 0.9 heads and B = 0.6 heads: KL(B ‖ A) in nats.",
            answer=lambda: float(bernoulli_kl(0.6, 0.9)),
            hint="Weight each outcome by B's probability: the first argument is the weights.",
            slips=(
                (
                    "That is KL(A ‖ B). KL is not symmetric: weight by B this time.",
                    lambda: float(bernoulli_kl(0.9, 0.6)),
                ),
                (
                    "That is the value in bits; the question asks for nats.",
                    lambda: float(bernoulli_kl(0.6, 0.9, unit="bits")),
                ),
                (
                    "You used only the heads term; tails contributes too.",
                    lambda: 0.6 * math.log(0.6 / 0.9),
                ),
            ),
        ),
        Exercise(
            key="01.3",
            question="P = [1/2, 1/2, 0, 0], Q = [1/4, 1/4, 1/4, 1/4]: KL(P ‖ Q) in nats.",
            answer=lambda: float(kl_divergence([0.5, 0.5, 0, 0], [0.25] * 4)),
            hint="Outcomes with P(x) = 0 contribute 0·log(0/Q) = 0.",
            slips=(
                (
                    "That is KL(Q ‖ P), which is infinite: Q puts mass where P has none.",
                    lambda: float(kl_divergence([0.25] * 4, [0.5, 0.5, 0, 0])),
                ),
                (
                    "That is the value in bits; the question asks for nats.",
                    lambda: float(kl_divergence([0.5, 0.5, 0, 0], [0.25] * 4, unit="bits")),
                ),
            ),
        ),
        Exercise(
            key="02.1",
            question="A sampled token has policy P = 0.1 and reference Q = 0.4: its k1 value.",
            answer=lambda: float(k1(math.log(0.1), math.log(0.4))),
            hint="k1 = log P(x) − log Q(x) for a token sampled from P. It can be negative.",
            slips=(
                (
                    "Sign flipped: k1 is log P − log Q with P the sampler (the policy).",
                    lambda: float(k1(math.log(0.4), math.log(0.1))),
                ),
            ),
        ),
        Exercise(
            key="02.2",
            question="Same token (P = 0.1, Q = 0.4): its k3 value, with r = Q(x)/P(x).",
            answer=lambda: float(k3(math.log(0.1), math.log(0.4))),
            hint="k3 = (r − 1) − log r with r = Q(x)/P(x) = 4. It is never negative.",
            slips=(
                (
                    "You used r = P(x)/Q(x); Schulman's r is (other)/(sampler) = Q(x)/P(x).",
                    lambda: float(k3(math.log(0.4), math.log(0.1))),
                ),
                ("That is k2 = ½(log r)², not k3.", lambda: 0.5 * math.log(4.0) ** 2),
            ),
        ),
        Exercise(
            key="02.3",
            question=(
                "Coins A = 0.7, B = 0.5, samples from A: how many samples N does the k1 "
                "mean need for a standard error of 0.001 nats?"
            ),
            answer=lambda: _k1_variance_coins(0.7, 0.5) / 0.001**2,
            hint="Standard error = std(k1)/√N, so N = Var(k1)/0.001². Compute Var(k1) exactly.",
            rel_tol=0.02,
            slips=(
                (
                    "That is √N-sized: N = Var/SE², not std/SE.",
                    lambda: math.sqrt(_k1_variance_coins(0.7, 0.5)) / 0.001,
                ),
                (
                    "You used E[k1²] without subtracting KL²: Var = E[k1²] − KL².",
                    lambda: (_k1_variance_coins(0.7, 0.5) + float(bernoulli_kl(0.7, 0.5)) ** 2) / 0.001**2,
                ),
            ),
        ),
        Exercise(
            key="03.1",
            question=(
                "A 3-token response has policy log-probs (−0.5, −1.2, −0.1) and reference "
                "log-probs (−0.7, −2.0, −0.1) of its sampled tokens: the k1 estimate of the "
                "sequence KL."
            ),
            answer=lambda: float(np.sum(k1(np.array(_POLICY_LP), np.array(_REF_LP)))),
            hint="Sum log π − log π_ref over the response's tokens (chain rule): do not average.",
            slips=(
                (
                    "That is the mean over tokens; the sequence KL is the sum.",
                    lambda: float(np.mean(k1(np.array(_POLICY_LP), np.array(_REF_LP)))),
                ),
                (
                    "Sign flipped: it is log π − log π_ref, policy first.",
                    lambda: -float(np.sum(k1(np.array(_POLICY_LP), np.array(_REF_LP)))),
                ),
            ),
        ),
        Exercise(
            key="03.2",
            question=(
                "Logits (2, 1, 0), sampling temperature T = 0.5: the log-probability the "
                "sampler gave token 0."
            ),
            answer=lambda: float(_log_softmax(_LOGITS / 0.5)[0]),
            hint="Divide the logits by T before the log-softmax: log softmax(logits / T)[0].",
            slips=(
                (
                    "That is the log-probability at T = 1; the sampler used T = 0.5.",
                    lambda: float(_log_softmax(_LOGITS)[0]),
                ),
                (
                    "You multiplied by T; temperature divides the logits.",
                    lambda: float(_log_softmax(_LOGITS * 0.5)[0]),
                ),
                (
                    "That is the probability, not its log.",
                    lambda: float(np.exp(_log_softmax(_LOGITS / 0.5)[0])),
                ),
            ),
        ),
        Exercise(
            key="03.3",
            question=(
                "64 responses × 128 tokens, vocabulary 50,257, float32: how many MiB must be "
                "kept to hold the reference's log-probs over the whole vocabulary?"
            ),
            answer=lambda: 64 * 128 * 50_257 * 4 / 2**20,
            hint="positions × vocabulary × 4 bytes, divided by 2²⁰ bytes per MiB.",
            slips=(
                (
                    "That is in MB (10⁶ bytes); a MiB is 2²⁰ bytes.",
                    lambda: 64 * 128 * 50_257 * 4 / 1e6,
                ),
                ("Each float32 takes 4 bytes.", lambda: 64 * 128 * 50_257 / 2**20),
                (
                    "That is the sampled-token cost (one float per position).",
                    lambda: 64 * 128 * 4 / 2**20,
                ),
            ),
        ),
        Exercise(
            key="04.1",
            question=(
                "Score 2.0, per-token k1 values (0.1, 0.3, −0.05, 0.2), β = 0.1: the adjusted "
                "reward score − β·Σ_t KL_t."
            ),
            answer=lambda: 2.0 - 0.1 * sum(_KL_TOKENS),
            hint="Sum the per-token KL values (including the negative one), multiply by β, subtract.",
            slips=(
                ("Sign: the KL is subtracted from the score.", lambda: 2.0 + 0.1 * sum(_KL_TOKENS)),
                (
                    "That uses the mean KL per token; the penalty uses the sum.",
                    lambda: 2.0 - 0.1 * sum(_KL_TOKENS) / 4,
                ),
                (
                    "A negative per-token value still counts: do not drop or clip it.",
                    lambda: 2.0 - 0.1 * sum(max(k, 0.0) for k in _KL_TOKENS),
                ),
            ),
        ),
        Exercise(
            key="04.2",
            question=(
                "π_ref = (0.5, 0.3, 0.2) over three responses with rewards (0, 1, 2), β = 1: "
                "π*(third response)."
            ),
            answer=lambda: _pi_star_last(1.0),
            hint="π*(y) ∝ π_ref(y)·exp(r(y)/β); normalise over the three responses.",
            slips=(
                (
                    "You dropped π_ref: π* reweights the reference, it does not replace it.",
                    lambda: float(np.exp(_R3[2]) / np.exp(_R3).sum()),
                ),
                ("That is π_ref itself: the exp(r/β) weights are missing.", lambda: 0.2),
            ),
        ),
        Exercise(
            key="04.3",
            question="The upper bound on KL(best-of-16 ‖ π_ref), in nats.",
            answer=lambda: math.log(16) - 15 / 16,
            hint="log n − (n − 1)/n (Beirami et al. 2024).",
            slips=(
                ("That is log n, the older bound; subtract (n − 1)/n.", lambda: math.log(16)),
                ("That is in bits; use the natural log.", lambda: math.log2(16) - 15 / 16),
            ),
        ),
        Exercise(
            key="05.1",
            question=(
                "Rewards (0, 0, 1), values (0.5, 0.6, 0.8), γ = 1, λ = 0.95: the GAE advantage "
                "of the first token."
            ),
            answer=lambda: _gae_first(0.95),
            hint="δ_t = r_t + V_{t+1} − V_t (V = 0 after the end); A_t = δ_t + λ·A_{t+1}, from the end.",
            slips=(
                ("That is λ = 1 (return minus value); use λ = 0.95.", lambda: _gae_first(1.0)),
                ("That is λ = 0 (one-step TD error only).", lambda: _gae_first(0.0)),
            ),
        ),
        Exercise(
            key="05.2",
            question=(
                "A token with probability ratio π_new/π_old = 1.5 and advantage +2, clip ε = 0.2: "
                "its clipped policy loss (the quantity PPO minimises)."
            ),
            answer=lambda: -min(1.5 * 2.0, 1.2 * 2.0),
            hint="loss = −min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A).",
            slips=(
                ("That is the unclipped loss −ρ·A; the ratio is clipped at 1 + ε.", lambda: -3.0),
                ("Sign: PPO minimises the negative of the surrogate objective.", lambda: 2.4),
            ),
        ),
        Exercise(
            key="05.3",
            question=(
                "Adaptive KL: β = 0.1, measured KL 9 nats, target 6, a batch of 1,000 episodes, "
                "horizon 10,000: the new β."
            ),
            answer=lambda: 0.1 * (1 + min(max(9 / 6 - 1, -0.2), 0.2) * 1000 / 10_000),
            hint="e = clip(KL/target − 1, −0.2, 0.2); β ← β·(1 + e·n/horizon).",
            slips=(
                ("The error is clipped to ±0.2 before it is used.", lambda: 0.1 * (1 + 0.5 * 0.1)),
                ("KL above the target must raise β, not lower it.", lambda: 0.1 * (1 - 0.2 * 0.1)),
            ),
        ),
        Exercise(
            key="06.1",
            question="π* at β = 0.5 has E*[r] = 1.2 and log Z = 1.5: its KL from the reference.",
            answer=lambda: 1.2 / 0.5 - 1.5,
            hint="KL(π* ‖ π_ref) = E*[r]/β − log Z.",
            slips=(
                ("Divide E*[r] by β.", lambda: 1.2 - 1.5),
                ("That multiplies by β; the identity divides.", lambda: 1.2 * 0.5 - 1.5),
            ),
        ),
        Exercise(
            key="06.2",
            question=(
                "Self-normalised weights (0.5, 0.25, 0.25) on three samples: the effective sample size."
            ),
            answer=lambda: 1 / (0.5**2 + 0.25**2 + 0.25**2),
            hint="ESS = 1/Σ w_i² for weights that sum to 1.",
            slips=(
                ("That is the number of samples, not the effective number.", lambda: 3.0),
                ("Square the weights before summing: ESS = 1/Σ w_i².", lambda: 1 / (0.5 + 0.25 + 0.25)),
            ),
        ),
        Exercise(
            key="06.3",
            question=(
                "Gao et al.'s RL fit, gold ≈ d·(α − β_fit·ln d) with d = √KL: α = 1, β_fit = 0.5, "
                "KL = 4 nats. The predicted gold reward."
            ),
            answer=lambda: 2.0 * (1.0 - 0.5 * math.log(2.0)),
            hint="d = √4 = 2; natural log.",
            slips=(
                ("d is √KL = 2, not the KL itself.", lambda: 4.0 * (1.0 - 0.5 * math.log(4.0))),
                ("That is the best-of-n form d·(α − β·d); RL uses ln d.", lambda: 2.0 * (1.0 - 0.5 * 2.0)),
            ),
        ),
        Exercise(
            key="07.1",
            question=(
                "π = (0.5, 0.5), π_ref = (0.8, 0.2). k3 used as a loss (GRPO): the expected gradient of the "
                "penalty with respect to the first logit θ_0."
            ),
            answer=lambda: _first_logit_07_1("k3 loss"),
            hint="As a loss, k3's expected gradient is ∇KL(π_ref ‖ π) = π − π_ref.",
            slips=(
                ("That is π_ref − π: descending the penalty must move π towards π_ref.", lambda: 0.3),
                (
                    "That is ∇KL(π ‖ π_ref), k1 as a reward; k3 as a loss follows the forward KL.",
                    lambda: _first_logit_07_1("reverse"),
                ),
            ),
        ),
        Exercise(
            key="07.2",
            question=(
                "Top-p sampling keeps S = 0.9 of the mass at each of 10 tokens. By how many nats does the "
                "summed k1, scored with untruncated log-probs, under-count the KL of what was sampled?"
            ),
            answer=lambda: 10 * -math.log(0.9),
            hint="Per token, log π(x) = log(π(x)/S) + log S: the shift is −log S, summed over tokens.",
            slips=(
                ("Use the natural log: KL is in nats.", lambda: 10 * -math.log10(0.9)),
                ("Sum the shift over all 10 tokens.", lambda: -math.log(0.9)),
                ("The mass dropped is 0.1, but the shift is −log S, not 1 − S.", lambda: 10 * 0.1),
            ),
        ),
        Exercise(
            key="07.3",
            question=(
                "A trainer logs a per-token mean KL of 0.05 nats on responses of 40 tokens. What "
                "per-sequence KL (the sum, as RLOO and PPO penalise) is that?"
            ),
            answer=lambda: 0.05 * 40,
            hint="The sequence KL is the sum of the per-token KLs (chain rule).",
            slips=(("Multiply by the length: the sum of 40 per-token values.", lambda: 0.05 / 40),),
        ),
        Exercise(
            key="08.1",
            question=(
                "A pair whose chosen response has log π − log π_ref = 0.3 and whose rejected response has "
                "log π − log π_ref = −0.2, β = 0.1: its DPO loss, in nats."
            ),
            answer=lambda: -math.log(_sigmoid(0.1 * (0.3 - (-0.2)))),
            hint="−log σ(β·(h_w − h_l)) with σ(z) = 1/(1 + e^(−z)).",
            slips=(
                ("β is missing: the margin is multiplied by β.", lambda: -math.log(_sigmoid(0.5))),
                (
                    "Chosen and rejected are swapped: the margin is h_w − h_l = 0.3 − (−0.2).",
                    lambda: -math.log(_sigmoid(-0.05)),
                ),
                ("That is σ(β·margin) itself; the loss is −log of it.", lambda: _sigmoid(0.05)),
            ),
        ),
        Exercise(
            key="08.2",
            question=(
                "A DPO policy makes a response twice as likely as the reference does, β = 0.5: its implicit "
                "reward β·log(π/π_ref), in nats."
            ),
            answer=lambda: 0.5 * math.log(2.0),
            hint="β·log(π/π_ref) with the natural log.",
            slips=(
                ("The log is missing: the implicit reward is β·log(π/π_ref).", lambda: 0.5 * 2.0),
                ("That is in bits; use the natural log.", lambda: 0.5 * math.log2(2.0)),
                ("β multiplies the log-ratio; it does not divide it.", lambda: math.log(2.0) / 0.5),
            ),
        ),
        Exercise(
            key="08.3",
            question=(
                "PPO maximises the normalised score (r − μ)/σ with σ = 3 and a KL coefficient β = 0.1. "
                "At what β does DPO, whose reward r is on the reward model's raw scale, solve the same "
                "objective?"
            ),
            answer=lambda: 3 * 0.1,
            hint="E[(r − μ)/σ] − β·KL = (E[r] − σβ·KL)/σ + const: the raw reward's β is σβ.",
            slips=(("Multiply by σ, do not divide.", lambda: 0.1 / 3),),
        ),
        Exercise(
            key="09.1",
            question=(
                "A teacher over Llama-3's 128,256 tokens: how many bytes per token does storing its whole "
                "next-token distribution take, in bfloat16?"
            ),
            answer=lambda: 128_256 * 2,
            hint="One number per vocabulary entry; a bfloat16 takes 2 bytes.",
            slips=(
                ("That is float32 (4 bytes a number); bfloat16 takes 2.", lambda: 128_256 * 4),
                ("That is in bits; a byte is 8 bits.", lambda: 128_256 * 16),
            ),
        ),
        Exercise(
            key="09.2",
            question=(
                "At one position the teacher puts 0.9 of its probability on its top-k tokens. A student "
                "equal to the teacher: its top-k KD loss there, the forward KL from the teacher "
                "renormalised over its top k, in nats?"
            ),
            answer=lambda: -math.log(0.9),
            hint="On the top-k set p̃_t = π_t/0.9, so log(p̃_t/π_s) = −log 0.9 at every kept token.",
            slips=(
                ("A KL is never negative: the log-ratio is log(p̃_t/π_t) = −log 0.9.", lambda: math.log(0.9)),
                ("That is the full-vocabulary KL of a student equal to its teacher: 0.", lambda: 0.0),
                ("That is the mass outside the top k, not the KL.", lambda: 0.1),
            ),
        ),
        Exercise(
            key="09.3",
            question=(
                "On-policy distillation: the student samples a token with log π_s = −0.5, and the teacher "
                "gives it log π_t = −2.0. Its per-token reward −k1 (notebook 04's penalty with β = 1 and "
                "the teacher as the reference)?"
            ),
            answer=lambda: -(-0.5 - (-2.0)),
            hint="k1 = log π_s − log π_t; the reward is −β·k1 with β = 1.",
            slips=(
                (
                    "The sign: the student is penalised for tokens the teacher finds unlikely.",
                    lambda: -0.5 - (-2.0),
                ),
                ("That is the ratio of probabilities; use the log-ratio.", lambda: -math.exp(1.5)),
            ),
        ),
    ]
}


def _close(x: float, y: float, rel_tol: float) -> bool:
    if math.isinf(x) or math.isinf(y):
        return x == y
    return math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-9)


def _as_number(answer: object) -> float | str:
    """``answer`` as a float, or a sentence saying why it is not one number."""
    if isinstance(answer, bool):
        return f"{answer} is a truth value"
    if callable(answer):
        return f"you passed the function {getattr(answer, '__name__', answer)!r}; call it and pass its result"
    if isinstance(answer, str):
        return f"you passed the text {answer!r}; remove the quotes"
    shape = getattr(answer, "shape", None)
    if shape is not None and math.prod(shape) != 1:
        return f"you passed an array of shape {tuple(shape)}"
    if isinstance(answer, (list, tuple, dict, set)):
        return f"you passed a {type(answer).__name__} of {len(answer)} items"
    try:
        return float(answer.item() if shape is not None else answer)
    except (TypeError, ValueError, AttributeError):
        return f"you passed a {type(answer).__name__}"


def check(key: str, answer: object) -> Feedback:
    """Check ``answer`` to exercise ``key``: right means within the exercise's relative tolerance
    (0.1 % unless it says otherwise). A wrong answer that matches a known slip names the slip; any
    other wrong answer gets the hint. For a coding exercise (:data:`klcourse.coding_exercises.CODING`),
    ``answer`` is the learner's function and :func:`klcourse.coding.check_function` runs it.

    ``None`` means "not answered yet": the feedback repeats the question, without the hint. Any
    other input that is not one number (text, an array, a function, NaN) gets feedback saying so,
    never an exception.

    Taught in notebooks 01–09.
    """
    if key in CODING:
        return check_function(CODING[key], answer)
    if key not in EXERCISES:
        known = ", ".join(sorted([*EXERCISES, *CODING]))
        return Feedback(False, f"✗ there is no exercise {key!r}; the exercises are {known}.")
    ex = EXERCISES[key]
    if answer is None:
        return Feedback(False, f"… {key} not answered yet: {ex.question} (A hint comes with a wrong answer.)")
    value = _as_number(answer)
    if isinstance(value, str):
        return Feedback(False, f"✗ {key}: the answer should be one number, but {value}.")

    if math.isnan(value):
        return Feedback(
            False,
            f"✗ {key}: your answer is NaN. Look for 0·log 0 or ∞ − ∞ in your "
            "computation; KL defines 0·log(0/q) = 0.",
        )
    if _close(value, ex.answer(), ex.rel_tol):
        return Feedback(True, f"✓ {key}: correct ({value:.6g}).")
    slip = next((h for h, f in ex.slips if _close(value, f(), ex.rel_tol)), None)
    return Feedback(False, f"✗ {key}: not quite ({value:.6g}). " + (slip or f"Hint: {ex.hint}"))
