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
  reference gets a plain generation config, and sampling reads only what the course passes.
* **A reward model with its own tokenizer**: each response is decoded, joined to its prompt
  (through the reward tokenizer's chat template when it has one, as a user turn and an assistant
  turn) and re-tokenised; encoders (BERT, DistilBERT), which pool their first token, are padded on
  the right. The value model then starts from the policy's transformer with a zero head
  (:class:`klcourse.ppo.PolicyAndValue`).
* **Classifiers with several outputs** (an IMDB sentiment model): ``reward_label`` names the one read.
* **Responses cut off at** ``max_new_tokens``: ``missing_eos_penalty`` (if given) is subtracted from
  their normalised score [Huang et al. 2024].
* **bfloat16 on a GPU**: ``reward_dtype="bfloat16"`` holds the frozen reward and gold models in
  bfloat16; the policy and the reference stay in float32, so that the KL at step 0 is exactly 0.

The proxy score is normalised to mean 0, std 1 on the reference's own samples, as in the synthetic
world. Nothing here downloads unless a name is not a local folder and the hub can be reached; with
``HF_HUB_OFFLINE=1`` a missing model is one line (a :class:`klcourse.settings.SettingError`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from klcourse.config import Preset, get_preset, pick_device
from klcourse.padding import sequence_scores
from klcourse.sampling import Rollout, sample
from klcourse.settings import SettingError
from klcourse.world.artifacts import config_key
from klcourse.world.core import MAX_RESPONSE_TOKENS, NORMALISATION_SAMPLES, library_bars_off
from klcourse.world.loading import FROM_PRETRAINED, load_causal_lm, load_reward_model, load_tokenizer

#: Prompts a run's final policy is sampled on to measure its diversity (the first of the pool).
DIVERSITY_PROMPTS = 8
#: Rows per forward pass when the reference is sampled for the normalisation.
BATCH = 64


@dataclass
class Reader:
    """A sequence classifier that scores prompt + response text with its own tokenizer: the proxy
    reward model, or the gold one.

    Taught in notebook 03.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    label: int

    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """The raw score of each prompt + response, ``[B]`` float32: through the tokenizer's chat
        template when it has one, else the two texts joined; right-padded; read by
        :func:`klcourse.padding.sequence_scores` at output ``label``."""
        tok = self.tokenizer
        if tok.chat_template:
            texts = [
                tok.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
                )
                for p, r in zip(prompts, responses, strict=True)
            ]
            special = False  # the template writes them
        else:
            texts = [p + r for p, r in zip(prompts, responses, strict=True)]
            special = True
        device = next(self.model.parameters()).device
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, add_special_tokens=special).to(
            device
        )
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
    max_new_tokens: int
    missing_eos_penalty: float | None
    value_from_reward: bool
    end_tokens: list[int]
    names: dict[str, str]
    normalisation: tuple[float, float] = (0.0, 1.0)

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

    def prompts(self, n: int, seed: int) -> list[str]:
        """``n`` prompts drawn from the pool with replacement, reproducible from ``seed``; with
        ``prompt_tokens = (lo, hi)`` each is cut to its first ``k ~ U{lo … hi}`` tokens (TRL's IMDB
        example queries with the first 2–8 tokens of a review)."""
        rng = np.random.default_rng(seed)
        picks = [self.prompt_pool[i] for i in rng.integers(len(self.prompt_pool), size=n)]
        if self.prompt_tokens is None:
            return picks
        lo, hi = self.prompt_tokens
        cut = []
        for text, k in zip(picks, rng.integers(lo, hi + 1, size=n), strict=True):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: int(k)]
            cut.append(self.tokenizer.decode(ids))
        return cut

    def diversity_prompts(self) -> list[str]:
        """The first :data:`DIVERSITY_PROMPTS` prompts drawn with seed 0."""
        return self.prompts(DIVERSITY_PROMPTS, seed=0)

    def _split(self, rollout: Rollout) -> tuple[list[str], list[str]]:
        """Each row's prompt and response, decoded from its tokens (special tokens and end tokens out)."""
        ends = torch.tensor(self.end_tokens)
        prompts, responses = [], []
        for p, pm, r, rm in zip(
            rollout.prompt_ids.cpu(),
            rollout.prompt_mask.cpu(),
            rollout.response_ids.cpu(),
            rollout.response_mask.cpu(),
            strict=True,
        ):
            response = r[rm.bool()]
            response = response[~torch.isin(response, ends)]
            prompts.append(self.tokenizer.decode(p[pm.bool()], skip_special_tokens=True))
            responses.append(self.tokenizer.decode(response, skip_special_tokens=True))
        return prompts, responses

    def texts(self, rollout: Rollout) -> list[str]:
        """Prompt + response of each row, decoded from the tokens (a byte-level BPE response keeps its
        own leading space, so the two are joined as they are)."""
        return [p + r for p, r in zip(*self._split(rollout), strict=True)]

    def raw_score(self, rollout: Rollout) -> torch.Tensor:
        """The reward model's raw score of each row (before the normalisation), ``[B]``."""
        return self.reward(*self._split(rollout))

    def score(self, rollout: Rollout) -> torch.Tensor:
        """``(r − μ)/σ`` of each row, minus ``missing_eos_penalty`` where the response did not end."""
        mean, std = self.normalisation
        scores = (self.raw_score(rollout) - mean) / std
        if self.missing_eos_penalty is not None:
            scores = scores - self.missing_eos_penalty * (~rollout.ended).float().to(scores.device)
        return scores

    def gold(self, rollout: Rollout) -> torch.Tensor | None:
        """The gold reward model's raw score of each row, or ``None`` without one."""
        return None if self.gold_reader is None else self.gold_reader(*self._split(rollout))

    def well_formed(self, rollout: Rollout) -> None:
        """A hub world has no grammar to parse its responses with."""
        return None


def read_prompts(source: str, column: str | None = None, split: str = "train") -> list[str]:
    """Prompts from a ``.txt`` file (one per non-empty line), a ``.jsonl`` file (field ``column``,
    default ``prompt``) or a ``datasets`` dataset name (split ``split``, column ``column``, default
    ``text``). A source that cannot be read is a :class:`~klcourse.settings.SettingError` naming it.

    Taught in notebook 03.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        raise SettingError(f"prompts {source!r}: a folder; give a .txt or .jsonl file or a dataset name")
    if path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if path.suffix != ".jsonl":
            prompts = lines
        else:
            field = column or "prompt"
            try:
                prompts = [str(json.loads(line)[field]) for line in lines]
            except (ValueError, KeyError, TypeError):
                raise SettingError(
                    f"prompts {source!r}: every line must be a JSON object with {field!r}"
                ) from None
    else:
        import datasets

        field = column or "text"
        try:
            table = datasets.load_dataset(source, split=split)
        except Exception as e:  # datasets raises many kinds; all mean "cannot read it"
            raise SettingError(
                f"prompts {source!r}: no such file, and not a readable dataset ({_first(e)})"
            ) from None
        if field not in table.column_names:
            raise SettingError(
                f"prompts {source!r}: no column {field!r} (it has {', '.join(table.column_names)})"
            )
        prompts = [str(x) for x in table[field]]
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise SettingError(f"prompts {source!r}: no prompts in it")
    return prompts


def _first(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _load(what: str, name: str, loader, *args):
    """``loader(name, *args)``, with a model that cannot be had (not a folder here, not on the hub or
    not downloadable) or cannot be used as ``what`` turned into one line naming it."""
    try:
        return loader(name, *args)
    except (OSError, ValueError) as e:
        if Path(name).expanduser().exists():
            raise SettingError(f"{what} {name!r}: {_first(e)}") from None
        why = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") == "1" else "or on the hub"
        raise SettingError(f"{what} {name!r}: no such model folder here ({why}): {_first(e)}") from None


def _model_key(name: str) -> str:
    """A hub name as given; a local folder by its absolute path and a hash of its files' names and
    sizes, so that a folder trained again names a different world."""
    path = Path(name).expanduser()
    if not path.is_dir():
        return name
    files = {str(f.relative_to(path)): f.stat().st_size for f in sorted(path.rglob("*")) if f.is_file()}
    return f"{path.resolve()}@{config_key(files)}"


def _reader(what: str, name: str, label: int | None, dtype: torch.dtype, device: torch.device) -> Reader:
    model = _load(what, name, load_reward_model, label)
    tokenizer = _load(f"{what} tokenizer of", name, AutoTokenizer.from_pretrained)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
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
