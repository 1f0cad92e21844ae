"""Checks that need a CUDA device. They run on a GPU machine and are skipped everywhere else."""

import pytest
import torch

from klcourse.config import get_preset
from klcourse.ppo import config_for, train
from klcourse.tools.bench import kl_cost
from klcourse.world import load_world

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_ppo_step_on_gpu_matches_the_leash(tmp_path):
    world = load_world("smoke", torch.device("cuda"), progress=False, root=tmp_path, log=lambda m: None)
    assert next(world.reference.parameters()).is_cuda
    free = train(world, config_for(get_preset("smoke"), beta=0.0), progress=False)
    leashed = train(world, config_for(get_preset("smoke"), beta=10.0), progress=False)
    assert free.metrics["kl_k1"].tail(3).mean() > leashed.metrics["kl_k1"].tail(3).mean()
    assert next(free.policy.parameters()).is_cuda


def test_kl_cost_on_gpu():
    cost = kl_cost(batch=8, seq_len=128, repeats=3, device=torch.device("cuda"))
    assert cost.memory_ratio == 50_257 and cost.time_ratio < 50
