"""β ablations: a grid of β × seeds plus an adaptive-KL run, resumable and crash-safe.

Each run writes one JSON file, ``<out>/<run name>.json``, holding its spec, config, per-step
metrics, a summary and its provenance (library versions, device, wall time), sealed with the
SHA-256 of its content.

* **Atomic**: the file is written to a temporary name in the same folder, flushed to disk and
  renamed over the final name, so a reader sees either nothing or a complete file. Killing the
  process at any moment loses at most the run in progress.
* **Resumable**: a re-run skips every run whose file is complete, valid and made from the same
  spec, preset and world; a missing, truncated or tampered file is redone. Read-only folders of
  committed results (``reuse``) are consulted first and never written to.
* **Distributed**: under ``accelerate launch`` with several processes (or GPUs), process ``i``
  takes runs ``i, i + n, i + 2n, …``; each run trains on its own device, independently. The
  same split (``shard``) lets several processes share one GPU, which a single run of these small
  models leaves mostly idle (``klcourse sweep --jobs N``).

A single run outside a sweep (notebook 05's) is kept with :func:`save_run`: its metrics, config and
policy checkpoint in a folder. Runs are written here, where runs live, so that :mod:`klcourse.ppo`
stays the algorithm and the model cache (:mod:`klcourse.world.artifacts`) knows nothing of PPO.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from klcourse.config import Preset
from klcourse.diversity import Diversity, measure
from klcourse.ppo import PPOConfig, PPOResult, config_for, train
from klcourse.stats import over_seeds
from klcourse.world import BUILD_VERSION, load_world
from klcourse.world.artifacts import cache_root, config_key, write_atomic
from klcourse.world.protocol import RLWorld

#: How many final steps the summary averages over.
SUMMARY_STEPS = 5
#: Responses sampled per prompt from each run's final policy to measure its diversity.
DIVERSITY_SAMPLES = 64
#: Seed of those samples (plus the run's seed): a stream apart from the ones training used.
DIVERSITY_SEED = 50_000


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a fixed β, or the adaptive controller starting at β towards a target.

    Taught in notebook 06.
    """

    beta: float
    seed: int
    adaptive_target: float | None = None
    adaptive_horizon: int = 10_000

    @property
    def name(self) -> str:
        """File-name-safe identifier, e.g. ``beta-0.1_seed-0`` or ``adaptive-4_seed-0``."""
        kind = f"beta-{self.beta:g}" if self.adaptive_target is None else f"adaptive-{self.adaptive_target:g}"
        return f"{kind}_seed-{self.seed}"

    def ppo_overrides(self) -> dict:
        """The :class:`klcourse.ppo.PPOConfig` fields this run sets beyond the preset's sizes."""
        overrides: dict = dict(beta=self.beta, seed=self.seed)
        if self.adaptive_target is not None:
            overrides |= dict(
                adaptive_kl=True, kl_target=self.adaptive_target, kl_horizon=self.adaptive_horizon
            )
        return overrides


@dataclass(frozen=True)
class LoRARunSpec(RunSpec):
    """A sweep run whose policy trains LoRA adapters of rank ``lora_rank`` on a frozen base, which is
    then also its reference (:attr:`klcourse.ppo.PPOConfig.lora_rank`).

    Taught in notebook 09.
    """

    lora_rank: int = 8

    @property
    def name(self) -> str:
        """File-name-safe identifier, e.g. ``beta-0.1_seed-0_lora-8``."""
        return f"{super().name}_lora-{self.lora_rank}"

    def ppo_overrides(self) -> dict:
        """The sweep run's overrides and ``lora_rank``."""
        return super().ppo_overrides() | dict(lora_rank=self.lora_rank)


def grid(
    betas: list[float], seeds: list[int], adaptive: tuple[float, float, int] | None = None
) -> list[RunSpec]:
    """``betas × seeds``, plus one adaptive run per seed if ``adaptive = (β₀, target, horizon)``.

    Taught in notebook 06.
    """
    if any(b < 0 for b in betas):
        raise ValueError("every β must be ≥ 0")
    specs = [RunSpec(beta=b, seed=s) for s in seeds for b in betas]
    if adaptive is not None:
        beta0, target, horizon = adaptive
        specs += [
            RunSpec(beta=beta0, seed=s, adaptive_target=target, adaptive_horizon=horizon) for s in seeds
        ]
    return specs


def default_out_dir(preset: Preset, world: RLWorld | None = None) -> Path:
    """``<cache>/sweeps/<preset>-<key>``: one folder per preset and world configuration; a hub
    world's runs go to ``<cache>/sweeps/hub-<preset>-<key>``, keyed by its models and prompts too.

    Taught in notebook 06.
    """
    if world is None:
        return cache_root() / "sweeps" / f"{preset.name}-{config_key(asdict(preset))}"
    return cache_root() / "sweeps" / f"hub-{preset.name}-{config_key({**asdict(preset), **world.key})}"


def _as_json(obj: dict) -> dict:
    """``obj`` as it reads back from JSON (tuples become lists), for comparisons with stored runs."""
    return json.loads(json.dumps(obj))


def _seal(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_result(path: Path, payload: dict) -> None:
    """Store a run's ``payload`` at ``path`` atomically, sealed with the SHA-256 of its content
    (:func:`load_result` checks the seal).

    Taught in notebook 06.
    """
    write_atomic(path, json.dumps({"payload": payload, "sha256": _seal(payload)}, indent=1))


def provenance(world: RLWorld) -> dict:
    """Where a run ran: device, card (or CPU), the CPU kernels torch dispatched to
    (``torch.backends.cpu.get_cpu_capability()``: ``AVX512``, ``AVX2``, …), library and Python
    versions, and the version of the world's build code (:data:`klcourse.world.BUILD_VERSION`) that
    made the models it trained against.

    Taught in notebook 06.
    """
    import accelerate
    import transformers
    import trl

    device = world.device
    if device.type == "cuda":
        card = torch.cuda.get_device_name(device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        models = [
            line.split(":", 1)[1].strip()
            for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
            if line.startswith("model name")
        ]
        card = f"{models[0] if models else platform.processor() or 'CPU'}, {os.cpu_count()} cores"
    return {
        "device": str(device),
        "card": card,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "world_build_version": BUILD_VERSION,
    }


def world_key(world: RLWorld) -> dict[str, str]:
    """What the world was made from (:attr:`klcourse.world.protocol.RLWorld.key`): the synthetic
    world's artifact folders by name, each folder's name carrying the hash of what built it; a hub
    world's model names and prompt source.

    Taught in notebook 06.
    """
    return world.key


#: What decides a run's floating-point arithmetic: where a stored provenance and this process agree
#: on all of them, a run trained again reproduces the stored one to rounding, step by step.
ARITHMETIC = ("device", "card", "cpu_capability", "torch")


def same_settings(stored: dict, config: PPOConfig) -> bool:
    """Whether a stored run's config (its JSON) is ``config``: every knob it stored has ``config``'s
    value, and every knob :class:`klcourse.ppo.PPOConfig` gained since it was stored (``lora_rank``)
    has its default in ``config``, the value the run had without it.

    Taught in notebook 05.
    """
    now = json.loads(json.dumps(asdict(config)))
    defaults = {f.name: f.default for f in fields(PPOConfig)}
    return all(stored.get(k, defaults[k]) == v for k, v in now.items()) and set(stored) <= set(now)


def same_arithmetic(recorded: dict, world: RLWorld) -> bool:
    """Whether this process computes as the one whose :func:`provenance` is ``recorded`` did: the
    same :data:`ARITHMETIC` (device, card, CPU kernels, torch build). The committed laptop runs
    reproduce to 10⁻⁵ on the AVX-512 machines that made them and parted from them on one with AVX2
    kernels only: a sampled run compounds its rounding. A provenance that does not record one of
    them counts as different.

    Taught in notebook 05.
    """
    here = provenance(world)
    return all(k in recorded and recorded[k] == here[k] for k in ARITHMETIC)


def describe_arithmetic(recorded: dict) -> str:
    """``"<card>, <cpu_capability> kernels, torch <version>"``: a provenance's :data:`ARITHMETIC` in words.

    Taught in notebook 05.
    """
    kernels = recorded.get("cpu_capability", "unrecorded")
    return f"{recorded.get('card', '?')}, {kernels} kernels, torch {recorded.get('torch', '?')}"


def load_result(
    path: Path, spec=None, preset: Preset | None = None, world: RLWorld | None = None
) -> dict | None:
    """The run stored at ``path``, or ``None`` if it is missing, corrupt, or from another
    spec (a :class:`RunSpec`, or any dataclass that names a run), preset or world.

    Taught in notebook 06.
    """
    try:
        record = json.loads(path.read_text())
        payload, seal = record["payload"], record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _seal(payload) != seal:
        return None
    if spec is not None and payload.get("spec") != _as_json(asdict(spec)):
        return None
    if preset is not None and payload.get("preset") != _as_json(asdict(preset)):
        return None
    if world is not None and payload.get("world") != world_key(world):
        return None
    return payload


def run_one(world: RLWorld, spec: RunSpec, path: Path, progress: bool = True) -> dict:
    """Train one run and store it atomically; return its payload. Its summary holds the metrics the
    world gives (a hub world may have no gold reward and no well-formed rate).

    Taught in notebook 06.
    """
    overrides = spec.ppo_overrides() | dict(
        max_new_tokens=world.max_new_tokens, missing_eos_penalty=world.missing_eos_penalty
    )
    config = config_for(world.preset, **overrides)
    t0 = time.perf_counter()
    result = train(world, config, progress=progress, data_parallel=False)
    metrics = result.metrics
    tail = metrics.iloc[-SUMMARY_STEPS:].mean(numeric_only=True)
    summary = {
        k: float(tail[k])
        for k in ("proxy_score", "gold_reward", "well_formed", "kl_k1", "kl_k3", "beta")
        if k in tail
    }
    payload = {
        "spec": asdict(spec),
        "preset": asdict(world.preset),
        "world": world_key(world),
        "config": asdict(config),
        "summary": summary,
        "final_samples": metrics["samples"].iloc[-1].split(" | "),
        "diversity": final_diversity(world, result.policy, config.max_new_tokens, spec.seed).as_dict(),
        "metrics": json.loads(metrics.to_json(orient="records")),
        "seconds": time.perf_counter() - t0,
        "provenance": provenance(world),
    }
    write_result(path, payload)
    return payload


def save_run(result: PPOResult, folder: str | Path, tokenizer=None) -> None:
    """Write a PPO run to ``folder``: ``metrics.csv``, ``metrics.json``, ``config.json`` (with its wall
    time) and the policy checkpoint in ``policy/`` (with ``tokenizer``, if given).

    Taught in notebook 05.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result.metrics.to_csv(folder / "metrics.csv", index=False)
    result.metrics.to_json(folder / "metrics.json", orient="records", indent=1)
    config = {**asdict(result.config), "seconds": result.seconds}
    write_atomic(folder / "config.json", json.dumps(config, indent=1))
    result.policy.save_pretrained(folder / "policy")
    if tokenizer is not None:
        tokenizer.save_pretrained(folder / "policy")


def final_diversity(world: RLWorld, policy, max_new_tokens: int, seed: int) -> Diversity:
    """:func:`klcourse.diversity.measure` of ``policy`` on the world's diversity prompts (every prompt
    of the synthetic world's grammar), :data:`DIVERSITY_SAMPLES` responses each, seeded with
    ``DIVERSITY_SEED + seed``.

    Taught in notebook 06.
    """
    return measure(
        policy,
        world.tokenizer,
        world.diversity_prompts(),
        samples_per_prompt=DIVERSITY_SAMPLES,
        max_new_tokens=max_new_tokens,
        seed=DIVERSITY_SEED + seed,
        eos_token_id=world.eos_token_ids,
    )


def run_sweep(
    world: RLWorld,
    specs: list[RunSpec],
    out_dir: Path,
    progress: bool = True,
    log=print,
    reuse: tuple[Path, ...] = (),
    shard: tuple[int, int] | None = None,
) -> dict[str, dict]:
    """Run every spec whose result is not already stored; return all results by name.

    A spec's result is looked up in the read-only folders ``reuse`` (e.g. committed results), then
    in ``out_dir``, and must match the spec, the preset and the world, and hold every part a run
    stores today (its ``diversity``); the runs found nowhere are trained and written to ``out_dir``.
    Under ``accelerate launch``, or with ``shard = (i, n)``, this process runs specs ``i, i + n, …``
    alone; the returned dict then holds the runs it ran or found.

    Taught in notebook 06.
    """
    from accelerate import PartialState

    state = PartialState()
    index, count = shard or (state.process_index, state.num_processes)
    mine = specs[index::count]
    remove_partial(out_dir, mine)
    results: dict[str, dict] = {}
    alone = len(mine) == 1  # a single run shows its own PPO bar instead
    bar = tqdm(mine, desc="sweep", disable=not progress or index != 0 or alone)
    for spec in bar:
        path = out_dir / f"{spec.name}.json"
        stored = next(
            (
                r
                for folder in (*reuse, out_dir)
                if (r := load_result(folder / path.name, spec, world.preset, world)) is not None
                and "diversity" in r  # a run stored before diversity was measured is redone
            ),
            None,
        )
        if stored is not None:
            results[spec.name] = stored
            continue
        if path.exists():
            log(f"{spec.name}: stored result is corrupt or stale; redoing it")
        bar.set_postfix(run=spec.name)
        results[spec.name] = run_one(world, spec, path, progress=progress and alone)
    return results


def remove_partial(out_dir: Path, specs: list[RunSpec]) -> None:
    """Delete the temporary files that runs of ``specs`` killed while writing left in ``out_dir``.

    Taught in notebook 06.
    """
    for spec in specs:
        for stale in out_dir.glob(f".{spec.name}.json.*"):
            stale.unlink(missing_ok=True)


def run_share(
    preset: Preset,
    specs: list,
    out_dir: Path,
    shard: tuple[int, int],
    runner: Callable[..., dict[str, dict]] | None = None,
    loader: Callable[[], RLWorld] | None = None,
) -> None:
    """One of ``n`` processes sharing a device (``shard = (i, n)``): load the world, which must be
    built already (the preset's synthetic world, or ``loader()``'s, e.g. a hub world), and run specs
    ``i, i + n, …`` into ``out_dir``, with ``1/n`` of the CPU threads. ``runner`` is
    :func:`run_sweep` (the default) or :func:`klcourse.comparison.run_comparison`.

    Taught in notebook 06.
    """
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // shard[1]))
    world = loader() if loader is not None else load_world(preset, progress=False, log=lambda m: None)
    (runner or run_sweep)(world, specs, out_dir, progress=False, shard=shard)


def collect(out_dir: Path) -> dict[str, dict]:
    """Every valid result in ``out_dir`` (any spec), by run name.

    Taught in notebook 06.
    """
    found = {}
    for path in sorted(out_dir.glob("*.json")):
        payload = load_result(path)
        if payload is not None:
            found[path.stem] = payload
    return found


def summarise(results: dict[str, dict]) -> pd.DataFrame:
    """One row per fixed β: the number of seeds and, over seeds, the mean and standard error
    ``SE = std/√n`` of each run's summary (last steps' mean) of KL, proxy, gold and well-formed rate.

    Taught in notebook 06.
    """
    return _per_beta(results, "summary", ("kl_k1", "proxy_score", "gold_reward", "well_formed"))


def summarise_diversity(results: dict[str, dict]) -> pd.DataFrame:
    """:func:`summarise` for the diversity of each run's final policy (:func:`final_diversity`):
    distinct-1, distinct-2, modal share and per-prompt entropy per fixed β, mean and SE over seeds.

    Taught in notebook 06.
    """
    return _per_beta(results, "diversity", ("distinct_1", "distinct_2", "modal_share", "entropy"))


def _per_beta(results: dict[str, dict], part: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """One row per fixed β: ``seeds`` and, for each column of the runs' ``part``, the mean over seeds and
    its standard error ``<column>_se = std/√seeds`` (0 for one seed)."""
    rows = [
        {"beta": r["spec"]["beta"], **r[part]}
        for r in results.values()
        if r["spec"]["adaptive_target"] is None and part in r
    ]
    if not rows:
        raise ValueError(f"no fixed-β runs with a {part} to summarise")
    frame = pd.DataFrame(rows)
    present = [c for c in columns if c in frame]  # a hub world's runs may have no gold reward
    return over_seeds(frame, "beta", present, sort=True).reset_index()


def table_text(table: pd.DataFrame) -> str:
    """:func:`summarise`'s table as text, one row per β, each value printed as ``mean ± SE``.

    Taught in notebook 06.
    """
    show = pd.DataFrame({"β": table.beta, "seeds": table.seeds})
    names = {
        "kl_k1": "KL (nats)",
        "proxy_score": "proxy",
        "gold_reward": "gold",
        "well_formed": "well-formed",
    }
    for col, name in names.items():
        show[name] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(table[col], table[f"{col}_se"], strict=True)]
    return show.to_string(index=False)


def mean_curve(results: dict[str, dict], beta: float, metric: str) -> pd.DataFrame:
    """``metric`` per step for the fixed-β runs at ``beta``: columns ``step``, ``mean`` and ``se``
    (standard error over seeds).

    Taught in notebook 06.
    """
    runs = [
        pd.DataFrame(r["metrics"]).set_index("step")[metric]
        for r in results.values()
        if r["spec"]["adaptive_target"] is None and r["spec"]["beta"] == beta
    ]
    if not runs:
        raise ValueError(f"no fixed-β runs at β = {beta:g}")
    table = pd.concat(runs, axis=1)
    se = table.std(axis=1, ddof=1).fillna(0.0) / np.sqrt(table.shape[1])
    return pd.DataFrame({"step": table.index, "mean": table.mean(axis=1).to_numpy(), "se": se.to_numpy()})
