"""The environment variables the course reads, each checked where it is read, so that a bad value
is reported as one line naming the variable, the value and what is allowed:

* ``KLCOURSE_PRESET`` — the preset (:mod:`klcourse.config`);
* ``KLCOURSE_SEED`` — the base seed that shifts every default seed (:mod:`klcourse.seeding`);
* ``KLCOURSE_CACHE`` — the model cache folder (:mod:`klcourse.world.artifacts`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

PRESET_ENV = "KLCOURSE_PRESET"
SEED_ENV = "KLCOURSE_SEED"
CACHE_ENV = "KLCOURSE_CACHE"


class SettingError(ValueError):
    """A bad environment variable or option value; the message names it, the value and what is allowed.

    Used in notebooks 01–09.
    """


def env_preset(choices: Iterable[str]) -> str | None:
    """``$KLCOURSE_PRESET`` if set (it must be one of ``choices``), else ``None``.

    Used in notebooks 01–09.
    """
    raw = os.environ.get(PRESET_ENV, "").strip()
    if not raw:
        return None
    choices = list(choices)
    if raw not in choices:
        raise SettingError(f"{PRESET_ENV}={raw!r} is not a preset; use one of {', '.join(choices)}")
    return raw


def env_seed() -> int | None:
    """``$KLCOURSE_SEED`` if set (a non-negative integer), else ``None``.

    Used in notebooks 01–09.
    """
    raw = os.environ.get(SEED_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise SettingError(f"{SEED_ENV}={raw!r} is not a seed; use a non-negative integer such as 3")
    return int(raw)


def env_cache() -> Path:
    """``$KLCOURSE_CACHE``, else ``~/.cache/klcourse``: a folder that exists (it is created) and
    can be written to.

    Used in notebooks 01–09.
    """
    raw = os.environ.get(CACHE_ENV, "").strip()
    path = Path(raw) if raw else Path.home() / ".cache" / "klcourse"
    problem = folder_problem(path)
    if problem:
        source = f"{CACHE_ENV}={raw!r}" if raw else f"the default cache {str(path)!r}"
        fix = "point it at a writable folder" if raw else f"set {CACHE_ENV} to a writable folder"
        raise SettingError(f"{source} cannot hold the model cache ({problem}); {fix}")
    return path


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a folder to write into (it is created if missing), or ``None``.

    Used in notebooks 01–09.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".klcourse-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e.strerror or str(e)
    return None


def check_environment(presets: Iterable[str]) -> None:
    """Read every variable above once, raising :class:`SettingError` for the first bad one.

    Used in notebooks 01–09.
    """
    env_preset(presets)
    env_seed()
    env_cache()
