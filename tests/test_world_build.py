"""Build the smoke-preset world into a temporary cache and load it back by local path."""

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from klcourse.config import get_preset, with_seed
from klcourse.sampling import sample, well_formed_rate
from klcourse.world import MAX_RESPONSE_TOKENS, artifacts, build, load_world
from klcourse.world.loading import load_causal_lm, load_reward_model, load_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture
def world(smoke_world, smoke_root):
    return smoke_world, smoke_root


def test_world_loads_and_works(world):
    w, _ = world
    torch.manual_seed(0)
    rollout = sample(w.reference, w.tokenizer, w.prompts(64, seed=0), max_new_tokens=MAX_RESPONSE_TOKENS)
    assert rollout.response_ids.shape[0] == 64
    assert well_formed_rate(rollout, w.grammar) > 0.3  # smoke models are tiny; laptop reaches > 90 %
    scores = w.score(rollout)
    assert scores.shape == (64,) and torch.isfinite(scores).all()
    # a text scored alone (no padding) gets exactly its rollout's score
    one_by_one = torch.cat([w.score([text]) for text in rollout.texts()[:8]])
    torch.testing.assert_close(one_by_one, scores[:8], rtol=1e-4, atol=1e-5)
    assert set(w.build_info) >= {"sft", "reward", "drifted"}
    assert 0 <= w.build_info["sft"]["well_formed_rate"] <= 1


def test_models_load_by_local_path(world):
    w, _ = world
    tok = load_tokenizer(w.paths["sft"])
    lm = load_causal_lm(w.paths["sft"])
    rm = load_reward_model(w.paths["reward"])
    assert tok.eos_token == "<eos>" and lm.config.vocab_size == len(tok) and rm.config.num_labels == 1
    # transformers ≥ 5.25 turns Hub kernels on by default: on a GPU they download at run time
    assert not getattr(lm, "use_kernels", False) and not getattr(rm, "use_kernels", False)
    ids = tok(["the food was good ."], return_tensors="pt")
    torch.testing.assert_close(lm(**ids).logits, w.reference(**ids).logits)


def test_reward_loader_rejects_classifier_with_two_labels(tmp_path):
    model = GPT2ForSequenceClassification(
        GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, num_labels=2)
    )
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels=1"):
        load_reward_model(tmp_path)


def test_corrupted_model_is_rebuilt(world):
    w, root = world
    weights = next(w.paths["reward"].glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    assert artifacts.verify(w.paths["reward"], _reward_config()) is not None
    messages = []
    paths = build(get_preset("smoke"), progress=False, root=root, log=messages.append)
    assert any("reward: rebuilding" in m for m in messages)
    assert not any(m.startswith("sft:") for m in messages)  # the intact artifacts are reused
    assert artifacts.verify(paths["reward"], _reward_config()) is None
    load_reward_model(paths["reward"])


def _reward_config():
    from klcourse.world.core import artifact_configs
    from klcourse.world.grammar import REVIEWS

    return artifact_configs(get_preset("smoke"), REVIEWS)["reward"]


def test_world_builds_for_a_second_seed(smoke_world, tmp_path):
    """The world is robust to its seed: another seed builds a different world of the same kind."""
    preset = with_seed(get_preset("smoke"), 1)
    other = load_world(preset, torch.device("cpu"), progress=False, root=tmp_path, log=lambda m: None)
    assert other.paths["sft"].name != smoke_world.paths["sft"].name  # its own artifacts
    for world in (smoke_world, other):
        info = world.build_info
        assert info["sft"]["well_formed_rate"] > 0.3  # smoke models are tiny; laptop reaches > 90 %
        assert info["reward"]["heldout_accuracy"] > 0.75  # clearly above chance on the annotator's ranking
