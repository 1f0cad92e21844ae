"""Ctrl-C that stops a command even where a library swallows it.

datasets 5.x hashes every ``Dataset.map`` transform inside a bare ``except:``
(``datasets.fingerprint.update_fingerprint``), and TRL's trainers map their datasets when they are
built: a ``KeyboardInterrupt`` raised while that hash is computed is caught there, and the
program goes on as if no key had been pressed. The command-line entry points therefore answer
SIGINT with :func:`install`'s handler, which remembers the signal as well as raising; the world's
trainers call :func:`check` at every step, and :func:`klcourse.tools.cli.run` once more when the
command returns.
"""

from __future__ import annotations

import signal

_pending = False


def _on_sigint(signum: int, frame: object) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


def install() -> None:
    """Answer SIGINT (Ctrl-C) by raising ``KeyboardInterrupt``, as Python does, and remembering it."""
    signal.signal(signal.SIGINT, _on_sigint)


def pending() -> bool:
    """Whether Ctrl-C arrived since :func:`install` (whoever caught the ``KeyboardInterrupt``)."""
    return _pending


def check() -> None:
    """Raise ``KeyboardInterrupt`` again if Ctrl-C arrived and a library swallowed it."""
    if _pending:
        raise KeyboardInterrupt
