"""Load any causal LM, reward model or tokenizer by hub name or local path.

The course's own world is saved in exactly the format a hub model has, so the same three calls
load the synthetic world offline and, with internet, e.g. ``"gpt2"`` or a reward model from the
hub. Nothing in the course downloads at run time: pass local paths, or set ``HF_HUB_OFFLINE=1``.

transformers 5.25 loads a model with ``use_kernels`` on by default, and with the ``kernels``
package installed (transformers depends on it) ``model.train()``/``model.eval()`` on a GPU then
fetch compiled layers from the Hugging Face Hub: a download at run time, and offline an error.
Every model here loads with :data:`FROM_PRETRAINED`, which turns them off: the model runs
transformers' own PyTorch code, the same on every device.

GPT-2's activation, the tanh approximation of GELU, is ``gelu_new`` in its config: transformers'
``NewGELUActivation``, seven elementwise operations, each a pass over memory, in the forward pass
and more in the backward. ``gelu_pytorch_tanh`` is the same formula as one torch kernel
(``torch.nn.functional.gelu(x, approximate="tanh")``); transformers documents it as "equivalent to
NewGELU … but much faster … not an exact numerical match due to rounding errors" (≈1e-7). Every
model here loads with it (:func:`from_pretrained_kwargs`), so that the elementwise passes do not
dominate the small models' forward and backward passes on a CPU.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

#: Keyword arguments of every model's ``from_pretrained``: float32 weights, no Hub kernels.
FROM_PRETRAINED = {"dtype": "float32", "use_kernels": False}

#: Activations loaded as one torch kernel computing the same formula (see the module doc).
ONE_KERNEL_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}


def from_pretrained_kwargs(name_or_path: str | Path) -> dict:
    """The keyword arguments of ``from_pretrained`` for the model at ``name_or_path``:
    :data:`FROM_PRETRAINED`, and for each activation its config names (``activation_function``,
    ``hidden_act``) that :data:`ONE_KERNEL_ACTIVATIONS` has, the one-kernel name; from_pretrained
    sets config attributes it is given. TRL's trainers load their reference models with the same
    (``model_init_kwargs``).

    Used in notebooks 03 and 07.
    """
    config = AutoConfig.from_pretrained(str(name_or_path))
    faster = {
        name: ONE_KERNEL_ACTIVATIONS[value]
        for name in ("activation_function", "hidden_act")
        if (value := getattr(config, name, None)) in ONE_KERNEL_ACTIVATIONS
    }
    return FROM_PRETRAINED | faster


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
    transformers' own layers, GELU as one kernel (:func:`from_pretrained_kwargs`).

    Taught in notebook 03.
    """
    return AutoModelForCausalLM.from_pretrained(str(name_or_path), **from_pretrained_kwargs(name_or_path))


def load_reward_model(name_or_path: str | Path, label: int | None = None) -> PreTrainedModel:
    """A sequence-classification model by hub name or folder: a reward model (one output), or a
    classifier with several whose output ``label`` is read as the reward (e.g. the ``POSITIVE`` logit
    of a sentiment classifier, TRL's IMDB example).

    Taught in notebook 03.
    """
    kwargs = from_pretrained_kwargs(name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(str(name_or_path), **kwargs)
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
