"""DPO (Rafailov et al. 2023): notebook 04's optimal policy solved for the reward, trained with TRL's
``DPOTrainer`` on the world's own preference pairs.

The policy that maximises ``E_π[r] − β·KL(π ‖ π_ref)`` is ``π*(y|x) = π_ref(y|x)·exp(r(x,y)/β)/Z(x)``
(:mod:`klcourse.optimal`). Solved for the reward, ``r(x,y) = β·log(π*(y|x)/π_ref(y|x)) + β·log Z(x)``;
in the Bradley–Terry likelihood ``P(y_w ≻ y_l | x) = σ(r(x,y_w) − r(x,y_l))`` the ``β·log Z(x)``
cancels, and fitting π in place of π* by maximum likelihood on preference pairs is the DPO loss

    L_DPO = −log σ(β·[log π/π_ref](y_w) − β·[log π/π_ref](y_l)),

with ``β·log π/π_ref`` the policy's *implicit reward*. β is the KL coefficient of the objective DPO
solves, for a reward on the Bradley–Terry scale (the scale of a reward model's raw output). The
loss reads the policy only on the pairs' responses; it never measures the KL itself.

IPO (Azar et al. 2023) regresses the log-ratio margin on a fixed target instead; TRL 1.16
(``loss_type="ipo"``) averages each response's log-ratio over its tokens first:
``(h̄_w − h̄_l − 1/(2β))²`` with ``h̄ = Σ_t log(π/π_ref)_t / (#tokens)``.

The world's models see a review as ``<bos> words… <eos>``; TRL's ``DPOTrainer`` tokenizes the prompt
and prompt + response with the same tokenizer (the ``<bos>`` comes with the prompt) and appends the
``<eos>`` to each response, so a pair is scored on the tokens PPO samples.
"""

from __future__ import annotations

import copy
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import PreTrainedModel, PrinterCallback, TrainerCallback

from klcourse.ppo import adamw
from klcourse.stats import over_seeds
from klcourse.sweep import provenance, world_key, write_result
from klcourse.tools import interrupt
from klcourse.trainers import evaluate
from klcourse.world import World
from klcourse.world.artifacts import cache_root, config_key
from klcourse.world.core import library_bars_off
from klcourse.world.training import quiet_trainer_args, reward_model_pairs, unpatched

Loss = Literal["sigmoid", "ipo"]
#: Responses sampled from each policy to measure it (as notebook 07's comparison does).
EVALUATION_SAMPLES = 512
#: Seed of those samples (plus the run's seed), apart from every stream training uses.
EVALUATION_SEED = 80_000
#: The βs (in the proxy's units, as notebook 06's) of the committed DPO and IPO runs, and their epochs.
DPO_BETAS = (0.03, 0.1, 0.3, 1.0)
IPO_BETAS = (0.3, 1.0)
EPOCHS = 3
#: TRL logs the mean of its metrics over each window of this many steps.
LOGGING_STEPS = 50
#: TRL's logged metrics kept with each run, one row per logging window.
TRL_LOGGED = ("loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected", "epoch")


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per pair, ``−log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])`` from
    the sequence log-probs (summed over each response's tokens) of the chosen and rejected responses.

    Taught in notebook 08.
    """
    if not beta > 0:
        raise ValueError(f"β must be > 0, got {beta}")
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def implicit_reward(policy_logprob: torch.Tensor, ref_logprob: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward ``β·(log π(y|x) − log π_ref(y|x))``: the reward, up to ``β·log Z(x)``,
    for which the policy would be π*.

    Taught in notebook 08.
    """
    return beta * (policy_logprob - ref_logprob)


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """TRL 1.16's IPO loss per pair, ``(h̄_w − h̄_l − 1/(2β))²``, with each response's log-ratio
    ``log π − log π_ref`` (summed over its tokens) divided by its number of tokens.

    Taught in notebook 08.
    """
    if not beta > 0:
        raise ValueError(f"β must be > 0, got {beta}")
    chosen = (policy_chosen - ref_chosen) / chosen_tokens.clamp(min=1)
    rejected = (policy_rejected - ref_rejected) / rejected_tokens.clamp(min=1)
    return (chosen - rejected - 1 / (2 * beta)) ** 2


def population_loss(
    log_policy: torch.Tensor, ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float
) -> torch.Tensor:
    """The DPO loss's expectation over an enumerable set of responses, with both responses of a pair
    drawn from ``π_ref`` and labelled by Bradley–Terry with reward ``r``:

        L(π) = Σ_{i,j} π_ref(i)·π_ref(j)·σ(r_i − r_j)·(−log σ(β·(h_i − h_j))),  h = log π − log π_ref.

    Its minimum over π is π* ∝ π_ref·exp(r/β): there ``β·(h_i − h_j) = r_i − r_j`` for every pair,
    which minimises each pair's cross-entropy (pairs of equal reward included).

    Taught in notebook 08.
    """
    h = log_policy - ref_probs.log()
    preference = torch.sigmoid(rewards[:, None] - rewards[None, :])
    pair = ref_probs[:, None] * ref_probs[None, :]
    return -(pair * preference * F.logsigmoid(beta * (h[:, None] - h[None, :]))).sum()


def preference_data(world: World) -> Dataset:
    """The pairs the world's reward model was trained on (:func:`klcourse.world.training.reward_model_pairs`,
    the annotator's labels) as TRL's preference format: ``prompt`` ``"the <subject>"`` and the two
    continuations ``chosen`` and ``rejected`` (each starting with its space).

    Taught in notebook 08.
    """
    prompts, chosen, rejected = [], [], []
    subjects = sorted(world.grammar.subjects, key=len, reverse=True)
    for c, r in zip(*reward_model_pairs(world.grammar, world.preset.world), strict=True):
        prompt = next(f"the {s}" for s in subjects if c.startswith(f"the {s} "))
        if not r.startswith(prompt + " "):
            raise ValueError(f"a pair's two reviews must share their subject: {c!r} and {r!r}")
        prompts.append(prompt)
        chosen.append(c[len(prompt) :])
        rejected.append(r[len(prompt) :])
    return Dataset.from_dict({"prompt": prompts, "chosen": chosen, "rejected": rejected})


def dpo_beta(world: World, beta: float) -> float:
    """DPO's β for a KL coefficient ``beta`` in the proxy's units: ``σ·beta``, with σ the reward model's
    score spread (:attr:`World.score_normalisation`). PPO maximises ``E[(r − μ)/σ] − β·KL``, which is
    ``(E[r] − σβ·KL)/σ + const``: the same objective as DPO's at ``β_DPO = σβ``, for the reward ``r``
    on the reward model's raw, Bradley–Terry scale.

    Taught in notebook 08.
    """
    return world.score_normalisation[1] * beta


@dataclass(frozen=True)
class DPOSpec:
    """One DPO run: ``loss`` (``"sigmoid"``: DPO, ``"ipo"``: IPO) at ``beta`` in the proxy's units
    (:func:`dpo_beta` converts it), for ``epochs`` passes over the pairs, from seed ``seed``.

    Taught in notebook 08.
    """

    loss: Loss
    beta: float
    seed: int
    epochs: int

    @property
    def label(self) -> str:
        """What the notebook's tables call it: ``DPO`` or ``IPO``."""
        return "DPO" if self.loss == "sigmoid" else "IPO"

    @property
    def name(self) -> str:
        """File-name-safe identifier, e.g. ``dpo-beta-0.1_seed-0``."""
        return f"{self.label.lower()}-beta-{self.beta:g}_seed-{self.seed}"


def dpo_specs(dpo_betas: list[float], ipo_betas: list[float], seeds: list[int], epochs: int) -> list[DPOSpec]:
    """DPO at each of ``dpo_betas`` and IPO at each of ``ipo_betas``, every seed, ``epochs`` epochs.

    Taught in notebook 08.
    """
    return [
        DPOSpec(loss=loss, beta=b, seed=s, epochs=epochs)
        for loss, betas in (("sigmoid", dpo_betas), ("ipo", ipo_betas))
        for b in betas
        for s in seeds
    ]


def default_out_dir(world: World) -> Path:
    """``<cache>/dpo/<preset>-<key>``: one folder per preset and world configuration.

    Taught in notebook 08.
    """
    return cache_root() / "dpo" / f"{world.preset.name}-{config_key(asdict(world.preset))}"


class _EachEpoch(TrainerCallback):
    """Measure the policy with :func:`klcourse.trainers.evaluate` at the end of every epoch (and where
    ``max_steps`` stops a run inside one, there, labelled with the fractional epoch)."""

    def __init__(self, world: World, seed: int) -> None:
        self.world, self.seed, self.evaluations = world, seed, []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        interrupt.check()

    def on_epoch_end(self, args, state, control, model=None, **kwargs) -> None:
        measured = evaluate(self.world, model, n=EVALUATION_SAMPLES, seed=self.seed, detail=True)
        epoch = (
            round(state.epoch) if abs(state.epoch - round(state.epoch)) < 1e-6 else state.epoch
        )  # max_steps
        self.evaluations.append({"epoch": epoch, **measured})
        model.train()


@dataclass
class DPORun:
    """A finished DPO or IPO run: the policy, one :func:`klcourse.trainers.evaluate` row per epoch,
    TRL's log and the training time (measurements excluded).

    Taught in notebook 08.
    """

    policy: PreTrainedModel
    evaluations: list[dict]
    log: list[dict]
    seconds: float


def train_dpo(world: World, spec: DPOSpec, max_steps: int | None = None) -> DPORun:
    """Train a copy of the world's SFT model with TRL's ``DPOTrainer`` on :func:`preference_data`,
    the SFT model as the frozen reference, β from :func:`dpo_beta`, PPO's optimiser
    (:func:`klcourse.ppo.adamw`) at the preset's PPO learning rate, constant, and PPO's minibatch
    size in pairs; dropout off, as in PPO. The policy is measured after each epoch on fresh samples.
    ``max_steps`` stops the run after that many optimiser steps (the start of a run, replayed).

    Taught in notebook 08.
    """
    from trl import DPOConfig, DPOTrainer

    p = world.preset
    args = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="klcourse-dpo-"),
        beta=dpo_beta(world, spec.beta),
        loss_type=[spec.loss],
        num_train_epochs=spec.epochs,
        max_steps=-1 if max_steps is None else max_steps,
        per_device_train_batch_size=p.ppo_mini_batch_size,
        learning_rate=p.ppo_lr,
        lr_scheduler_type="constant",
        max_length=p.world.n_positions,
        logging_steps=LOGGING_STEPS,
        **quiet_trainer_args(DPOConfig, spec.seed),
    )
    model = copy.deepcopy(world.reference).requires_grad_(True)
    each_epoch = _EachEpoch(world, EVALUATION_SEED + spec.seed)
    with warnings.catch_warnings(), library_bars_off():
        warnings.simplefilter("ignore", FutureWarning)  # TRL calls transformers' deprecated names
        trainer = DPOTrainer(
            model=model,
            ref_model=copy.deepcopy(world.reference),  # TRL patches its reference's forward
            args=args,
            train_dataset=preference_data(world),
            processing_class=world.tokenizer,
            optimizers=(adamw(model.parameters(), p.ppo_lr), None),
            callbacks=[each_epoch],
        )
        trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        trainer.train()
    seconds = time.perf_counter() - t0
    log = [{k: row[k] for k in TRL_LOGGED if k in row} for row in trainer.state.log_history if "loss" in row]
    return DPORun(unpatched(trainer.model).eval(), each_epoch.evaluations, log, seconds)


def run_one(world: World, spec: DPOSpec, path: Path) -> dict:
    """Train one run and store it atomically (sealed, like a sweep run); return the payload.

    Taught in notebook 08.
    """
    t0 = time.perf_counter()
    run = train_dpo(world, spec)
    payload = {
        "spec": asdict(spec),
        "preset": asdict(world.preset),
        "world": world_key(world),
        "dpo_beta": dpo_beta(world, spec.beta),
        "evaluations": run.evaluations,
        "trl_log": run.log,
        "train_seconds": run.seconds,
        "seconds": time.perf_counter() - t0,
        "provenance": provenance(world),
    }
    write_result(path, payload)
    return payload


def summarise(results: dict[str, dict], epoch: int | None = None) -> pd.DataFrame:
    """One row per (method, β, epoch): ``seeds`` and, over seeds, the mean and standard error
    ``<column>_se = std/√seeds`` of every evaluation column (the runs' own standard errors over
    their samples are left out); only ``epoch``'s rows if given.

    Taught in notebook 08.
    """
    rows = [
        {"method": DPOSpec(**r["spec"]).label, "beta": r["spec"]["beta"], "seed": r["spec"]["seed"], **e}
        for r in results.values()
        for e in r["evaluations"]
        if epoch is None or e["epoch"] == epoch
    ]
    if not rows:
        raise ValueError("no runs to summarise")
    frame = pd.DataFrame(rows)
    keys = ["method", "beta", "epoch"]
    # a run's own standard errors (over its samples) are not averaged: the SE here is over seeds
    columns = [c for c in frame.columns.drop([*keys, "seed"]) if not c.endswith("_se")]
    return over_seeds(frame, keys, columns, sort=True).reset_index()
