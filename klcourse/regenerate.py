"""Regenerate the committed notebook outputs: ``python -m klcourse.regenerate``.

Runs every notebook (``notebooks/NN_*.ipynb`` in order, then ``notebooks/solutions/``) in a
fresh kernel, top to bottom, on the ``laptop`` preset unless ``KLCOURSE_PRESET`` says otherwise,
writes the outputs back in place (atomically: a notebook on disk is either the old one or the
new one, never half-written) and prints each notebook's wall time. Ctrl-C keeps the notebooks
already written and prints the command that finishes the rest.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from klcourse import cli
from klcourse.artifacts import write_atomic
from klcourse.config import PRESETS
from klcourse.settings import PRESET_ENV, check_environment

PROG = "python -m klcourse.regenerate"


def notebook_paths(root: Path) -> list[Path]:
    """The course notebooks in running order: chapters first, then their solutions."""
    return sorted(root.glob("[0-9][0-9]_*.ipynb")) + sorted((root / "solutions").glob("*.ipynb"))


def run_notebook(path: Path, timeout: int = 1800, write: bool = True) -> float:
    """Execute ``path`` in a fresh kernel with its folder as working directory; return seconds.

    With ``write`` the outputs are stored back into ``path``, atomically. A failing cell raises
    nbclient's ``CellExecutionError``, naming the cell and its error; Ctrl-C raises ``KeyboardInterrupt``.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0 = time.perf_counter()
    try:
        # the kernel's own stderr holds transport warnings, and after an interrupt a traceback of
        # its closed sockets; the cells' errors come back through nbclient either way
        client.execute(stderr=subprocess.DEVNULL)
    except Exception:
        # nbclient answers SIGINT itself by shutting the kernel down, which surfaces as a dead
        # kernel; its signal handler is what sets this future. Report it as the interrupt it was.
        if getattr(client, "_async_cleanup_kernel_future", None) is not None:
            raise KeyboardInterrupt from None
        raise
    seconds = time.perf_counter() - t0
    if write:
        text = nbformat.writes(nb)
        write_atomic(path, text if text.endswith("\n") else text + "\n")
    return seconds


def notebook_parser(prog: str, description: str) -> cli.Parser:
    """A command line that takes notebooks: those named, else every course notebook under ``--root``."""
    parser = cli.Parser(prog=prog, description=description)
    parser.add_argument("notebooks", nargs="*", type=cli.notebook, help="default: every course notebook")
    parser.add_argument("--root", type=cli.folder, default="notebooks", help="default: notebooks")
    return parser


def chosen_notebooks(parser: cli.Parser, args: argparse.Namespace) -> list[Path]:
    """The notebooks named on the command line, else every course notebook under ``--root``."""
    paths = args.notebooks or notebook_paths(args.root)
    if not paths:
        parser.error(f"argument --root: no notebooks found under {str(args.root)!r}")
    return paths


def prepare_environment() -> None:
    """The laptop preset unless ``KLCOURSE_PRESET`` says otherwise; every variable the kernels will
    read is checked first (:class:`~klcourse.settings.SettingError` names a bad one)."""
    os.environ.setdefault(PRESET_ENV, "laptop")
    check_environment(PRESETS)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; bad options and Ctrl-C end in one line (:func:`klcourse.cli.run`)."""
    parser = notebook_parser(PROG, __doc__.splitlines()[0])
    args = parser.parse_args(argv)
    paths = chosen_notebooks(parser, args)
    done: list[Path] = []

    def interrupted() -> str:
        rest = " ".join(shlex.quote(str(p)) for p in paths[len(done) :])
        return (
            f"{len(done)} notebooks were regenerated and written; {paths[len(done)]} is unchanged. "
            f"To finish: {PROG} {rest}"
        )

    cli.run(lambda: _regenerate(paths, done), PROG, interrupted)


def _regenerate(paths: list[Path], done: list[Path]) -> None:
    prepare_environment()
    total = 0.0
    for path in paths:
        seconds = run_notebook(path)
        done.append(path)
        total += seconds
        print(f"{seconds:7.1f} s  {path}", flush=True)
    print(f"{total:7.1f} s  total ({os.environ[PRESET_ENV]} preset)")


if __name__ == "__main__":
    main()
