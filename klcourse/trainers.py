"""TRL's ``RLOOTrainer`` and ``GRPOTrainer`` on the course's world, and one measurement of any
policy, so that they can be set beside :mod:`klcourse.ppo` at the same β and episode budget.

Where each puts the KL penalty (TRL 1.16, read from its source):

* **RLOO** (Ahmadian et al. 2024): k1 summed over the response and subtracted from the reward,
  ``r − β·Σ_t k1_t`` — the reward placement, a per-sequence sum, like ``klcourse.ppo``.
  ``RLOOConfig.beta`` defaults to 0.05.
* **GRPO** (Shao et al. 2024): k3 per token added to the per-token loss — the loss placement,
  averaged over tokens. With ``use_bias_correction_kl`` (default True since TRL 1.10; added, off,
  in 0.26) the term is ``β·k3_t·π/π_old``, whose gradient is the reverse KL's; without it,
  ``β·k3_t``, whose gradient is the forward KL's (:mod:`klcourse.gradients`). TRL logs the mean of
  that same term (over tokens, before β) as ``kl``. ``GRPOConfig.beta`` defaults to 0.0 (no
  penalty at all).

:func:`train_trl` gives both trainers :func:`klcourse.ppo.adamw`, PPO's optimiser, at a constant
learning rate (TRL's default would decay it linearly to 0 with transformers' AdamW, weight decay 0).

:func:`evaluate` measures every policy the same way: fresh samples at temperature 1, the reference
scoring the same tokens, the KL to the reference both as a per-sequence sum and a per-token mean.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PrinterCallback

from klcourse.logprobs import per_token_kl, response_logprobs
from klcourse.ppo import adamw
from klcourse.sampling import sample
from klcourse.stats import mean_and_se
from klcourse.world import MAX_RESPONSE_TOKENS, World
from klcourse.world.annotator import bias_exposure
from klcourse.world.loading import from_pretrained_kwargs
from klcourse.world.protocol import RLWorld
from klcourse.world.training import no_checkpointing, unpatched

Algorithm = Literal["rloo", "grpo"]


def trl_config(
    algorithm: Algorithm,
    *,
    beta: float,
    rounds: int,
    batch: int,
    mini_batch: int,
    epochs: int,
    lr: float,
    generations: int,
    seed: int,
    lr_schedule: str = "constant",
    kl_correction: bool = True,
    scale_rewards: str = "group",
):
    """The ``RLOOConfig`` or ``GRPOConfig`` for ``rounds`` generation rounds of ``batch``
    completions (``batch / generations`` prompts, ``generations`` completions each), each round
    split into minibatches of ``mini_batch`` and reused for ``epochs`` iterations, on the CPU
    unless CUDA is present, with dropout off (as in :mod:`klcourse.ppo`). GRPO keeps TRL's default
    loss (``"dapo"``: token-level averaging).

    ``lr_schedule`` is transformers' ``lr_scheduler_type`` (``"constant"`` keeps the learning rate,
    as :mod:`klcourse.ppo` does; transformers' default, ``"linear"``, decays it to 0 over the run).
    ``kl_correction`` is GRPO's ``use_bias_correction_kl`` (TRL 1.16's default, True): it multiplies
    the per-token k3 in the loss by the ratio ``π/π_old``. ``scale_rewards`` is GRPO's (TRL's
    default ``"group"`` divides each prompt's advantages by their standard deviation; ``"none"``
    leaves them). RLOO has neither flag.

    Taught in notebook 07.
    """
    from trl import GRPOConfig, RLOOConfig

    if algorithm not in ("rloo", "grpo"):
        raise ValueError(f"algorithm must be 'rloo' or 'grpo', got {algorithm!r}")
    if beta < 0:
        raise ValueError(f"β must be ≥ 0, got {beta}")
    if batch % mini_batch or batch % generations:
        raise ValueError(
            f"batch {batch} must be a multiple of mini_batch ({mini_batch}) and generations ({generations})"
        )
    per_round = batch // mini_batch
    config = RLOOConfig if algorithm == "rloo" else GRPOConfig
    only_grpo = (
        {"use_bias_correction_kl": kl_correction, "scale_rewards": scale_rewards}
        if algorithm == "grpo"
        else {}
    )
    return config(
        output_dir=tempfile.mkdtemp(prefix=f"klcourse-{algorithm}-"),
        per_device_train_batch_size=mini_batch,
        steps_per_generation=per_round,
        num_generations=generations,
        num_iterations=epochs,
        max_completion_length=MAX_RESPONSE_TOKENS,
        max_steps=rounds * per_round * epochs,
        beta=beta,
        learning_rate=lr,
        lr_scheduler_type=lr_schedule,
        temperature=1.0,
        disable_dropout=True,  # as klcourse.ppo does in every model (TRL's default keeps dropout on)
        bf16=False,
        **no_checkpointing(config),
        logging_steps=per_round * epochs,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        seed=seed,
        **only_grpo,
    )


def proxy_reward_function(world: World):
    """The world's normalised proxy score as a TRL reward function of ``(prompts, completions)``.

    Taught in notebook 07.
    """

    def proxy_reward(prompts, completions, **_):
        texts = [f"{p} {c}".strip() for p, c in zip(prompts, completions, strict=True)]
        return world.score(texts).tolist()

    return proxy_reward


@dataclass
class TRLRun:
    """A TRL run: the trained policy, TRL's own log, the wall time and the settings of the optimiser
    TRL stepped (its class name and ``defaults``: lr, betas, eps, weight decay).

    Taught in notebook 07.
    """

    algorithm: str
    beta: float
    policy: PreTrainedModel
    log: list[dict]
    seconds: float
    optimiser: dict


def train_trl(
    world: World,
    algorithm: Algorithm,
    *,
    beta: float,
    episodes: int,
    batch: int = 64,
    mini_batch: int = 16,
    epochs: int = 2,
    lr: float = 1e-4,
    generations: int = 4,
    seed: int = 0,
    kl_correction: bool = True,
    scale_rewards: str = "group",
    callbacks: list | None = None,
) -> TRLRun:
    """Train a copy of the world's SFT model with TRL's RLOO or GRPO against the proxy reward for
    ``episodes`` completions (``episodes / batch`` rounds), printing nothing, with PPO's optimiser
    (:func:`klcourse.ppo.adamw`) at a constant learning rate; ``kl_correction`` and
    ``scale_rewards`` are GRPO's (:func:`trl_config`); ``callbacks`` are transformers
    ``TrainerCallback``s (the benchmark's step clock).

    Taught in notebook 07.
    """
    rounds = max(1, episodes // batch)
    args = trl_config(
        algorithm,
        beta=beta,
        rounds=rounds,
        batch=batch,
        mini_batch=mini_batch,
        epochs=epochs,
        lr=lr,
        generations=generations,
        seed=seed,
        kl_correction=kl_correction,
        scale_rewards=scale_rewards,
    )
    prompts = world.prompts(rounds * batch // generations * 2, seed=seed + 123)
    trainer = _trl_trainer(world, algorithm, args, prompts, lr, callbacks)
    trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # TRL calls transformers' deprecated checkpointing names
        warnings.simplefilter("ignore", FutureWarning)
        trainer.train()
    seconds = time.perf_counter() - t0
    optimiser = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    settings = {"class": type(optimiser).__name__} | {
        k: v for k, v in optimiser.defaults.items() if k in ("lr", "betas", "eps", "weight_decay")
    }
    policy = unpatched(trainer.model).eval()
    return TRLRun(algorithm, beta, policy, trainer.state.log_history, seconds, settings)


def _trl_trainer(
    world: World, algorithm: Algorithm, args, prompts: list[str], lr: float, callbacks: list | None
):
    """TRL's RLOO or GRPO trainer of a copy of the world's SFT model on ``prompts``, with PPO's optimiser
    and the reference model loaded as the course loads models (:func:`from_pretrained_kwargs`)."""
    from trl import GRPOTrainer, RLOOTrainer

    # TRL loads its reference model from the policy's folder with model_init_kwargs; it also warns that
    # they are ignored, because the policy is passed loaded, and that one warning is silenced
    args.model_init_kwargs = from_pretrained_kwargs(world.reference.config._name_or_path)
    trainer_class = RLOOTrainer if algorithm == "rloo" else GRPOTrainer
    model = copy.deepcopy(world.reference).requires_grad_(True)
    trl_logger = logging.getLogger(trainer_class.__module__)
    level = trl_logger.level
    trl_logger.setLevel(logging.ERROR)
    try:
        return trainer_class(
            model=model,
            reward_funcs=proxy_reward_function(world),
            args=args,
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=world.tokenizer,
            optimizers=(adamw(model.parameters(), lr), None),
            callbacks=callbacks,
        )
    finally:
        trl_logger.setLevel(level)


@torch.no_grad()
def evaluate(
    world: RLWorld, policy: PreTrainedModel, n: int = 512, seed: int = 0, detail: bool = False
) -> dict[str, float]:
    """Proxy score, gold reward, well-formed rate and the KL to the reference of ``n`` fresh samples
    of ``policy``: ``kl_sequence`` is the mean over responses of ``Σ_t k1_t`` (what RLOO and PPO
    penalise), ``kl_token`` the mean of ``k1_t`` over all response tokens (what GRPO's loss
    averages). ``kl_forward`` is the forward KL, ``KL(π_ref‖π) = E_{y~π_ref}[Σ_t log π_ref(y_t) −
    log π(y_t)]``, from ``n`` samples of the reference (seeded ``seed + 1``): what a forward-KL
    gradient holds down. A world without a gold reward or a grammar (a hub world) leaves those out.

    With ``detail`` (the synthetic world's grammar), also: ``kl_sequence_se`` (its standard error
    over responses), ``entropy`` (the mean of ``−log π(y|x)`` over the responses, an estimate of the
    response entropy) with ``entropy_se``, and the share of negated clauses and the modifiers per
    clause of the well-formed responses (:func:`klcourse.world.annotator.bias_exposure`; NaN if none
    is well formed).

    Taught in notebooks 07 and 08.
    """
    policy = policy.to(world.device).eval()
    limits = dict(max_new_tokens=world.max_new_tokens, eos_token_id=world.eos_token_ids)
    torch.manual_seed(seed)
    rollout = sample(policy, world.tokenizer, world.prompts(n, seed=seed), **limits)
    mask = rollout.response_mask.to(world.device).float()
    policy_lp = response_logprobs(policy, rollout)
    kl = per_token_kl(policy_lp, response_logprobs(world.reference, rollout), mask)
    torch.manual_seed(seed + 1)
    ref_rollout = sample(world.reference, world.tokenizer, world.prompts(n, seed=seed + 1), **limits)
    ref_mask = ref_rollout.response_mask.to(world.device).float()
    forward = per_token_kl(
        response_logprobs(world.reference, ref_rollout), response_logprobs(policy, ref_rollout), ref_mask
    )
    gold, well_formed = world.gold(rollout), world.well_formed(rollout)
    measured = {
        "proxy_score": float(world.score(rollout).mean()),
        **({} if gold is None else {"gold_reward": float(gold.mean())}),
        **({} if well_formed is None else {"well_formed": well_formed}),
        "kl_sequence": float(kl.sum(1).mean()),
        "kl_token": float(kl.sum() / mask.sum()),
        "kl_forward": float(forward.sum(1).mean()),
        "tokens_per_response": float(mask.sum(1).mean()),
    }
    if detail and well_formed is None:
        raise ValueError("detail reads the synthetic world's grammar, and this world has none")
    if detail:
        _, kl_se = mean_and_se(kl.sum(1).double().cpu().numpy())
        entropy, entropy_se = mean_and_se(-(policy_lp * mask).sum(1).double().cpu().numpy())
        try:
            bias = bias_exposure(rollout.texts(), world.grammar)
        except ValueError:  # no response is well formed: the biases have nothing to read
            bias = {"negated": math.nan, "modifiers": math.nan}
        measured |= {
            "kl_sequence_se": kl_se,
            "entropy": entropy,
            "entropy_se": entropy_se,
            "negated": bias["negated"],
            "modifiers": bias["modifiers"],
        }
    return measured
