"""The package's layout is what the README says, and every public function or class of a teaching
module names the notebook that teaches it."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "klcourse"
NOTEBOOKS = {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
TEACHING = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if "tools" not in p.parts and p.name not in ("__init__.py", "__main__.py")
)
LINK = re.compile(r"(?:Taught|Used) in notebooks? ([0-9–, and]+)\.")


def _public(path: Path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node


@pytest.mark.parametrize("path", TEACHING, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_public_name_links_to_a_notebook_that_exists(path):
    for node in _public(path):
        doc = ast.get_docstring(node) or ""
        match = LINK.search(doc)
        assert match, f"{path.name}: {node.name} does not name the notebook that teaches it"
        numbers = re.findall(r"[0-9]{2}", match.group(1))
        if "–" in match.group(1):
            first, last = (int(n) for n in numbers)
            numbers = [f"{n:02d}" for n in range(first, last + 1)]
        assert set(numbers) <= NOTEBOOKS, (node.name, numbers)


def test_readme_layout_names_every_module():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        assert path.name in layout, f"the README's layout does not mention {path.relative_to(ROOT)}"
    for folder in ("klcourse/world/", "klcourse/tools/", "klcourse/coding_exercises/"):
        assert folder in layout


def test_the_world_keeps_its_short_imports():
    from klcourse.world import MAX_RESPONSE_TOKENS, World, load_world
    from klcourse.world.core import World as CoreWorld

    assert World is CoreWorld and callable(load_world) and MAX_RESPONSE_TOKENS > 0
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        from klcourse import world

        _ = world.nothing
