"""Notebook 09's distillation: the losses, the stored targets and their top-k bias, the mixture
target of the sequence-level fit, the teacher-as-reference world PPO distils with, the students'
checkpoints, and one committed run trained again."""

import copy
import math
from pathlib import Path

import pytest
import torch

from klcourse import distill
from klcourse.logprobs import exact_per_token_kl, response_logprobs
from klcourse.ppo import config_for, train
from klcourse.sampling import sample
from klcourse.sweep import load_result

ROOT = Path(__file__).parents[1]
COMMITTED = ROOT / "results" / "laptop-distill"


def _logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_the_kd_loss_is_the_mean_forward_kl_over_real_tokens():
    student, teacher = _logits(2, 3, 7, seed=1), _logits(2, 3, 7, seed=2)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    per_token = exact_per_token_kl(teacher, student, mask)  # KL(teacher ‖ student)
    assert distill.forward_kd_loss(student, teacher, mask) == pytest.approx(float(per_token.sum() / 3))
    assert float(distill.forward_kd_loss(teacher, teacher, mask)) == pytest.approx(0.0, abs=1e-6)
    tokens = torch.tensor([[0, 1, 2], [3, 4, 5]])
    nll = -student.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    assert distill.sft_loss(student, tokens, mask) == pytest.approx(float((nll * mask).sum() / 3))


@pytest.mark.parametrize("vocab", [31, 50_257])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_stored_targets_take_the_bytes_the_formula_says(vocab, dtype):
    logits = _logits(4, vocab)
    for kind, k in (("full", None), ("sampled", None), ("top-k", 5)):
        stored = distill.stored_target(logits, dtype, kind, k)
        per_token = sum(t.numel() * t.element_size() for t in stored.values()) / 4
        assert per_token == distill.target_bytes(vocab, dtype, kind, k)
    assert distill.target_bytes(vocab, "float32", "full") == 4 * vocab
    assert distill.target_bytes(vocab, "bfloat16", "sampled") == 6  # an int32 id and a bfloat16 log-prob


def test_bad_targets_are_named():
    with pytest.raises(ValueError, match="dtype"):
        distill.target_bytes(31, "float16", "full")
    with pytest.raises(ValueError, match="top-k"):
        distill.target_bytes(31, "float32", "top-k", 40)
    with pytest.raises(ValueError, match="kind"):
        distill.target_bytes(31, "float32", "logits")
    with pytest.raises(ValueError, match="k must be"):
        distill.top_k_forward_kl(_logits(1, 2, 5), _logits(1, 2, 5), torch.ones(1, 2), 0)


def test_top_k_kd_is_the_full_kl_with_every_token_and_minus_log_mass_at_the_teacher():
    student, teacher, mask = _logits(3, 4, 9, seed=3), _logits(3, 4, 9, seed=4) * 3, torch.ones(3, 4)
    full = exact_per_token_kl(teacher, student, mask)
    assert torch.allclose(distill.top_k_forward_kl(student, teacher, mask, 9), full, atol=1e-6)
    for k in (1, 3):
        at_teacher = distill.top_k_forward_kl(teacher, teacher, mask, k)
        assert torch.allclose(at_teacher, -distill.top_k_mass(teacher, k).log(), atol=1e-6)
        assert (at_teacher > 0).all()


def test_the_mixture_of_one_model_is_the_model(smoke_world):
    w = smoke_world
    torch.manual_seed(0)
    rollout = sample(w.reference, w.tokenizer, w.prompts(8, seed=0), max_new_tokens=w.max_new_tokens)
    own = response_logprobs(w.reference, rollout, 1.0).sum(1)
    assert torch.allclose(distill.mixture_logprob([w.reference], rollout), own, atol=1e-6)
    twice = distill.mixture_logprob([w.reference, w.reference], rollout)
    assert torch.allclose(twice, own, atol=1e-5)
    mixed = distill.mixture_logprob([w.reference, w.drifted], rollout)
    assert (mixed - own <= math.log(2) + 1e-6).all() and (own - mixed <= math.log(2) + 1e-6).all()


def test_tempered_fits_are_zero_where_the_family_holds_the_target(smoke_world):
    w = smoke_world
    fits = distill.tempered_fits(w, [w.drifted], w.drifted, [0.5, 1.0], n=64, seed=0).set_index("temperature")
    assert fits.loc[1.0, "forward"] == pytest.approx(0.0, abs=1e-5)
    assert fits.loc[1.0, "reverse"] == pytest.approx(0.0, abs=1e-5)
    assert fits.loc[0.5, "forward"] > 0.1 and fits.loc[0.5, "entropy"] < fits.loc[1.0, "entropy"]
    with pytest.raises(ValueError, match="multiple"):
        distill.tempered_fits(w, [w.drifted, w.reference], w.drifted, [1.0], n=63)


def test_ppo_on_the_teacher_world_distils_from_the_start_model(smoke_world):
    w = smoke_world
    world = distill.TeacherWorld(w, w.drifted)
    assert world.reference is w.drifted and world.tokenizer is w.tokenizer
    assert torch.equal(world.score(["the food was good ."] * 3), torch.zeros(3))
    config = config_for(w.preset, beta=1.0, steps=3, seed=0)
    seen = []
    result = train(
        world,
        config,
        progress=False,
        data_parallel=False,
        start=w.reference,
        after_step=lambda s, p: seen.append(s),
    )
    assert seen == [1, 2, 3]
    assert result.metrics.kl_k1.iloc[0] > 1e-3, "the policy starts as the SFT model, away from the teacher"
    unstarted = train(world, config_for(w.preset, steps=1), progress=False, data_parallel=False)
    assert unstarted.metrics.kl_k1.iloc[0] == 0.0, "without start, the policy starts as its reference"
    assert (result.metrics.proxy_score == 0).all()
    with pytest.raises(ValueError, match="LoRA"):
        train(
            world,
            config_for(w.preset, lora_rank=2, steps=1),
            progress=False,
            data_parallel=False,
            start=w.reference,
        )


@pytest.mark.parametrize("method", ["kd", "sft", "k1", "trl"])
def test_each_method_trains_and_is_measured_at_its_checkpoints(smoke_world, method):
    w = smoke_world
    spec = distill.DistillSpec(method, seed=0, trl_beta=1.0 if method == "trl" else None)
    run = distill.train_student(w, w.drifted, spec, steps=2)
    at = distill.checkpoint_episodes(w, 2)
    assert at[0] == 0 and [e["episodes"] for e in run.evaluations] == at
    start, end = run.evaluations[0], run.evaluations[-1]
    assert start["reverse"] > 0 and end["reverse"] != start["reverse"]
    assert run.log and run.seconds > 0
    assert not any(p.requires_grad for p in w.reference.parameters()), "the SFT model stays frozen"


def test_measuring_a_student_does_not_change_how_it_trains(smoke_world):
    w = smoke_world
    spec = distill.DistillSpec("kd", seed=1)
    measured = distill.train_student(w, w.drifted, spec, steps=2).student
    quiet = distill._Checkpoints(w, w.drifted, spec.seed, at=[])
    unmeasured = distill._on_teacher_samples(w, w.drifted, w.reference, spec, 2, quiet).student
    for a, b in zip(measured.parameters(), unmeasured.parameters(), strict=True):
        assert torch.equal(a, b)


def test_distill_specs_name_each_run_once():
    specs = distill.distill_specs([0, 1])
    assert len({s.name for s in specs}) == len(specs) == 2 * 2 * (3 + len(distill.TRL_BETAS))
    assert distill.DistillSpec("trl", 0, trl_beta=0.0).direction == "forward"
    assert distill.DistillSpec("k1", 0, student="small").name == "k1_small_seed-0"
    with pytest.raises(ValueError, match="trl_beta"):
        distill.DistillSpec("kd", 0, trl_beta=1.0)
    with pytest.raises(ValueError, match="method"):
        distill.DistillSpec("jsd", 0)
    with pytest.raises(ValueError, match="student"):
        distill.DistillSpec("kd", 0, student="tiny")


RERUN = distill.DistillSpec("kd", seed=0)


@pytest.mark.slow
def test_a_committed_distillation_run_reproduces_its_first_steps(laptop_world):
    """The teacher is trained again where the cache lacks it, and a PPO run trained again agrees with
    the one that made the committed runs to rounding only: a teacher a rounding apart samples a few
    different responses, and the student's batches differ with them. So the replay is compared as a
    run, not token for token: its mean loss over the steps, and its measurement at the first
    checkpoint within 3 of that measurement's standard errors."""
    stored = load_result(COMMITTED / f"{RERUN.name}.json", RERUN, laptop_world.preset, laptop_world)
    assert stored is not None
    early = distill.checkpoint_episodes(laptop_world)[1]
    steps = early // laptop_world.preset.ppo_batch_size
    teacher = distill.teacher(laptop_world, log=lambda m: None)
    replay = distill.train_student(laptop_world, copy.deepcopy(teacher), RERUN, steps=steps)
    assert [row["step"] for row in replay.log] == list(range(1, steps + 1))
    mean_loss = sum(row["loss"] for row in replay.log) / steps
    assert mean_loss == pytest.approx(sum(row["loss"] for row in stored["log"][:steps]) / steps, rel=0.1)
    old, new = stored["evaluations"][1], replay.evaluations[1]
    assert new["episodes"] == old["episodes"] == early
    for col in ("reverse", "entropy"):
        assert abs(new[col] - old[col]) < 3 * old[f"{col}_se"], (col, new[col], old[col])
    assert new["forward"] == pytest.approx(old["forward"], rel=0.1)
