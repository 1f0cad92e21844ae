"""Tests for the ground-truth world: grammar, gold reward, tokenizer, cache, sampling, log-probs."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from klcourse.chain_rule import enumerate_responses
from klcourse.logprobs import exact_per_token_kl, gather_logprobs, per_token_kl, response_logits
from klcourse.sampling import response_mask
from klcourse.world import artifacts
from klcourse.world.gold import MALFORMED_PENALTY, gold_reward
from klcourse.world.grammar import REVIEWS, Grammar
from klcourse.world.tokenizer import build_tokenizer

TINY = Grammar(
    subjects={"food": 0.7, "room": 0.3},
    intensifiers={"": 0.6, "very": 0.4},
    adjectives={"good": 0.5, "bad": 0.3, "awful": 0.2},
    conjunctions={"and": 0.75, "but": 0.25},
    p_negation=0.2,
    p_two_clauses=0.3,
)

# ---------------------------------------------------------------- grammar


def test_enumerated_probabilities_sum_to_one():
    total = sum(p for _, p in TINY.enumerate())
    assert total == pytest.approx(1.0, abs=1e-12)
    assert len({t for t, _ in TINY.enumerate()}) == len(list(TINY.enumerate()))  # unambiguous


def test_log_prob_matches_enumeration_and_next_token_chain():
    for text, p in TINY.enumerate():
        assert TINY.log_prob(text) == pytest.approx(math.log(p), abs=1e-12)
        words, q = text.split(), 1.0
        for t in range(len(words)):
            dist = TINY.next_token_probs(words[:t])
            assert sum(dist.values()) == pytest.approx(1.0, abs=1e-12)
            q *= dist[words[t]]
        assert q == pytest.approx(p, rel=1e-12)
        assert TINY.next_token_probs(words) == {}


def test_conditional_log_prob_given_subject():
    text = "the room was good ."
    assert TINY.log_prob(text, given_subject=True) == pytest.approx(TINY.log_prob(text) - math.log(0.3))


def test_sample_frequencies_match_exact_probabilities():
    rng = np.random.default_rng(5)
    n = 40_000
    counts = {}
    for _ in range(n):
        text = " ".join(TINY.sample(rng))
        counts[text] = counts.get(text, 0) + 1
    for text, p in TINY.enumerate():
        if p > 0.01:  # every sentence common enough to measure: within 5 standard errors
            assert abs(counts.get(text, 0) / n - p) < 5 * math.sqrt(p * (1 - p) / n), text
    assert set(counts) <= {t for t, _ in TINY.enumerate()}


def test_parser_accepts_every_sample():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        words = REVIEWS.sample(rng)
        assert REVIEWS.is_well_formed(words)
        assert math.isfinite(REVIEWS.log_prob(words))


@pytest.mark.parametrize(
    "text",
    [
        "the food was good",  # no full stop
        "the food was good great .",  # two adjectives
        "the food was good the room was bad .",  # clauses glued without a conjunction
        "the food was good and .",  # dangling conjunction
        "the food was not not good .",
        "the food was very very good .",
        "food was good .",
        "the food was good . .",
        "the food was good and the room was bad and the food was good .",  # three clauses
        "",
    ],
)
def test_parser_rejects_corrupted(text):
    assert not REVIEWS.is_well_formed(text)
    assert REVIEWS.log_prob(text) == -math.inf
    assert gold_reward(text) == MALFORMED_PENALTY


def test_parser_rejects_random_corruptions():
    rng = np.random.default_rng(1)
    rejected = 0
    for _ in range(500):
        words = REVIEWS.sample(rng)
        i = rng.integers(len(words))
        corrupted = words[:i] + words[i + 1 :]  # drop one word
        if not REVIEWS.is_well_formed(corrupted):
            rejected += 1
    # dropping "not" or an intensifier leaves a valid review; every other deletion must be rejected
    assert rejected > 350


def test_grammar_validates_tables():
    with pytest.raises(ValueError, match="subjects probabilities"):
        Grammar({"a": 0.5}, {"": 1.0}, {"good": 1.0}, {"and": 1.0}, 0.1, 0.1)
    with pytest.raises(ValueError, match="p_negation"):
        Grammar({"a": 1.0}, {"": 1.0}, {"good": 1.0}, {"and": 1.0}, 1.5, 0.1)
    with pytest.raises(ValueError, match="no review"):
        REVIEWS.next_token_probs(["the", "food", "is"])


# ---------------------------------------------------------------- gold reward


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the food was excellent .", 1.0),
        ("the food was good .", 0.5),
        ("the food was very good .", 0.75),
        ("the food was very excellent .", 1.0),  # clipped at 1
        ("the food was not terrible .", 0.5),  # negation flips and halves
        ("the food was good but the service was terrible .", -0.25),
        ("the food was great great great .", MALFORMED_PENALTY),
    ],
)
def test_gold_reward_by_hand(text, expected):
    assert gold_reward(text) == pytest.approx(expected)


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip(tmp_path):
    tok = build_tokenizer()
    rng = np.random.default_rng(2)
    texts = [" ".join(REVIEWS.sample(rng)) for _ in range(50)]
    tok.save_pretrained(tmp_path)
    from klcourse.world.loading import load_tokenizer

    loaded = load_tokenizer(tmp_path)
    for t in texts:
        ids = loaded(t)["input_ids"]
        assert ids[0] == loaded.bos_token_id and loaded.unk_token_id not in ids
        assert loaded.decode(ids, skip_special_tokens=True) == t
        assert ids == tok(t)["input_ids"]
    assert len({loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id, loaded.unk_token_id}) == 4


# ---------------------------------------------------------------- cache


def test_cache_builds_once_and_rebuilds_after_corruption(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "weights.bin").write_bytes(b"x" * 1000)

    cfg = {"a": 1}
    path = artifacts.get_or_build("thing", cfg, build, root=tmp_path, log=lambda m: None)
    assert artifacts.get_or_build("thing", cfg, build, root=tmp_path) == path and len(calls) == 1
    # truncate the file: detected and rebuilt
    (path / "weights.bin").write_bytes(b"x" * 10)
    assert "hash" in artifacts.verify(path, cfg)
    artifacts.get_or_build("thing", cfg, build, root=tmp_path, log=lambda m: None)
    assert len(calls) == 2 and (path / "weights.bin").stat().st_size == 1000
    # a missing manifest (an interrupted build) is rebuilt too
    (path / artifacts.MANIFEST).unlink()
    artifacts.get_or_build("thing", cfg, build, root=tmp_path, log=lambda m: None)
    assert len(calls) == 3
    # a different config gets its own folder; the manifest records the config
    other = artifacts.get_or_build("thing", {"a": 2}, build, root=tmp_path)
    assert other != path and json.loads((other / artifacts.MANIFEST).read_text())["config"] == {"a": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_cache_failed_build_leaves_nothing(tmp_path):
    def build(folder):
        (folder / "partial.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        artifacts.get_or_build("thing", {"a": 1}, build, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- log-probs and the chain rule


def tiny_lm(seed, vocab=5):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    return GPT2LMHeadModel(cfg).eval()


def test_gather_logprobs_against_naive_loop():
    torch.manual_seed(0)
    logits, tokens = torch.randn(3, 7, 11), torch.randint(0, 11, (3, 7))
    for temperature in (1.0, 0.7):
        fast = gather_logprobs(logits, tokens, temperature)
        for b, t in itertools.product(range(3), range(7)):
            probs = torch.softmax(logits[b, t] / temperature, -1)
            assert fast[b, t].item() == pytest.approx(math.log(probs[tokens[b, t]].item()), abs=1e-5)
    with pytest.raises(ValueError, match="shape mismatch"):
        gather_logprobs(logits, tokens[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        gather_logprobs(logits, tokens, 0.0)


def test_response_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    mask, ended = response_mask(ids, eos_id=2)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]


def test_chain_rule_identity_on_a_tiny_model():
    policy, reference = tiny_lm(0), tiny_lm(1)
    prompt = torch.tensor([[1, 3]])
    enum = enumerate_responses(policy, reference, prompt[0], max_new_tokens=4, eos_id=0, pad_id=4)
    weights = enum.logp_policy.exp()
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-9)
    exact = enum.exact_kl()
    assert exact > 0

    rollout = enum.as_rollout(prompt[0])
    with torch.no_grad():
        pol_logits, ref_logits = (
            response_logits(policy, rollout),
            response_logits(reference, rollout),
        )
    lp_pol = gather_logprobs(pol_logits, rollout.response_ids) * rollout.response_mask
    lp_ref = gather_logprobs(ref_logits, rollout.response_ids) * rollout.response_mask
    # per-token log-probs from one forward pass add up to the enumerated sequence log-probs
    torch.testing.assert_close(lp_pol.sum(1).double(), enum.logp_policy, atol=1e-4, rtol=0)
    k1_sum = per_token_kl(lp_pol, lp_ref, rollout.response_mask, "k1").sum(1).double()
    k3_sum = per_token_kl(lp_pol, lp_ref, rollout.response_mask, "k3").sum(1).double()
    exact_sum = exact_per_token_kl(pol_logits, ref_logits, rollout.response_mask).sum(1).double()
    # E_π[Σ_t k1_t] = E_π[Σ_t k3_t] = E_π[Σ_t KL_t] = KL(π ‖ ρ) over sequences
    for per_sequence in (k1_sum, k3_sum, exact_sum):
        assert (weights * per_sequence).sum().item() == pytest.approx(exact, rel=1e-4)


def test_enumeration_refuses_huge_trees():
    with pytest.raises(ValueError, match="too many"):
        enumerate_responses(tiny_lm(0), tiny_lm(1), torch.tensor([1]), max_new_tokens=12, eos_id=0, pad_id=4)


def test_per_token_kl_masks_and_validates():
    lp = torch.tensor([[-1.0, -2.0, 0.0]])
    lq = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    assert per_token_kl(lp, lq, mask).tolist() == [[0.5, -1.0, 0.0]]
    assert (per_token_kl(lp, lq, mask, "k3")[0, :2] > 0).all()
    torch.testing.assert_close(per_token_kl(lp, lq, mask, "k2"), torch.tensor([[0.125, 0.5, 0.0]]))
    with pytest.raises(ValueError, match="estimator must be one of k1, k2, k3"):
        per_token_kl(lp, lq, mask, "k4")


def test_models_load_with_gelu_as_one_kernel_computing_the_same_function(tmp_path):
    from transformers import GPT2ForSequenceClassification
    from transformers.activations import GELUTanh, NewGELUActivation

    from klcourse.world.loading import load_causal_lm, load_reward_model

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=31, n_positions=16, n_embd=32, n_layer=2, n_head=2, num_labels=1)
    config.pad_token_id = 0
    ids = torch.randint(1, 31, (4, 12))
    for saved, load, output in [
        (GPT2LMHeadModel(config), load_causal_lm, "logits"),
        (GPT2ForSequenceClassification(config), load_reward_model, "logits"),
    ]:
        saved.eval().save_pretrained(tmp_path / type(saved).__name__)
        loaded = load(tmp_path / type(saved).__name__).eval()
        assert isinstance(saved.transformer.h[0].mlp.act, NewGELUActivation)
        assert all(isinstance(block.mlp.act, GELUTanh) for block in loaded.transformer.h)
        with torch.no_grad():
            a, b = getattr(saved(ids), output), getattr(loaded(ids), output)
        assert (a - b).abs().max() < 1e-5, "the same function, up to rounding"
