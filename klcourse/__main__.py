"""Command line: ``python -m klcourse build [--preset NAME] [--force]``."""

from __future__ import annotations

import argparse
import time

from klcourse.config import PRESETS, get_preset


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m klcourse")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the ground-truth world (tokenizer, SFT, reward model)")
    b.add_argument("--preset", choices=sorted(PRESETS), help="default: $KLCOURSE_PRESET or by device")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from klcourse.world import build

    preset = get_preset(args.preset)
    t0 = time.perf_counter()
    paths = build(preset, force=args.force, progress=not args.quiet)
    for name, path in paths.items():
        print(f"{name:9s} {path}")
    print(f"world ({preset.name} preset) ready in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
