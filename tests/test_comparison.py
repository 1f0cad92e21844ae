"""Notebook 07's trainer comparison: its specs, its summary, and the committed laptop runs
(``results/laptop-trainers``), complete, from this world, and one of them reproducing when trained
again here."""

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from klcourse.comparison import (
    TrainerSpec,
    paired_difference,
    run_comparison,
    run_one,
    separated,
    summarise,
    trainer_specs,
)
from klcourse.sweep import describe_arithmetic, load_result, provenance, same_arithmetic

COMMITTED = Path(__file__).parents[1] / "results" / "laptop-trainers"
#: The committed run that is trained again: GRPO with TRL's defaults (the KL correction on).
RERUN = TrainerSpec(trainer="grpo", beta=0.1, seed=0, episodes=3200)


def test_every_spec_has_its_own_name_and_label():
    specs = trainer_specs(0.1, [0, 1], 3200)
    assert len({s.name for s in specs}) == len(specs) == 12 + 4, "the correction pair on 2 more seeds"
    labels = {s.label for s in specs}
    assert len(labels) == 6, labels
    pair = {s.seed for s in specs if s.trainer == "grpo" and s.beta > 0 and s.scale_rewards == "group"}
    assert pair == {0, 1, 2, 3} and {s.seed for s in specs if s.trainer == "ppo"} == {0, 1}
    assert {s.trainer for s in specs} == {"ppo", "rloo", "grpo"}
    assert sum(s.beta == 0 for s in specs) == 2, "one β = 0 GRPO run per seed"
    with pytest.raises(ValueError, match="β must be > 0"):
        trainer_specs(0.0, [0], 3200)


def test_the_summary_is_the_mean_and_standard_error_over_seeds():
    runs = {}
    for seed, gold in enumerate([0.1, 0.3, 0.5]):
        spec = TrainerSpec(trainer="rloo", beta=0.1, seed=seed, episodes=64)
        runs[spec.name] = {
            "spec": vars(spec),
            "evaluation": {"gold_reward": gold, "kl_forward": 2 * gold, "kl_sequence": gold},
            "train_seconds": 1.0,
        }
    table = summarise(runs)
    row = table.loc["RLOO, k1 in reward"]
    assert row.seeds == 3 and row.gold_reward == pytest.approx(0.3)
    assert row.gold_reward_se == pytest.approx(0.2 / math.sqrt(3))
    assert row.forward_over_reverse == pytest.approx(2.0) and row.forward_over_reverse_se == pytest.approx(
        0.0
    )


def test_separated_means_more_than_z_standard_errors_of_the_difference():
    table = pd.DataFrame({"x": [1.0, 0.0], "x_se": [0.3, 0.4]}, index=["a", "b"])
    assert separated(table, "a", "b", "x", z=1.9) and not separated(table, "a", "b", "x", z=2.1)


def test_a_paired_difference_cancels_what_a_seed_shares():
    runs = {}
    # the seeds differ a lot, trainer a is always 0.1 above b: paired, the difference is exact
    for seed, base in enumerate([0.0, 1.0, 5.0]):
        for trainer, gold in (("rloo", base + 0.1), ("ppo", base)):
            spec = TrainerSpec(trainer=trainer, beta=0.1, seed=seed, episodes=64)
            runs[spec.name] = {
                "spec": vars(spec),
                "evaluation": {"gold_reward": gold, "kl_forward": 1.0, "kl_sequence": 1.0},
            }
    rloo, ppo = TrainerSpec("rloo", 0.1, 0, 64).label, TrainerSpec("ppo", 0.1, 0, 64).label
    mean, se, n = paired_difference(runs, rloo, ppo, "gold_reward")
    assert mean == pytest.approx(0.1) and se == pytest.approx(0.0, abs=1e-12) and n == 3
    assert paired_difference(runs, rloo, ppo, "forward_over_reverse")[0] == pytest.approx(0.0)
    del runs[TrainerSpec("ppo", 0.1, 1, 64).name], runs[TrainerSpec("ppo", 0.1, 2, 64).name]
    with pytest.raises(ValueError, match="needs 2 seeds"):
        paired_difference(runs, rloo, ppo, "gold_reward")


def test_a_share_trains_every_nth_spec(tmp_path):
    specs = trainer_specs(0.1, [0, 1], 64)
    trained = []

    def fake_run(world, spec, path):
        trained.append(spec.name)
        return {"spec": vars(spec)}

    world = SimpleNamespace(preset=None)
    shares = [run_comparison(world, specs, tmp_path, run=fake_run, shard=(i, 3)) for i in range(3)]
    assert trained == [s.name for i in range(3) for s in specs[i::3]], "share i trains specs i, i + 3, …"
    assert sorted(n for share in shares for n in share) == sorted(s.name for s in specs)


@pytest.mark.slow
def test_the_committed_comparison_is_complete_and_from_this_world(laptop_world):
    preset = laptop_world.preset
    specs = trainer_specs(0.1, list(preset.sweep_seeds), 3200)
    for spec in specs:
        payload = load_result(COMMITTED / f"{spec.name}.json", spec, preset, laptop_world)
        assert payload is not None, f"{spec.name} is missing or stale: re-run the comparison (README)"
    provenance = json.loads((COMMITTED / "provenance.json").read_text())
    assert re.match(r"(python -m )?klcourse compare ", provenance["command"]) and provenance["runs"] == len(
        specs
    )


@pytest.mark.slow
def test_a_committed_comparison_run_reproduces(laptop_world, tmp_path):
    made_on = json.loads((COMMITTED / "provenance.json").read_text())
    if not same_arithmetic(made_on, laptop_world):
        pytest.skip(
            f"the committed runs were made on {describe_arithmetic(made_on)}, this machine is "
            f"{describe_arithmetic(provenance(laptop_world))}: a step-by-step match needs the same arithmetic"
        )
    stored = load_result(COMMITTED / f"{RERUN.name}.json", RERUN, laptop_world.preset, laptop_world)
    assert stored is not None
    fresh = run_one(laptop_world, RERUN, tmp_path / f"{RERUN.name}.json")
    assert fresh["evaluation"] == pytest.approx(stored["evaluation"], rel=1e-3, abs=1e-4)
    for old, new in zip(stored["trl_log"], fresh["trl_log"], strict=True):
        assert new == pytest.approx(old, rel=1e-3, abs=1e-4)
