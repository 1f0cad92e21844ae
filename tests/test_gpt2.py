"""klcourse.gpt2 computes what transformers' GPT-2 computes, bit for bit: outputs, gradients and
cached decoding, on every padding pattern PPO meets; anything it cannot compute exactly goes to the
model's own forward."""

import copy

import pytest
import torch
from transformers import DynamicCache, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from klcourse import gpt2
from klcourse.lora import with_lora
from klcourse.padding import position_ids


def _model(**overrides) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = dict(vocab_size=40, n_positions=32, n_embd=32, n_layer=2, n_head=4, attn_implementation="sdpa")
    model = GPT2LMHeadModel(GPT2Config(**(config | overrides)))
    return model.eval()


CONFIGS = {
    "the course's": dict(activation_function="gelu_pytorch_tanh"),
    "layer-scaled attention, a narrow MLP, GELU in five operations": dict(
        scale_attn_by_inverse_layer_idx=True, n_inner=48, activation_function="gelu_new"
    ),
    "unscaled attention": dict(scale_attn_weights=False),
}


def _batch(pattern: str, batch: int = 5, length: int = 9):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 40, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    real = torch.randint(1, length + 1, (batch,), generator=g)
    real[0] = length
    for b, n in enumerate(real.tolist()):
        if pattern == "left":
            mask[b, : length - n] = 0
        elif pattern == "right":
            mask[b, n:] = 0
        elif pattern == "both":
            mask[b, : (length - n) // 2] = 0
            mask[b, (length - n) // 2 + n :] = 0
    return ids, mask


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("pattern", ["none", "left", "right", "both"])
def test_the_forward_and_its_gradients_are_transformers_to_the_bit(config, pattern):
    ours, theirs = _model(**CONFIGS[config]), _model(**CONFIGS[config])
    ours.train(), theirs.train()  # dropout off by p = 0, as in PPO: the path must hold in train mode
    for m in (ours, theirs):
        for module in m.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    ids, mask = _batch(pattern)
    positions = position_ids(mask)
    assert gpt2.plain(ours) and gpt2.plain(ours.transformer)
    a = gpt2.forward(ours, ids, mask, positions).logits
    b = theirs(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    assert torch.equal(a, b)
    weights = torch.randn(a.shape, generator=torch.Generator().manual_seed(2))
    (a * weights).sum().backward()
    (b * weights).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name
    hidden = gpt2.forward(ours.transformer, ids, mask, positions).last_hidden_state
    assert torch.equal(
        hidden, theirs.transformer(input_ids=ids, attention_mask=mask, position_ids=positions)[0]
    )


def test_embedding_and_residual_dropout_draw_as_transformers_draws():
    """In training with dropout on the embeddings and residuals (attention dropout off), the same
    generator state gives the same dropped units: outputs and gradients equal to the bit."""
    config = dict(embd_pdrop=0.1, resid_pdrop=0.1, attn_pdrop=0.0)
    ours, theirs = _model(**config).train(), _model(**config).train()
    assert gpt2.plain(ours)
    ids, mask = _batch("left")
    positions = position_ids(mask)
    torch.manual_seed(5)
    a = gpt2.forward(ours, ids, mask, positions).logits
    torch.manual_seed(5)
    b = theirs(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    assert torch.equal(a, b)
    torch.manual_seed(6)
    assert not torch.equal(a, theirs(input_ids=ids, attention_mask=mask, position_ids=positions).logits)
    a.sum().backward()
    b.sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name


@pytest.mark.parametrize("pattern", ["none", "left"])
def test_cached_decoding_is_transformers_dynamic_cache_to_the_bit(pattern):
    """Prefill on (left-padded) prompts, then one token at a time, as the sampler runs: every step's
    logits equal those of the model's forward with transformers' ``DynamicCache``."""
    model = _model()
    ids, mask = _batch(pattern, length=4)
    assert (mask == 0).any() == (pattern == "left")
    ours = gpt2.cached_forward(model)
    cache = DynamicCache(config=model.config)
    positions, inputs = position_ids(mask), ids
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _ in range(6):
            a = ours(inputs, mask, positions)
            b = model(
                input_ids=inputs, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
            ).logits
            assert torch.equal(a, b)
            inputs = torch.randint(3, 40, (len(ids), 1), generator=g)
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)
            positions = positions[:, -1:] + 1


def test_attention_masks_are_causal_and_padded_or_none():
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    full = gpt2.attention_mask_4d(mask, 3)
    assert full.shape == (2, 1, 3, 3) and full.dtype == torch.bool
    assert torch.equal(full[1, 0], torch.ones(3, 3, dtype=torch.bool).tril())
    assert not full[0, 0, :, 0].any() and torch.equal(full[0, 0, :, 1:], full[1, 0, :, 1:])
    assert torch.equal(gpt2.attention_mask_4d(mask, 1), mask.bool()[:, None, None, :])
    assert (
        gpt2.attention_mask_4d(torch.ones(2, 3), 3) is None
        and gpt2.attention_mask_4d(torch.ones(2, 3), 1) is None
    )
    later = gpt2.attention_mask_4d(torch.ones(1, 5), 2)  # two new positions after three cached ones
    assert torch.equal(later[0, 0].long(), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]))


def test_what_it_cannot_compute_exactly_runs_the_model_itself():
    model = _model()
    eager = _model(attn_implementation="eager")
    dropping = _model().train()  # attention dropout 0.1 while training
    hooked = _model()
    hooked.register_forward_hook(lambda module, args, out: None)
    dispatched = _model()
    dispatched._hf_hook = object()  # accelerate's device-map hook, which wraps the forward
    block_hooked = _model()
    block_hooked.transformer.h[1].attn.register_forward_pre_hook(lambda module, args: None)
    backward_hooked = _model()
    backward_hooked.transformer.h[0].register_full_backward_hook(lambda module, grad_in, grad_out: None)
    replaced = _model()
    replaced.transformer.h[0].forward = lambda *args, **kwargs: None
    bidirectional = _model()
    bidirectional.config.is_causal = False
    lora = with_lora(copy.deepcopy(model), rank=2)
    classifier = GPT2ForSequenceClassification(model.config).eval()
    for other in (
        eager,
        dropping,
        hooked,
        dispatched,
        block_hooked,
        backward_hooked,
        replaced,
        bidirectional,
        lora,
        classifier,
    ):
        assert not gpt2.plain(other)
    assert gpt2.plain(model) and gpt2.plain(classifier.transformer)
    ids, mask = _batch("left")
    positions = position_ids(mask)
    calls = []
    eager.register_forward_pre_hook(lambda module, args: calls.append(module))
    out = gpt2.forward(eager, ids, mask, positions).logits
    assert calls == [eager]
    assert torch.equal(out, eager(input_ids=ids, attention_mask=mask, position_ids=positions).logits)
