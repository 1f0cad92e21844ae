"""GPT-2's forward pass without transformers' per-call machinery: the same modules and kernels, in
the same order, so the same numbers to the last bit (and the same gradients).

The course's models are small (laptop preset: 2 layers of width 64), and a forward pass of
transformers' ``GPT2Model`` spends a good part of its time in Python around its kernels: keyword
handling, output capture, building the attention mask through mask functions. PPO runs one forward
per minibatch of each of two models, plus one of each model per rollout and one per sampled token,
so :func:`forward` calls the model's own submodules directly (embeddings, layer norms, ``Conv1D``
projections, MLP, dropouts) and ``scaled_dot_product_attention`` with the arguments transformers'
``sdpa`` attention passes it: the causal-and-padding mask, or none and ``is_causal`` when nothing is
padded (as ``masking_utils`` skips the mask then), and each layer's ``scaling``.

It takes this path only for a model it computes exactly (:func:`plain`): a ``GPT2Model`` or
``GPT2LMHeadModel`` itself (not a subclass or a wrapper such as a ``peft`` model), with ``sdpa``
attention, causal, no cross-attention, no gradient checkpointing, nothing that changes the forward
of the modules it calls by way of their parts (the model, its blocks and their attention: torch's
hooks, accelerate's, a replaced or compiled forward), and no attention dropout while training.
Anything else is called as ``model(...)``. ``tests/test_gpt2.py`` checks outputs and gradients
against transformers' forward bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2LMHeadModel, GPT2Model
from transformers.modeling_outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
)


def plain(model: nn.Module) -> bool:
    """Whether :func:`forward` computes ``model``'s forward itself (see the module doc): a
    ``GPT2Model`` or ``GPT2LMHeadModel`` with ``sdpa`` attention and nothing that changes its forward.

    Used in notebooks 03–09. :func:`forward` and :func:`cached_forward` call it.
    """
    if type(model) not in (GPT2Model, GPT2LMHeadModel):
        return False
    body = model.transformer if isinstance(model, GPT2LMHeadModel) else model
    config = body.config
    skipped = [model, body, *body.h, *(block.attn for block in body.h)]  # called by way of their parts
    changed = any(
        m._forward_hooks
        or m._forward_pre_hooks
        or m._backward_hooks
        or m._backward_pre_hooks
        or hasattr(m, "_hf_hook")
        or "forward" in vars(m)
        or getattr(m, "_compiled_call_impl", None) is not None
        for m in skipped
    )
    attention_dropout = any(block.attn.training and block.attn.attn_dropout.p > 0 for block in body.h)
    return not (
        config._attn_implementation != "sdpa"
        or not getattr(config, "is_causal", True)
        or config.add_cross_attention
        or body.gradient_checkpointing
        or changed
        or attention_dropout
    )


def attention_mask_4d(attention_mask: torch.Tensor, query_length: int) -> torch.Tensor | None:
    """The mask transformers' ``sdpa`` attention gets for the last ``query_length`` of the
    ``L = attention_mask.shape[-1]`` positions (all of them without a cache):
    ``M[b, 0, i, k] = (k ≤ L − query_length + i) ∧ m_{b,k}`` (``[B, 1, query_length, L]``, bool), or
    ``None`` when no token is padded and the queries are one position or all of them (attention is
    then causal by ``is_causal``, or over every earlier key).

    Used in notebooks 03–09. :func:`forward` calls it.
    """
    padding = attention_mask.bool()
    length = padding.shape[-1]
    if (query_length == 1 or query_length == length) and padding.all():
        return None
    device = attention_mask.device
    queries = torch.arange(length - query_length, length, device=device)[:, None]
    causal = torch.arange(length, device=device)[None, :] <= queries
    return causal[None, None] & padding[:, None, None, :]


def hidden_states(
    body: GPT2Model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    cache: list[list[torch.Tensor]] | None = None,
) -> torch.Tensor:
    """``GPT2Model``'s last hidden state ``[B, L, d]``: ``h⁰ = drop(wte[x] + wpe[p])``, then per block
    ``h ← h + drop(c_proj(attn(ln_1 h)))`` and ``h ← h + mlp(ln_2 h)``, then ``ln_f h``; attention is
    ``softmax(q kᵀ · scaling + mask) v`` over ``n_head`` heads (:func:`attention_mask_4d`).

    With a ``cache`` (one ``[keys, values]`` per block, empty at first), ``input_ids`` are the next
    positions after those the cache holds, ``attention_mask`` covers both, and each block's keys and
    values are appended to it (``torch.cat`` along positions, as transformers' ``DynamicCache``).

    Used in notebooks 03–09. :func:`forward` and :func:`cached_forward` call it.
    """
    batch, length = input_ids.shape
    h = body.drop(body.wte(input_ids) + body.wpe(position_ids))
    mask = attention_mask_4d(attention_mask, length)
    causal = mask is None and length > 1
    for i, block in enumerate(body.h):
        attn = block.attn
        q, k, v = attn.c_attn(block.ln_1(h)).split(attn.split_size, dim=2)
        heads = (batch, length, -1, attn.head_dim)
        k, v = k.view(heads).transpose(1, 2), v.view(heads).transpose(1, 2)
        if cache is not None:
            if len(cache) == i:
                cache.append([k.new_empty(0), v.new_empty(0)])
            cache[i] = [torch.cat([cache[i][0], k], dim=-2), torch.cat([cache[i][1], v], dim=-2)]
            k, v = cache[i]
        out = F.scaled_dot_product_attention(
            q.view(heads).transpose(1, 2),
            k,
            v,
            attn_mask=mask,
            dropout_p=0.0,
            scale=attn.scaling,
            is_causal=causal,
        )
        h = h + attn.resid_dropout(attn.c_proj(out.transpose(1, 2).reshape(batch, length, -1)))
        h = h + block.mlp(block.ln_2(h))
    return body.ln_f(h)


def cached_forward(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """A function ``step(input_ids, attention_mask, position_ids) → logits`` that runs the causal LM
    ``model`` on a batch's next positions, keeping the keys and values of every position it has run
    (a key-value cache), so that each call computes only the new positions; ``attention_mask``
    covers all positions so far. A :func:`plain` GPT-2 runs :func:`hidden_states` with its own cache,
    any other model its forward with a ``DynamicCache``.

    Used in notebooks 03–09. ``klcourse.sampling.draw_tokens`` calls it.
    """
    if plain(model) and isinstance(model, GPT2LMHeadModel):
        blocks: list[list[torch.Tensor]] = []

        def step(input_ids, attention_mask, position_ids):
            h = hidden_states(model.transformer, input_ids, attention_mask, position_ids, blocks)
            return model.lm_head(h)

        return step
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)

    def step(input_ids, attention_mask, position_ids):
        return model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        ).logits

    return step


def forward(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
):
    """``model(input_ids=…, attention_mask=…, position_ids=…)``'s output: computed by
    :func:`hidden_states` (and the LM head, ``logits = lm_head(h)``) when :func:`plain` says so, by
    the model's own forward otherwise. The output has ``logits`` (a causal LM) or
    ``last_hidden_state`` (a bare transformer), as transformers' does.

    Used in notebooks 03–09. ``klcourse.padding.padded_forward`` calls it.
    """
    if not plain(model):
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
    if isinstance(model, GPT2LMHeadModel):
        h = hidden_states(model.transformer, input_ids, attention_mask, position_ids)
        return CausalLMOutputWithCrossAttentions(logits=model.lm_head(h))
    return BaseModelOutputWithPastAndCrossAttentions(
        last_hidden_state=hidden_states(model, input_ids, attention_mask, position_ids)
    )
