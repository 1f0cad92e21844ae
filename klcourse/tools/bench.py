"""Benchmarks that print figures: ``klcourse bench kl-cost``, ``… ppo``, ``… threads`` and ``… stability``.

``ppo`` runs klcourse PPO and TRL's ``RLOOTrainer`` in turn on the same world and update work
(:func:`compare_throughput`), every side at torch's default thread count, one per core; ``threads``
runs PPO at several thread counts in turn (:func:`thread_throughput`), which is how that default was
checked. ``results/bench-ppo.txt`` holds runs of both on 2 CPU cores, with the machine and the
course environment's versions (TRL 1.12's side runs in the environment
:mod:`klcourse.tools.bench_trl_ppo` describes).

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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from klcourse.config import PRESETS
from klcourse.logprobs import exact_per_token_kl, gather_logprobs
from klcourse.tools import cli

PROG = "klcourse bench"

#: A run "spikes" when its KL to the reference rises by more than this many nats in one step.
SPIKE_NATS = 3.0

if TYPE_CHECKING:
    from klcourse.ppo import PPOConfig
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
    """Episodes per second of a training run, excluding its first step."""

    name: str
    episodes: int
    seconds: float

    @property
    def episodes_per_s(self) -> float:
        """Completed episodes (prompt → response → update) per second."""
        return self.episodes / self.seconds


def ppo_throughput(world: World, config: PPOConfig, steps: int) -> tuple[Throughput, dict[str, float]]:
    """klcourse PPO at ``config`` for ``steps`` measured steps after one warm-up step: the
    throughput over the measured steps' wall time (metrics included), and each phase's share of it
    (:class:`klcourse.timing.Laps`: generate, policy, reference, score, kl, advantages, update;
    ``other`` is the per-step metrics)."""
    from klcourse.ppo import train

    m = train(world, replace(config, steps=steps + 1), progress=False, data_parallel=False).metrics
    wall = float(m.seconds.iloc[-1] - m.seconds.iloc[0])
    measured = m.iloc[1:]
    shares = {
        c.removeprefix("time_"): float(measured[c].sum()) / wall for c in m.columns if c.startswith("time_")
    }
    shares["other"] = 1.0 - sum(shares.values())
    return Throughput("klcourse PPO", steps * config.batch_size, wall), shares


def rloo_throughput(world: World, config: PPOConfig, steps: int, generations: int = 4) -> Throughput:
    """TRL's ``RLOOTrainer`` (:func:`klcourse.trainers.train_trl`) matched to ``config``: the same
    world, model, β, learning rate and optimiser, ``config.batch_size`` completions per generation
    round (``batch / generations`` prompts), minibatches of ``config.mini_batch_size`` reused for
    ``config.ppo_epochs`` iterations, the same response length limit; ``steps`` measured rounds
    after one warm-up round, timed between the optimiser steps that end them."""
    from transformers import TrainerCallback

    from klcourse.trainers import train_trl

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

    clock = StepClock()
    train_trl(
        world,
        "rloo",
        beta=config.beta,
        episodes=(steps + 1) * config.batch_size,
        batch=config.batch_size,
        mini_batch=config.mini_batch_size,
        epochs=config.ppo_epochs,
        lr=config.lr,
        generations=generations,
        seed=config.seed,
        callbacks=[clock],
    )
    per_round = config.batch_size // config.mini_batch_size * config.ppo_epochs  # optimiser steps
    seconds = clock.marks[-1] - clock.marks[per_round - 1]
    return Throughput("TRL RLOOTrainer", steps * config.batch_size, seconds)


def trl_ppo_throughput(python: str, preset: str, steps: int, threads: int | None) -> Throughput:
    """TRL 1.12's ``PPOTrainer`` at the preset's PPO sizes, run by :mod:`klcourse.tools.bench_trl_ppo`
    in the environment of the interpreter ``python`` (TRL 1.12 beside the course's own TRL)."""
    import json
    import os
    import subprocess

    command = [python, "-m", "klcourse.tools.bench_trl_ppo", "--preset", preset, "--steps", str(steps)]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = os.environ | {"TRL_EXPERIMENTAL_SILENCE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{python} -m klcourse.tools.bench_trl_ppo failed: {tail[0]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Throughput("TRL 1.12 PPOTrainer", result["episodes"], result["seconds"])


def _median_rate(runs: list[Throughput]) -> float:
    return statistics.median(t.episodes_per_s for t in runs)


def _paired(ppo: list[Throughput], other: list[Throughput]) -> list[float]:
    return [p.episodes_per_s / o.episodes_per_s for p, o in zip(ppo, other, strict=True)]


def _rates(runs: list[Throughput]) -> str:
    rates = [t.episodes_per_s for t in runs]
    return f"{statistics.median(rates):7.1f} episodes/s (min {min(rates):.1f}, max {max(rates):.1f})"


def _spread(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"


@dataclass(frozen=True)
class ThroughputComparison:
    """PPO, RLOO (and TRL 1.12's PPO, if measured) run in turn: each repeat's :class:`Throughput`
    per side, PPO's phase shares in each repeat, and the episodes per PPO step."""

    ppo: list[Throughput]
    rloo: list[Throughput]
    ppo_shares: list[dict[str, float]]
    trl_ppo: list[Throughput]
    batch_size: int

    @property
    def ratio(self) -> float:
        """Median PPO episodes/s over median RLOO episodes/s."""
        return _median_rate(self.ppo) / _median_rate(self.rloo)

    @property
    def ratio_trl_ppo(self) -> float:
        """Median PPO episodes/s over median TRL 1.12 PPOTrainer episodes/s (NaN if not measured)."""
        return _median_rate(self.ppo) / _median_rate(self.trl_ppo) if self.trl_ppo else float("nan")

    @property
    def paired_ratios(self) -> list[float]:
        """Each repeat's PPO episodes/s over those of the RLOO run right after it: a slow spell of the
        machine that spans both runs of a repeat cancels in its ratio, where it moves one side's median."""
        return _paired(self.ppo, self.rloo)

    @property
    def paired_ratios_trl_ppo(self) -> list[float]:
        """Each repeat's PPO episodes/s over those of its TRL 1.12 PPOTrainer run (empty if not measured)."""
        return _paired(self.ppo, self.trl_ppo) if self.trl_ppo else []

    def report(self) -> str:
        """Median and min–max per side, the ratio of medians, the median and min–max of the repeats'
        own ratios, and PPO's median share per phase, with the milliseconds it makes of the step time
        at PPO's median rate."""

        def ratios(name: str, of_medians: float, paired: list[float]) -> str:
            return (
                f"  PPO / {name}, episodes/s: ratio of medians {of_medians:.2f}; each repeat's own ratio: "
                f"{_spread(paired)}"
            )

        def line(runs: list[Throughput]) -> str:
            return f"  {runs[0].name:20s} {_rates(runs)}"

        step_s = self.batch_size / _median_rate(self.ppo)
        medians = {k: statistics.median(s[k] for s in self.ppo_shares) for k in self.ppo_shares[0]}
        shares = ", ".join(f"{k} {v:.0%} ({v * step_s * 1e3:.1f} ms)" for k, v in medians.items())
        lines = [line(self.ppo), line(self.rloo)] + ([line(self.trl_ppo)] if self.trl_ppo else [])
        lines.append(ratios("RLOO", self.ratio, self.paired_ratios))
        if self.trl_ppo:
            lines.append(ratios("TRL 1.12 PPO", self.ratio_trl_ppo, self.paired_ratios_trl_ppo))
        lines.append(f"  PPO's step, {step_s * 1e3:.0f} ms, by phase (median share over repeats): {shares}")
        return "\n".join(lines)


def compare_throughput(
    world: World, config: PPOConfig, steps: int, repeats: int, trl_ppo_python: str | None = None
) -> ThroughputComparison:
    """One warm-up run of PPO and of RLOO (2 steps, discarded), then ``repeats`` rounds that run PPO
    and RLOO (and TRL 1.12's PPO in ``trl_ppo_python``'s environment, if given, which warms up one
    step in its own process) in turn, each for ``steps`` measured steps, so that a slow spell of the
    machine hits every side."""
    threads = torch.get_num_threads()
    ppo_throughput(world, config, 1)
    rloo_throughput(world, config, 1)
    ppo, rloo, shares, trl_ppo = [], [], [], []
    for _ in range(repeats):
        t, share = ppo_throughput(world, config, steps)
        ppo.append(t)
        shares.append(share)
        rloo.append(rloo_throughput(world, config, steps))
        if trl_ppo_python is not None:
            trl_ppo.append(trl_ppo_throughput(trl_ppo_python, world.preset.name, steps, threads))
    return ThroughputComparison(ppo, rloo, shares, trl_ppo, config.batch_size)


def thread_throughput(
    world: World, config: PPOConfig, steps: int, repeats: int, counts: list[int]
) -> dict[int, list[Throughput]]:
    """klcourse PPO at each torch thread count of ``counts`` in turn (``torch.set_num_threads``), after
    one warm-up run: ``repeats`` rounds of ``steps`` measured steps per count."""
    ppo_throughput(world, config, 1)
    runs: dict[int, list[Throughput]] = {n: [] for n in counts}
    for _ in range(repeats):
        for n in counts:
            torch.set_num_threads(n)
            runs[n].append(ppo_throughput(world, config, steps)[0])
    return runs


def thread_report(runs: dict[int, list[Throughput]]) -> str:
    """Median and min–max episodes/s per thread count, and each repeat's own ratio to the first count."""
    first, *rest = runs
    lines = [f"  PPO at {n:2d} torch threads {_rates(mine)}" for n, mine in runs.items()]
    lines += [
        f"  {n} threads / {first}, each repeat's own ratio: {_spread(_paired(runs[n], runs[first]))}"
        for n in rest
    ]
    return "\n".join(lines)


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
    parser = cli.Parser(prog=PROG)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    k = sub.add_parser("kl-cost", help="full-vocabulary vs sampled-token KL: time and memory")
    k.add_argument("--vocab", type=cli.positive_int, default=GPT2_VOCAB)
    k.add_argument("--batch", type=cli.positive_int, default=8)
    k.add_argument("--seq-len", type=cli.positive_int, default=64)
    k.add_argument("--repeats", type=cli.positive_int, default=5)
    k.add_argument("--device", type=cli.device, default=None, help="default: cuda if available, else cpu")
    p = sub.add_parser("ppo", help="klcourse PPO vs TRL's RLOOTrainer: episodes/s, alternating repeats")
    p.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    p.add_argument(
        "--steps", type=cli.positive_int, default=20, help="measured steps per repeat (plus one warm-up)"
    )
    p.add_argument("--repeats", type=cli.positive_int, default=7, help="alternating repeats of each side")
    p.add_argument("--threads", type=cli.positive_int, help="torch threads for every side (default: torch's)")
    p.add_argument(
        "--trl-ppo-python",
        help="the Python of an environment with TRL 1.12, to measure its PPOTrainer too "
        "(how to make one: klcourse/tools/bench_trl_ppo.py)",
    )
    th = sub.add_parser("threads", help="klcourse PPO's episodes/s at several torch thread counts, in turn")
    th.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    th.add_argument(
        "--counts", type=cli.positive_int, nargs="+", help="thread counts (default: 1 and one per core)"
    )
    th.add_argument(
        "--steps", type=cli.positive_int, default=20, help="measured steps per run (plus one warm-up)"
    )
    th.add_argument("--repeats", type=cli.positive_int, default=7, help="rounds over the thread counts")
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
    transformers.utils.logging.disable_progress_bar()  # TRL loads its reference model with a bar
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
    from klcourse.ppo import config_for

    config = config_for(world.preset, beta=0.05)
    if args.benchmark == "threads":
        import os

        counts = args.counts or sorted({1, os.cpu_count() or 1})
        print(
            f"device: {world.device}, preset: {world.preset.name}; klcourse PPO as in `bench ppo`; "
            f"{args.repeats} rounds over {counts} threads, {args.steps} measured steps each, after a warm-up"
        )
        t0 = time.perf_counter()
        print(thread_report(thread_throughput(world, config, args.steps, args.repeats, counts)))
        print(_made_on(world, time.perf_counter() - t0))
        return
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"device: {world.device}, preset: {world.preset.name}, {torch.get_num_threads()} torch threads; "
        f"batch {config.batch_size}, minibatch {config.mini_batch_size}, {config.ppo_epochs} epochs, "
        f"at most {config.max_new_tokens} response tokens, β = {config.beta}, lr {config.lr:g}; "
        f"{args.repeats} alternating repeats of {args.steps} measured steps each, after a warm-up"
    )
    print(
        "  per episode, PPO: sample; policy+value, reference and reward forward; policy+value forward and "
        "backward per epoch.\n  RLOO: sample; policy (old log-probs), reference and reward forward; policy "
        "forward and backward per epoch.\n  TRL 1.12 PPO (if measured): as PPO, its old log-probs taken from "
        "the sampler's logits."
    )
    t0 = time.perf_counter()
    print(compare_throughput(world, config, args.steps, args.repeats, args.trl_ppo_python).report())
    print(_made_on(world, time.perf_counter() - t0))


def _made_on(world: World, seconds: float) -> str:
    from klcourse.sweep import provenance

    info = provenance(world)
    return (
        f"  {seconds / 60:.1f} min on {info['card']}, {time.strftime('%Y-%m-%d')}; torch {info['torch']}, "
        f"transformers {info['transformers']}, trl {info['trl']}"
    )


if __name__ == "__main__":
    main()
