"""Device and preset: chosen in one place, printed by every notebook.

The device is the first of ``cuda → mps → cpu`` that is available. The preset follows the
device (``gpu`` on CUDA, ``laptop`` otherwise) unless the ``KLCOURSE_PRESET`` environment variable
names one of :data:`PRESETS`. Presets change sizes (samples, steps, model widths), never code paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

PRESET_ENV = "KLCOURSE_PRESET"


@dataclass(frozen=True)
class Preset:
    """Sizes for one scale of the course. Every notebook and CLI reads its sizes from here."""

    name: str
    #: Samples per Monte Carlo experiment in notebook 02 (Schulman's table used 10M).
    mc_samples: int
    #: Largest sample size in the convergence plots of notebook 02.
    mc_curve_samples: int


PRESETS: dict[str, Preset] = {
    "smoke": Preset(name="smoke", mc_samples=200_000, mc_curve_samples=20_000),
    "laptop": Preset(name="laptop", mc_samples=10_000_000, mc_curve_samples=200_000),
    "gpu": Preset(name="gpu", mc_samples=10_000_000, mc_curve_samples=1_000_000),
}


def pick_device() -> torch.device:
    """The first available of CUDA, Apple's MPS and the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_preset(name: str | None = None, device: torch.device | None = None) -> Preset:
    """The preset named by ``name``, else by ``$KLCOURSE_PRESET``, else the device's default."""
    name = name or os.environ.get(PRESET_ENV) or None
    if name is None:
        device = device or pick_device()
        name = "gpu" if device.type == "cuda" else "laptop"
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def describe(preset: Preset, device: torch.device) -> str:
    """One line that a notebook prints so the reader knows what it ran with."""
    return f"klcourse: device={device.type}, preset={preset.name}"
