"""The first and last cells of every notebook: seed, device, preset, and the measured run time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
import transformers

from klcourse.config import Preset, describe, get_preset, pick_device
from klcourse.seeding import course_seed, set_seed


@dataclass
class Session:
    """What a notebook runs with: device, preset, its base seed, a seeded generator and its start
    time. Every seed a notebook uses is ``seed`` plus a fixed offset."""

    device: torch.device
    preset: Preset
    seed: int
    generator: torch.Generator
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since :func:`start`; the last cell prints it as the notebook's run time."""
        return time.perf_counter() - self.started

    def report(self) -> str:
        """The closing line: how long the notebook took since :func:`start` (so without the kernel's
        start and the imports before it), on which device and preset."""
        return f"ran in {self.elapsed():.1f} s since notebook.start() ({describe(self.preset, self.device)})"


def start(seed: int | None = None, preset: str | None = None) -> Session:
    """Seed everything, pick device and preset, set plot defaults, print the choice.

    ``seed`` defaults to ``$KLCOURSE_SEED`` (0 if unset), which also shifts the world's seed.

    Also quiets ``transformers``' advisory warnings and weight-loading bars, which would otherwise
    fill the notebooks with text that says nothing about KL.
    """
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    seed = course_seed() if seed is None else seed
    generator = set_seed(seed)
    device = pick_device()
    chosen = get_preset(preset, device)
    plt.rcParams.update({"figure.figsize": (7, 3.5), "figure.dpi": 90, "axes.grid": True})
    print(describe(chosen, device))
    return Session(device=device, preset=chosen, seed=seed, generator=generator)
