"""The β sweep survives being killed, detects corrupt results, and is reproducible."""

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import launch_two, sweep_args

from klcourse.sweep import (
    ARITHMETIC,
    RunSpec,
    _seal,
    collect,
    grid,
    load_result,
    mean_curve,
    provenance,
    run_sweep,
    same_arithmetic,
    summarise,
    world_key,
)

pytestmark = pytest.mark.slow

SPECS = [RunSpec(beta=0.0, seed=0), RunSpec(beta=10.0, seed=0)]


def test_grid_and_names():
    specs = grid([0.0, 0.1], [0, 1], adaptive=(0.5, 3.0, 500))
    assert [s.name for s in specs] == [
        "beta-0_seed-0",
        "beta-0.1_seed-0",
        "beta-0_seed-1",
        "beta-0.1_seed-1",
        "adaptive-3_seed-0",
        "adaptive-3_seed-1",
    ]
    with pytest.raises(ValueError, match="≥ 0"):
        grid([-1.0], [0])


def test_killed_sweep_keeps_finished_runs_and_redoes_the_rest(smoke_root, smoke_world, tmp_path):
    out = tmp_path / "sweep"
    cmd = [sys.executable, *sweep_args(out, "0", "10")]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "KLCOURSE_CACHE": str(smoke_root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = out / f"{SPECS[0].name}.json"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-way through the second run
    proc.wait()
    assert first.exists(), "the first run should have finished before the kill"
    kept = first.read_bytes()
    # whatever the kill interrupted, every file under the final names is complete and valid
    for path in out.glob("*.json"):
        assert load_result(path) is not None, f"{path.name} is corrupt"

    results = run_sweep(smoke_world, SPECS, out, progress=False, log=lambda m: None)
    assert first.read_bytes() == kept, "a finished run must be kept byte for byte"
    assert set(results) == {s.name for s in SPECS}
    assert load_result(first, SPECS[0], smoke_world.preset) is not None  # reused, not redone
    assert set(collect(out)) == {s.name for s in SPECS}
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary files are left"


def test_corrupt_result_is_detected_and_redone(smoke_world, tmp_path):
    spec = [SPECS[1]]
    run_sweep(smoke_world, spec, tmp_path, progress=False)
    path = tmp_path / f"{spec[0].name}.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated
    assert load_result(path) is None
    messages = []
    run_sweep(smoke_world, spec, tmp_path, progress=False, log=messages.append)
    assert any("corrupt" in m for m in messages) and load_result(path) is not None
    # tampering with a number breaks the seal
    record = json.loads(path.read_text())
    record["payload"]["summary"]["gold_reward"] += 1.0
    path.write_text(json.dumps(record))
    assert load_result(path) is None
    # a result made from another spec is not reused
    assert load_result(path.with_name("x.json"), spec[0]) is None


def test_same_seed_same_results(smoke_world, tmp_path):
    spec = [SPECS[0]]
    a = run_sweep(smoke_world, spec, tmp_path / "a", progress=False)[spec[0].name]
    b = run_sweep(smoke_world, spec, tmp_path / "b", progress=False)[spec[0].name]

    def strip(payload):
        return [
            {k: v for k, v in row.items() if not k.startswith("time_") and k != "seconds"}
            for row in payload["metrics"]
        ]

    assert strip(a) == strip(b)
    assert a["summary"] == b["summary"] and a["final_samples"] == b["final_samples"]


def test_sweep_spreads_runs_over_processes(smoke_root, tmp_path):
    out = tmp_path / "sweep"
    proc = launch_two(sweep_args(out, "0", "10"), smoke_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = collect(out)
    assert set(runs) == {"beta-0_seed-0", "beta-10_seed-0", "adaptive-1_seed-0"}
    # each process reported only its own share: 2 runs for one, 1 for the other
    shares = sorted(
        int(m.group(1)) for line in proc.stdout.splitlines() if (m := re.match(r"(\d+) runs? in ", line))
    )
    assert shares == [1, 2], proc.stdout


def test_a_shard_runs_every_nth_spec_only(smoke_world, tmp_path):
    results = run_sweep(smoke_world, SPECS, tmp_path, progress=False, shard=(1, 2))
    assert set(results) == {SPECS[1].name}
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"{SPECS[1].name}.json"]


def test_the_same_arithmetic_needs_the_same_device_card_kernels_and_torch():
    world = SimpleNamespace(device=torch.device("cpu"))
    here = provenance(world)
    assert same_arithmetic(here, world) and here["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    for key in ARITHMETIC:
        assert not same_arithmetic({**here, key: "elsewhere"}, world), key
        assert not same_arithmetic({k: v for k, v in here.items() if k != key}, world), f"{key} unrecorded"


def test_jobs_must_be_positive(tmp_path):
    proc = subprocess.run(
        [sys.executable, *sweep_args(tmp_path, "0"), "--jobs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--jobs" in proc.stderr and "Traceback" not in proc.stderr


def _fake(beta, seed, gold, steps=3, adaptive=None):
    spec = {"beta": beta, "seed": seed, "adaptive_target": adaptive, "adaptive_horizon": 100}
    summary = {"kl_k1": 1.0 / (1 + beta), "proxy_score": 1.0, "gold_reward": gold, "well_formed": 1.0}
    metrics = [{"step": s + 1, "gold_reward": gold + s} for s in range(steps)]
    return {"spec": spec, "summary": summary, "metrics": metrics}


def test_summarise_and_mean_curve_give_mean_and_standard_error():
    results = {
        "a": _fake(0.1, 0, 0.2),
        "b": _fake(0.1, 1, 0.4),
        "c": _fake(0.1, 2, 0.9),
        "d": _fake(1.0, 0, 0.0),
        "e": _fake(0.5, 0, 5.0, adaptive=2.0),  # adaptive runs are not part of the fixed-β table
    }
    table = summarise(results).set_index("beta")
    assert list(table.index) == [0.1, 1.0] and list(table.seeds) == [3, 1]
    golds = [0.2, 0.4, 0.9]
    assert table.loc[0.1, "gold_reward"] == pytest.approx(sum(golds) / 3)
    assert table.loc[0.1, "gold_reward_se"] == pytest.approx(float(np.std(golds, ddof=1) / np.sqrt(3)))
    assert table.loc[1.0, "gold_reward_se"] == 0.0  # one seed: no spread to report
    curve = mean_curve(results, 0.1, "gold_reward")
    assert list(curve.step) == [1, 2, 3]
    np.testing.assert_allclose(curve["mean"], np.mean(golds) + np.arange(3))
    with pytest.raises(ValueError, match="β = 7"):
        mean_curve(results, 7.0, "gold_reward")


def test_results_of_another_world_are_not_reused(smoke_world, tmp_path):
    spec = [SPECS[1]]
    run_sweep(smoke_world, spec, tmp_path / "committed", progress=False)
    path = tmp_path / "committed" / f"{spec[0].name}.json"
    assert load_result(path, spec[0], smoke_world.preset, smoke_world) is not None
    other = copy.copy(smoke_world)
    other.paths = {
        **smoke_world.paths,
        "reward": smoke_world.paths["reward"].with_name("reward-000000000000"),
    }
    assert load_result(path, spec[0], smoke_world.preset, other) is None
    # committed folders are read, never written: a mismatch is trained into out_dir instead
    before = path.read_bytes()
    results = run_sweep(other, spec, tmp_path / "live", progress=False, reuse=(tmp_path / "committed",))
    assert path.read_bytes() == before and (tmp_path / "live" / path.name).exists()
    assert results[spec[0].name]["world"] == world_key(other)


def test_a_run_stored_before_diversity_was_measured_is_redone(smoke_world, tmp_path):
    spec = [SPECS[1]]
    path = tmp_path / f"{spec[0].name}.json"
    run_sweep(smoke_world, spec, tmp_path, progress=False)
    record = json.loads(path.read_text())
    del record["payload"]["diversity"]
    record["sha256"] = _seal(record["payload"])
    path.write_text(json.dumps(record))
    results = run_sweep(smoke_world, spec, tmp_path, progress=False)
    assert "diversity" in results[spec[0].name] and "diversity" in json.loads(path.read_text())["payload"]


def test_a_stored_config_matches_with_the_knobs_added_since_at_their_defaults():
    from dataclasses import asdict

    from klcourse.ppo import PPOConfig
    from klcourse.sweep import same_settings

    stored = json.loads(json.dumps(asdict(PPOConfig(beta=0.1))))
    del stored["lora_rank"]  # stored before PPOConfig had it
    assert same_settings(stored, PPOConfig(beta=0.1))
    assert not same_settings(stored, PPOConfig(beta=0.1, lora_rank=4))
    assert not same_settings(stored, PPOConfig(beta=0.3))
    assert not same_settings({**stored, "retired_knob": 1}, PPOConfig(beta=0.1))
