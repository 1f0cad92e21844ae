"""Regenerate the committed notebook outputs: ``python -m klcourse.regenerate``.

Runs every notebook (``notebooks/NN_*.ipynb`` in order, then ``notebooks/solutions/``) in a
fresh kernel, top to bottom, on the ``laptop`` preset unless ``KLCOURSE_PRESET`` says otherwise,
writes the outputs back in place and prints each notebook's wall time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from klcourse.config import PRESET_ENV


def notebook_paths(root: Path) -> list[Path]:
    """The course notebooks in running order: chapters first, then their solutions."""
    return sorted(root.glob("[0-9][0-9]_*.ipynb")) + sorted((root / "solutions").glob("*.ipynb"))


def run_notebook(path: Path, timeout: int = 1800, write: bool = True) -> float:
    """Execute ``path`` in a fresh kernel with its folder as working directory; return seconds.

    With ``write`` the outputs are stored back into ``path``. A failing cell raises nbclient's
    ``CellExecutionError``, naming the cell and its error.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    if write:
        nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every course notebook")
    parser.add_argument("--root", type=Path, default=Path("notebooks"))
    args = parser.parse_args(argv)
    os.environ.setdefault(PRESET_ENV, "laptop")
    paths = args.notebooks or notebook_paths(args.root)
    if not paths:
        raise SystemExit(f"no notebooks found under {args.root}")
    total = 0.0
    for path in paths:
        seconds = run_notebook(path)
        total += seconds
        print(f"{seconds:7.1f} s  {path}", flush=True)
    print(f"{total:7.1f} s  total ({os.environ[PRESET_ENV]} preset)")


if __name__ == "__main__":
    main()
