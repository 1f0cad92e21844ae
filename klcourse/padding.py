"""One forward pass over a padded batch, the same whatever the padding: position ids from the mask.

A batch of texts of different lengths is padded to one length, on the left (prompts, so that
generation continues from the end) or on the right (responses after ``<eos>``). The attention mask
hides the padding from attention, but GPT-2's position embeddings do not look at the mask: without
``position_ids`` the model numbers the positions ``0, 1, …, L − 1`` across the padding, so every
left-padded text is read at shifted positions and its log-probabilities and score depend on how
long its batch-mates are. ``generate`` numbers them from the mask; so does every forward pass here.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from klcourse import gpt2


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each token's position among its text's real tokens, ``p_t = (Σ_{s ≤ t} m_s) − 1``, and 0 at
    padding (``m_t = 0``): the rule ``generate`` uses, so a scoring pass sees the positions the
    sampler saw. ``attention_mask`` is ``[B, L]`` of 0/1; the result is ``[B, L]`` (int64).

    Taught in notebook 03.
    """
    mask = attention_mask.long()
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


def padded_forward(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """``model(input_ids, attention_mask, position_ids)`` with :func:`position_ids` from the mask:
    the output for each text is the one it gets alone, unpadded. Works for a causal LM, a
    sequence classifier or a bare transformer (``model.base_model``); a plain GPT-2 is run by
    :func:`klcourse.gpt2.forward`, the same numbers without transformers' per-call machinery.

    Taught in notebooks 03 and 05.
    """
    return gpt2.forward(model, input_ids, attention_mask, position_ids(attention_mask))


def last_real_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, ``max{t : m_t = 1}``, ``[B]``, whatever the padding side.

    Taught in notebook 03.
    """
    if (attention_mask.sum(-1) == 0).any():
        raise ValueError("every row needs at least one real token (a row of the attention mask is all 0)")
    steps = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (steps * attention_mask.long()).argmax(-1)


def sequence_scores(
    reward_model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, label: int = 0
) -> torch.Tensor:
    """A sequence classifier's scalar score of each padded text, ``[B]`` (float32): its head applied to
    the hidden state at the text's last real token (:func:`last_real_index`), with positions from
    the mask (:func:`padded_forward`) — the score the text gets alone, on either padding side.

    Decoder reward models (GPT-2, Llama, Qwen, … ``ForSequenceClassification``) keep their head in
    ``score``; a model without one (an encoder: BERT, RoBERTa, DeBERTa, DistilBERT) is read at its own
    output, which pools the first token, with the model's own positions (RoBERTa's start at 2, not
    0): its texts must be padded on the right. ``label`` picks the output of a classifier with
    several (e.g. the ``POSITIVE`` logit of a sentiment classifier); a reward model has one.

    Taught in notebook 03.
    """
    head = getattr(reward_model, "score", None)
    if not isinstance(head, torch.nn.Module):
        if (attention_mask[:, 1:] > attention_mask[:, :-1]).any():
            raise ValueError(
                f"{type(reward_model).__name__} pools its first token: pad its texts on the right"
            )
        return reward_model(input_ids=input_ids, attention_mask=attention_mask).logits[:, label].float()
    hidden = padded_forward(reward_model.base_model, input_ids, attention_mask).last_hidden_state
    last = last_real_index(attention_mask)
    return head(hidden[torch.arange(len(last), device=hidden.device), last])[:, label].float()
