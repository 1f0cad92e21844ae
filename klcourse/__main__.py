"""The ``klcourse`` command (``python -m klcourse`` is the same): ``build``, ``ppo``, ``sweep``,
``compare``, ``dpo``, ``distill`` and ``doctor`` here, and ``site``, ``bench``, ``regenerate`` and
``seedcheck``, whose command lines live in :mod:`klcourse.tools` and are handed the rest of the line.

``ppo`` and ``sweep`` train on the synthetic world, or, given ``--policy``, ``--reward`` and
``--prompts``, on any causal LM and reward model by hub name or local folder
(:func:`klcourse.world.hub.load_hub_world`).

Every option is checked where it is parsed; a bad option or environment variable, a folder that
cannot be written, a full disk or Ctrl-C ends in one line, not a traceback (:mod:`klcourse.tools.cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import multiprocessing
import sys
import time
from pathlib import Path

import torch

from klcourse.config import PRESETS, Preset, get_preset
from klcourse.tools import cli

PROG = "klcourse"

#: The subcommands whose command lines live in :mod:`klcourse.tools`: module, entry point, one line of help.
TOOLS = {
    "site": ("klcourse.tools.site", "main", "build the course website from the notebooks and check it"),
    "bench": ("klcourse.tools.bench", "main", "benchmarks that print figures: kl-cost, ppo, stability"),
    "regenerate": (
        "klcourse.tools.regenerate",
        "main",
        "re-run the notebooks, write their outputs and run times",
    ),
    "seedcheck": ("klcourse.tools.seedcheck", "command", "re-run every notebook's assertions on other seeds"),
}


class _Adaptive(argparse.Action):
    """``--adaptive BETA0 TARGET HORIZON``: three positive numbers, the horizon a whole number."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values[2] != int(values[2]):
            parser.error(f"argument --adaptive: HORIZON must be a whole number, got {values[2]:g}")
        setattr(namespace, self.dest, values)


def _adaptive_option(p, help: str) -> None:
    """``--adaptive BETA0 TARGET HORIZON`` on ``p`` (a parser or a group of one)."""
    p.add_argument(
        "--adaptive",
        type=cli.positive_float,
        nargs=3,
        metavar=("BETA0", "TARGET", "HORIZON"),
        action=_Adaptive,
        help=help,
    )


def _hub_options(p: argparse.ArgumentParser, required: bool) -> None:
    """The options that make a hub world (:func:`klcourse.world.hub.load_hub_world`) and PPO's sizes."""
    h = p.add_argument_group("a real model" + ("" if required else " (all three of the first, or none)"))
    h.add_argument(
        "--policy", required=required, help="causal LM, hub name or local folder: reference and start"
    )
    h.add_argument(
        "--reward", required=required, help="reward model (sequence classifier), hub name or folder"
    )
    h.add_argument(
        "--prompts", required=required, help="a .txt (a prompt a line) or .jsonl file, or a dataset name"
    )
    h.add_argument(
        "--reward-label", type=cli.non_negative_int, help="the output read as the reward (classifiers)"
    )
    h.add_argument(
        "--gold", help="a gold reward model, hub name or folder (Gao et al.: a larger reward model)"
    )
    h.add_argument("--gold-label", type=cli.non_negative_int, help="the gold model's output to read")
    h.add_argument("--prompt-column", help="the .jsonl field or dataset column (default: prompt / text)")
    h.add_argument("--prompt-split", help="the dataset split (default: train)")
    h.add_argument(
        "--prompt-tokens",
        type=cli.positive_int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="cut each prompt to its first MIN…MAX tokens, drawn per prompt (TRL's IMDB example: 2 8)",
    )
    h.add_argument(
        "--chat-template",
        action="store_true",
        help="feed each prompt to the policy as a user turn of its tokenizer's chat template",
    )
    h.add_argument(
        "--max-new-tokens", type=cli.positive_int, help="longest response (default: the world's, 16)"
    )
    h.add_argument(
        "--missing-eos-penalty",
        type=cli.non_negative_float,
        help="subtracted from the normalised score of a response cut off before its end token",
    )
    h.add_argument(
        "--reward-dtype",
        choices=("float32", "bfloat16"),
        help="the frozen reward and gold models' weights (default float32; bfloat16 on a GPU halves their "
        "memory)",
    )
    z = p.add_argument_group("PPO's sizes (default: the preset's)")
    z.add_argument("--steps", type=cli.positive_int, help="PPO steps per run")
    z.add_argument("--batch-size", type=cli.positive_int, help="rollouts per step")
    z.add_argument("--mini-batch-size", type=cli.positive_int, help="rollouts per minibatch")
    z.add_argument("--epochs", type=cli.positive_int, help="passes over each batch")
    z.add_argument("--lr", type=cli.positive_float, help="learning rate")


def parser() -> argparse.ArgumentParser:
    """The command line's grammar, with every value checked by its type."""
    p = cli.Parser(prog=PROG)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the ground-truth world (tokenizer, SFT, reward model)")
    b.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    r = sub.add_parser(
        "ppo", help="one PPO run on any policy and reward model (hub name or folder), resumable"
    )
    r.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    kl = r.add_mutually_exclusive_group()
    kl.add_argument(
        "--beta", type=cli.non_negative_float, default=0.05, help="the KL coefficient (default 0.05)"
    )
    _adaptive_option(
        kl,
        "Ziegler's controller from BETA0 towards TARGET nats over HORIZON episodes "
        "(lm-human-preferences: 0.15 6 10000)",
    )
    r.add_argument("--seed", type=cli.non_negative_int, default=0)
    r.add_argument("--out", type=cli.writable_dir, help="result folder (default: under the cache)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    _hub_options(r, required=True)
    s = sub.add_parser("sweep", help="β ablation: β × seeds (+ an adaptive-KL run), resumable")
    s.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    s.add_argument("--betas", type=cli.non_negative_float, nargs="+", help="default: the preset's grid")
    s.add_argument("--seeds", type=cli.non_negative_int, nargs="+", help="default: the preset's seeds")
    _adaptive_option(
        s, "the adaptive-KL run: from BETA0 towards TARGET nats, HORIZON episodes (default: the preset's)"
    )
    s.add_argument("--out", type=cli.writable_dir, help="result folder (default: under the cache)")
    s.add_argument(
        "--jobs",
        type=cli.positive_int,
        default=1,
        help="processes sharing this device, process i taking runs i, i + JOBS, … (one run of these "
        "small models leaves a GPU mostly idle)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _hub_options(s, required=False)
    c = sub.add_parser(
        "compare", help="notebook 07's runs: PPO, TRL's RLOO and GRPO at one β and budget × seeds, resumable"
    )
    c.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    c.add_argument("--beta", type=cli.positive_float, default=0.1, help="the KL coefficient (default 0.1)")
    c.add_argument(
        "--episodes", type=cli.positive_int, default=3200, help="sampled responses per run (default 3200)"
    )
    c.add_argument("--seeds", type=cli.non_negative_int, nargs="+", help="default: the preset's seeds")
    c.add_argument("--out", type=cli.writable_dir, help="result folder (default: under the cache)")
    c.add_argument(
        "--jobs", type=cli.positive_int, default=1, help="processes sharing this device, as for sweep"
    )
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    d = sub.add_parser("dpo", help="notebook 08's runs: TRL's DPO and IPO at several β × seeds, resumable")
    d.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    d.add_argument("--seeds", type=cli.non_negative_int, nargs="+", help="default: the preset's seeds")
    d.add_argument("--out", type=cli.writable_dir, help="result folder (default: under the cache)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    k = sub.add_parser(
        "distill",
        help="notebook 09's runs: a PPO teacher distilled 4 ways into 2 students, and LoRA PPO runs, "
        "× seeds, resumable",
    )
    k.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    k.add_argument("--seeds", type=cli.non_negative_int, nargs="+", help="default: the preset's seeds")
    k.add_argument("--out", type=cli.writable_dir, help="result folder (default: under the cache)")
    k.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_parser(
        "doctor",
        help="check this set-up (versions, device, cache, Jupyter kernel, widgets, disk); a fix for each "
        "problem",
    )
    for name, (_, _, summary) in TOOLS.items():
        tool = sub.add_parser(name, help=f"{summary} (klcourse {name} --help)", add_help=False)
        tool.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command; a :data:`TOOLS` subcommand gets the rest
    of the line, and its own parser, errors and exit status."""
    argv = list(argv if argv is not None else sys.argv[1:])
    if argv and argv[0] in TOOLS:
        module, entry, _ = TOOLS[argv[0]]
        getattr(importlib.import_module(module), entry)(argv[1:])
        return
    p = parser()
    args = p.parse_args(argv)
    if args.command == "doctor":
        from klcourse.tools import doctor

        cli.run(doctor.run, PROG, lambda: "nothing was changed")
        return
    where: dict[str, Path] = {}
    cli.run(lambda: _run(p, args, argv, where), PROG, lambda: _kept(args.command, where))


def _kept(command: str, where: dict[str, Path]) -> str:
    """What an interrupted command kept, and how to resume it."""
    if command == "build":
        folder = where.get("cache", "the cache")
        return f"the models already built are kept in {folder}; run the same command to build the rest"
    if "out" not in where:
        return "nothing was written yet"
    finished = len(list(where["out"].glob("*_seed-*.json")))
    return f"{finished} finished runs are kept in {where['out']}; run the same command to resume"


def _run(p: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str], where: dict) -> None:
    from klcourse.world.artifacts import cache_root

    preset = get_preset(args.preset)
    where["cache"] = cache_root()
    t0 = time.perf_counter()
    if args.command == "build":
        from klcourse.world import build

        paths = build(preset, force=args.force, progress=not args.quiet)
        for name, path in paths.items():
            print(f"{name:9s} {path}")
        print(f"world ({preset.name} preset) ready in {time.perf_counter() - t0:.1f} s")
        return
    if args.command == "compare":
        _compare(args, argv, preset, where, t0)
        return
    if args.command == "dpo":
        _dpo(args, argv, preset, where, t0)
        return
    if args.command == "distill":
        _distill(args, argv, preset, where, t0)
        return
    if args.command == "ppo":
        _ppo(p, args, argv, preset, where, t0)
        return
    _sweep(p, args, argv, preset, where, t0)


def _sized(p: argparse.ArgumentParser, args: argparse.Namespace, preset: Preset) -> Preset:
    """``preset`` with the PPO sizes the command line gives."""
    sizes = {
        "ppo_steps": args.steps,
        "ppo_batch_size": args.batch_size,
        "ppo_mini_batch_size": args.mini_batch_size,
        "ppo_epochs": args.epochs,
        "ppo_lr": args.lr,
    }
    preset = dataclasses.replace(preset, **{k: v for k, v in sizes.items() if v is not None})
    if preset.ppo_batch_size % preset.ppo_mini_batch_size:
        p.error(
            f"argument --mini-batch-size: {preset.ppo_mini_batch_size} does not divide the batch size "
            f"{preset.ppo_batch_size}"
        )
    return preset


def _hub_loader(p: argparse.ArgumentParser, args: argparse.Namespace, preset: Preset, device: torch.device):
    """A picklable call that loads the hub world the options name, or ``None`` when they name none
    (the synthetic world)."""
    named = {"--policy": args.policy, "--reward": args.reward, "--prompts": args.prompts}
    given = {k: getattr(args, k) for k in HUB_ONLY if getattr(args, k) not in (None, False)}
    if not any(named.values()):
        if given:
            option = next(iter(given)).replace("_", "-")
            p.error(f"argument --{option}: only with --policy, --reward and --prompts")
        return None
    if not all(named.values()):
        missing = ", ".join(k for k, v in named.items() if not v)
        p.error(f"a real model needs --policy, --reward and --prompts; missing {missing}")
    from klcourse.world.hub import load_hub_world

    if "prompt_tokens" in given:
        given["prompt_tokens"] = tuple(given["prompt_tokens"])
    return functools.partial(
        load_hub_world, args.policy, args.reward, args.prompts, preset=preset, device=device, **given
    )


#: Options of a hub world that mean nothing without one: :func:`klcourse.world.hub.load_hub_world`'s
#: keyword arguments of the same names.
HUB_ONLY = (
    "reward_label",
    "gold",
    "gold_label",
    "prompt_column",
    "prompt_split",
    "prompt_tokens",
    "chat_template",
    "max_new_tokens",
    "missing_eos_penalty",
    "reward_dtype",
)


def _ppo(p, args, argv: list[str], preset: Preset, where: dict, t0: float) -> None:
    from klcourse import sweep

    preset = _sized(p, args, preset)
    world = _hub_loader(p, args, preset, sweep_device())()
    if args.adaptive:
        beta0, target, horizon = args.adaptive
        spec = sweep.RunSpec(
            beta=beta0, seed=args.seed, adaptive_target=target, adaptive_horizon=int(horizon)
        )
    else:
        spec = sweep.RunSpec(beta=args.beta, seed=args.seed)
    out = args.out or sweep.default_out_dir(preset, world)
    where["out"] = out
    results = sweep.run_sweep(world, [spec], out, progress=not args.quiet)
    _report(_sweep_rows(results), 24, out, t0, argv, preset, 1, world)


def _sweep_rows(results: dict[str, dict]) -> dict[str, dict]:
    """The report's row of each PPO run: its summary, its KL and its seconds."""
    return {
        name: {**r["summary"], "kl": r["summary"]["kl_k1"], "seconds": r["seconds"]}
        for name, r in results.items()
    }


def _compare(args, argv: list[str], preset: Preset, where: dict, t0: float) -> None:
    from klcourse import comparison
    from klcourse.world import load_world

    out = args.out or comparison.default_out_dir(preset)
    where["out"] = out
    world = load_world(preset, progress=not args.quiet)
    specs = comparison.trainer_specs(args.beta, list(args.seeds or preset.sweep_seeds), args.episodes)
    if args.jobs > 1:
        _run_shares(preset, specs, out, args.jobs, comparison.run_comparison)
    results = comparison.run_comparison(world, specs, out, progress=not args.quiet)
    rows = {
        name: {**r["evaluation"], "kl": r["evaluation"]["kl_sequence"], "seconds": r["seconds"]}
        for name, r in results.items()
    }
    _report(rows, 34, out, t0, argv, preset, len(specs), world)


def _dpo(args, argv: list[str], preset: Preset, where: dict, t0: float) -> None:
    from klcourse import comparison, dpo
    from klcourse.world import load_world

    world = load_world(preset, progress=not args.quiet)
    out = args.out or dpo.default_out_dir(world)
    where["out"] = out
    specs = dpo.dpo_specs(
        list(dpo.DPO_BETAS), list(dpo.IPO_BETAS), list(args.seeds or preset.sweep_seeds), dpo.EPOCHS
    )
    results = comparison.run_comparison(world, specs, out, progress=not args.quiet, run=dpo.run_one)
    rows = {
        name: {**r["evaluations"][-1], "kl": r["evaluations"][-1]["kl_sequence"], "seconds": r["seconds"]}
        for name, r in results.items()
    }
    _report(rows, 26, out, t0, argv, preset, len(specs), world)


def _distill(args, argv: list[str], preset: Preset, where: dict, t0: float) -> None:
    from klcourse import comparison, distill
    from klcourse.world import load_world

    world = load_world(preset, progress=not args.quiet)
    out = args.out or distill.default_out_dir(world)
    where["out"] = out
    seeds = list(args.seeds or preset.sweep_seeds)
    specs = [*distill.distill_specs(seeds), *distill.lora_specs(seeds)]
    results = comparison.run_comparison(world, specs, out, progress=not args.quiet, run=distill.run_any)
    print(f"{'run':28s}{'KL(s‖t)':>9}{'KL(t‖s)':>9}{'gold':>8}{'entropy':>9}{'seconds':>9}")
    for name, r in results.items():
        if "evaluations" in r:
            e = r["evaluations"][-1]
            kls = f"{e['reverse']:9.3f}{e['forward']:9.3f}{e['gold_reward']:8.2f}{e['entropy']:9.2f}"
        else:  # a LoRA PPO run: its KL to its reference, the SFT model
            summary = r["summary"]
            kls = f"{summary['kl_k1']:9.3f}{'–':>9}{summary['gold_reward']:8.2f}{'–':>9}"
        print(f"{name:28s}{kls}{r['seconds']:9.1f}")
    seconds = time.perf_counter() - t0
    print(f"{len(results)} runs in {out}; this process took {seconds:.1f} s")
    _write_provenance(out, argv, preset, len(specs), world, seconds)


def _sweep(p, args, argv: list[str], preset: Preset, where: dict, t0: float) -> None:
    from accelerate import PartialState

    from klcourse import sweep
    from klcourse.config import pick_device
    from klcourse.world import load_world

    preset = _sized(p, args, preset)
    loader = _hub_loader(p, args, preset, sweep_device())
    # Under `accelerate launch` this joins the processes (on the CPU too, with gloo); alone, it is one.
    state = PartialState(cpu=pick_device().type == "cpu")
    if args.jobs > 1 and state.num_processes > 1:
        p.error("argument --jobs: use it without accelerate launch")
    with state.main_process_first():  # one process builds a missing world, the others then load it
        world = loader() if loader else load_world(preset, sweep_device(), progress=not args.quiet)
    out = args.out or sweep.default_out_dir(preset, world if loader else None)
    where["out"] = out
    a = args.adaptive or preset.sweep_adaptive
    adaptive = (a[0], a[1], int(a[2]))
    specs = sweep.grid(
        list(args.betas or preset.sweep_betas), list(args.seeds or preset.sweep_seeds), adaptive
    )
    if args.jobs > 1:
        _run_shares(preset, specs, out, args.jobs, loader=loader)
    results = sweep.run_sweep(world, specs, out, progress=not args.quiet)
    _report(_sweep_rows(results), 24, out, t0, argv, preset, len(specs), world, write=state.is_main_process)


def _report(
    results: dict[str, dict],
    width: int,
    out: Path,
    t0: float,
    argv: list[str],
    preset: Preset,
    runs: int,
    world,
    write: bool = True,
) -> None:
    """Print one line per run (proxy, gold, well-formed, KL, seconds; a dash for what the world does
    not give) and the wall time; with ``write``, store the provenance of the command in
    ``out/provenance.json``."""
    print(f"{'run':{width}s}{'proxy':>8}{'gold':>8}{'well-formed':>13}{'KL':>9}{'seconds':>9}")
    for name, r in results.items():
        gold = f"{r['gold_reward']:8.2f}" if "gold_reward" in r else f"{'–':>8}"
        well_formed = f"{r['well_formed']:13.0%}" if "well_formed" in r else f"{'–':>13}"
        print(f"{name:{width}s}{r['proxy_score']:8.2f}{gold}{well_formed}{r['kl']:9.2f}{r['seconds']:9.1f}")
    seconds = time.perf_counter() - t0
    runs_in = f"{len(results)} run{'' if len(results) == 1 else 's'} in {out}"
    print(f"{runs_in}; this process took {seconds:.1f} s")
    if write:
        _write_provenance(out, argv, preset, runs, world, seconds)


def _write_provenance(out: Path, argv: list[str], preset: Preset, runs: int, world, seconds: float) -> None:
    """Store the provenance of the command that made the runs in ``out/provenance.json``."""
    from klcourse import sweep
    from klcourse.world.artifacts import write_atomic

    provenance = {
        "command": " ".join([PROG, *argv]),
        "preset": preset.name,
        "runs": runs,
        "wall_seconds": seconds,
        "world": sweep.world_key(world),
        **sweep.provenance(world),
    }
    write_atomic(out / "provenance.json", json.dumps(provenance, indent=1))


def _run_shares(preset: Preset, specs: list, out: Path, jobs: int, runner=None, loader=None) -> None:
    """Run ``specs`` in ``jobs`` processes on this device (:func:`klcourse.sweep.run_share`, each
    calling ``runner``, the sweep's by default, on the preset's world or ``loader()``'s); on Ctrl-C or
    a failed process, stop them all (each finished run is already on disk)."""
    from klcourse import sweep

    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    procs = [
        context.Process(target=sweep.run_share, args=(preset, specs, out, (i, jobs), runner, loader))
        for i in range(jobs)
    ]
    try:
        for proc in procs:
            proc.start()
        for i, proc in enumerate(procs):
            proc.join()
            if proc.exitcode != 0:
                raise RuntimeError(f"process {i} of {jobs} failed with exit code {proc.exitcode}")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            if proc.pid is not None:
                proc.join()
        sweep.remove_partial(out, specs)  # the files a terminated process was writing


def sweep_device() -> torch.device:
    """This process's device: its own GPU under ``accelerate launch`` on a multi-GPU machine."""
    from accelerate import PartialState

    from klcourse.config import pick_device

    device = pick_device()
    if device.type == "cuda":
        return torch.device("cuda", PartialState().local_process_index % torch.cuda.device_count())
    return device


if __name__ == "__main__":
    main()
