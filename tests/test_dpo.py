"""DPO: its population loss is minimised at π*, its data are the reward model's pairs scored on the
tokens PPO samples, and a committed run reproduces."""

from pathlib import Path

import numpy as np
import pytest
import torch

from klcourse import dpo
from klcourse.optimal import optimal_policy
from klcourse.sweep import load_result
from klcourse.world.training import reward_model_pairs

ROOT = Path(__file__).parents[1]
COMMITTED = ROOT / "results" / "laptop-dpo"


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_the_population_loss_is_stationary_at_pi_star_only(beta):
    rng = np.random.default_rng(0)
    ref = torch.as_tensor(rng.dirichlet(np.ones(7)))
    rewards = torch.as_tensor(rng.normal(0, 1, 7))
    star = torch.as_tensor(optimal_policy(ref.numpy(), rewards.numpy(), beta))

    def gradient(policy):
        logits = policy.log().clone().requires_grad_(True)
        dpo.population_loss(logits.log_softmax(0), ref, rewards, beta).backward()
        return logits.grad

    assert gradient(star).abs().max() < 1e-12
    assert gradient(ref).abs().max() > 1e-3  # the reference is not the minimum
    wrong_beta = torch.as_tensor(optimal_policy(ref.numpy(), rewards.numpy(), 2 * beta))
    assert dpo.population_loss(star.log(), ref, rewards, beta) < dpo.population_loss(
        wrong_beta.log(), ref, rewards, beta
    )


def test_the_dpo_and_ipo_losses_of_one_pair():
    zero = torch.zeros(1, dtype=torch.float64)
    assert float(dpo.dpo_loss(zero, zero, zero, zero, 0.1)) == pytest.approx(np.log(2))
    # the margin is (0.3 − 0) − (−0.2 − 0) = 0.5
    got = dpo.dpo_loss(zero + 0.3, zero - 0.2, zero, zero, 0.1)
    assert float(got) == pytest.approx(-np.log(1 / (1 + np.exp(-0.05))))
    # IPO reads per-token log-ratios: 0.6 over 2 tokens and −0.6 over 3 is a margin of 0.3 + 0.2
    ipo = dpo.ipo_loss(zero + 0.6, zero - 0.6, zero, zero, zero + 2, zero + 3, 1.0)
    assert float(ipo) == pytest.approx((0.5 - 0.5) ** 2)
    with pytest.raises(ValueError, match="β must be > 0"):
        dpo.dpo_loss(zero, zero, zero, zero, 0.0)


def test_dpo_trains_on_the_reward_models_pairs_as_ppo_samples_them(smoke_world, tmp_path):
    from trl import DPOConfig, DPOTrainer

    data = dpo.preference_data(smoke_world)
    chosen, rejected = reward_model_pairs(smoke_world.grammar, smoke_world.preset.world)
    assert [p + c for p, c in zip(data["prompt"], data["chosen"], strict=True)] == chosen
    assert [p + r for p, r in zip(data["prompt"], data["rejected"], strict=True)] == rejected
    args = DPOConfig(output_dir="unused", report_to="none", use_cpu=True, max_length=32)
    trainer = DPOTrainer(
        model=smoke_world.reference,
        args=args,
        train_dataset=data.select(range(8)),
        processing_class=smoke_world.tokenizer,
    )
    tok = smoke_world.tokenizer
    for row, text in zip(trainer.train_dataset, chosen[:8], strict=True):
        # <bos> prompt words, then the response's words and <eos>: the ids the world's models see
        assert row["prompt_ids"] + row["chosen_ids"] == tok(text + tok.eos_token)["input_ids"]
        assert row["prompt_ids"][0] == tok.bos_token_id and row["chosen_ids"][-1] == tok.eos_token_id


RERUN = dpo.DPOSpec(loss="sigmoid", beta=0.1, seed=0, epochs=dpo.EPOCHS)
REPLAYED_WINDOWS = 2


@pytest.mark.slow
def test_a_committed_dpo_run_reproduces_its_first_steps(laptop_world):
    stored = load_result(COMMITTED / f"{RERUN.name}.json", RERUN, laptop_world.preset, laptop_world)
    assert stored is not None
    replay = dpo.train_dpo(laptop_world, RERUN, max_steps=REPLAYED_WINDOWS * dpo.LOGGING_STEPS)
    assert len(replay.log) == REPLAYED_WINDOWS
    assert [e["epoch"] for e in replay.evaluations] == [pytest.approx(replay.log[-1]["epoch"])]
    # a logged accuracy is a share of the pairs of a logging window: float noise between machines
    # may flip the order of one pair whose two implicit rewards nearly tie
    one_pair = 1 / (dpo.LOGGING_STEPS * laptop_world.preset.ppo_mini_batch_size)
    for old, new in zip(stored["trl_log"][:REPLAYED_WINDOWS], replay.log, strict=True):
        assert new["rewards/accuracies"] == pytest.approx(old["rewards/accuracies"], abs=1.01 * one_pair)
        rest = old | {"rewards/accuracies": new["rewards/accuracies"]}
        assert new == pytest.approx(rest, rel=1e-3, abs=1e-4)
