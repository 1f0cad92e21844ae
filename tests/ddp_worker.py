"""Run by ``accelerate launch`` from test_ppo_run.py: a few PPO steps, then each process writes a
digest of its policy weights so the test can check that the replicas stayed identical."""

import hashlib
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from klcourse.config import get_preset
from klcourse.ppo import config_for, train
from klcourse.world import load_world

root, out = Path(sys.argv[1]), Path(sys.argv[2])
world = load_world("smoke", torch.device("cpu"), progress=False, root=root, log=lambda m: None)
result = train(world, config_for(get_preset("smoke"), steps=2, beta=0.1), progress=False)
state = PartialState()  # the distributed state train() set up: which process this is
digest = hashlib.sha256()
for name, tensor in sorted(result.policy.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.detach().cpu().numpy().tobytes())
reference = world.reference.state_dict()
changed = any(not torch.equal(t, reference[k]) for k, t in result.policy.state_dict().items())
episodes = result.metrics["episodes"].iloc[-1]
report = f"{digest.hexdigest()} {state.num_processes} {int(changed)} {episodes}"
(out / f"rank{state.process_index}.txt").write_text(report)
