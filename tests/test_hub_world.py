"""The hub world on stand-ins of real architectures (:mod:`standins`): a Llama policy over byte-level
BPE with pad = eos and an end token of its own, BERT reward and gold models over WordPiece."""

import copy
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from standins import build

from klcourse.ppo import PolicyAndValue, config_for, rollout_logprobs, train
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


def hub_world(standins, **options):
    return load_hub_world(
        str(standins["policy"]),
        str(standins["reward"]),
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
    assert min(lengths) >= 2 and max(lengths) <= 40 and len(lengths) > 3  # prompts of unequal length
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
    world = hub_world(standins, gold=str(standins["gold"]), missing_eos_penalty=1.0)
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
    unpenalised = hub_world(standins).score(rollout)
    assert torch.allclose(unpenalised - together, (~rollout.ended).float(), atol=1e-5)  # the cut-off pay 1


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


def test_the_ppo_command_writes_a_sealed_run_and_resumes_it(standins, tmp_path):
    out = tmp_path / "runs"
    line = [
        "ppo",
        "--policy", str(standins["policy"]),
        "--reward", str(standins["reward"]),
        "--gold", str(standins["gold"]),
        "--prompts", str(standins["prompts"]),
        "--preset", "smoke",
        "--steps", "2",
        "--batch-size", "8",
        "--mini-batch-size", "4",
        "--max-new-tokens", "12",
        "--beta", "0.1",
        "--out", str(out),
        "--quiet",
    ]  # fmt: skip
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


def test_a_model_that_cannot_be_had_is_one_line(standins):
    proc = _klcourse(
        "ppo",
        "--policy", "no-such-org/no-such-model",
        "--reward", str(standins["reward"]),
        "--prompts", str(standins["prompts"]),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "no-such-org/no-such-model" in lines[0] and "HF_HUB_OFFLINE" in lines[0]


def test_the_sweep_takes_the_same_options_and_shares_a_device(standins, tmp_path):
    out = tmp_path / "sweep"
    line = [
        "sweep",
        "--policy", str(standins["policy"]),
        "--reward", str(standins["reward"]),
        "--prompts", str(standins["prompts"]),
        "--preset", "smoke",
        "--betas", "0", "0.3",
        "--seeds", "0",
        "--adaptive", "0.1", "1", "100",
        "--steps", "2",
        "--batch-size", "8",
        "--mini-batch-size", "4",
        "--max-new-tokens", "12",
        "--jobs", "2",
        "--out", str(out),
        "--quiet",
    ]  # fmt: skip
    proc = _klcourse(*line)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {"beta-0_seed-0", "beta-0.3_seed-0", "adaptive-1_seed-0"}
    stored = {p.stem: load_result(p) for p in out.glob("*_seed-*.json")}
    assert set(stored) == names and all(r is not None for r in stored.values())
    worlds = {json.dumps(r["world"], sort_keys=True) for r in stored.values()}
    assert len(worlds) == 1  # both processes loaded the same hub world
    assert all("gold_reward" not in r["summary"] and r["diversity"]["prompts"] == 8 for r in stored.values())
