"""Load any causal LM, reward model or tokenizer by hub name or local path.

The course's own world is saved in exactly the format a hub model has, so the same three calls
load the synthetic world offline and, with internet, e.g. ``"gpt2"`` or a reward model from the
hub. Nothing in the course downloads at run time: pass local paths, or set ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained``; adds a pad token (the EOS token) if the model has none.

    Taught in notebook 03.
    """
    tok = AutoTokenizer.from_pretrained(str(name_or_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_causal_lm(name_or_path: str | Path) -> PreTrainedModel:
    """A causal language model (policy or reference) by hub name or local folder, in float32.

    Taught in notebook 03.
    """
    return AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype="float32")


def load_reward_model(name_or_path: str | Path) -> PreTrainedModel:
    """A sequence-classification model with one output (a scalar reward), by hub name or folder.

    Taught in notebook 03.
    """
    model = AutoModelForSequenceClassification.from_pretrained(str(name_or_path), dtype="float32")
    if model.config.num_labels != 1:
        raise ValueError(f"{name_or_path}: a reward model needs num_labels=1, got {model.config.num_labels}")
    return model
