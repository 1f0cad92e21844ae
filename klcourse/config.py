"""Device and preset: chosen in one place, printed by every notebook.

The device is the first of ``cuda → mps → cpu`` that is available. The preset follows the
device (``gpu`` on CUDA, ``laptop`` otherwise) unless the ``KLCOURSE_PRESET`` environment variable
names one of :data:`PRESETS`. Presets change sizes (samples, steps, model widths), never code paths.
``KLCOURSE_SEED`` shifts the world's and the sweep's seeds (:func:`with_seed`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from klcourse.seeding import course_seed
from klcourse.settings import SettingError, env_preset


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the ground-truth world's models and of their training runs.

    Both the SFT model (the frozen reference) and the proxy reward model are GPT-2-architecture
    transformers of the same shape. Changing any field changes the artifact cache key, so the
    models are rebuilt.

    Used in notebooks 01–09.
    """

    n_embd: int
    n_layer: int
    n_head: int
    #: SFT: number of grammar samples, epochs over them, batch size and peak learning rate.
    sft_samples: int
    sft_epochs: int
    sft_batch: int
    sft_lr: float
    #: Reward model: preference pairs, epochs, batch size and peak learning rate.
    rm_pairs: int
    rm_epochs: int
    rm_batch: int
    rm_lr: float
    #: Positive-only fine-tuning of the SFT model: the drifted policy of notebook 03.
    drift_samples: int
    seed: int = 0
    #: Longest sequence (prompt + response + special tokens) the models see.
    n_positions: int = 32


@dataclass(frozen=True)
class Preset:
    """Sizes for one scale of the course. Every notebook and CLI reads its sizes from here.

    Used in notebooks 01–09.
    """

    name: str
    #: Samples per Monte Carlo experiment in notebook 02 (Schulman's table used 10M).
    mc_samples: int
    #: Largest sample size in the convergence plots of notebook 02.
    mc_curve_samples: int
    #: The ground-truth world: model shapes and training sizes.
    world: WorldConfig
    #: Rollouts sampled per measurement in notebook 03.
    rollouts: int
    #: PPO: steps, rollouts per step, minibatch size, epochs per step, learning rate. The gpu
    #: preset's sweep (24 runs) is sized to finish within 15 min on one H100 by an estimate of
    #: about 0.5 s per step; its measured time goes with its committed results.
    ppo_steps: int
    ppo_batch_size: int
    ppo_mini_batch_size: int
    ppo_epochs: int
    ppo_lr: float
    #: β ablation: the grid of β and the seeds of notebook 06 and ``klcourse sweep``.
    sweep_betas: tuple[float, ...]
    sweep_seeds: tuple[int, ...]
    #: The sweep's adaptive-KL run: (initial β, target KL in nats, horizon in episodes).
    sweep_adaptive: tuple[float, float, int]

    def ppo_sizes(self) -> dict[str, float | int]:
        """This preset's PPO sizes under :class:`klcourse.ppo.PPOConfig`'s names (steps, batch_size,
        mini_batch_size, ppo_epochs, lr); :func:`klcourse.ppo.config_for` adds the rest."""
        return dict(
            steps=self.ppo_steps,
            batch_size=self.ppo_batch_size,
            mini_batch_size=self.ppo_mini_batch_size,
            ppo_epochs=self.ppo_epochs,
            lr=self.ppo_lr,
        )


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        mc_samples=200_000,
        mc_curve_samples=20_000,
        world=WorldConfig(
            n_embd=32,
            n_layer=1,
            n_head=2,
            sft_samples=8_000,
            sft_epochs=1,
            sft_batch=64,
            sft_lr=5e-3,
            rm_pairs=4_000,
            rm_epochs=2,
            rm_batch=64,
            rm_lr=3e-3,
            drift_samples=500,
        ),
        rollouts=128,
        ppo_steps=8,
        ppo_batch_size=32,
        ppo_mini_batch_size=16,
        ppo_epochs=2,
        ppo_lr=1e-3,
        sweep_betas=(0.0, 0.1, 10.0),
        sweep_seeds=(0,),
        sweep_adaptive=(0.5, 1.0, 100),
    ),
    "laptop": Preset(
        name="laptop",
        mc_samples=10_000_000,
        mc_curve_samples=200_000,
        world=WorldConfig(
            n_embd=64,
            n_layer=2,
            n_head=4,
            sft_samples=24_000,
            sft_epochs=1,
            sft_batch=64,
            sft_lr=3e-3,
            rm_pairs=12_000,
            rm_epochs=2,
            rm_batch=64,
            rm_lr=1e-3,
            drift_samples=2_000,
        ),
        rollouts=512,
        ppo_steps=100,
        ppo_batch_size=64,
        ppo_mini_batch_size=16,
        ppo_epochs=2,
        ppo_lr=1e-4,
        sweep_betas=(0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
        sweep_seeds=(0, 1, 2),
        sweep_adaptive=(1.0, 2.0, 250),
    ),
    "gpu": Preset(
        name="gpu",
        mc_samples=10_000_000,
        mc_curve_samples=1_000_000,
        world=WorldConfig(
            n_embd=256,
            n_layer=4,
            n_head=8,
            sft_samples=200_000,
            sft_epochs=1,
            sft_batch=256,
            sft_lr=1e-3,
            rm_pairs=100_000,
            rm_epochs=2,
            rm_batch=256,
            rm_lr=5e-4,
            drift_samples=8_000,
        ),
        rollouts=4096,
        ppo_steps=60,
        ppo_batch_size=256,
        ppo_mini_batch_size=64,
        ppo_epochs=2,
        ppo_lr=1e-4,
        sweep_betas=(0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
        sweep_seeds=(0, 1, 2),
        sweep_adaptive=(1.0, 2.0, 1000),
    ),
}


def pick_device() -> torch.device:
    """The first available of CUDA, Apple's MPS and the CPU.

    Used in notebooks 01–09.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_preset(name: str | None = None, device: torch.device | None = None) -> Preset:
    """The preset named by ``name``, else by ``$KLCOURSE_PRESET``, else the device's default.

    With ``$KLCOURSE_SEED = s`` the world's seed and the sweep's seeds are shifted by ``s``
    (see :func:`with_seed`).

    Used in notebooks 01–09.
    """
    name = name or env_preset(PRESETS)
    if name is None:
        device = device or pick_device()
        name = "gpu" if device.type == "cuda" else "laptop"
    if name not in PRESETS:
        raise SettingError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return with_seed(PRESETS[name], course_seed())


def with_seed(preset: Preset, seed: int) -> Preset:
    """``preset`` with its world seed and its sweep seeds shifted by ``seed``: the presets are
    written for seed 0, and ``$KLCOURSE_SEED`` picks another.

    Used in notebooks 01–09.
    """
    if seed == 0:
        return preset
    return replace(
        preset,
        world=replace(preset.world, seed=preset.world.seed + seed),
        sweep_seeds=tuple(s + seed for s in preset.sweep_seeds),
    )


def describe(preset: Preset, device: torch.device) -> str:
    """One line that a notebook prints so the reader knows what it ran with.

    Used in notebooks 01–09.
    """
    return f"klcourse: device={device.type}, preset={preset.name}"
