"""Load any causal LM, reward model or tokenizer by hub name or local path.

The course's own world is saved in exactly the format a hub model has, so the same three calls
load the synthetic world offline and, with internet, e.g. ``"gpt2"`` or a reward model from the
hub. Nothing in the course downloads at run time: pass local paths, or set ``HF_HUB_OFFLINE=1``.

transformers 5.25 loads a model with ``use_kernels`` on by default, and with the ``kernels``
package installed (transformers depends on it) ``model.train()``/``model.eval()`` on a GPU then
fetch compiled layers from the Hugging Face Hub: a download at run time, and offline an error.
Every model here loads with :data:`FROM_PRETRAINED`, which turns them off: the model runs
transformers' own PyTorch code, the same on every device.
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

#: Keyword arguments of every model's ``from_pretrained``: float32 weights, no Hub kernels.
FROM_PRETRAINED = {"dtype": "float32", "use_kernels": False}


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
    """A causal language model (policy or reference) by hub name or local folder, in float32, with
    transformers' own layers (:data:`FROM_PRETRAINED`).

    Taught in notebook 03.
    """
    return AutoModelForCausalLM.from_pretrained(str(name_or_path), **FROM_PRETRAINED)


def load_reward_model(name_or_path: str | Path, label: int | None = None) -> PreTrainedModel:
    """A sequence-classification model by hub name or folder: a reward model (one output), or a
    classifier with several whose output ``label`` is read as the reward (e.g. the ``POSITIVE`` logit
    of a sentiment classifier, TRL's IMDB example).

    Taught in notebook 03.
    """
    model = AutoModelForSequenceClassification.from_pretrained(str(name_or_path), **FROM_PRETRAINED)
    labels = model.config.num_labels
    if label is None and labels != 1:
        names = ", ".join(f"{i} = {n}" for i, n in sorted(model.config.id2label.items()))
        raise ValueError(
            f"{name_or_path}: a reward model needs num_labels=1, got {labels}; "
            f"name the output to read as the reward ({names})"
        )
    if label is not None and not 0 <= label < labels:
        raise ValueError(f"{name_or_path}: has outputs 0…{labels - 1}, got label {label}")
    return model
