"""What every command-line entry point shares: option types that reject a bad value where it is
parsed, and one line instead of a traceback for a bad setting, a full disk or Ctrl-C.

Exit statuses follow the conventions: 2 for a bad option or setting (argparse's), 1 for a file
that cannot be written, 130 (128 + SIGINT) for an interrupt.
"""

from __future__ import annotations

import argparse
import errno
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import torch

from klcourse.settings import SettingError, folder_problem
from klcourse.tools import interrupt

#: Exit status after Ctrl-C: 128 + SIGINT, as shells report it.
INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """``argparse`` that answers a bad command line in one line (no usage block) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _at_least(kind: type, bound: int, strict: bool, wording: str, doc: str) -> Callable[[str], float | int]:
    """An option type: a finite ``kind`` that is ``> bound`` (``strict``) or ``≥ bound``."""

    def parse(text: str) -> float | int:
        value = _number(text, kind)
        if value < bound or (strict and value == bound):
            raise argparse.ArgumentTypeError(f"must be {wording}, got {text!r}")
        return value

    parse.__doc__ = doc
    return parse


non_negative_float = _at_least(float, 0, False, "≥ 0", "A finite number x ≥ 0 (a β).")
positive_float = _at_least(float, 0, True, "> 0", "A finite number x > 0 (a target KL, a horizon).")
non_negative_int = _at_least(int, 0, False, "a non-negative integer", "An integer n ≥ 0 (a seed).")
positive_int = _at_least(int, 1, False, "a positive integer", "An integer n ≥ 1 (a count).")


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def writable_dir(text: str) -> Path:
    """A folder that exists or can be created, and can be written to."""
    problem = folder_problem(Path(text))
    if problem:
        raise argparse.ArgumentTypeError(f"cannot write to {text!r}: {problem}")
    return Path(text)


def folder(text: str) -> Path:
    """An existing folder."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text!r}")
    return path


def device(text: str) -> torch.device:
    """A torch device that exists here: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps, got {text!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} is not available here: this machine has no CUDA device")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} is not available here: this machine has no MPS device")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps, got {text!r}")
    return dev


def update_size(text: str) -> tuple[float, int]:
    """``LRxEPOCHS``, e.g. ``3e-4x4``: a learning rate > 0 and a positive number of epochs."""
    lr, sep, epochs = text.rpartition("x")
    try:
        if not sep:
            raise ValueError
        return positive_float(lr), positive_int(epochs)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"must be LRxEPOCHS such as 3e-4x4, got {text!r}") from None


def notebook(text: str) -> Path:
    """An existing ``.ipynb`` file."""
    path = Path(text)
    if path.suffix != ".ipynb":
        raise argparse.ArgumentTypeError(f"must be a .ipynb notebook, got {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such notebook: {text!r}")
    return path


def run(main: Callable[[], int | None], prog: str, interrupted: Callable[[], str]) -> None:
    """Run ``main`` and exit with its status, answering in one line on stderr instead of a traceback:

    * a :class:`~klcourse.settings.SettingError` (a bad environment variable or value) → exit 2;
    * a file that cannot be written (disk full, no permission, read-only) → exit 1;
    * Ctrl-C → ``interrupted()`` (what was kept and how to resume) → exit 130, also when a library
      swallowed the ``KeyboardInterrupt`` (:mod:`klcourse.tools.interrupt`).

    Any other exception is a bug and keeps its traceback.
    """
    interrupt.install()
    try:
        status = main()
        interrupt.check()
    except SettingError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _stop(prog, interrupted)
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
        where = f" {e.filename}" if e.filename else ""
        reason = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else e.strerror
        print(f"{prog}: error: cannot write{where}: {reason}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status or 0)


_UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def _stop(prog: str, interrupted: Callable[[], str]) -> NoReturn:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the message short
    print(f"\n{prog}: interrupted: {interrupted()}", file=sys.stderr)
    sys.exit(INTERRUPTED)
