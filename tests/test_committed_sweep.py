"""The committed laptop sweep (``results/laptop-sweep``) is current: made from this world and
preset (notebook 05 re-trains one of its runs, β = 0.1 seed 0, and checks that it reproduces).
The laptop world it needs is also checked against the quality thresholds the course relies on.
The committed GPU reference sweep
(``results/gpu-sweep``) is complete, sealed and made from today's gpu preset on a CUDA device, by the world
build version its provenance records."""

import json
import re
from pathlib import Path

import pytest

from klcourse.config import PRESETS
from klcourse.sweep import grid, load_result
from klcourse.world import BUILD_VERSION
from klcourse.world.artifacts import artifact_folder
from klcourse.world.core import artifact_configs

pytestmark = pytest.mark.slow

COMMITTED = Path(__file__).parents[1] / "results" / "laptop-sweep"
COMMITTED_GPU = COMMITTED.parent / "gpu-sweep"
#: Thresholds every world seed must meet (checked for seeds 0–4 with ``klcourse seedcheck``).
MIN_SFT_WELL_FORMED = 0.90
MIN_REWARD_ACCURACY = 0.90


def test_laptop_world_meets_its_quality_thresholds(laptop_world):
    info = laptop_world.build_info
    assert info["sft"]["well_formed_rate"] >= MIN_SFT_WELL_FORMED
    assert info["reward"]["heldout_accuracy"] >= MIN_REWARD_ACCURACY


def test_committed_runs_match_this_world_and_preset(laptop_world):
    preset = laptop_world.preset
    runs = sorted(COMMITTED.glob("*.json"))
    names = {p.stem for p in runs} - {"provenance"}
    expected = len(preset.sweep_betas) * len(preset.sweep_seeds) + len(preset.sweep_seeds)
    assert len(names) == expected, sorted(names)
    for path in runs:
        if path.stem == "provenance":
            continue
        payload = load_result(path, preset=preset, world=laptop_world)
        assert payload is not None, f"{path.name} is stale: re-run the laptop sweep (README)"
    provenance = json.loads((COMMITTED / "provenance.json").read_text())
    assert re.match(r"(python -m )?klcourse sweep ", provenance["command"]) and provenance["wall_seconds"] > 0


def test_committed_gpu_sweep_is_complete_and_from_the_gpu_preset():
    preset = PRESETS["gpu"]
    specs = grid(list(preset.sweep_betas), list(preset.sweep_seeds), preset.sweep_adaptive)
    provenance = json.loads((COMMITTED_GPU / "provenance.json").read_text())
    for spec in specs:
        payload = load_result(COMMITTED_GPU / f"{spec.name}.json", spec, preset)
        assert payload is not None, f"{spec.name} is missing or stale: re-run the GPU sweep (README)"
        assert payload["provenance"]["device"].startswith("cuda")
        assert len(payload["metrics"]) == preset.ppo_steps
        assert payload["world"] == provenance["world"], f"{spec.name} was trained against another world"
    assert provenance["runs"] == len(specs) and provenance["preset"] == "gpu"
    assert provenance["device"].startswith("cuda") and provenance["wall_seconds"] > 0


def test_committed_gpu_sweep_names_the_world_version_that_made_it():
    """The recorded world version is the one whose build code names the runs' model folders; if it is
    not today's, notebook 06 says so beside the GPU numbers."""
    provenance = json.loads((COMMITTED_GPU / "provenance.json").read_text())
    version = provenance["world_build_version"]
    configs = artifact_configs(PRESETS["gpu"], version=version)
    assert provenance["world"] == {name: artifact_folder(name, c).name for name, c in configs.items()}, (
        f"the runs' world is not the one build version {version} makes from today's gpu preset"
    )
    if version != BUILD_VERSION:
        nb06 = (Path(__file__).parents[1] / "notebooks" / "06_beta_ablations.ipynb").read_text()
        assert f"world build version {version}" in nb06, "notebook 06 must say which world made the GPU sweep"
