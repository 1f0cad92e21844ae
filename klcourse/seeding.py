"""One place that seeds every random number generator the course uses."""

from __future__ import annotations

import random

import numpy as np
import torch

from klcourse.settings import env_seed

DEFAULT_SEED = 0


def course_seed() -> int:
    """The course's base seed: ``$KLCOURSE_SEED`` if set, else :data:`DEFAULT_SEED`.

    Every default seed is this number plus a fixed offset, so ``KLCOURSE_SEED=3`` re-runs the
    whole course — world, notebooks, PPO runs and sweeps — on seeds nobody tuned to.

    Used in notebooks 01–09.
    """
    seed = env_seed()
    return DEFAULT_SEED if seed is None else seed


def set_seed(seed: int = DEFAULT_SEED) -> torch.Generator:
    """Seed Python's ``random``, numpy and torch (CPU and every CUDA device) with ``seed``.

    Returns a fresh ``torch.Generator`` seeded the same way, for code that wants its own stream
    so that its results do not depend on what ran before it.

    Used in notebooks 01–09.
    """
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global stream that libraries still use
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)
