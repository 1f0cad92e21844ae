"""Scores and log-probabilities that do not depend on the batch: positions come from the attention
mask in every forward pass over a padded batch, so a text scores the same alone, beside longer and
shorter texts, and on either padding side; PPO stores the log-probabilities the sampler used."""

import copy

import pytest
import torch

from klcourse.logprobs import gather_logprobs, response_positions
from klcourse.padding import last_real_index, position_ids, sequence_scores
from klcourse.ppo import PolicyAndValue, disable_dropout, rollout_logprobs
from klcourse.sampling import sample
from klcourse.trainers import proxy_reward_function
from klcourse.world import MAX_RESPONSE_TOKENS
from klcourse.world.core import normalisation_rollout

pytestmark = pytest.mark.slow

TEXTS = [
    "the food was good .",
    "the staff was not really very bad and the room was good .",
    "the movie was bad .",
    "the plot was very good but the music was not good .",
]
#: Prompts of different lengths, so the batch is left-padded (the world's own prompts are all 3 tokens).
UNEQUAL_PROMPTS = ["the food", "the staff was not", "the movie was", "the plot was very good but the music"]


def _encode(tokenizer, texts, side):
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = side
    return tok([t + tok.eos_token for t in texts], return_tensors="pt", padding=True)


def test_position_ids_count_real_tokens_only():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 0, 0], [0, 1, 2, 3, 4]]
    assert last_real_index(mask).tolist() == [4, 2, 4]
    with pytest.raises(ValueError, match="at least one real token"):
        last_real_index(torch.tensor([[1, 1], [0, 0]]))


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_text_scores_the_same_alone_and_in_any_batch(smoke_world, side):
    w = smoke_world
    alone = torch.cat([w.score([t]) for t in TEXTS])
    enc = _encode(w.tokenizer, TEXTS, side)
    mean, std = w.score_normalisation
    batched = (sequence_scores(w.reward_model, enc["input_ids"], enc["attention_mask"]) - mean) / std
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(w.score(TEXTS), alone, rtol=0, atol=1e-5)  # the world's own batching
    # the control: without position ids, the padded texts of a left-padded batch shift
    if side == "left":
        naive = w.reward_model(**enc).logits[:, 0]
        assert ((naive - mean) / std - alone).abs().max() > 1e-3


def test_the_trl_reward_function_scores_each_completion_as_alone(smoke_world):
    w = smoke_world
    prompts = [" ".join(t.split()[:2]) for t in TEXTS]
    completions = [" ".join(t.split()[2:]) for t in TEXTS]
    rewards = proxy_reward_function(w)(prompts, completions)
    torch.testing.assert_close(
        torch.tensor(rewards), torch.cat([w.score([t]) for t in TEXTS]), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_ppo_stores_the_logprobs_it_sampled_with_on_unequal_prompts(smoke_world, temperature):
    w, tok = smoke_world, smoke_world.tokenizer
    model = disable_dropout(PolicyAndValue(copy.deepcopy(w.drifted), w.reward_model, w.score_normalisation))
    reference = disable_dropout(w.reference)
    torch.manual_seed(3)
    rollout = sample(
        model.policy, tok, UNEQUAL_PROMPTS, max_new_tokens=MAX_RESPONSE_TOKENS, temperature=temperature
    )
    assert (rollout.prompt_mask == 0).any(), "the prompts must be left-padded for this test to mean anything"
    old, _, ref = rollout_logprobs(model, reference, rollout, temperature)

    # generate's own log-probabilities of the tokens it drew (same seed, same tokens)
    torch.manual_seed(3)
    enc = tok(UNEQUAL_PROMPTS, return_tensors="pt", padding=True)
    out = model.policy.generate(
        **enc,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=MAX_RESPONSE_TOKENS,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        output_scores=True,
        return_dict_in_generate=True,
    )
    steps = len(out.scores)
    mask = rollout.response_mask[:, :steps].float()
    assert torch.equal(
        out.sequences[:, enc["input_ids"].shape[1] :][mask.bool()],
        rollout.response_ids[:, :steps][mask.bool()],
    )
    sampled = (
        torch.stack(out.scores, 1).log_softmax(-1).gather(-1, rollout.response_ids[:, :steps, None])[..., 0]
    )
    torch.testing.assert_close(old[:, :steps], sampled * mask, atol=1e-4, rtol=0)

    # the reference scores each sequence as it would alone, unpadded
    for i in range(len(UNEQUAL_PROMPTS)):
        p_len, r_len = int(rollout.prompt_mask[i].sum()), int(rollout.response_mask[i].sum())
        prompt = rollout.prompt_ids[i][rollout.prompt_mask[i].bool()]
        ids = torch.cat([prompt, rollout.response_ids[i, :r_len]])[None]
        logits = reference(input_ids=ids).logits[:, p_len - 1 : -1]
        alone = gather_logprobs(logits, ids[:, p_len:], temperature)[0]
        torch.testing.assert_close(ref[i, :r_len], alone, atol=1e-5, rtol=0)

    # the control: without position ids the left-padded rows get other log-probs
    naive_logits = reference(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask).logits
    naive = gather_logprobs(response_positions(naive_logits, rollout), rollout.response_ids, temperature)
    assert ((naive - ref) * rollout.response_mask).abs().max() > 1e-3


def test_the_reference_scores_mean_0_std_1_on_the_normalisation_sample(smoke_world):
    w = smoke_world
    scores = w.score(normalisation_rollout(w.reference, w.tokenizer, w.grammar, w.preset.world.seed))
    assert abs(scores.mean().item()) < 1e-4 and abs(scores.std().item() - 1) < 1e-4


def test_the_value_model_starts_at_the_score(smoke_world):
    """At step 0, the value read at each response's last token (its ``<eos>``, which sees the whole
    text) is that response's normalised score: the value head is the reward head on the rewards' scale."""
    w = smoke_world
    model = disable_dropout(PolicyAndValue(copy.deepcopy(w.reference), w.reward_model, w.score_normalisation))
    torch.manual_seed(0)
    rollout = sample(model.policy, w.tokenizer, w.prompts(32, seed=0), max_new_tokens=MAX_RESPONSE_TOKENS)
    with torch.no_grad():
        _, values = model(rollout.input_ids, rollout.attention_mask)
    last = rollout.prompt_ids.shape[1] + rollout.response_mask.sum(1) - 1
    torch.testing.assert_close(values[torch.arange(32), last], w.score(rollout), atol=1e-4, rtol=0)


def test_the_value_head_needs_a_positive_spread(smoke_world):
    with pytest.raises(ValueError, match="standard deviation must be positive"):
        PolicyAndValue(smoke_world.reference, smoke_world.reward_model, (0.0, 0.0))


def test_an_encoder_must_be_padded_on_the_right():
    """An encoder pools its first token and keeps its own positions (RoBERTa's start at 2): it is read
    without position ids, so a left-padded batch, whose first token is padding, is refused."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=20,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            num_labels=2,
        )
    ).eval()
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    scores = sequence_scores(bert, ids, right, label=1)
    assert torch.allclose(scores, bert(input_ids=ids, attention_mask=right).logits[:, 1])
    alone = sequence_scores(bert, ids[:1, :3], right[:1, :3], label=1)
    assert torch.allclose(scores[:1], alone, atol=1e-6)  # its score alone
    with pytest.raises(ValueError, match="pad its texts on the right"):
        sequence_scores(bert, ids.flip(1), right.flip(1))
