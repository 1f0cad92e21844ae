"""The artifact cache: built models live in folders keyed by what they were built from.

Layout: ``<cache>/<name>-<key>/`` where ``key`` is a hash of the artifact's configuration. Each
folder ends with ``manifest.json``, which records the configuration and the SHA-256 of every file.

* **Atomic writes**: an artifact is built in a temporary folder beside its final place and renamed
  into place only when complete, so an interrupted build never leaves a half-written artifact
  where a reader would find it.
* **Verification**: before an artifact is used, its manifest's configuration must match and every
  file must exist with the recorded hash; a truncated, edited or mismatched artifact is rebuilt.

The cache lives in ``$KLCOURSE_CACHE`` if set, else ``~/.cache/klcourse`` (outside the repository).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from klcourse.settings import env_cache

MANIFEST = "manifest.json"


def cache_root() -> Path:
    """``$KLCOURSE_CACHE``, or ``~/.cache/klcourse``; see :func:`klcourse.settings.env_cache`.

    Taught in notebook 05.
    """
    return env_cache()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that ``path`` is never seen half-written.

    Taught in notebook 03.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable configuration.

    Taught in notebook 03.
    """
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def artifact_folder(name: str, config: dict[str, Any], root: Path | None = None) -> Path:
    """Where artifact ``name`` built from ``config`` lives: ``<root>/<name>-<config_key(config)>``.

    Used in notebooks 03–07. (:func:`get_or_build` reads it; so does ``klcourse doctor``.)
    """
    return (root or cache_root()) / f"{name}-{config_key(config)}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def verify(folder: Path, config: dict[str, Any]) -> str | None:
    """``None`` if ``folder`` holds a complete artifact built from ``config``, else the problem.

    Taught in notebook 03.
    """
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return "no manifest (missing or interrupted build)"
    try:
        recorded = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return "manifest is not valid JSON"
    if recorded.get("config") != json.loads(json.dumps(config)):
        return "built from a different configuration"
    hashes: dict[str, str] = recorded.get("files", {})
    if not hashes:
        return "manifest lists no files"
    for rel, digest in hashes.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if _sha256(path) != digest:
            return f"{rel} does not match its recorded hash (truncated or modified)"
    return None


def get_or_build(
    name: str,
    config: dict[str, Any],
    build: Callable[[Path], None],
    *,
    root: Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Return the folder of artifact ``name`` built from ``config``, building it if needed.

    ``build(folder)`` must write the artifact's files into ``folder`` (an empty temporary folder).
    The folder is hashed into a manifest and renamed into place atomically.

    Taught in notebook 03.
    """
    root = root or cache_root()
    final = artifact_folder(name, config, root)
    problem = "rebuild requested" if force else verify(final, config)
    if problem is None:
        return final
    if final.exists():
        log(f"{name}: rebuilding ({problem})")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        build(tmp)
        files = {str(p.relative_to(tmp)): _sha256(p) for p in _files(tmp)}
        if not files:
            raise RuntimeError(f"building {name} wrote no files")
        (tmp / MANIFEST).write_text(json.dumps({"config": config, "files": files}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
