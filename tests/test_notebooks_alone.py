"""A late notebook passes ``pytest --nbval`` on its own, from an empty model cache: whatever it
needs (the world, the committed runs) it builds or loads itself, and building the world adds nothing
to its cells' outputs. This is the session's run of notebook 06 (``conftest.py`` deselects its
cells from the main run)."""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "06_beta_ablations.ipynb"


@pytest.mark.slow
def test_notebook_06_passes_alone_from_an_empty_cache(notebook_06_alone):
    proc, cache = notebook_06_alone
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "passed" in proc.stdout and "failed" not in proc.stdout
    cells = sum(c["cell_type"] == "code" for c in json.loads(NOTEBOOK.read_text())["cells"])
    assert f"{cells} passed" in proc.stdout, f"every one of its {cells} code cells ran: {proc.stdout[-500:]}"
    assert any(p.name.startswith("sft-") for p in cache.iterdir()), "the notebook built the world itself"
    trained = sorted(p.name for p in cache.rglob("*.json") if p.parent.parent.name == "sweeps")
    assert not trained, f"every sweep run was reused from results/, none trained live: {trained}"
