"""The ground-truth RLHF world: build it offline, cache it, load it.

Four artifacts, each a folder that ``from_pretrained`` can load (the tokenizer is saved beside
every model):

* ``tokenizer`` — word-level, from :mod:`klcourse.world.tokenizer`;
* ``sft`` — the SFT model: a small GPT-2 trained on grammar samples with TRL's ``SFTTrainer``;
  it is the frozen reference of every later notebook and the initial policy;
* ``reward`` — the proxy reward model, trained with TRL's ``RewardTrainer`` on pairs of
  well-formed reviews ranked by the biased annotator of :mod:`klcourse.world.annotator`;
* ``drifted`` — the SFT model fine-tuned on positive reviews only: a policy that has drifted from
  the reference, for notebook 03's per-token KL before PPO exists.

``klcourse build`` builds them all with progress bars; :func:`load_world` builds what
is missing and loads the rest. Models from the hub or any local folder load through
:mod:`klcourse.world.loading` the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from klcourse.config import Preset, get_preset, pick_device
from klcourse.padding import sequence_scores
from klcourse.sampling import Rollout, every_prompt, review_prompts, sample, well_formed_rate
from klcourse.world import annotator, artifacts, gold, training
from klcourse.world.grammar import REVIEWS, Grammar
from klcourse.world.loading import load_causal_lm, load_reward_model, load_tokenizer
from klcourse.world.tokenizer import build_tokenizer

#: Bump when the build code changes what it produces: every cached artifact is then rebuilt.
BUILD_VERSION = 3
BUILD_INFO = "build_info.json"
#: Longest response the world's models generate: two clauses and a full stop fit in 14 words.
MAX_RESPONSE_TOKENS = 16
#: Reference samples on which the reward model's scores are normalised to mean 0, std 1.
NORMALISATION_SAMPLES = 1024


@dataclass
class World:
    """The loaded world: grammar, tokenizer, frozen reference (SFT), proxy reward model and the
    drifted policy, all on ``device``, plus what their builds measured.

    Taught in notebook 03.
    """

    preset: Preset
    device: torch.device
    grammar: Grammar
    tokenizer: PreTrainedTokenizerBase
    reference: PreTrainedModel
    reward_model: PreTrainedModel
    drifted: PreTrainedModel
    paths: dict[str, Path]
    build_info: dict[str, dict] = field(default_factory=dict)
    #: the value model starts as the reward model, a GPT-2 over the same tokens (:class:`.RLWorld`)
    value_from_reward: bool = True
    max_new_tokens: int = MAX_RESPONSE_TOKENS
    missing_eos_penalty: float | None = None

    @property
    def eos_token_ids(self) -> list[int]:
        """The token that ends a review, ``<eos>``.

        Taught in notebook 03.
        """
        return [self.tokenizer.eos_token_id]

    @property
    def key(self) -> dict[str, str]:
        """The artifact folders by name: each folder's name carries the hash of what built it.

        Taught in notebook 06.
        """
        return {name: path.name for name, path in sorted(self.paths.items())}

    def prompts(self, n: int, seed: int) -> list[str]:
        """``n`` review prompts ``"the <subject>"``, reproducible from ``seed``.

        Taught in notebooks 03, 04, 05, 06 and 07.
        """
        return review_prompts(self.grammar, n, np.random.default_rng(seed))

    def diversity_prompts(self) -> list[str]:
        """Every prompt of the grammar, one per subject (:func:`klcourse.sampling.every_prompt`).

        Taught in notebook 06.
        """
        return every_prompt(self.grammar)

    def texts(self, rollout: Rollout) -> list[str]:
        """Prompt and response as one review text each (:meth:`klcourse.sampling.Rollout.texts`).

        Taught in notebook 05.
        """
        return rollout.texts()

    def well_formed(self, rollout: Rollout) -> float:
        """The share of responses that ended and parse (:func:`klcourse.sampling.well_formed_rate`).

        Taught in notebook 05.
        """
        return well_formed_rate(rollout, self.grammar)

    @property
    def score_normalisation(self) -> tuple[float, float]:
        """``(μ, σ)`` of the reward model's raw score on the reference's own samples
        (:data:`NORMALISATION_SAMPLES` of them, measured when the reward model was built).

        Taught in notebooks 03 and 05.
        """
        info = self.build_info["reward"]
        return info["score_mean"], info["score_std"]

    @torch.no_grad()
    def score(self, responses: Rollout | list[str]) -> torch.Tensor:
        """The proxy reward ``(r − μ)/σ``: the reward model's raw score ``r`` of each prompt + response,
        normalised by :attr:`score_normalisation` so that the reference's own samples score mean 0,
        std 1 [Ziegler 2019]. ``responses`` is a :class:`Rollout` (scored on its token ids, read at the
        last real token, the ``<eos>``) or whole review texts (each scored as ``<bos> text <eos>``, as
        in training), beside :meth:`gold`, the truth. Either way the positions come from the
        attention mask (:func:`klcourse.padding.sequence_scores`), so a text scores the same alone
        and in any batch.

        Taught in notebooks 03, 04, 05 and 06.
        """
        if isinstance(responses, Rollout):
            device = next(self.reward_model.parameters()).device
            ids, mask = responses.input_ids.to(device), responses.attention_mask.to(device)
            raw = sequence_scores(self.reward_model, ids, mask)
        else:
            raw = training.score_texts(self.reward_model, self.tokenizer, list(responses))
        mean, std = self.score_normalisation
        return (raw - mean) / std

    def gold(self, texts: Rollout | list[str]) -> torch.Tensor:
        """The gold reward of whole review texts (prompt + response), or of a :class:`Rollout`'s:
        the truth the policy never sees, beside :meth:`score`, the proxy it optimises.

        Taught in notebooks 04, 05 and 06.
        """
        texts = texts.texts() if isinstance(texts, Rollout) else texts
        return torch.tensor([gold.gold_reward(t, self.grammar) for t in texts])


def artifact_configs(
    preset: Preset, grammar: Grammar = REVIEWS, version: int = BUILD_VERSION
) -> dict[str, dict]:
    """What each artifact of the world (tokenizer, sft, reward, drifted) is built from; a change to
    any of it changes the artifact's key, and so its folder (:func:`.artifacts.artifact_folder`).
    ``version`` is the build code's :data:`BUILD_VERSION` (an older one names the folders that
    older code made, for checking what a committed result was made from).

    Used in notebooks 03–07. (:func:`build` reads it; so does ``klcourse doctor``.)
    """
    w = asdict(preset.world)
    shape = {k: w[k] for k in ("n_embd", "n_layer", "n_head", "n_positions", "seed")}
    base = {"version": version, "grammar": asdict(grammar)}
    tok = {**base, "kind": "tokenizer"}
    sft = {
        **base,
        "kind": "sft",
        "shape": shape,
        **{k: v for k, v in w.items() if k.startswith("sft_")},
    }
    return {
        "tokenizer": tok,
        "sft": sft,
        "reward": {
            **base,
            "kind": "reward",
            "normalised_on": sft,
            "shape": shape,
            "gold": [gold.ADJECTIVE_VALUES, gold.INTENSIFIER_MULTIPLIERS, gold.MALFORMED_PENALTY],
            "annotator": {"verbosity_bonus": annotator.VERBOSITY_BONUS, "noise": annotator.ANNOTATOR_NOISE},
            **{k: v for k, v in w.items() if k.startswith("rm_")},
        },
        "drifted": {**sft, "kind": "drifted", "drift_samples": w["drift_samples"]},
    }


def _save(folder: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, info: dict) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / BUILD_INFO).write_text(json.dumps(info, indent=1))


def build(
    preset: Preset,
    *,
    grammar: Grammar = REVIEWS,
    force: bool = False,
    progress: bool = True,
    root: Path | None = None,
    log=print,
) -> dict[str, Path]:
    """Build (or find in the cache) every artifact of the world; return their folders.

    With ``progress`` each training shows the course's own progress bar; without it nothing but
    ``log`` lines is shown. ``datasets``' and ``transformers``' own bars stay off either way.

    Taught in notebook 03.
    """
    with library_bars_off():
        return _build(preset, grammar, force, progress, root, log)


@contextmanager
def library_bars_off() -> Iterator[None]:
    """``datasets``' and ``transformers``' progress bars off for the duration, then as they were.

    The world's build and TRL's ``DPOTrainer`` (which maps its dataset) run under it.
    Used in notebooks 03 and 08.
    """
    was = datasets.is_progress_bar_enabled(), transformers.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        if was[0]:
            datasets.enable_progress_bars()
        if was[1]:
            transformers.logging.enable_progress_bar()


def _build(
    preset: Preset, grammar: Grammar, force: bool, progress: bool, root: Path | None, log
) -> dict[str, Path]:
    cfg, configs = preset.world, artifact_configs(preset, grammar)
    paths: dict[str, Path] = {}

    def tokenizer_build(folder: Path) -> None:
        build_tokenizer(grammar).save_pretrained(folder)

    paths["tokenizer"] = artifacts.get_or_build(
        "tokenizer", configs["tokenizer"], tokenizer_build, root=root, force=force, log=log
    )
    tok = load_tokenizer(paths["tokenizer"])

    def sft_build(folder: Path) -> None:
        log(f"sft: training a {cfg.n_layer}-layer, {cfg.n_embd}-wide GPT-2 on {cfg.sft_samples:,} reviews")
        t0 = time.perf_counter()
        texts = grammar.sample_texts(cfg.sft_samples, seed=cfg.seed)
        model = training.train_sft(
            training.new_causal_lm(tok, cfg),
            tok,
            texts,
            training.Schedule(cfg.sft_epochs, cfg.sft_batch, cfg.sft_lr, cfg.seed),
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        rate = _well_formed(model, tok, grammar, n=1000, seed=cfg.seed + 7)
        log(f"sft: trained in {seconds:.1f} s; {rate:.1%} of 1,000 samples are well formed")
        _save(
            folder,
            model,
            tok,
            {"train_seconds": seconds, "well_formed_rate": rate, "samples": 1000},
        )

    paths["sft"] = artifacts.get_or_build("sft", configs["sft"], sft_build, root=root, force=force, log=log)

    def reward_build(folder: Path) -> None:
        log(f"reward: training on {cfg.rm_pairs:,} preference pairs of well-formed reviews")
        t0 = time.perf_counter()
        chosen, rejected = training.reward_model_pairs(grammar, cfg)
        model = training.train_reward_model(
            training.new_reward_model(tok, cfg),
            tok,
            chosen,
            rejected,
            training.Schedule(cfg.rm_epochs, cfg.rm_batch, cfg.rm_lr, cfg.seed),
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        held_c, held_r = training.preference_pairs(grammar, 2000, seed=cfg.seed + 1000, noise=None)
        acc = training.pairwise_accuracy(model, tok, held_c, held_r)
        # Z19 normalises the reward model to mean 0, std 1 on the reference's own samples, so that
        # β has the same meaning whatever scale the reward model's head happened to learn. They are
        # scored the way World.score scores a rollout, so that the normalisation holds for it.
        ref_samples = normalisation_rollout(load_causal_lm(paths["sft"]), tok, grammar, cfg.seed)
        on = next(model.parameters()).device  # the trainer may have moved it to the GPU
        raw = sequence_scores(model, ref_samples.input_ids.to(on), ref_samples.attention_mask.to(on))
        log(f"reward: trained in {seconds:.1f} s; ranks {acc:.1%} of 2,000 held-out pairs like the annotator")
        info = {
            "train_seconds": seconds,
            "heldout_accuracy": acc,
            "heldout_pairs": 2000,
            "score_mean": raw.mean().item(),
            "score_std": raw.std().item(),
        }
        _save(folder, model, tok, info)

    paths["reward"] = artifacts.get_or_build(
        "reward", configs["reward"], reward_build, root=root, force=force, log=log
    )

    def drifted_build(folder: Path) -> None:
        log(f"drifted: fine-tuning the SFT model on {cfg.drift_samples:,} positive reviews")
        t0 = time.perf_counter()
        positive = [
            t
            for t in grammar.sample_texts(cfg.drift_samples * 4, seed=cfg.seed + 2)
            if gold.gold_reward(t, grammar) > 0.3
        ][: cfg.drift_samples]
        model = training.train_sft(
            load_causal_lm(paths["sft"]),
            tok,
            positive,
            training.Schedule(epochs=1, batch=cfg.sft_batch, lr=cfg.sft_lr / 3, seed=cfg.seed),
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        log(f"drifted: trained in {seconds:.1f} s")
        _save(folder, model, tok, {"train_seconds": seconds, "positive_samples": len(positive)})

    paths["drifted"] = artifacts.get_or_build(
        "drifted", configs["drifted"], drifted_build, root=root, force=force, log=log
    )
    return paths


def normalisation_rollout(
    reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, grammar: Grammar, world_seed: int
) -> Rollout:
    """The reference's own samples on which the reward model's score is normalised: one response to
    each of :data:`NORMALISATION_SAMPLES` prompts, sampled at temperature 1 with seed
    ``world_seed + 3``. The world's :attr:`World.score_normalisation` is their raw score's mean and
    standard deviation, so ``World.score`` of this rollout has mean 0 and std 1.

    Taught in notebook 03.
    """
    torch.manual_seed(world_seed + 3)
    prompts = review_prompts(grammar, NORMALISATION_SAMPLES, np.random.default_rng(world_seed + 3))
    return sample(reference, tokenizer, prompts, max_new_tokens=MAX_RESPONSE_TOKENS)


def _well_formed(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, grammar: Grammar, n: int, seed: int
) -> float:
    torch.manual_seed(seed)
    prompts = review_prompts(grammar, n, np.random.default_rng(seed))
    return well_formed_rate(sample(model, tok, prompts, max_new_tokens=MAX_RESPONSE_TOKENS), grammar)


def load_world(
    preset: Preset | str | None = None,
    device: torch.device | None = None,
    *,
    progress: bool = True,
    root: Path | None = None,
    log=print,
) -> World:
    """Load the world of ``preset`` onto ``device``, building whatever the cache lacks.

    Taught in notebook 03.
    """
    device = device or pick_device()
    preset = preset if isinstance(preset, Preset) else get_preset(preset, device)
    paths = build(preset, progress=progress, root=root, log=log)
    with library_bars_off():  # transformers' "Loading weights" bars
        models = {
            "reference": load_causal_lm(paths["sft"]),
            "reward_model": load_reward_model(paths["reward"]),
            "drifted": load_causal_lm(paths["drifted"]),
        }
    for m in models.values():
        m.to(device).eval().requires_grad_(False)
    info = {
        k: json.loads((p / BUILD_INFO).read_text()) for k, p in paths.items() if (p / BUILD_INFO).exists()
    }
    return World(
        preset=preset,
        device=device,
        grammar=REVIEWS,
        tokenizer=load_tokenizer(paths["tokenizer"]),
        paths=paths,
        build_info=info,
        **models,
    )
