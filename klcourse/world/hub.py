"""A hub world: the course's PPO, KL measurements and β sweep on any causal LM and reward model.

:func:`load_hub_world` takes a policy (any causal LM, by hub name or local folder), a reward model
(any sequence classifier, with its *own* tokenizer), prompts from a ``.txt`` or ``.jsonl`` file or a
``datasets`` dataset, and optionally a gold reward model (Gao et al. 2022's setting: a larger reward
model as the gold, a smaller one as the proxy), and returns a :class:`HubWorld`, which implements
:class:`klcourse.world.protocol.RLWorld` as the synthetic world does. What real models do, and how
each is handled here:

* **No pad token** (GPT-2): pad = eos. The pad id then cannot say where a text ends; every mask
  here comes from the attention mask and the sampled end token, never from the pad id.
* **Left-padded prompts of unequal length**: every forward pass takes its position ids from the
  attention mask (:mod:`klcourse.padding`), so a log-prob or a score does not depend on its batch.
* **An end token the tokenizer does not name**: a model's generation config may end responses
  with other tokens (a chat model's end-of-turn); a response ends at any of them.
* **Sampling options in a model's generation config** (``top_k``, ``repetition_penalty``, …) would
  make ``generate`` sample from another distribution than the π whose log-probs PPO uses; the
  course's sampler reads none of them (:func:`klcourse.sampling.draw_tokens`), and the reference
  gets a plain generation config for TRL's trainers, which call ``generate``.
* **A reward model with its own tokenizer**: each response is decoded together with its prompt
  (a SentencePiece tokenizer drops a response's leading space when it is decoded alone), joined to
  the question (through the reward tokenizer's chat template when it has one, as a user turn and an
  assistant turn) and re-tokenised; encoders (BERT, RoBERTa, DistilBERT), which pool their first
  token, are padded on the right and keep their own positions. The value model then starts from the
  policy's transformer with a zero head (:class:`klcourse.ppo.PolicyAndValue`). A decoder reward
  model over the policy's own tokens (a ``score`` head, one output, no chat template, float32)
  scores the sampled tokens themselves, as the synthetic world's does, and the value model starts
  from it [Ouyang 2022].
* **An instruct policy**: ``chat_template=True`` feeds each prompt as a user turn of the policy's
  chat template; the reward models read the question, not the template.
* **Classifiers with several outputs** (an IMDB sentiment model): ``reward_label`` names the one read.
* **Responses cut off at** ``max_new_tokens``: PPO subtracts ``missing_eos_penalty`` (if given) from
  their normalised score [Huang et al. 2024].
* **bfloat16 on a GPU**: ``reward_dtype="bfloat16"`` holds the frozen reward and gold models in
  bfloat16, halving their memory; the policy (which trains) and the reference stay in float32.

The proxy score is normalised to mean 0, std 1 on the reference's own samples, as in the synthetic
world. Nothing here downloads unless a name is not a local folder and the hub can be reached; with
``HF_HUB_OFFLINE=1`` a missing model is one line (a :class:`klcourse.settings.SettingError`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from huggingface_hub.errors import HFValidationError
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from klcourse.config import Preset, get_preset, pick_device
from klcourse.padding import sequence_scores
from klcourse.sampling import Rollout, sample
from klcourse.settings import SettingError
from klcourse.world.artifacts import config_key
from klcourse.world.core import MAX_RESPONSE_TOKENS, NORMALISATION_SAMPLES, library_bars_off
from klcourse.world.loading import FROM_PRETRAINED, load_causal_lm, load_reward_model, load_tokenizer
from klcourse.world.prompts import _first_line, read_prompts

#: Prompts a run's final policy is sampled on to measure its diversity (the first of the pool).
DIVERSITY_PROMPTS = 8
#: Rows per forward pass when the reference is sampled for the normalisation.
BATCH = 64

T = TypeVar("T")


@dataclass
class Reader:
    """A sequence classifier that scores prompt + response text with its own tokenizer: the proxy
    reward model, or the gold one.

    Taught in notebook 03.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    label: int

    def texts(self, prompts: list[str], responses: list[str]) -> list[str]:
        """What the reader reads of each prompt and response: a user turn and an assistant turn of
        its tokenizer's chat template when it has one, else the two texts joined."""
        if not self.tokenizer.chat_template:
            return [p + r for p, r in zip(prompts, responses, strict=True)]
        return [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
            )
            for p, r in zip(prompts, responses, strict=True)
        ]

    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """The raw score of each prompt + response, ``[B]`` float32: :meth:`texts`, right-padded, read
        by :func:`klcourse.padding.sequence_scores` at output ``label``."""
        special = not self.tokenizer.chat_template  # a template writes its own special tokens
        device = next(self.model.parameters()).device
        longest = min(
            self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", 10**9)
        )
        enc = self.tokenizer(
            self.texts(prompts, responses),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=longest,  # a text longer than the model reads is cut at its end
            add_special_tokens=special,
        ).to(device)
        with torch.no_grad():
            return sequence_scores(self.model, enc["input_ids"], enc["attention_mask"], self.label)


@dataclass
class HubWorld:
    """Any causal LM as policy and reference, any reward model, prompts from a file or a dataset:
    a :class:`klcourse.world.protocol.RLWorld` (see the module docstring for what it handles).

    Taught in notebook 03.
    """

    preset: Preset
    device: torch.device
    tokenizer: PreTrainedTokenizerBase
    reference: PreTrainedModel
    reward: Reader
    gold_reader: Reader | None
    prompt_pool: list[str]
    prompt_tokens: tuple[int, int] | None
    chat_template: bool
    max_new_tokens: int
    missing_eos_penalty: float | None
    value_from_reward: bool
    end_tokens: list[int]
    names: dict[str, str]
    normalisation: tuple[float, float] = (0.0, 1.0)
    #: the question behind each templated prompt this world has handed out (with ``chat_template``)
    asked: dict[str, str] = field(default_factory=dict)

    @property
    def reward_model(self) -> PreTrainedModel:
        """The proxy reward model."""
        return self.reward.model

    @property
    def eos_token_ids(self) -> list[int]:
        """The tokens that end a response: the tokenizer's eos and those of the model's generation config."""
        return self.end_tokens

    @property
    def key(self) -> dict[str, str]:
        """The models, prompts and response settings this world was made from."""
        return self.names

    @property
    def score_normalisation(self) -> tuple[float, float]:
        """``(μ, σ)`` of the reward model's raw score on the reference's own samples."""
        return self.normalisation

    def questions(self, n: int, seed: int) -> list[str]:
        """``n`` prompts as the pool has them, drawn with replacement, reproducible from ``seed``; with
        ``prompt_tokens = (lo, hi)`` each is cut to its first ``k ~ U{lo … hi}`` tokens (TRL's IMDB
        example queries with the first 2–8 tokens of a review)."""
        rng = np.random.default_rng(seed)
        picks = [self.prompt_pool[i] for i in rng.integers(len(self.prompt_pool), size=n)]
        return picks if self.prompt_tokens is None else self._cut(picks, rng)

    def _cut(self, texts: list[str], rng: np.random.Generator) -> list[str]:
        lo, hi = self.prompt_tokens
        cut = []
        for text, k in zip(texts, rng.integers(lo, hi + 1, size=len(texts)), strict=True):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: int(k)]
            cut.append(self.tokenizer.decode(ids))
        return cut

    def as_policy_prompt(self, question: str) -> str:
        """What the policy is fed for ``question``: the question itself, or with ``chat_template`` a
        user turn of the policy tokenizer's chat template ending in the assistant's cue (less the
        tokenizer's own begin token, which tokenizing adds again)."""
        if not self.chat_template:
            return question
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        bos = self.tokenizer.bos_token
        adds_bos = bos is not None and self.tokenizer("x")["input_ids"][:1] == [self.tokenizer.bos_token_id]
        prompt = text.removeprefix(bos) if adds_bos else text
        self.asked[prompt] = question
        return prompt

    def prompts(self, n: int, seed: int) -> list[str]:
        """``n`` policy prompts from ``seed``: :meth:`questions`, then :meth:`as_policy_prompt`."""
        return [self.as_policy_prompt(q) for q in self.questions(n, seed)]

    def diversity_prompts(self) -> list[str]:
        """The first :data:`DIVERSITY_PROMPTS` distinct prompts of the pool (each cut with seed 0)."""
        rng, distinct = np.random.default_rng(0), []
        for question in dict.fromkeys(self.prompt_pool):  # in order, cutting only as many as it takes
            question = question if self.prompt_tokens is None else self._cut([question], rng)[0]
            if question not in distinct:
                distinct.append(question)
            if len(distinct) == DIVERSITY_PROMPTS:
                break
        return [self.as_policy_prompt(q) for q in distinct]

    def split(self, rollout: Rollout) -> tuple[list[str], list[str]]:
        """Each row's question and response text. The response is decoded together with its prompt
        and taken as what follows the decoded prompt: a SentencePiece tokenizer (Llama-2, Mistral)
        drops a leading space when a response is decoded alone. End tokens and special tokens out."""
        ends = torch.tensor(self.end_tokens)
        questions, responses = [], []
        for text, p, pm, r, rm in zip(
            rollout.prompts,
            rollout.prompt_ids.cpu(),
            rollout.prompt_mask.cpu(),
            rollout.response_ids.cpu(),
            rollout.response_mask.cpu(),
            strict=True,
        ):
            prompt = p[pm.bool()]
            response = r[rm.bool()]
            response = response[~torch.isin(response, ends)]
            head = self.tokenizer.decode(prompt, skip_special_tokens=True)
            whole = self.tokenizer.decode(torch.cat([prompt, response]), skip_special_tokens=True)
            tail = whole[len(head) :] if whole.startswith(head) else self.tokenizer.decode(response)
            questions.append(self.asked.get(text, text))
            responses.append(tail)
        return questions, responses

    def texts(self, rollout: Rollout) -> list[str]:
        """Question + response of each row (the response keeps its own leading space)."""
        return [q + r for q, r in zip(*self.split(rollout), strict=True)]

    def raw_score(self, rollout: Rollout) -> torch.Tensor:
        """The reward model's raw score of each row (before the normalisation), ``[B]``: of the sampled
        tokens themselves, end token included, when the reward model reads the policy's tokens
        (``value_from_reward``, as the synthetic world's does: decoding and re-tokenising can split a
        sampled word differently); else of the decoded question and response (:class:`Reader`)."""
        if not self.value_from_reward:
            return self.reward(*self.split(rollout))
        on = next(self.reward_model.parameters()).device
        ids, mask = rollout.input_ids.to(on), rollout.attention_mask.to(on)
        return sequence_scores(self.reward_model, ids, mask, self.reward.label)

    def score(self, rollout: Rollout) -> torch.Tensor:
        """``(r − μ)/σ`` of each row (PPO subtracts :attr:`missing_eos_penalty` where a response did
        not end, as it does for any world)."""
        mean, std = self.normalisation
        return (self.raw_score(rollout) - mean) / std

    def gold(self, rollout: Rollout) -> torch.Tensor | None:
        """The gold reward model's raw score of each row, or ``None`` without one."""
        return None if self.gold_reader is None else self.gold_reader(*self.split(rollout))

    def well_formed(self, rollout: Rollout) -> None:
        """A hub world has no grammar to parse its responses with."""
        return None


def _load(what: str, name: str, loader: Callable[..., T], *args) -> T:
    """``loader(name, *args)``, with a model that cannot be had (not a folder here, and not on the hub
    or not downloadable) or cannot be used as ``what`` turned into one line naming it."""
    try:
        return loader(name, *args)
    except ValueError as e:  # a model that loads but cannot serve (a classifier without a label)
        if not isinstance(e, HFValidationError):
            raise SettingError(f"{what} {name!r}: {_first_line(e)}") from None
        error = e
    except OSError as e:
        error = e
    if Path(name).expanduser().exists():
        raise SettingError(f"{what} {name!r}: {_first_line(error)}") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    why = "and HF_HUB_OFFLINE is set" if offline else "and not on the hub, or not downloadable"
    raise SettingError(f"{what} {name!r}: no such model folder here {why}: {_first_line(error)}") from None


def _model_key(name: str) -> str:
    """A hub name as given (pin a revision by downloading it to a folder); a local folder by its
    absolute path and a hash of its files' names, sizes and modification times, so that a folder
    trained again names a different world."""
    path = Path(name).expanduser()
    if not path.is_dir():
        return name
    files = {
        str(f.relative_to(path)): [f.stat().st_size, f.stat().st_mtime_ns]
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }
    return f"{path.resolve()}@{config_key(files)}"


def _reader(what: str, name: str, label: int | None, dtype: torch.dtype, device: torch.device) -> Reader:
    model = _load(what, name, load_reward_model, label)
    tokenizer = _load(f"{what} tokenizer of", name, load_tokenizer)
    tokenizer.padding_side = "right"  # an encoder pools its first token; a decoder is read at its last
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return Reader(model, tokenizer, 0 if label is None else label)


def load_hub_world(
    policy: str,
    reward: str,
    prompts: str,
    *,
    reward_label: int | None = None,
    gold: str | None = None,
    gold_label: int | None = None,
    prompt_column: str | None = None,
    prompt_split: str = "train",
    prompt_tokens: tuple[int, int] | None = None,
    chat_template: bool = False,
    max_new_tokens: int = MAX_RESPONSE_TOKENS,
    missing_eos_penalty: float | None = None,
    reward_dtype: str = "float32",
    preset: Preset | str | None = None,
    device: torch.device | None = None,
    normalisation_samples: int = NORMALISATION_SAMPLES,
    seed: int = 0,
) -> HubWorld:
    """Load a :class:`HubWorld`: ``policy`` (a causal LM: the reference, and the policy's start),
    ``reward`` (a sequence classifier, read at ``reward_label`` if it has several outputs),
    ``prompts`` (:func:`read_prompts`), an optional ``gold`` reward model, and the response settings;
    then sample ``normalisation_samples`` reference responses (seeded ``seed + 3``) and normalise the
    reward on them. ``preset`` gives PPO's sizes (default: by device).

    Taught in notebook 03.
    """
    device = device or pick_device()
    preset = preset if isinstance(preset, Preset) else get_preset(preset, device)
    if prompt_tokens is not None and not 1 <= prompt_tokens[0] <= prompt_tokens[1]:
        raise SettingError(f"prompt tokens must be 1 ≤ MIN ≤ MAX, got {prompt_tokens}")
    if reward_dtype not in ("float32", "bfloat16"):
        raise SettingError(f"reward dtype must be float32 or bfloat16, got {reward_dtype!r}")
    dtype = torch.bfloat16 if reward_dtype == "bfloat16" else getattr(torch, FROM_PRETRAINED["dtype"])
    pool = read_prompts(prompts, prompt_column, prompt_split)
    tokenizer = _load("policy tokenizer of", policy, load_tokenizer)
    if chat_template and not tokenizer.chat_template:
        raise SettingError(f"policy {policy!r}: its tokenizer has no chat template")
    with library_bars_off():  # transformers' "Loading weights" bars
        reference = _load("policy", policy, load_causal_lm)
        proxy = _reader("reward model", reward, reward_label, dtype, device)
        gold_reader = None if gold is None else _reader("gold reward model", gold, gold_label, dtype, device)
    configured = reference.generation_config.eos_token_id
    configured = [] if configured is None else [configured] if isinstance(configured, int) else configured
    ends = sorted({tokenizer.eos_token_id, *configured} - {None})
    if not ends:
        raise SettingError(
            f"policy {policy!r}: neither its tokenizer nor its generation config names an end token"
        )
    reference.generation_config = GenerationConfig(
        eos_token_id=ends, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    )
    reference = reference.to(device).eval().requires_grad_(False)
    same_tokens = proxy.tokenizer.get_vocab() == tokenizer.get_vocab()
    value_from_reward = (
        same_tokens
        and not proxy.tokenizer.chat_template
        and isinstance(getattr(proxy.model, "score", None), torch.nn.Module)
        and proxy.model.config.num_labels == 1
        and dtype == torch.float32
    )
    names = {
        "policy": _model_key(policy),
        "reward": _model_key(reward) + ("" if reward_label is None else f"#{reward_label}"),
        "gold": "" if gold is None else _model_key(gold) + ("" if gold_label is None else f"#{gold_label}"),
        "prompts": f"{_model_key(prompts)}:{prompt_split}:{prompt_column or ''}:{config_key({'p': pool})}",
        "prompt_tokens": "" if prompt_tokens is None else f"{prompt_tokens[0]}-{prompt_tokens[1]}",
        "chat_template": "yes" if chat_template else "",
        "max_new_tokens": str(max_new_tokens),
        "missing_eos_penalty": "" if missing_eos_penalty is None else f"{missing_eos_penalty:g}",
        "reward_dtype": reward_dtype,
        "normalisation": f"{normalisation_samples}@{seed}",
    }
    world = HubWorld(
        preset=preset,
        device=device,
        tokenizer=tokenizer,
        reference=reference,
        reward=proxy,
        gold_reader=gold_reader,
        prompt_pool=pool,
        prompt_tokens=prompt_tokens,
        chat_template=chat_template,
        max_new_tokens=max_new_tokens,
        missing_eos_penalty=missing_eos_penalty,
        value_from_reward=value_from_reward,
        end_tokens=ends,
        names=names,
    )
    world.normalisation = reference_normalisation(world, normalisation_samples, seed + 3)
    return world


def reference_normalisation(world: HubWorld, n: int, seed: int) -> tuple[float, float]:
    """``(μ, σ)`` of the reward model's raw score on ``n`` responses of the reference, sampled at
    temperature 1 (seed ``seed``) in batches of :data:`BATCH`.

    Taught in notebook 03.
    """
    torch.manual_seed(seed)
    prompts = world.prompts(n, seed=seed)
    raw = torch.cat(
        [
            world.raw_score(
                sample(
                    world.reference,
                    world.tokenizer,
                    prompts[i : i + BATCH],
                    max_new_tokens=world.max_new_tokens,
                    eos_token_id=world.eos_token_ids,
                )
            ).cpu()
            for i in range(0, n, BATCH)
        ]
    )
    std = raw.std().item()
    if not std > 0:
        raise SettingError(
            "the reward model gives every reference sample the same score: nothing to normalise"
        )
    return raw.mean().item(), std
