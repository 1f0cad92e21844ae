"""Regenerate the committed notebook outputs: ``klcourse regenerate``.

Runs every notebook (``notebooks/NN_*.ipynb`` in order, then ``notebooks/solutions/``) in a
fresh kernel, top to bottom, on the ``laptop`` preset unless ``KLCOURSE_PRESET`` says otherwise,
writes the outputs back in place (atomically: a notebook on disk is either the old one or the
new one, never half-written) and prints each notebook's wall time. Ctrl-C keeps the notebooks
already written and prints the command that finishes the rest.

Each wall time is also written where a learner reads it, from this one measurement: the notebook's
``**Run time**`` line (the first line of its header that starts so) and its row of the README's
notebook table (the last column), both through :data:`RUNTIMES`, ``notebooks/runtimes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from klcourse.config import PRESETS
from klcourse.settings import PRESET_ENV, check_environment
from klcourse.tools import cli
from klcourse.world.artifacts import write_atomic

PROG = "klcourse regenerate"
#: Each notebook's last measured wall time, in seconds, by file name: the one source of the run times.
RUNTIMES = "runtimes.json"
_RUN_TIME_LINE = re.compile(r"^\*\*Run time\*\*.*$", re.MULTILINE)


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
    seconds = round(time.perf_counter() - t0, 1)  # as runtimes.json records it, so every copy agrees
    if write:
        stamp_run_time(nb, seconds)
        text = nbformat.writes(nb)
        write_atomic(path, text if text.endswith("\n") else text + "\n")
    return seconds


def run_time_line(seconds: float) -> str:
    """The header line that states a notebook's measured run time, with the preset and the cores."""
    return (
        f"**Run time**: {seconds:.0f} s, measured by `{PROG}` (the whole notebook in a fresh kernel, "
        f"{os.environ.get(PRESET_ENV, 'laptop')} preset, {os.cpu_count()} CPU cores)."
    )


def stamp_run_time(nb: nbformat.NotebookNode, seconds: float) -> bool:
    """Replace the ``**Run time**`` line of the notebook's first markdown cell; whether it had one."""
    header = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if header is None or not _RUN_TIME_LINE.search(header.source):
        return False
    header.source = _RUN_TIME_LINE.sub(lambda _: run_time_line(seconds), header.source, count=1)
    return True


def record_run_times(root: Path, measured: dict[Path, float]) -> dict[str, float]:
    """Merge ``measured`` into ``root/runtimes.json`` (atomically) and return every recorded time."""
    path = root / RUNTIMES
    times = json.loads(path.read_text()) if path.exists() else {}
    times.update({p.name: round(s, 1) for p, s in measured.items()})
    write_atomic(path, json.dumps(dict(sorted(times.items())), indent=1) + "\n")
    return times


def stamp_readme(readme: Path, times: dict[str, float]) -> None:
    """Write each notebook's time into the last column of its row of the README's notebook table
    (rows that start with ``| `NN_name` |``)."""
    if not readme.exists():
        return
    lines = readme.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        match = re.match(r"\| `([0-9][0-9]_[^`]+)` \|", line)
        name = f"{match.group(1)}.ipynb" if match else None
        if name in times:
            cells = line.rstrip("\n").rstrip("|").split("|")
            cells[-1] = f" {times[name]:.0f} s "
            lines[i] = "|".join(cells) + "|\n"
    write_atomic(readme, "".join(lines))


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
    """Command-line entry point; bad options and Ctrl-C end in one line (:func:`klcourse.tools.cli.run`)."""
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
        folder = path.parent.parent if path.parent.name == "solutions" else path.parent
        stamp_readme(folder.resolve().parent / "README.md", record_run_times(folder, {path: seconds}))
        print(f"{seconds:7.1f} s  {path}", flush=True)
    print(f"{total:7.1f} s  total ({os.environ[PRESET_ENV]} preset)")


if __name__ == "__main__":
    main()
