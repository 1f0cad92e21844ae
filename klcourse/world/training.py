"""Training the world's models with TRL: the SFT model (``SFTTrainer``) and the proxy reward
model (``RewardTrainer``).

Both are small GPT-2-architecture ``transformers`` models. The reward model learns Bradley–Terry
preferences, ``P(chosen ≻ rejected) = σ(r(chosen) − r(rejected))``, from pairs of **well-formed**
reviews ranked by the simulated annotator of :mod:`klcourse.world.annotator`. Two doors to reward hacking
follow: it never sees malformed text, so how it scores malformed text is whatever it happens to
extrapolate; and it learns the annotator's biases, which the gold reward does not share.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
)
from trl import RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from klcourse.config import WorldConfig
from klcourse.padding import sequence_scores
from klcourse.tools import interrupt
from klcourse.world.annotator import ANNOTATOR_NOISE, annotator_rating
from klcourse.world.grammar import Grammar


def _gpt2_config(tokenizer: PreTrainedTokenizerBase, cfg: WorldConfig, **extra) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def new_causal_lm(tokenizer: PreTrainedTokenizerBase, cfg: WorldConfig) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 language model of the world's shape (seeded by ``cfg.seed``).

    Taught in notebook 03.
    """
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(_gpt2_config(tokenizer, cfg))


def new_reward_model(tokenizer: PreTrainedTokenizerBase, cfg: WorldConfig) -> GPT2ForSequenceClassification:
    """A freshly initialised GPT-2 scalar-output sequence classifier (``num_labels=1``).

    Taught in notebook 03.
    """
    torch.manual_seed(cfg.seed + 1)
    return GPT2ForSequenceClassification(_gpt2_config(tokenizer, cfg, num_labels=1))


def no_checkpointing(config_class: type) -> dict[str, bool]:
    """Trainer arguments that switch gradient (activation) checkpointing off, under the name
    ``config_class`` knows: transformers renamed the argument during 5.x.

    Taught in notebook 03.
    """
    renamed = "activation_checkpointing" in config_class.__dataclass_fields__
    return {"activation_checkpointing" if renamed else "gradient_checkpointing": False}


def quiet_trainer_args(config_class: type, seed: int) -> dict:
    """The ``TrainingArguments`` a course run of a TRL trainer shares: float32 (no bf16), dropout off,
    no checkpointing of activations or of the model, no reports, no progress bar, on the CPU unless
    CUDA is present, ``seed`` for both the model and the data order, no data-loader workers.

    Used in notebooks 08 and 09.
    """
    return {
        "disable_dropout": True,
        "bf16": False,
        **no_checkpointing(config_class),
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": not torch.cuda.is_available(),
        "disable_tqdm": True,
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
    }


@dataclass(frozen=True)
class Schedule:
    """How a model is trained: passes over the data, batch size, peak learning rate (cosine decay
    after 10 warm-up steps) and seed.

    Taught in notebook 03.
    """

    epochs: int
    batch: int
    lr: float
    seed: int


def _settings(schedule: Schedule, progress: bool) -> dict:
    """Trainer arguments shared by both runs, chosen for speed on a CPU.

    bf16 autocast and gradient checkpointing (TRL's defaults where supported) are switched off:
    on a CPU without bf16 matrix units they make these small models about 8× slower.
    """
    return dict(
        output_dir=tempfile.mkdtemp(prefix="klcourse-trainer-"),
        num_train_epochs=schedule.epochs,
        per_device_train_batch_size=schedule.batch,
        learning_rate=schedule.lr,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        logging_steps=50,
        # the loss is logged only to show it on the progress bar (see _fit)
        logging_strategy="steps" if progress else "no",
        save_strategy="no",
        report_to="none",
        seed=schedule.seed,
        data_seed=schedule.seed,
        bf16=False,
        **no_checkpointing(SFTConfig),
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,  # the trainers' own bars and notebook tables: replaced by _Progress
        dataloader_num_workers=0,
    )


class _Progress(TrainerCallback):
    """The course's progress bar (``tqdm.auto``) over a trainer's steps, showing the logged loss."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.bar = tqdm(total=state.max_steps, desc=self.desc)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.bar.update(1)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}")

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self.bar.close()


class _StopOnCtrlC(TrainerCallback):
    """Stop at the next step after a Ctrl-C that a library swallowed (:mod:`klcourse.tools.interrupt`);
    the trainers map their datasets, where datasets catches it, before training begins."""

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        interrupt.check()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        interrupt.check()


def _fit(trainer: Trainer, desc: str, progress: bool) -> PreTrainedModel:
    """Train, showing nothing but the course's progress bar (if ``progress``), and return the model
    in eval mode as plain ``transformers`` code.

    The trainers would print their final metric dict (``PrinterCallback``) into a notebook cell's
    output; TRL's ``SFTTrainer`` also replaces the model's ``forward`` on the instance, which is
    undone here (:func:`unpatched`).
    """
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_StopOnCtrlC)
    if progress:
        trainer.add_callback(_Progress(desc))
    trainer.train()
    return unpatched(trainer.model).eval()


def unpatched(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` with TRL's per-instance ``forward`` patch (``SFTTrainer``, ``GRPOTrainer``) removed,
    so that it samples and scores like the same weights loaded from disk.

    Taught in notebook 03.
    """
    model.__dict__.pop("forward", None)
    return model


def _ids_with_eos(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids of ``<bos> text <eos>`` for each text: how every model of the world sees a review."""
    return tokenizer([t + tokenizer.eos_token for t in texts])["input_ids"]


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    schedule: Schedule,
    *,
    progress: bool = True,
) -> PreTrainedModel:
    """Supervised fine-tuning with TRL's ``SFTTrainer``: next-token cross-entropy on ``texts``.

    Each text is tokenized as ``<bos> words… <eos>``, so the model learns where reviews end.

    Taught in notebook 03.
    """
    dataset = Dataset.from_dict({"input_ids": _ids_with_eos(tokenizer, texts)})
    args = SFTConfig(max_length=model.config.n_positions, **_settings(schedule, progress))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _fit(trainer, "SFT", progress)


def preference_pairs(
    grammar: Grammar, n: int, seed: int, noise: float | None = ANNOTATOR_NOISE
) -> tuple[list[str], list[str]]:
    """``n`` pairs ``(chosen, rejected)`` of well-formed reviews with the same subject, labelled by
    the simulated annotator of :mod:`klcourse.world.annotator`.

    With ``noise = τ`` the annotator prefers ``a`` to ``b`` with the Bradley–Terry probability
    ``σ((u(a) − u(b))/τ)`` of its ratings ``u``, so close calls are sometimes labelled either way,
    as real annotators do; ``noise=None`` labels every pair by the higher rating (for measuring
    how well a reward model ranks). Pairs whose ratings tie are skipped: they carry no preference.

    Taught in notebook 03.
    """
    rng = np.random.default_rng(seed)
    subjects = list(grammar.subjects)
    weights = np.fromiter(grammar.subjects.values(), float)
    chosen: list[str] = []
    rejected: list[str] = []
    while len(chosen) < n:
        subject = subjects[rng.choice(len(subjects), p=weights)]
        a, b = grammar.sample(rng, subject), grammar.sample(rng, subject)
        gap = annotator_rating(a, grammar) - annotator_rating(b, grammar)
        if abs(gap) < 1e-9:
            continue
        prefers_a = gap > 0 if noise is None else rng.random() < 1.0 / (1.0 + math.exp(-gap / noise))
        if not prefers_a:
            a, b = b, a
        chosen.append(" ".join(a))
        rejected.append(" ".join(b))
    return chosen, rejected


def reward_model_pairs(grammar: Grammar, cfg: WorldConfig) -> tuple[list[str], list[str]]:
    """The ``cfg.rm_pairs`` annotated pairs ``(chosen, rejected)`` the world's reward model learns
    from (:func:`preference_pairs`, seeded ``cfg.seed + 1``); notebook 08's DPO trains on the same.

    Taught in notebooks 03 and 08.
    """
    return preference_pairs(grammar, cfg.rm_pairs, seed=cfg.seed + 1)


def train_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    chosen: list[str],
    rejected: list[str],
    schedule: Schedule,
    *,
    progress: bool = True,
) -> PreTrainedModel:
    """Bradley–Terry training with TRL's ``RewardTrainer``: minimise ``−log σ(r_c − r_r)``.

    Taught in notebook 03.
    """
    dataset = Dataset.from_dict(
        {"chosen_ids": _ids_with_eos(tokenizer, chosen), "rejected_ids": _ids_with_eos(tokenizer, rejected)}
    )
    args = RewardConfig(max_length=model.config.n_positions, **_settings(schedule, progress))
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return _fit(trainer, "reward model", progress)


@torch.no_grad()
def score_texts(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], batch: int = 256
) -> torch.Tensor:
    """Reward-model scores of whole texts, each scored as ``<bos> text <eos>`` like in training, in
    padded batches of ``batch`` read with :func:`klcourse.padding.sequence_scores`: a text's score
    does not depend on the texts it is batched with.

    Taught in notebook 03.
    """
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch):
        chunk = [t + tokenizer.eos_token for t in texts[i : i + batch]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
        out.append(sequence_scores(model, enc["input_ids"], enc["attention_mask"]).cpu())
    return torch.cat(out) if out else torch.empty(0)


def pairwise_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    chosen: list[str],
    rejected: list[str],
) -> float:
    """Fraction of pairs the reward model ranks as they are labelled: ``r(chosen) > r(rejected)``
    (the annotator's labels, biases included, not the gold reward).

    Taught in notebook 03.
    """
    return (
        (score_texts(model, tokenizer, chosen) > score_texts(model, tokenizer, rejected))
        .float()
        .mean()
        .item()
    )
