"""End-to-end PPO on the smoke preset: the KL leash works, and data parallelism keeps replicas equal."""

from pathlib import Path

import pytest
import torch
from conftest import launch_two

from klcourse.config import get_preset
from klcourse.ppo import config_for, disable_dropout, train
from klcourse.sweep import save_run

pytestmark = pytest.mark.slow


def test_kl_at_beta_zero_exceeds_kl_at_large_beta(smoke_world, tmp_path):
    preset = get_preset("smoke")
    free = train(smoke_world, config_for(preset, beta=0.0, seed=0), progress=False)
    leashed = train(smoke_world, config_for(preset, beta=10.0, seed=0), progress=False)
    kl_free = free.metrics["kl_k1"].tail(3).mean()
    kl_leashed = leashed.metrics["kl_k1"].tail(3).mean()
    assert kl_free > kl_leashed + 0.1, (kl_free, kl_leashed)
    columns = {
        "proxy_score",
        "gold_reward",
        "well_formed",
        "kl_k1",
        "kl_k3",
        "non_score_reward",
        "beta",
        "entropy",
        "clip_fraction",
        "approx_kl",
        "value_loss",
        "response_length",
        "samples",
    }
    assert columns <= set(free.metrics.columns) and len(free.metrics) == preset.ppo_steps
    assert (free.metrics["non_score_reward"] == 0).all()  # β = 0: no KL term in the reward
    save_run(free, tmp_path / "run", smoke_world.tokenizer)
    assert {"metrics.csv", "metrics.json", "config.json", "policy"} <= {
        p.name for p in (tmp_path / "run").iterdir()
    }


def test_two_process_data_parallel_replicas_stay_identical(smoke_root, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    proc = launch_two([str(worker), str(smoke_root), str(tmp_path)], smoke_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert reports[0][0] == reports[1][0], "replicas diverged"
    assert all(r[1] == "2" and r[2] == "1" for r in reports), reports  # 2 processes, weights changed
    smoke = get_preset("smoke")
    assert int(reports[0][3]) == 2 * smoke.ppo_batch_size * 2  # episodes count both processes


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_first_minibatch_is_on_policy(smoke_world, estimator):
    """One step, one epoch, one minibatch of the whole batch: the update's first forward pass
    computes the same function as the rollout's, so the ratio is exactly 1 — no clipping and no
    KL to the old policy. With dropout on, both were already positive before any update."""
    preset = get_preset("smoke")
    config = config_for(
        preset,
        steps=1,
        ppo_epochs=1,
        mini_batch_size=preset.ppo_batch_size,
        kl_estimator=estimator,
        seed=3,
    )
    row = train(smoke_world, config, progress=False).metrics.iloc[0]
    assert row["approx_kl"] == 0.0 and row["clip_fraction"] == 0.0, (row["approx_kl"], row["clip_fraction"])


def test_dropout_is_off_in_every_model_ppo_uses(smoke_world):
    train(smoke_world, config_for(get_preset("smoke"), steps=1), progress=False)
    for model in (smoke_world.reference, smoke_world.reward_model):
        assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert disable_dropout(torch.nn.Sequential(torch.nn.Dropout(0.3)))[0].p == 0.0
