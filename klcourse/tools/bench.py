"""Benchmarks that print figures: ``python -m klcourse.tools.bench kl-cost``, ``… ppo`` and ``… stability``.

``stability`` trains PPO at several update sizes (learning rate × epochs over each batch), βs and
seeds, and counts the runs that spike: whose KL to the reference rises by more than
:data:`SPIKE_NATS` in one step. ``max approx-KL`` is the median over runs of each run's largest.

``kl-cost`` measures what the seed post's cost table is about. Given the logits of both models
for a batch of sampled tokens (the forward passes must produce them either way), it times

* **full-vocabulary KL** per position, ``Σ_v π(v) (log π(v) − log π_ref(v))``
  (:func:`klcourse.logprobs.exact_per_token_kl`), and
* **sampled-token KL** per position, ``log π(y_t) − log π_ref(y_t)`` (k1, via
  :func:`klcourse.logprobs.gather_logprobs`), which still needs a log-sum-exp over the vocabulary,

and the one step both must pay first, the LM head that turns hidden states into logits. It also
counts the bytes each must keep per rollout for the PPO update: the reference's log-probabilities
over the vocabulary (full) or of the sampled token only (sampled).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from klcourse.config import PRESETS
from klcourse.logprobs import exact_per_token_kl, gather_logprobs
from klcourse.tools import cli

#: A run "spikes" when its KL to the reference rises by more than this many nats in one step.
SPIKE_NATS = 3.0

if TYPE_CHECKING:
    from klcourse.world import World

GPT2_VOCAB = 50_257
GPT2_WIDTH = 768


@dataclass(frozen=True)
class KLCost:
    """Median seconds of each step and the bytes each approach keeps per rollout batch."""

    vocab: int
    positions: int
    lm_head_s: float
    full_kl_s: float
    sampled_kl_s: float
    full_bytes: int
    sampled_bytes: int

    @property
    def time_ratio(self) -> float:
        """Full-vocabulary KL time over sampled-token KL time (same logits)."""
        return self.full_kl_s / self.sampled_kl_s

    @property
    def memory_ratio(self) -> float:
        """Bytes kept for the full KL over bytes kept for the sampled KL: exactly the vocabulary size."""
        return self.full_bytes / self.sampled_bytes

    def report(self) -> str:
        """A few lines for a terminal or a notebook."""
        mib = 2**20
        return "\n".join(
            [
                f"vocab {self.vocab:,}, {self.positions:,} token positions, float32",
                f"  LM head (hidden → logits), needed by both: {self.lm_head_s * 1e3:8.1f} ms",
                f"  full-vocabulary KL from the logits:        {self.full_kl_s * 1e3:8.1f} ms",
                f"  sampled-token KL (k1) from the logits:     {self.sampled_kl_s * 1e3:8.1f} ms",
                f"  time ratio full / sampled:                 {self.time_ratio:8.2f}×",
                f"  kept per batch: full {self.full_bytes / mib:,.1f} MiB vs sampled "
                f"{self.sampled_bytes / 1024:,.1f} KiB (ratio {self.memory_ratio:,.0f}×)",
            ]
        )


def _median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats + 1):  # the first call warms up and is not counted
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


@torch.no_grad()
def kl_cost(
    vocab: int = GPT2_VOCAB,
    batch: int = 8,
    seq_len: int = 64,
    width: int = GPT2_WIDTH,
    repeats: int = 5,
    device: torch.device | None = None,
    seed: int = 0,
) -> KLCost:
    """Time full vs sampled per-token KL on random logits of GPT-2's shape (see module doc)."""
    device = device or torch.device("cpu")
    g = torch.Generator(device="cpu").manual_seed(seed)
    hidden = torch.randn(batch, seq_len, width, generator=g).to(device)
    head = (torch.randn(width, vocab, generator=g) / width**0.5).to(device)
    logits_p = hidden @ head
    logits_q = logits_p + 0.1 * torch.randn(batch, seq_len, vocab, generator=g).to(device)
    tokens = torch.distributions.Categorical(logits=logits_p).sample()
    mask = torch.ones(batch, seq_len, device=device)

    lm_head = _median_seconds(lambda: hidden @ head, repeats, device)
    full = _median_seconds(lambda: exact_per_token_kl(logits_p, logits_q, mask), repeats, device)
    sampled = _median_seconds(
        lambda: gather_logprobs(logits_p, tokens) - gather_logprobs(logits_q, tokens),
        repeats,
        device,
    )
    positions = batch * seq_len
    return KLCost(vocab, positions, lm_head, full, sampled, positions * vocab * 4, positions * 4)


@dataclass(frozen=True)
class Throughput:
    """Episodes and response tokens per second of a training run, excluding its first step."""

    name: str
    episodes: int
    tokens: int
    seconds: float

    @property
    def episodes_per_s(self) -> float:
        """Completed episodes (prompt → response → update) per second."""
        return self.episodes / self.seconds

    @property
    def tokens_per_s(self) -> float:
        """Response tokens trained on per second."""
        return self.tokens / self.seconds


def ppo_throughput(
    world: World, batch: int, mini_batch: int, epochs: int, steps: int
) -> tuple[Throughput, float, float]:
    """klcourse PPO at the given sizes; returns throughput (first step excluded as warm-up), the
    share of step time spent on the KL arithmetic, and the share including the reference's
    forward pass."""
    from klcourse.ppo import PPOConfig, train

    cfg = PPOConfig(
        beta=0.05, batch_size=batch, mini_batch_size=mini_batch, ppo_epochs=epochs, steps=steps + 1
    )
    m = train(world, cfg, progress=False).metrics.iloc[1:]
    phases = [c for c in m.columns if c.startswith("time_")]
    total = m[phases].to_numpy().sum()
    kl_share = m["time_kl"].sum() / total
    with_reference = (m["time_kl"].sum() + m["time_reference"].sum()) / total
    tokens = int(round(m["response_length"].sum() * batch))
    return (
        Throughput("klcourse PPO", steps * batch, tokens, float(total)),
        float(kl_share),
        float(with_reference),
    )


def rloo_throughput(
    world: World, batch: int, mini_batch: int, epochs: int, steps: int, generations: int = 4
) -> Throughput:
    """TRL's ``RLOOTrainer`` on the same world, model, batch, response length and update epochs:
    ``batch`` completions per generation round (``batch / generations`` prompts), split into
    minibatches of ``mini_batch`` and reused for ``epochs`` iterations; β = 0.05, k1 in the reward.
    """
    import copy

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOTrainer

    from klcourse.trainers import proxy_reward_function, trl_config

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

    rounds = steps + 1
    per_round = batch // mini_batch  # optimizer steps per generation round per iteration
    args = trl_config(
        "rloo",
        beta=0.05,
        rounds=rounds,
        batch=batch,
        mini_batch=mini_batch,
        epochs=epochs,
        lr=3e-4,
        generations=generations,
        seed=0,
    )
    prompts = world.prompts(rounds * batch // generations * 2, seed=123)
    clock = StepClock()
    trainer = RLOOTrainer(
        model=copy.deepcopy(world.reference).requires_grad_(True),  # the world's models come frozen
        reward_funcs=proxy_reward_function(world),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=world.tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    steps_per_round = per_round * epochs
    first_round_end = clock.marks[steps_per_round - 1]
    seconds = clock.marks[-1] - first_round_end
    logged = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    tokens = int(batch * steps * float(logged[-1]["completions/mean_length"]))
    return Throughput("TRL RLOOTrainer", steps * batch, tokens, seconds)


def update_stability(
    world: World,
    settings: list[tuple[float, int]],
    betas: list[float],
    seeds: list[int],
    steps: int | None = None,
) -> list[dict]:
    """Train PPO for every ``(learning rate, epochs)`` in ``settings`` × β × seed; for each run
    return the largest approx-KL to the old policy, the largest one-step rise of ``KL(π ‖ π_ref)``
    and whether that rise exceeds :data:`SPIKE_NATS` (a spike)."""
    from klcourse.ppo import config_for, train

    rows = []
    for lr, epochs in settings:
        for beta in betas:
            for seed in seeds:
                overrides = dict(beta=beta, seed=seed, lr=lr, ppo_epochs=epochs)
                if steps is not None:
                    overrides["steps"] = steps
                m = train(world, config_for(world.preset, **overrides), progress=False).metrics
                jump = float(m.kl_k1.diff().max())
                rows.append(
                    {
                        "lr": lr,
                        "epochs": epochs,
                        "beta": beta,
                        "seed": seed,
                        "max_approx_kl": float(m.approx_kl.max()),
                        "max_kl_jump": jump,
                        "spiked": jump > SPIKE_NATS,
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; bad options and Ctrl-C end in one line (:func:`klcourse.tools.cli.run`)."""
    parser = cli.Parser(prog="python -m klcourse.tools.bench")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    k = sub.add_parser("kl-cost", help="full-vocabulary vs sampled-token KL: time and memory")
    k.add_argument("--vocab", type=cli.positive_int, default=GPT2_VOCAB)
    k.add_argument("--batch", type=cli.positive_int, default=8)
    k.add_argument("--seq-len", type=cli.positive_int, default=64)
    k.add_argument("--repeats", type=cli.positive_int, default=5)
    k.add_argument("--device", type=cli.device, default=None, help="default: cuda if available, else cpu")
    p = sub.add_parser("ppo", help="klcourse PPO vs TRL's RLOOTrainer: episodes/s, tokens/s, KL share")
    p.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    p.add_argument("--batch", type=cli.positive_int, default=64)
    p.add_argument("--mini-batch", type=cli.positive_int, default=16)
    p.add_argument("--epochs", type=cli.positive_int, default=4)
    p.add_argument("--steps", type=cli.positive_int, default=10, help="measured steps (plus one warm-up)")
    st = sub.add_parser("stability", help="PPO spikes vs update size (learning rate × epochs)")
    st.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    st.add_argument(
        "--settings",
        type=cli.update_size,
        nargs="+",
        default=[(3e-4, 4), (1e-4, 4), (3e-4, 1), (1e-4, 2)],
        help="update sizes as LRxEPOCHS (default: 3e-4x4 1e-4x4 3e-4x1 1e-4x2)",
    )
    st.add_argument("--betas", type=cli.non_negative_float, nargs="+", default=[0.03, 0.1])
    st.add_argument("--seeds", type=cli.non_negative_int, nargs="+", default=[10, 11, 12, 13])
    st.add_argument("--steps", type=cli.positive_int, help="PPO steps per run (default: the preset's)")
    args = parser.parse_args(argv)
    cli.run(lambda: _run(args), parser.prog, lambda: "benchmarks keep no partial results; run it again")


def _run(args: argparse.Namespace) -> None:
    if args.benchmark == "kl-cost":
        device = args.device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        print(f"device: {device}")
        cost = kl_cost(args.vocab, args.batch, args.seq_len, repeats=args.repeats, device=device)
        print(cost.report())
        return
    import transformers

    from klcourse.world import load_world

    transformers.logging.set_verbosity_error()
    world = load_world(args.preset, progress=False)
    if args.benchmark == "stability":
        from klcourse.sweep import provenance

        settings = args.settings
        t0 = time.perf_counter()
        rows = update_stability(world, settings, args.betas, args.seeds, args.steps)
        seconds = time.perf_counter() - t0
        print(
            f"preset {world.preset.name}; β {args.betas} × seeds {args.seeds}; "
            f"a spike: KL rises by more than {SPIKE_NATS} nats in one step"
        )
        print(f"{'lr':>8}{'epochs':>8}{'runs':>6}{'spiked':>8}{'max approx-KL':>16}{'largest KL jump':>17}")
        for lr, epochs in settings:
            mine = [r for r in rows if r["lr"] == lr and r["epochs"] == epochs]
            print(
                f"{lr:8.0e}{epochs:8d}{len(mine):6d}{sum(r['spiked'] for r in mine):8d}"
                f"{statistics.median(r['max_approx_kl'] for r in mine):16.4f}"
                f"{max(r['max_kl_jump'] for r in mine):17.2f}"
            )
        info = provenance(world)
        print(
            f"{len(rows)} runs of {args.steps or world.preset.ppo_steps} steps in {seconds / 60:.1f} min on "
            f"{info['card']}; torch {info['torch']}, transformers {info['transformers']}"
        )
        return
    print(
        f"device: {world.device}, preset: {world.preset.name}, batch {args.batch}, minibatch "
        f"{args.mini_batch}, {args.epochs} epochs, {args.steps} measured steps"
    )
    ppo, kl_share, with_ref = ppo_throughput(world, args.batch, args.mini_batch, args.epochs, args.steps)
    rloo = rloo_throughput(world, args.batch, args.mini_batch, args.epochs, args.steps)
    for t in (ppo, rloo):
        rate = f"{t.episodes_per_s:7.1f} episodes/s {t.tokens_per_s:8.1f} tokens/s"
        print(f"  {t.name:16s} {rate} ({t.seconds:.1f} s)")
    print(
        f"  ratio PPO / RLOO: {ppo.episodes_per_s / rloo.episodes_per_s:.2f} (episodes/s), "
        f"{ppo.tokens_per_s / rloo.tokens_per_s:.2f} (tokens/s)"
    )
    print(
        f"  share of a PPO step computing KL: {kl_share:.2%} (the KL arithmetic); "
        f"{with_ref:.1%} including the reference's forward pass"
    )


if __name__ == "__main__":
    main()
