"""Re-run every notebook's assertions on other seeds: ``klcourse seedcheck --seeds 1 2 3``.

An assertion cell in a notebook claims a conclusion ("KL falls as β rises", "π*'s gold reward
peaks and falls"), with margins meant to hold for any seed. This command checks that claim: for each
seed ``s`` it sets ``KLCOURSE_SEED=s`` — a new world (tokenizer, SFT model, reward model), new PPO
and sweep seeds, new notebook samples — and executes every notebook in a fresh kernel without
writing its outputs. It prints one line per notebook and seed, and exits with status 1 if any
notebook failed, naming the assertion that broke.
"""

from __future__ import annotations

import os

from nbclient.exceptions import CellExecutionError

from klcourse.settings import SEED_ENV
from klcourse.tools import cli
from klcourse.tools.regenerate import chosen_notebooks, notebook_parser, prepare_environment, run_notebook

PROG = "klcourse seedcheck"


def _failure(error: CellExecutionError) -> str:
    """The last line of the failing cell's error: for an assertion cell, its message."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else repr(error)


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks for every seed; return 0 if all passed, else 1."""
    parser = notebook_parser(PROG, __doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=cli.non_negative_int, nargs="+", required=True, help="values of KLCOURSE_SEED"
    )
    args = parser.parse_args(argv)
    paths = chosen_notebooks(parser, args)
    prepare_environment()
    failed = 0
    before = os.environ.get(SEED_ENV)
    try:
        for seed in args.seeds:
            os.environ[SEED_ENV] = str(seed)  # the kernels inherit it
            for path in paths:
                try:
                    seconds = run_notebook(path, write=False)
                    print(f"seed {seed}  passed  {seconds:6.1f} s  {path}", flush=True)
                except CellExecutionError as error:
                    failed += 1
                    print(f"seed {seed}  FAILED            {path}: {_failure(error)}", flush=True)
    finally:  # leave the caller's environment as it was
        if before is None:
            os.environ.pop(SEED_ENV, None)
        else:
            os.environ[SEED_ENV] = before
    print(f"{len(args.seeds) * len(paths) - failed} passed, {failed} failed")
    return 1 if failed else 0


def command(argv: list[str] | None = None) -> None:
    """The command line: :func:`main`, with one-line errors and exit statuses (:func:`.cli.run`)."""
    cli.run(lambda: main(argv), PROG, lambda: "seedcheck writes no notebook; run it again to check")


if __name__ == "__main__":
    command()
