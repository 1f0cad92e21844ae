"""The hub world on stand-ins of real architectures (:mod:`standins`): a Llama policy over byte-level
BPE with pad = eos and an end token of its own, BERT reward and gold models over WordPiece."""

import copy
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from standins import build

from klcourse.ppo import PolicyAndValue, collect_experience, config_for, rollout_logprobs, train
from klcourse.sampling import Rollout, sample
from klcourse.settings import SettingError
from klcourse.sweep import RunSpec, load_result
from klcourse.world.hub import load_hub_world, read_prompts
from klcourse.world.protocol import RLWorld

ROOT = Path(__file__).parents[1]
SIZES = dict(steps=2, batch_size=8, mini_batch_size=4)


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("standins"))


def hub_world(standins, policy: str | None = None, reward: str | None = None, **options):
    return load_hub_world(
        policy or str(standins["policy"]),
        reward or str(standins["reward"]),
        str(standins["prompts"]),
        preset="smoke",
        device=torch.device("cpu"),
        normalisation_samples=128,
        max_new_tokens=12,
        **options,
    )


@pytest.fixture(scope="module")
def world(standins):
    return hub_world(standins)


def test_the_stand_ins_have_the_pitfalls_of_real_models(world, standins):
    tok = world.tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # GPT-2's: no pad token of its own
    end = tok.convert_tokens_to_ids("<|end|>")
    assert world.eos_token_ids == sorted({tok.eos_token_id, end})  # the generation config's end token too
    assert world.reward.tokenizer.get_vocab() != tok.get_vocab() and not world.value_from_reward
    lengths = {len(tok(p)["input_ids"]) for p in world.prompt_pool}
    assert min(lengths) >= 2 and max(lengths) <= 12 and len(lengths) > 3  # prompts of unequal length
    assert isinstance(world, RLWorld)
    torch.manual_seed(0)
    rollout = sample(
        world.reference, tok, world.prompts(32, 1), max_new_tokens=12, eos_token_id=world.eos_token_ids
    )
    assert rollout.ended.any() and not rollout.ended.all()  # some responses end, some are cut off
    for row, mask, ended in zip(rollout.response_ids, rollout.response_mask, rollout.ended, strict=True):
        if ended:  # the mask runs up to and including the first end token, whatever the pad id
            last = int(mask.sum()) - 1
            assert row[last].item() in world.eos_token_ids
            assert not any(t in world.eos_token_ids for t in row[:last].tolist())


def test_two_ppo_steps_start_at_kl_zero_and_leave_out_what_the_world_cannot_give(world):
    metrics = train(world, config_for(world.preset, max_new_tokens=12, **SIZES), progress=False).metrics
    assert len(metrics) == 2
    assert metrics.kl_k1.iloc[0] == 0.0 and metrics.kl_k3.iloc[0] == 0.0  # the policy is the reference
    assert "gold_reward" not in metrics and "well_formed" not in metrics  # not faked
    assert metrics.approx_kl.iloc[0] > 0  # it trained
    assert torch.isfinite(torch.tensor(metrics[["proxy_score", "policy_loss", "value_loss"]].values)).all()


def test_pi_old_is_what_generate_sampled_with(world):
    """π_old of PPO's rollout equals the log-probability of each token under the distribution
    ``generate`` drew it from (its processed scores): position ids from the mask on left-padded
    prompts, and none of the generation config's sampling options left over."""
    tok, prompts = world.tokenizer, world.prompts(16, seed=4)
    kwargs = dict(max_new_tokens=12, eos_token_id=world.eos_token_ids)
    torch.manual_seed(5)
    rollout = sample(world.reference, tok, prompts, **kwargs)
    assert len(set(rollout.prompt_mask.sum(1).tolist())) > 1  # unequal lengths, left-padded
    torch.manual_seed(5)
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = world.reference.generate(
        **enc,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        pad_token_id=tok.pad_token_id,
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs,
    )
    assert torch.equal(
        out.sequences[:, enc["input_ids"].shape[1] :][rollout.response_mask.bool()],
        rollout.response_ids[rollout.response_mask.bool()],
    )
    sampled_with = torch.stack(out.scores, 1).log_softmax(-1)
    width = rollout.response_ids.shape[1]
    sampled_with = sampled_with[:, :width].gather(-1, rollout.response_ids[..., None]).squeeze(-1)
    model = PolicyAndValue(copy.deepcopy(world.reference), None, world.score_normalisation)
    old, values, ref = rollout_logprobs(model, world.reference, rollout, 1.0)
    m = rollout.response_mask.bool()
    assert (old[m] - sampled_with[m]).abs().max() < 1e-5
    assert torch.equal(old, ref)  # the same weights: the KL at step 0 is exactly 0
    assert values.abs().max() == 0  # the zero head: V starts at the normalised score's mean


def _row(rollout: Rollout, i: int) -> Rollout:
    return replace(
        rollout,
        prompt_ids=rollout.prompt_ids[i : i + 1],
        prompt_mask=rollout.prompt_mask[i : i + 1],
        response_ids=rollout.response_ids[i : i + 1],
        response_mask=rollout.response_mask[i : i + 1],
        ended=rollout.ended[i : i + 1],
        prompts=rollout.prompts[i : i + 1],
        responses=rollout.responses[i : i + 1],
    )


def test_a_score_does_not_depend_on_its_batch(standins):
    """An encoder reward model pools its first token: the reader pads on the right, so a score is the
    one its text gets alone (padded on the left, this fails by several units)."""
    world = hub_world(standins, gold=str(standins["gold"]))
    torch.manual_seed(2)
    rollout = sample(
        world.reference,
        world.tokenizer,
        world.prompts(12, 3),
        max_new_tokens=12,
        eos_token_id=world.eos_token_ids,
    )
    together, gold = world.score(rollout), world.gold(rollout)
    alone = torch.cat([world.score(_row(rollout, i)) for i in range(12)])
    gold_alone = torch.cat([world.gold(_row(rollout, i)) for i in range(12)])
    assert (together - alone).abs().max() < 1e-5 and (gold - gold_alone).abs().max() < 1e-6


def test_ppo_subtracts_the_missing_eos_penalty_once(standins):
    world = hub_world(standins, missing_eos_penalty=1.0)
    config = config_for(
        world.preset, max_new_tokens=12, missing_eos_penalty=world.missing_eos_penalty, **SIZES
    )
    model = PolicyAndValue(copy.deepcopy(world.reference), None, world.score_normalisation)
    torch.manual_seed(1)
    exp = collect_experience(world, model, world.reference, world.prompts(16, 6), config, beta=0.1)
    cut = (~exp.rollout.ended).float()
    assert cut.sum() > 0
    assert torch.allclose(world.score(exp.rollout) - exp.scores, cut, atol=1e-5)


def _rollout(world, n: int = 8, seed: int = 0) -> Rollout:
    torch.manual_seed(seed)
    kwargs = dict(max_new_tokens=12, eos_token_id=world.eos_token_ids)
    return sample(world.reference, world.tokenizer, world.prompts(n, seed), **kwargs)


def test_a_classifier_is_read_at_the_label_it_is_given(standins):
    with pytest.raises(SettingError, match=r"num_labels=1, got 2.*0 = LABEL_0, 1 = LABEL_1"):
        hub_world(standins, reward=str(standins["classifier"]))
    world = hub_world(standins, reward=str(standins["classifier"]), reward_label=1)
    rollout, reader = _rollout(world), world.reward
    enc = reader.tokenizer(reader.texts(*world.split(rollout)), return_tensors="pt", padding=True)
    logits = reader.model(**enc).logits
    assert torch.allclose(world.raw_score(rollout), logits[:, 1], atol=1e-6)
    assert not torch.allclose(logits[:, 0], logits[:, 1])


def test_chat_templates_frame_the_prompt_for_the_policy_and_the_turns_for_the_reader(standins, tmp_path):
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
    policy, reward = tmp_path / "policy", tmp_path / "reward"
    shutil.copytree(standins["policy"], policy)
    shutil.copytree(standins["reward"], reward)
    for folder in (policy, reward):
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    world = hub_world(standins, policy=str(policy), reward=str(reward), chat_template=True)
    prompts, questions = world.prompts(6, 2), world.questions(6, 2)
    assert prompts == [f"<user>{q}</user>" for q in questions]  # no generation cue in this template
    rollout = _rollout(world, 6, 2)
    asked, answered = world.split(rollout)
    assert asked == questions  # the reader sees the question, not the policy's template
    read = world.reward.texts(asked, answered)
    assert read == [
        f"<user>{q}</user><assistant>{r}</assistant>" for q, r in zip(asked, answered, strict=True)
    ]
    with pytest.raises(SettingError, match="no chat template"):
        hub_world(standins, chat_template=True)


def test_prompts_cut_to_a_number_of_tokens(standins):
    world = hub_world(standins, prompt_tokens=(2, 3))
    lengths = [len(world.tokenizer(p)["input_ids"]) for p in world.prompts(40, 1)]
    assert set(lengths) <= {2, 3} and len(set(lengths)) == 2
    assert len(world.diversity_prompts()) == len(set(world.diversity_prompts())) == 8


def test_a_decoder_reward_model_over_the_policys_tokens_starts_the_value_model(standins):
    world = hub_world(standins, reward=str(standins["decoder_reward"]))
    assert world.value_from_reward
    rollout = _rollout(world)
    model = PolicyAndValue(copy.deepcopy(world.reference), world.reward_model, world.score_normalisation)
    _, values = model(rollout.input_ids, rollout.attention_mask)
    last = rollout.prompt_ids.shape[1] + rollout.response_mask.sum(1) - 1
    scores = world.score(rollout)
    assert torch.allclose(values[torch.arange(len(last)), last], scores, atol=1e-5)  # V at the end: the score
    alone = torch.cat([world.score(_row(rollout, i)) for i in range(len(last))])  # left-padded, read as is
    assert (scores - alone).abs().max() < 1e-5
    metrics = train(world, config_for(world.preset, max_new_tokens=12, **SIZES), progress=False).metrics
    assert metrics.kl_k1.iloc[0] == 0.0 and len(metrics) == 2


def test_prompt_sources_that_cannot_be_read_say_so(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "the film"}\n{"query": "a plot"}\n')
    with pytest.raises(SettingError, match="'prompt'"):
        read_prompts(str(jsonl))
    (tmp_path / "q.jsonl").write_text('{"q": "the film"}\n{"q": "a plot"}\n')
    assert read_prompts(str(tmp_path / "q.jsonl"), column="q") == ["the film", "a plot"]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(SettingError, match="no prompts"):
        read_prompts(str(tmp_path / "empty.txt"))


def _klcourse(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "klcourse", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def _on_standins(standins, out: Path) -> list[str]:
    """The options of a two-step run on the stand-ins, into ``out``."""
    return [
        "--policy", str(standins["policy"]),
        "--reward", str(standins["reward"]),
        "--prompts", str(standins["prompts"]),
        "--preset", "smoke",
        "--steps", "2",
        "--batch-size", "8",
        "--mini-batch-size", "4",
        "--max-new-tokens", "12",
        "--out", str(out),
        "--quiet",
    ]  # fmt: skip


def test_the_ppo_command_writes_a_sealed_run_and_resumes_it(standins, tmp_path):
    out = tmp_path / "runs"
    line = ["ppo", *_on_standins(standins, out), "--gold", str(standins["gold"]), "--beta", "0.1"]
    first = _klcourse(*line)
    assert first.returncode == 0, first.stderr[-3000:]
    path = out / "beta-0.1_seed-0.json"
    stored = load_result(path, RunSpec(beta=0.1, seed=0))
    assert stored is not None and len(stored["metrics"]) == 2
    assert "gold_reward" in stored["summary"] and "well_formed" not in stored["summary"]
    assert stored["world"]["gold"].startswith(str(standins["gold"].resolve()))
    assert json.loads((out / "provenance.json").read_text())["runs"] == 1
    made = path.stat().st_mtime_ns
    again = _klcourse(*line)
    assert again.returncode == 0, again.stderr[-3000:]
    assert path.stat().st_mtime_ns == made  # found, not trained again
    assert "beta-0.1_seed-0" in again.stdout and "–" in again.stdout  # no well-formed rate: a dash


def test_the_sweep_takes_the_same_options_and_shares_a_device(standins, tmp_path):
    out = tmp_path / "sweep"
    line = ["sweep", *_on_standins(standins, out), "--betas", "0", "0.3", "--seeds", "0"]
    line += ["--adaptive", "0.1", "1", "100", "--jobs", "2"]
    proc = _klcourse(*line)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {"beta-0_seed-0", "beta-0.3_seed-0", "adaptive-1_seed-0"}
    stored = {p.stem: load_result(p) for p in out.glob("*_seed-*.json")}
    assert set(stored) == names and all(r is not None for r in stored.values())
    for r in stored.values():  # each process trained its share from the reference, as the options said
        assert r["metrics"][0]["kl_k1"] == 0.0 and len(r["metrics"]) == 2
        assert r["config"]["max_new_tokens"] == 12 and r["config"]["batch_size"] == 8
        assert "gold_reward" not in r["summary"] and r["diversity"]["prompts"] == 8
    assert stored["adaptive-1_seed-0"]["config"]["adaptive_kl"]
    assert json.loads((out / "provenance.json").read_text())["runs"] == 3
