"""Gao, Schulman & Hilton (2022), "Scaling Laws for Reward Model Overoptimization": how the gold
reward moves as a policy optimised against a proxy drifts from the reference.

With the distance ``d = √KL(π ‖ π_ref)`` and the gold reward measured as a gain over the
reference's, ``R(d) = gold(π) − gold(π_ref)``, they found

* best-of-n:  ``R(d) = d·(α − β·d)``
* RL:         ``R(d) = d·(α − β·log d)``

α is the initial slope (how well the proxy points towards the truth) and β how fast
over-optimisation eats it; both forms rise, peak and fall (Goodhart's law). Each is linear in
``(α, β)``, so least squares fits it exactly, and ``R²`` says how well the form describes the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Form = Literal["best-of-n", "rl"]


def _basis(d: np.ndarray, form: Form) -> np.ndarray:
    """Columns multiplying ``(α, −β)``: ``(d, d²)`` for best-of-n, ``(d, d·log d)`` for RL (0 at d = 0)."""
    if form == "best-of-n":
        second = d * d
    elif form == "rl":
        second = d * np.log(np.where(d > 0, d, 1.0))
    else:
        raise ValueError(f"form must be 'best-of-n' or 'rl', got {form!r}")
    return np.stack([d, second], axis=1)


@dataclass(frozen=True)
class GaoFit:
    """A fitted form: ``R(d) = d·(α − β·d)`` or ``d·(α − β·log d)``, with its coefficient of
    determination ``r2 = 1 − Σ(R − R̂)²/Σ(R − mean R)²``.

    Taught in notebooks 04 and 06.
    """

    form: Form
    alpha: float
    beta: float
    r2: float

    def __call__(self, kl: np.ndarray) -> np.ndarray:
        """The predicted gain ``R`` at each KL (nats)."""
        d = np.sqrt(np.asarray(kl, float))
        return _basis(d, self.form) @ np.array([self.alpha, -self.beta])

    @property
    def peak_kl(self) -> float:
        """The KL of the fitted curve's maximum: ``d* = α/(2β)`` (best-of-n), ``d* = e^{α/β − 1}`` (RL)."""
        if self.beta <= 0:
            return float("inf")
        d = self.alpha / (2 * self.beta) if self.form == "best-of-n" else np.exp(self.alpha / self.beta - 1)
        return float(d * d)


def fit_gao(kl: np.ndarray, gain: np.ndarray, form: Form) -> GaoFit:
    """Least-squares fit of ``form`` to gold-reward gains ``gain`` at KLs ``kl`` (nats).

    Taught in notebooks 04 and 06.
    """
    kl, gain = np.asarray(kl, float), np.asarray(gain, float)
    if kl.ndim != 1 or kl.shape != gain.shape or kl.size < 3:
        raise ValueError("kl and gain must be 1-D arrays of the same length, at least 3 points")
    if not (np.isfinite(kl).all() and np.isfinite(gain).all()) or (kl < 0).any():
        raise ValueError("kl must be finite and ≥ 0, and gain finite")
    x = _basis(np.sqrt(kl), form)
    (alpha, minus_beta), *_ = np.linalg.lstsq(x, gain, rcond=None)
    residual = gain - x @ np.array([alpha, minus_beta])
    total = ((gain - gain.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else float("nan")
    return GaoFit(form=form, alpha=float(alpha), beta=float(-minus_beta), r2=float(r2))
