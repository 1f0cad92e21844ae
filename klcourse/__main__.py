"""Command line: ``python -m klcourse build …`` and ``python -m klcourse sweep …``."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from klcourse.config import PRESETS, get_preset


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m klcourse")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the ground-truth world (tokenizer, SFT, reward model)")
    b.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    s = sub.add_parser("sweep", help="β ablation: β × seeds (+ an adaptive-KL run), resumable")
    s.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    s.add_argument("--betas", type=float, nargs="+", help="default: the preset's grid")
    s.add_argument("--seeds", type=int, nargs="+", help="default: the preset's seeds")
    s.add_argument(
        "--adaptive",
        type=float,
        nargs=3,
        metavar=("BETA0", "TARGET", "HORIZON"),
        help="the adaptive-KL run: from BETA0 towards TARGET nats (default: the preset's)",
    )
    s.add_argument("--out", type=Path, help="result folder (default: under the cache)")
    s.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes sharing this device, process i taking runs i, i + JOBS, … (one run of these "
        "small models leaves a GPU mostly idle)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.command == "sweep" and args.jobs < 1:
        parser.error(f"argument --jobs: must be a positive integer, got {args.jobs}")
    preset = get_preset(args.preset)
    t0 = time.perf_counter()
    if args.command == "build":
        from klcourse.world import build

        paths = build(preset, force=args.force, progress=not args.quiet)
        for name, path in paths.items():
            print(f"{name:9s} {path}")
        print(f"world ({preset.name} preset) ready in {time.perf_counter() - t0:.1f} s")
        return

    from accelerate import PartialState

    from klcourse import sweep
    from klcourse.config import pick_device
    from klcourse.world import load_world

    # Under `accelerate launch` this joins the processes (on the CPU too, with gloo); alone, it is one.
    state = PartialState(cpu=pick_device().type == "cpu")
    with state.main_process_first():  # one process builds a missing world, the others then load it
        world = load_world(preset, sweep_device(), progress=not args.quiet)
    a = args.adaptive or preset.sweep_adaptive
    adaptive = (a[0], a[1], int(a[2]))
    specs = sweep.grid(
        list(args.betas or preset.sweep_betas), list(args.seeds or preset.sweep_seeds), adaptive
    )
    out = args.out or sweep.default_out_dir(preset)
    if args.jobs > 1:
        if state.num_processes > 1:
            parser.error("argument --jobs: use it without accelerate launch")
        context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            shares = [
                pool.submit(sweep.run_share, preset, specs, out, (i, args.jobs)) for i in range(args.jobs)
            ]
            for share in shares:
                share.result()
    results = sweep.run_sweep(world, specs, out, progress=not args.quiet)
    print(f"{'run':24s}{'proxy':>8}{'gold':>8}{'well-formed':>13}{'KL':>9}{'seconds':>9}")
    for name, r in results.items():
        s_ = r["summary"]
        print(
            f"{name:24s}{s_['proxy_score']:8.2f}{s_['gold_reward']:8.2f}{s_['well_formed']:13.0%}"
            f"{s_['kl_k1']:9.2f}{r['seconds']:9.1f}"
        )
    seconds = time.perf_counter() - t0
    print(f"{len(results)} runs in {out}; this process took {seconds:.1f} s")
    if state.is_main_process:
        provenance = {
            "command": " ".join(["python -m klcourse", *(argv if argv is not None else sys.argv[1:])]),
            "preset": preset.name,
            "runs": len(specs),
            "wall_seconds": seconds,
            **sweep.provenance(world),
        }
        sweep.write_atomic(out / "provenance.json", json.dumps(provenance, indent=1))


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
