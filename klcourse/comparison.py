"""Notebook 07's comparison: TRL's RLOO and GRPO beside :mod:`klcourse.ppo` at one β and one
episode budget, over seeds, each run stored (atomically, sealed, resumable) like a sweep run.

Every trainer gets the preset's update size (batch, minibatch, passes over each batch, learning
rate) and :func:`klcourse.ppo.adamw`, PPO's optimiser, at a constant learning rate, so that what
differs is the algorithm and where its KL term goes. What still differs, by design of each
algorithm: PPO learns a value model and whitens its advantages; RLOO's baseline is the mean reward
of the prompt's other completions; GRPO divides each prompt's advantages by their standard
deviation (``scale_rewards="group"``, TRL's default) while its KL term stays unscaled, and
averages its loss over tokens. One variant per seed measures the effect of each GRPO choice:
the KL correction off, the rescaling off, and β = 0.

Each final policy is measured by :func:`klcourse.trainers.evaluate` on fresh samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from klcourse.config import Preset
from klcourse.ppo import config_for, train
from klcourse.stats import over_seeds
from klcourse.sweep import load_result, provenance, remove_partial, world_key, write_result
from klcourse.trainers import evaluate, train_trl
from klcourse.world import World
from klcourse.world.artifacts import cache_root, config_key

Trainer = Literal["ppo", "rloo", "grpo"]
#: Responses sampled from each final policy to measure it.
EVALUATION_SAMPLES = 512
#: Seed of those samples (plus the run's seed): a stream apart from the ones training used.
EVALUATION_SEED = 70_000
#: TRL's logged metrics kept with each TRL run, one row per generation round.
TRL_LOGGED = ("kl", "reward", "completions/mean_length", "learning_rate")


@dataclass(frozen=True)
class TrainerSpec:
    """One run of the comparison: a trainer at ``beta`` for ``episodes`` sampled responses.

    ``kl_correction`` and ``scale_rewards`` are GRPO's ``use_bias_correction_kl`` and
    ``scale_rewards`` (ignored by the other trainers).

    Taught in notebook 07.
    """

    trainer: Trainer
    beta: float
    seed: int
    episodes: int
    kl_correction: bool = True
    scale_rewards: str = "group"

    @property
    def label(self) -> str:
        """What the notebook's table calls it, e.g. ``GRPO, k3 × ratio in loss``."""
        if self.trainer == "ppo":
            return "PPO, k1 in reward"
        if self.trainer == "rloo":
            return "RLOO, k1 in reward"
        if self.beta == 0:
            return "GRPO, β = 0"
        kind = "GRPO, k3 × ratio in loss" if self.kl_correction else "GRPO, k3 in loss"
        return kind if self.scale_rewards == "group" else f"{kind}, unscaled advantages"

    @property
    def name(self) -> str:
        """File-name-safe identifier, e.g. ``grpo-nocorr-beta-0.1_seed-0``."""
        kind = self.trainer
        if self.trainer == "grpo":
            kind += "" if self.kl_correction else "-nocorr"
            kind += "" if self.scale_rewards == "group" else f"-scale-{self.scale_rewards}"
        return f"{kind}-beta-{self.beta:g}_seed-{self.seed}"


def trainer_specs(beta: float, seeds: list[int], episodes: int) -> list[TrainerSpec]:
    """Per seed: PPO and RLOO at ``beta``; GRPO at ``beta`` with TRL 1.16's defaults (the KL
    correction on, group-scaled advantages), with the correction off, with the scaling off; and
    GRPO at β = 0 (TRL's default β). The pair that isolates the KL correction (GRPO's defaults and
    the correction off) also runs on as many seeds again, the next ones after the largest: its
    effect is smaller than the seed-to-seed spread, and three paired seeds did not always resolve it.

    Taught in notebook 07.
    """
    if beta <= 0:
        raise ValueError(f"the comparison's β must be > 0 (its β = 0 run is added), got {beta}")
    per_seed = [
        dict(trainer="ppo", beta=beta),
        dict(trainer="rloo", beta=beta),
        dict(trainer="grpo", beta=beta),
        dict(trainer="grpo", beta=beta, kl_correction=False),
        dict(trainer="grpo", beta=beta, scale_rewards="none"),
        dict(trainer="grpo", beta=0.0),
    ]
    extra = [max(seeds) + 1 + i for i in range(len(seeds))] if seeds else []
    correction_pair = [dict(trainer="grpo", beta=beta), dict(trainer="grpo", beta=beta, kl_correction=False)]
    return [TrainerSpec(seed=s, episodes=episodes, **kw) for s in seeds for kw in per_seed] + [
        TrainerSpec(seed=s, episodes=episodes, **kw) for s in extra for kw in correction_pair
    ]


def default_out_dir(preset: Preset) -> Path:
    """``<cache>/comparisons/<preset>-<key>``: one folder per preset and world configuration.

    Taught in notebook 07.
    """
    return cache_root() / "comparisons" / f"{preset.name}-{config_key(asdict(preset))}"


def run_one(world: World, spec: TrainerSpec, path: Path) -> dict:
    """Train one run, measure its final policy and store both atomically; return the payload.

    Taught in notebook 07.
    """
    p = world.preset
    t0 = time.perf_counter()
    if spec.trainer == "ppo":
        config = config_for(p, beta=spec.beta, steps=spec.episodes // p.ppo_batch_size, seed=spec.seed)
        result = train(world, config, progress=False, data_parallel=False)
        policy, seconds, logged = result.policy, result.seconds, []
    else:
        run = train_trl(
            world,
            spec.trainer,
            beta=spec.beta,
            episodes=spec.episodes,
            batch=p.ppo_batch_size,
            mini_batch=p.ppo_mini_batch_size,
            epochs=p.ppo_epochs,
            lr=p.ppo_lr,
            seed=spec.seed,
            kl_correction=spec.kl_correction,
            scale_rewards=spec.scale_rewards,
        )
        policy, seconds = run.policy, run.seconds
        logged = [{k: row[k] for k in TRL_LOGGED if k in row} for row in run.log if "reward" in row]
    payload = {
        "spec": asdict(spec),
        "preset": asdict(p),
        "world": world_key(world),
        "evaluation": evaluate(world, policy, n=EVALUATION_SAMPLES, seed=EVALUATION_SEED + spec.seed),
        "trl_log": logged,
        "train_seconds": seconds,
        "seconds": time.perf_counter() - t0,
        "provenance": provenance(world),
    }
    write_result(path, payload)
    return payload


def run_comparison(
    world: World,
    specs: list,
    out_dir: Path,
    reuse: tuple[Path, ...] = (),
    progress: bool = True,
    run: Callable[[World, Any, Path], dict] = run_one,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, dict]:
    """Every spec's stored run, looked up in the read-only folders ``reuse`` and then in ``out_dir``
    (it must match the spec, the preset and the world); the runs found nowhere are trained by
    ``run(world, spec, path)`` (:func:`run_one` for a :class:`TrainerSpec`; notebook 08 passes
    :func:`klcourse.dpo.run_one`) and written to ``out_dir``. Returns the runs by name, in the
    order of ``specs``. With ``shard = (i, n)`` this process takes specs ``i, i + n, …`` alone
    (``klcourse compare --jobs n``).

    Taught in notebooks 07 and 08.
    """
    specs = specs[shard[0] :: shard[1]]
    remove_partial(out_dir, specs)
    results: dict[str, dict] = {}
    for spec in tqdm(specs, desc="runs", disable=not progress):
        path = out_dir / f"{spec.name}.json"
        stored = next(
            (
                r
                for folder in (*reuse, out_dir)
                if (r := load_result(folder / path.name, spec, world.preset, world)) is not None
            ),
            None,
        )
        results[spec.name] = stored if stored is not None else run(world, spec, path)
    return results


def summarise(results: dict[str, dict]) -> pd.DataFrame:
    """One row per trainer (its :attr:`TrainerSpec.label`, in the order first seen): ``seeds`` and,
    over seeds, the mean and the standard error ``<column>_se = std/√seeds`` of each
    :func:`klcourse.trainers.evaluate` column, of the training time, and of each run's
    ``forward_over_reverse = KL(π_ref‖π) / KL(π‖π_ref)`` (how much forward KL a run carries for the
    reverse KL it spent: what a forward-KL gradient holds down).

    Taught in notebook 07.
    """
    rows = [
        {
            "label": TrainerSpec(**r["spec"]).label,
            **r["evaluation"],
            "forward_over_reverse": r["evaluation"]["kl_forward"] / r["evaluation"]["kl_sequence"],
            "train_s": r["train_seconds"],
        }
        for r in results.values()
    ]
    if not rows:
        raise ValueError("no runs to summarise")
    frame = pd.DataFrame(rows)
    return over_seeds(frame, "label", frame.columns.drop("label"))


def table_text(table: pd.DataFrame, columns: dict[str, str]) -> str:
    """``table``'s ``columns`` (name → heading) as text, each value ``mean ± SE``.

    Taught in notebook 07.
    """
    show = pd.DataFrame({"seeds": table.seeds}, index=table.index)
    for col, heading in columns.items():
        show[heading] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(table[col], table[f"{col}_se"], strict=True)]
    show.index.name = None
    return show.to_string()


def separated(table: pd.DataFrame, a: str, b: str, column: str, z: float = 2.0) -> bool:
    """Whether rows ``a`` and ``b`` differ in ``column`` by more than ``z`` standard errors of the
    difference, ``|m_a − m_b| > z·√(SE_a² + SE_b²)``.

    Taught in notebook 07.
    """
    diff = table.loc[a, column] - table.loc[b, column]
    return bool(abs(diff) > z * float(np.hypot(table.loc[a, f"{column}_se"], table.loc[b, f"{column}_se"])))


def paired_difference(results: dict[str, dict], a: str, b: str, column: str) -> tuple[float, float, int]:
    """Trainer ``a`` minus trainer ``b`` (their :attr:`TrainerSpec.label`) in ``column``, paired by
    seed: the two runs of a seed start from the same prompts and sampling seed, so their difference
    ``d_s`` cancels what the seed shares. Returns ``(mean d, SE = std(d)/√n, n)`` over the seeds both
    ran; ``column`` is an evaluation column or ``forward_over_reverse``.

    Taught in notebook 07.
    """

    def value(r: dict) -> float:
        e = r["evaluation"]
        return e["kl_forward"] / e["kl_sequence"] if column == "forward_over_reverse" else e[column]

    by_seed: dict[str, dict[int, float]] = {a: {}, b: {}}
    for r in results.values():
        label = TrainerSpec(**r["spec"]).label
        if label in by_seed:
            by_seed[label][r["spec"]["seed"]] = value(r)
    seeds = sorted(set(by_seed[a]) & set(by_seed[b]))
    if len(seeds) < 2:
        raise ValueError(f"a paired difference needs 2 seeds that both {a!r} and {b!r} ran, got {len(seeds)}")
    d = np.array([by_seed[a][s] - by_seed[b][s] for s in seeds])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d)
