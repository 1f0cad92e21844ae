"""Prompts for a hub world, from a ``.txt`` or ``.jsonl`` file or a ``datasets`` dataset."""

from __future__ import annotations

import json
from pathlib import Path

from klcourse.settings import SettingError


def read_prompts(source: str, column: str | None = None, split: str = "train") -> list[str]:
    """Prompts from a ``.txt`` file (one per non-empty line), a ``.jsonl`` file (field ``column``,
    default ``prompt``) or a ``datasets`` dataset name (split ``split``, column ``column``, default
    ``text``). A source that cannot be read is a :class:`~klcourse.settings.SettingError` naming it.

    Taught in notebook 03.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        raise SettingError(f"prompts {source!r}: a folder; give a .txt or .jsonl file or a dataset name")
    if path.is_file():
        if path.suffix not in (".txt", ".jsonl"):
            raise SettingError(f"prompts {source!r}: give a .txt file (a prompt a line) or a .jsonl file")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if path.suffix == ".txt":
            prompts = lines
        else:
            field = column or "prompt"
            try:
                prompts = [str(json.loads(line)[field]) for line in lines]
            except (ValueError, KeyError, TypeError):
                raise SettingError(
                    f"prompts {source!r}: every line must be a JSON object with {field!r}"
                ) from None
    else:
        import datasets

        field = column or "text"
        try:
            table = datasets.load_dataset(source, split=split)
        except Exception as e:  # datasets raises many kinds; all mean "cannot read it"
            raise SettingError(
                f"prompts {source!r}: no such file, and not a readable dataset ({_first_line(e)})"
            ) from None
        if field not in table.column_names:
            raise SettingError(
                f"prompts {source!r}: no column {field!r} (it has {', '.join(table.column_names)})"
            )
        prompts = [str(x) for x in table[field]]
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise SettingError(f"prompts {source!r}: no prompts in it")
    return prompts


def _first_line(error: Exception) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
