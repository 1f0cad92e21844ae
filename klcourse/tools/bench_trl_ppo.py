"""TRL 1.12's ``PPOTrainer`` on the course's world, for ``bench ppo --trl-ppo-python``.

TRL 1.12 is the last TRL with a PPO trainer (``trl.experimental.ppo``); the course installs a newer
TRL, so this module runs in a separate environment, made once::

    python3 -m venv .venv-trl112
    .venv-trl112/bin/pip install "torch==2.13.0+cpu" "trl==1.12.0" "transformers==5.24.0" \\
        tokenizers datasets accelerate numpy pandas matplotlib tqdm
    .venv-trl112/bin/pip install --no-deps -e .

and the benchmark starts it with that interpreter: ``python -m klcourse.tools.bench_trl_ppo --preset
laptop --steps 20``. It trains TRL's PPO from the world's SFT model against its proxy reward model
(the value model a copy of the reward model, as in :mod:`klcourse.ppo`) at the preset's PPO sizes and
prints one JSON line: the episodes, the measured seconds (the steps after the first) and the torch
threads. TRL's PPO scores with the reward model's raw output (it has no score normalisation), which
changes the rewards' scale but not the work per episode.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time

import torch


def main(argv: list[str] | None = None) -> None:
    """Train TRL 1.12's PPO for ``--steps`` measured steps after one warm-up step; print the JSON line."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from klcourse.config import PRESETS
    from klcourse.ppo import config_for
    from klcourse.world import MAX_RESPONSE_TOKENS, load_world
    from klcourse.world.training import no_checkpointing

    parser = argparse.ArgumentParser(prog="python -m klcourse.tools.bench_trl_ppo")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="laptop")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    world = load_world(args.preset, torch.device("cpu"), progress=False, log=lambda m: None)
    ours = config_for(world.preset, beta=0.05)

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

    steps = args.steps + 1
    config = PPOConfig(
        output_dir=tempfile.mkdtemp(prefix="klcourse-trl-ppo-"),
        per_device_train_batch_size=ours.batch_size,
        local_rollout_forward_batch_size=ours.batch_size,
        num_mini_batches=ours.batch_size // ours.mini_batch_size,
        num_ppo_epochs=ours.ppo_epochs,
        learning_rate=ours.lr,
        lr_scheduler_type="constant",
        kl_coef=ours.beta,
        response_length=MAX_RESPONSE_TOKENS,
        stop_token="eos",
        temperature=1.0,
        total_episodes=steps * ours.batch_size,
        num_sample_generations=0,
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        save_strategy="no",
        seed=0,
        **no_checkpointing(PPOConfig),  # as klcourse.ppo and the course's TRL trainers run
    )
    tokenizer = world.tokenizer
    prompts = world.prompts(steps * ours.batch_size, seed=123)
    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})
    clock = StepClock()
    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=copy.deepcopy(world.reference).requires_grad_(True),
        ref_model=world.reference,
        reward_model=world.reward_model,
        value_model=copy.deepcopy(world.reward_model).requires_grad_(True),
        train_dataset=dataset,
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    seconds = clock.marks[-1] - clock.marks[0]
    print(
        json.dumps(
            {"episodes": args.steps * ours.batch_size, "seconds": seconds, "threads": torch.get_num_threads()}
        )
    )


if __name__ == "__main__":
    main()
