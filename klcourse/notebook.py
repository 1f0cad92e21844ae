"""The first and last cells of every notebook: seed, device, preset, and the measured run time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
import transformers

from klcourse.config import Preset, describe, get_preset, pick_device
from klcourse.seeding import DEFAULT_SEED, set_seed


@dataclass
class Session:
    """What a notebook runs with: device, preset, a seeded generator and its start time."""

    device: torch.device
    preset: Preset
    generator: torch.Generator
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since :func:`start`; the last cell prints it as the notebook's run time."""
        return time.perf_counter() - self.started

    def report(self) -> str:
        """The closing line: how long the notebook took, on which device and preset."""
        return f"ran in {self.elapsed():.1f} s ({describe(self.preset, self.device)})"


def start(seed: int = DEFAULT_SEED, preset: str | None = None) -> Session:
    """Seed everything, pick device and preset, set plot defaults, print the choice.

    Also quiets ``transformers``' advisory warnings and weight-loading bars, which would otherwise
    fill the notebooks with text that says nothing about KL.
    """
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    generator = set_seed(seed)
    device = pick_device()
    chosen = get_preset(preset, device)
    plt.rcParams.update({"figure.figsize": (7, 3.5), "figure.dpi": 90, "axes.grid": True})
    print(describe(chosen, device))
    return Session(device=device, preset=chosen, generator=generator)
