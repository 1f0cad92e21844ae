"""Distillation: the KL of this course paid to copy one model into another, in both directions.

A teacher ``π_t`` and a student ``π_s`` over the same tokens. The student can be fitted to either KL:

* **forward** ``KL(π_t ‖ π_s) = E_{y~π_t}[log π_t(y) − log π_s(y)]``, on the teacher's samples. Its
  gradient is ``−E_{y~π_t}[∇ log π_s(y)]``: maximum likelihood on the teacher's text, which pulls
  up every response the teacher writes (mass-covering, notebook 01). Two ways:

  - ``kd``: per token over the whole vocabulary, ``Σ_t Σ_v π_t(v|y_<t) log(π_t(v|y_<t)/π_s(v|y_<t))``
    (supervised knowledge distillation, Hinton et al. 2015; Kim & Rush 2016's word level). Every
    position needs the teacher's whole next-token distribution: ``V`` numbers per token.
  - ``sft``: the sampled tokens only, ``−Σ_t log π_s(y_t|y_<t)`` (Kim & Rush's sequence level: SFT
    on the teacher's samples). Its expectation is the forward KL up to the teacher's entropy.

* **reverse** ``KL(π_s ‖ π_t) = E_{y~π_s}[log π_s(y) − log π_t(y)]``, on the student's own samples,
  which puts the student's mass only where the teacher has it (mode-seeking):

  - ``k1``: the per-token ``k1_t = log π_s(y_t) − log π_t(y_t)`` as a reward, exactly notebook 04's
    penalty with the teacher in the reference's place, trained by :mod:`klcourse.ppo` with score 0
    and β = 1 (on-policy distillation: Agarwal et al. 2024; the reverse-KL reward of Thinking
    Machines' "On-Policy Distillation", 2025). One number per token, and it needs the teacher only
    to score the student's tokens.
  - ``trl``: TRL 1.16's ``DistillationTrainer`` (read from its source): the student samples, and
    the loss is a divergence per token over the whole vocabulary, averaged over the batch's tokens.
    Its ``beta`` (default 1.0) selects it: for ``0 < β < 1`` the generalized JSD
    ``β·KL(π_t ‖ m) + (1 − β)·KL(π_s ‖ m)`` with ``m = β·π_t + (1 − β)·π_s`` (0.5 is the JSD); at
    the ends, computed as cases of their own, β = 0 is the forward ``KL(π_t ‖ π_s)`` and β = 1 the
    reverse ``KL(π_s ‖ π_t)``. It is not a KL-penalty coefficient; there is no reference model.
    Both of its βs here sample from the student, so β = 0 is the forward KL on the *student's*
    samples.

Every method gets the same budget as notebook 06's PPO runs: the preset's episodes (responses
sampled, from the teacher or the student), PPO's optimiser (:func:`klcourse.ppo.adamw`) at the
preset's learning rate, constant, minibatches of the preset's size. ``kd``, ``sft`` and ``k1`` pass
twice over each batch (PPO's epochs); TRL's trainer samples a fresh minibatch for every step, so it
takes half as many optimiser steps for the same episodes.

The teacher is notebook 06's best β by gold reward, PPO at β = :data:`TEACHER_BETA` from the SFT
model, trained once and cached (:func:`teacher`). The student starts as the SFT model.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from datasets import Dataset
from transformers import PreTrainedModel, PrinterCallback, TrainerCallback

from klcourse.logprobs import (
    exact_per_token_kl,
    gather_logprobs,
    response_logits,
    response_logprobs,
    response_positions,
)
from klcourse.padding import padded_forward
from klcourse.ppo import adamw, config_for, prompt_seed, train
from klcourse.sampling import Rollout, sample
from klcourse.stats import mean_and_se, over_seeds
from klcourse.sweep import LoRARunSpec, final_diversity, provenance, world_key, write_result
from klcourse.sweep import run_one as run_sweep_one
from klcourse.tools import interrupt
from klcourse.trainers import evaluate
from klcourse.world import World
from klcourse.world.artifacts import cache_root, config_key, get_or_build
from klcourse.world.core import library_bars_off
from klcourse.world.loading import load_causal_lm
from klcourse.world.training import quiet_trainer_args, unpatched

Method = Literal["kd", "sft", "k1", "trl"]
#: The teacher: PPO from the SFT model at notebook 06's best β by gold reward, on the preset's sizes.
TEACHER_BETA = 0.1
TEACHER_SEED = 0
#: Responses sampled from each student to measure it, and their seed (plus the run's).
EVALUATION_SAMPLES = 512
EVALUATION_SEED = 90_000
#: The βs of TRL's ``DistillationTrainer`` run here: its forward and its reverse KL.
TRL_BETAS = (0.0, 1.0)
#: TRL logs the mean of its metrics over each window of this many steps.
LOGGING_STEPS = 25
#: Where along the budget each student is measured, as shares of the preset's PPO steps.
CHECKPOINTS = (0.0, 0.1, 0.25, 1.0)
#: The smaller student of each preset: the SFT model of the preset one size down (the smoke
#: preset has none smaller; its small student is its own SFT model).
SMALLER = {"gpu": "laptop", "laptop": "smoke", "smoke": "smoke"}
Student = Literal["sft", "small"]
#: The LoRA policies' rank: PPO at the teacher's β with LoRA adapters of this rank, beside
#: notebook 06's runs at that β.
LORA_RANK = 8


@dataclass(frozen=True)
class DistillSpec:
    """One distillation run: ``method`` from seed ``seed``, distilling the teacher trained at
    ``teacher_beta`` into ``student`` (``"sft"``: the world's SFT model, the teacher's own size;
    ``"small"``: the SFT model of the preset one size down, :data:`SMALLER`); ``trl_beta`` is the
    ``DistillationTrainer``'s ``beta`` (``method="trl"`` only).

    Taught in notebook 09.
    """

    method: Method
    seed: int
    teacher_beta: float = TEACHER_BETA
    trl_beta: float | None = None
    student: Student = "sft"

    def __post_init__(self) -> None:
        if self.method not in ("kd", "sft", "k1", "trl"):
            raise ValueError(f"method must be 'kd', 'sft', 'k1' or 'trl', got {self.method!r}")
        if (self.method == "trl") != (self.trl_beta is not None):
            raise ValueError("trl_beta is given for method 'trl', and only for it")
        if self.student not in ("sft", "small"):
            raise ValueError(f"student must be 'sft' or 'small', got {self.student!r}")
        if self.trl_beta is not None and not 0 <= self.trl_beta <= 1:
            raise ValueError(f"TRL's beta must be in [0, 1], got {self.trl_beta}")

    @property
    def label(self) -> str:
        """What the notebook's tables call it, e.g. ``forward, full vocabulary (KD)``."""
        if self.method == "trl":
            kind = {0.0: "forward", 1.0: "reverse"}.get(self.trl_beta, f"JSD β={self.trl_beta:g}")
            return f"{kind}, TRL DistillationTrainer (β={self.trl_beta:g})"
        return {
            "kd": "forward, full vocabulary (KD)",
            "sft": "forward, sampled tokens (SFT)",
            "k1": "reverse, k1 as reward (PPO)",
        }[self.method]

    @property
    def direction(self) -> str:
        """``forward`` (``KL(π_t ‖ π_s)``), ``reverse`` (``KL(π_s ‖ π_t)``) or ``JSD``."""
        return self.label.split(",")[0]

    @property
    def name(self) -> str:
        """File-name-safe identifier, e.g. ``kd_seed-0``, ``trl-beta-1_seed-0`` or ``k1_small_seed-0``."""
        kind = self.method if self.trl_beta is None else f"trl-beta-{self.trl_beta:g}"
        size = "" if self.student == "sft" else f"_{self.student}"
        return f"{kind}{size}_seed-{self.seed}"


def distill_specs(seeds: list[int], students: tuple[Student, ...] = ("sft", "small")) -> list[DistillSpec]:
    """Per student and seed: ``kd``, ``sft``, ``k1`` and TRL's trainer at each of :data:`TRL_BETAS`.

    Taught in notebook 09.
    """
    per_seed = [dict(method=m) for m in ("kd", "sft", "k1")]
    per_seed += [dict(method="trl", trl_beta=b) for b in TRL_BETAS]
    return [DistillSpec(seed=s, student=st, **kw) for st in students for s in seeds for kw in per_seed]


def student_start(world: World, student: Student) -> PreTrainedModel:
    """The model a student starts as: the world's SFT model, or for ``"small"`` the SFT model of
    the preset :data:`SMALLER` names (same grammar, same tokenizer, fewer layers and width).

    Taught in notebook 09.
    """
    if student == "sft":
        return world.reference
    from klcourse.world import load_world

    small = load_world(SMALLER[world.preset.name], world.device, progress=False, log=lambda _: None)
    if small.tokenizer.get_vocab() != world.tokenizer.get_vocab():
        raise ValueError("the small student must share the world's tokenizer")
    return small.reference


def lora_specs(seeds: list[int], beta: float = TEACHER_BETA, rank: int = LORA_RANK) -> list[LoRARunSpec]:
    """Notebook 06's PPO run at ``beta`` for each seed, with a LoRA policy of ``rank`` whose
    reference is its own base (:class:`klcourse.sweep.LoRARunSpec`).

    Taught in notebook 09.
    """
    return [LoRARunSpec(beta=beta, seed=s, lora_rank=rank) for s in seeds]


def default_out_dir(world: World) -> Path:
    """``<cache>/distill/<preset>-<key>``: one folder per preset and world configuration.

    Taught in notebook 09.
    """
    return cache_root() / "distill" / f"{world.preset.name}-{config_key(asdict(world.preset))}"


# ----------------------------------------------------------------------------- the teacher


def teacher_config(world: World, beta: float = TEACHER_BETA):
    """The teacher's :class:`klcourse.ppo.PPOConfig`: the preset's sizes at ``beta``, seed
    :data:`TEACHER_SEED` (notebook 06's run of that β and seed).

    Taught in notebook 09.
    """
    return config_for(world.preset, beta=beta, seed=TEACHER_SEED)


def teacher(world: World, beta: float = TEACHER_BETA, log=print) -> PreTrainedModel:
    """The PPO policy trained at ``beta`` on the world (:func:`teacher_config`), built once and
    cached as a model folder keyed by the world and the config, like the world's own models.

    Taught in notebook 09.
    """
    config = teacher_config(world, beta)

    def build(folder: Path) -> None:
        log(f"teacher: PPO at β = {beta:g} for {config.steps} steps")
        result = train(world, config, progress=False, data_parallel=False)
        result.policy.save_pretrained(folder)
        world.tokenizer.save_pretrained(folder)

    key = {"world": world_key(world), "ppo": asdict(config)}
    return load_causal_lm(get_or_build("teacher", key, build, log=log)).to(world.device).eval()


class TeacherWorld:
    """The world with the teacher in the reference's place and a score of 0: PPO on it maximises
    ``−KL(π ‖ π_t)`` (its per-token penalty is ``k1_t = log π(y_t) − log π_t(y_t)``), and
    :func:`klcourse.trainers.evaluate` on it measures a student against the teacher
    (``kl_sequence`` is ``KL(π_s ‖ π_t)``, ``kl_forward`` is ``KL(π_t ‖ π_s)``). Everything else is
    the world's.

    Taught in notebook 09.
    """

    value_from_reward = False  # a score of 0 has nothing for a reward model's head to predict

    def __init__(self, world: World, teacher_model: PreTrainedModel):
        self.world, self.reference = world, teacher_model

    def __getattr__(self, name: str):
        return getattr(self.world, name)

    def score(self, responses: Rollout | list[str]) -> torch.Tensor:
        """0 for every response: the reward is the KL term alone."""
        return torch.zeros(len(responses.texts() if isinstance(responses, Rollout) else responses))


# ------------------------------------------------------------------- a family that cannot be the teacher


def mixture_logprob(models: list[PreTrainedModel], rollout: Rollout) -> torch.Tensor:
    """``log π_mix(y|x)`` of each response under the uniform mixture of ``models`` over whole
    responses, ``π_mix(y|x) = (1/K)·Σ_k π_k(y|x)``: ``logsumexp_k log π_k(y|x) − log K``, ``[B]``.

    Taught in notebook 09.
    """
    per_model = torch.stack([response_logprobs(m, rollout, 1.0).sum(1) for m in models])
    return per_model.logsumexp(0) - math.log(len(models))


@torch.no_grad()
def tempered_fits(
    world: World,
    target: list[PreTrainedModel],
    model: PreTrainedModel,
    temperatures: list[float],
    n: int = EVALUATION_SAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Notebook 01's bimodal fit at sequence scale. The target is the uniform mixture of the models
    in ``target`` over whole responses (:func:`mixture_logprob`): each response is written by one of
    them, chosen at random. The family is ``q_τ``, ``model`` sampled at temperature τ (each next
    token from ``softmax(logits/τ)``: a proper distribution over responses, one parameter). One row
    per τ:

    * ``forward`` = ``KL(π_mix ‖ q_τ) = E_{y~π_mix}[log π_mix(y) − log q_τ(y)]`` on ``n`` target
      samples (``n/K`` from each model, seed ``seed``);
    * ``reverse`` = ``KL(q_τ ‖ π_mix) = E_{y~q_τ}[log q_τ(y) − log π_mix(y)]`` on ``n`` samples of
      q_τ (seed ``seed + 1``);
    * ``entropy`` = ``E_{y~q_τ}[−log q_τ(y)]``; and the standard error of each.

    A single model at one temperature cannot be a mixture of two different ones, so each direction
    has its own best τ.

    Taught in notebook 09.
    """
    if n % len(target):
        raise ValueError(f"n = {n} must be a multiple of the {len(target)} models of the target")
    limits = dict(max_new_tokens=world.max_new_tokens, eos_token_id=world.eos_token_ids)
    prompts = world.prompts(n, seed=seed)
    k = n // len(target)
    torch.manual_seed(seed)
    parts = [sample(m, world.tokenizer, prompts[i * k : (i + 1) * k], **limits) for i, m in enumerate(target)]
    target_lp = [mixture_logprob(target, part) for part in parts]
    rows = []
    for tau in temperatures:
        if not tau > 0:
            raise ValueError(f"every temperature must be > 0, got {tau}")
        forward = torch.cat(
            [
                lp - response_logprobs(model, part, tau).sum(1)
                for lp, part in zip(target_lp, parts, strict=True)
            ]
        )
        torch.manual_seed(seed + 1)
        own = sample(model, world.tokenizer, world.prompts(n, seed=seed + 1), temperature=tau, **limits)
        own_lp = response_logprobs(model, own, tau).sum(1)
        reverse = own_lp - mixture_logprob(target, own)
        row = {"temperature": tau}
        for name, values in (("forward", forward), ("reverse", reverse), ("entropy", -own_lp)):
            row[name], row[f"{name}_se"] = mean_and_se(values.double().cpu().numpy())
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- training


def forward_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The supervised KD loss: the full-vocabulary forward KL per token
    ``Σ_v π_t(v) log(π_t(v)/π_s(v))`` (:func:`klcourse.logprobs.exact_per_token_kl` with the teacher
    first), averaged over the real tokens of ``mask``.

    Taught in notebook 09.
    """
    kl = exact_per_token_kl(teacher_logits, student_logits, mask)
    return kl.sum() / mask.sum().clamp(min=1)


def sft_loss(student_logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The SFT loss on the teacher's tokens: ``−log π_s(y_t)`` averaged over the real tokens.

    Taught in notebook 09.
    """
    return -(gather_logprobs(student_logits, tokens) * mask).sum() / mask.sum().clamp(min=1)


@dataclass
class DistillRun:
    """A finished run: the student, its per-step log (loss; for ``k1`` PPO's metrics), its
    :func:`measure_student` rows at each checkpoint (``episodes`` sampled by then) and the training
    time without those measurements.

    Taught in notebook 09.
    """

    student: PreTrainedModel
    log: list[dict]
    evaluations: list[dict]
    seconds: float


class _Checkpoints:
    """Measure the student when ``episodes`` reaches one of ``at``, with the random state put back
    afterwards so that the run trains as it would unmeasured; keep the time it took apart."""

    def __init__(self, world: World, teacher_model: PreTrainedModel, seed: int, at: list[int]):
        self.world, self.teacher, self.seed, self.at = world, teacher_model, seed, set(at)
        self.rows: list[dict] = []
        self.seconds = 0.0

    def __call__(self, episodes: int, student: PreTrainedModel) -> None:
        if episodes not in self.at:
            return
        t0 = time.perf_counter()
        was_training = student.training
        cuda = range(torch.cuda.device_count()) if self.world.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # measure_student reseeds every generator
            row = measure_student(self.world, self.teacher, student, self.seed)
        student.train(was_training)
        self.rows.append({"episodes": episodes, **row})
        self.seconds += time.perf_counter() - t0


def checkpoint_episodes(world: World, steps: int | None = None) -> list[int]:
    """The episodes at which students are measured: :data:`CHECKPOINTS` of the preset's PPO steps,
    in whole steps of ``ppo_batch_size`` episodes, up to ``steps`` (default all).

    Taught in notebook 09.
    """
    p = world.preset
    at = sorted({round(f * p.ppo_steps) for f in CHECKPOINTS})
    return [s * p.ppo_batch_size for s in at if steps is None or s <= steps]


def _on_teacher_samples(
    world: World, teacher_model, start: PreTrainedModel, spec: DistillSpec, steps: int, measure: _Checkpoints
) -> DistillRun:
    """``kd`` or ``sft``: each step, the teacher samples a batch; the student makes PPO's epochs of
    minibatch steps on it."""
    p = world.preset
    student = copy.deepcopy(start).train().requires_grad_(True)
    optimizer = adamw(student.parameters(), p.ppo_lr)
    torch.manual_seed(spec.seed)
    log, t0 = [], time.perf_counter()
    for step in range(steps):
        interrupt.check()
        with torch.no_grad():
            rollout = sample(
                teacher_model,
                world.tokenizer,
                world.prompts(p.ppo_batch_size, seed=prompt_seed(spec.seed, step, 0)),
                max_new_tokens=world.max_new_tokens,
                eos_token_id=world.eos_token_ids,
            )
            target = response_logits(teacher_model, rollout) if spec.method == "kd" else None
        ids, attn = rollout.input_ids.to(world.device), rollout.attention_mask.to(world.device)
        tokens = rollout.response_ids.to(world.device)
        mask = rollout.response_mask.to(world.device).float()
        losses = []
        for _ in range(p.ppo_epochs):
            for mb in torch.randperm(len(ids)).split(p.ppo_mini_batch_size):
                logits = response_positions(padded_forward(student, ids[mb], attn[mb]).logits, rollout)
                if spec.method == "kd":
                    loss = forward_kd_loss(logits, target[mb], mask[mb])
                else:
                    loss = sft_loss(logits, tokens[mb], mask[mb])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
                optimizer.step()
                losses.append(loss.detach())
        log.append({"step": step + 1, "loss": torch.stack(losses).mean().item()})
        measure((step + 1) * p.ppo_batch_size, student)
    return DistillRun(student.eval(), log, measure.rows, time.perf_counter() - t0 - measure.seconds)


class _EachStep(TrainerCallback):
    """Between TRL's steps: stop cleanly on an interrupt, and measure at the checkpoints."""

    def __init__(self, measure: _Checkpoints, per_step: int):
        self.measure, self.per_step = measure, per_step

    def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
        interrupt.check()
        self.measure(state.global_step * self.per_step, model)


def _trl(
    world: World,
    teacher_model,
    start: PreTrainedModel,
    spec: DistillSpec,
    max_steps: int,
    measure: _Checkpoints,
) -> DistillRun:
    """TRL's ``DistillationTrainer`` at ``spec.trl_beta``: the student samples a minibatch of the
    preset's size per step; full-vocabulary generalized JSD on it."""
    from trl import DistillationConfig, DistillationTrainer

    p = world.preset
    args = DistillationConfig(
        output_dir=tempfile.mkdtemp(prefix="klcourse-distill-"),
        beta=spec.trl_beta,
        per_device_train_batch_size=p.ppo_mini_batch_size,
        max_steps=max_steps,
        max_completion_length=world.max_new_tokens,
        temperature=1.0,
        learning_rate=p.ppo_lr,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        logging_steps=min(LOGGING_STEPS, max_steps),  # a short run logs too
        **quiet_trainer_args(DistillationConfig, spec.seed),
    )
    student = copy.deepcopy(start).requires_grad_(True)
    prompts = world.prompts(max_steps * p.ppo_mini_batch_size, seed=prompt_seed(spec.seed, 0, 0))
    with warnings.catch_warnings(), library_bars_off():
        warnings.simplefilter("ignore", FutureWarning)  # TRL calls transformers' deprecated names
        trainer = DistillationTrainer(
            model=student,
            teacher_model=copy.deepcopy(teacher_model),
            args=args,
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=world.tokenizer,
            optimizers=(adamw(student.parameters(), p.ppo_lr), None),
            callbacks=[_EachStep(measure, p.ppo_mini_batch_size)],
        )
        trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        trainer.train()
    seconds = time.perf_counter() - t0
    log = [
        {"step": row["step"], "loss": row["loss"], **{k: row[k] for k in ("entropy",) if k in row}}
        for row in trainer.state.log_history
        if "loss" in row
    ]
    return DistillRun(unpatched(trainer.model).eval(), log, measure.rows, seconds - measure.seconds)


def train_student(
    world: World, teacher_model: PreTrainedModel, spec: DistillSpec, steps: int | None = None
) -> DistillRun:
    """Distil ``teacher_model`` into a copy of :func:`student_start` by ``spec.method`` on the
    preset's episode budget (``steps`` PPO-sized steps of ``ppo_batch_size`` episodes; default the
    preset's ``ppo_steps``; fewer replay the start of a run), measuring the student at
    :func:`checkpoint_episodes`.

    Taught in notebook 09.
    """
    p = world.preset
    steps = p.ppo_steps if steps is None else steps
    measure = _Checkpoints(world, teacher_model, spec.seed, checkpoint_episodes(world, steps))
    start = student_start(world, spec.student)
    measure(0, start)
    measure.seconds = 0.0  # the start is measured before training's clock starts
    if spec.method in ("kd", "sft"):
        return _on_teacher_samples(world, teacher_model, start, spec, steps, measure)
    if spec.method == "trl":
        minibatches = steps * p.ppo_batch_size // p.ppo_mini_batch_size
        return _trl(world, teacher_model, start, spec, minibatches, measure)
    config = config_for(p, beta=1.0, steps=steps, seed=spec.seed, max_new_tokens=world.max_new_tokens)
    result = train(
        TeacherWorld(world, teacher_model),
        config,
        progress=False,
        data_parallel=False,
        start=start,
        after_step=lambda step, policy: measure(step * p.ppo_batch_size, policy),
    )
    keep = ("step", "kl_k1", "entropy", "response_length")
    log = [{k: row[k] for k in keep} for row in result.metrics.to_dict("records")]
    return DistillRun(result.policy.eval(), log, measure.rows, result.seconds - measure.seconds)


def measure_student(
    world: World, teacher_model: PreTrainedModel, student: PreTrainedModel, seed: int
) -> dict:
    """A student (or the teacher, or the SFT model) against the teacher: ``reverse`` =
    ``KL(π_s ‖ π_t)`` and ``forward`` = ``KL(π_t ‖ π_s)`` per response (summed k1 on
    :data:`EVALUATION_SAMPLES` samples of the student and of the teacher), ``reverse_se``, gold
    reward, well-formed rate and response entropy (:func:`klcourse.trainers.evaluate` on a
    :class:`TeacherWorld`), and distinct-2 and modal share over the world's diversity prompts
    (:func:`klcourse.sweep.final_diversity`).

    Taught in notebook 09.
    """
    e = evaluate(
        TeacherWorld(world, teacher_model),
        student,
        n=EVALUATION_SAMPLES,
        seed=EVALUATION_SEED + seed,
        detail=True,
    )
    d = final_diversity(world, student, world.max_new_tokens, seed)
    return {
        "reverse": e["kl_sequence"],
        "reverse_se": e["kl_sequence_se"],
        "forward": e["kl_forward"],
        "gold_reward": e["gold_reward"],
        "well_formed": e["well_formed"],
        "entropy": e["entropy"],
        "entropy_se": e["entropy_se"],
        "distinct_2": d.distinct_2,
        "modal_share": d.modal_share,
    }


def run_one(world: World, spec: DistillSpec, path: Path) -> dict:
    """Train one student, measure it and store both atomically (sealed, like a sweep run); return
    the payload.

    Taught in notebook 09.
    """
    t0 = time.perf_counter()
    teacher_model = teacher(world, spec.teacher_beta)
    run = train_student(world, teacher_model, spec)
    payload = {
        "spec": asdict(spec),
        "preset": asdict(world.preset),
        "world": world_key(world),
        "teacher": asdict(teacher_config(world, spec.teacher_beta)),
        "evaluations": run.evaluations,
        "log": run.log,
        "train_seconds": run.seconds,
        "seconds": time.perf_counter() - t0,
        "provenance": provenance(world),
    }
    write_result(path, payload)
    return payload


def run_any(world: World, spec: DistillSpec | LoRARunSpec, path: Path) -> dict:
    """Train and store one of notebook 09's runs: a student (:func:`run_one`) or a LoRA PPO run
    (:func:`klcourse.sweep.run_one`, without its progress bar).

    Taught in notebook 09.
    """
    if isinstance(spec, LoRARunSpec):
        return run_sweep_one(world, spec, path, progress=False)
    return run_one(world, spec, path)


def summarise(results: dict[str, dict], episodes: int | None = None) -> pd.DataFrame:
    """One row per method (its :attr:`DistillSpec.label`, in the order first seen) and checkpoint
    (``episodes``; only that one if given): ``direction``, ``seeds`` and, over seeds, the mean and
    standard error ``<column>_se = std/√seeds`` of every :func:`measure_student` column (the runs'
    own standard errors left out) and of the whole run's training time.

    Taught in notebook 09.
    """
    rows = []
    for r in results.values():
        spec = DistillSpec(**r["spec"])
        for e in r["evaluations"]:
            if episodes is None or e["episodes"] == episodes:
                own = {k: v for k, v in e.items() if not k.endswith("_se")}
                rows.append(
                    {"label": spec.label, "direction": spec.direction, **own, "train_s": r["train_seconds"]}
                )
    if not rows:
        raise ValueError("no runs to summarise")
    frame = pd.DataFrame(rows)
    keys = ["label", "episodes"]
    out = over_seeds(frame, keys, frame.columns.drop([*keys, "direction"]))
    out.insert(1, "direction", frame.groupby(keys, sort=False)["direction"].first())
    return out


# ----------------------------------------------------------------------------- what is stored


#: Bytes of one number in each storage type.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
#: Bytes of a token id (int32: enough for any vocabulary below 2³¹).
INDEX_BYTES = 4


def target_bytes(vocab: int, dtype: str, kind: str, k: int | None = None) -> int:
    """Bytes stored per token for a distillation target: ``full``, the teacher's whole next-token
    distribution (``vocab`` numbers); ``sampled``, the sampled token's id and its teacher log-prob
    (what k1 needs); ``top-k``, the ``k`` largest log-probs and their ids.

    Taught in notebook 09.
    """
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    size = DTYPE_BYTES[dtype]
    if kind == "full":
        return vocab * size
    if kind == "sampled":
        return INDEX_BYTES + size
    if kind == "top-k":
        if k is None or not 1 <= k <= vocab:
            raise ValueError(f"top-k needs 1 ≤ k ≤ vocab ({vocab}), got {k}")
        return k * (INDEX_BYTES + size)
    raise ValueError(f"kind must be 'full', 'sampled' or 'top-k', got {kind!r}")


def stored_target(teacher_logits: torch.Tensor, dtype: str, kind: str, k: int | None = None) -> dict:
    """The tensors a distillation dataset would store for ``teacher_logits`` ``[N, V]`` (one row per
    token): ``full`` the log-probs, ``top-k`` the ``k`` largest and their int32 ids, ``sampled``
    one sampled id and its log-prob; in ``dtype``.

    Taught in notebook 09.
    """
    target_bytes(teacher_logits.shape[-1], dtype, kind, k)  # validates the arguments
    torch_dtype = getattr(torch, dtype)
    logprobs = teacher_logits.float().log_softmax(-1)
    if kind == "full":
        return {"logprobs": logprobs.to(torch_dtype)}
    if kind == "top-k":
        values, ids = logprobs.topk(k, dim=-1)
        return {"logprobs": values.to(torch_dtype), "ids": ids.to(torch.int32)}
    ids = torch.multinomial(logprobs.exp(), 1)
    return {"logprobs": logprobs.gather(-1, ids).to(torch_dtype), "ids": ids.to(torch.int32)}


def top_k_forward_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, k: int
) -> torch.Tensor:
    """The forward KL per token with the teacher truncated to its ``k`` most likely tokens and
    renormalised over them, ``Σ_{v∈K} p̃_t(v) log(p̃_t(v)/π_s(v))`` with ``p̃_t = π_t/π_t(K)`` on the
    top-k set ``K``: what KD from stored top-k logits minimises. ``[N, R]``, 0 where ``mask`` is 0.

    Taught in notebook 09.
    """
    if not 1 <= k <= teacher_logits.shape[-1]:
        raise ValueError(f"k must be in [1, {teacher_logits.shape[-1]}], got {k}")
    t = teacher_logits.float().log_softmax(-1)
    s = student_logits.float().log_softmax(-1)
    top, ids = t.topk(k, dim=-1)
    renorm = top - top.logsumexp(-1, keepdim=True)
    kl = (renorm.exp() * (renorm - s.gather(-1, ids))).sum(-1)
    return kl * mask.to(kl.device)


def top_k_mass(teacher_logits: torch.Tensor, k: int) -> torch.Tensor:
    """The teacher's probability on its ``k`` most likely tokens at each position, ``π_t(K)``.

    Taught in notebook 09.
    """
    return teacher_logits.float().softmax(-1).topk(k, dim=-1).values.sum(-1)
