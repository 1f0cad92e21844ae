"""A late notebook passes ``pytest --nbval`` on its own, from an empty model cache: whatever it
needs (the world, the sweep's results) it builds or loads itself, and building the world adds
nothing to its cells' outputs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_notebook_06_passes_alone_from_an_empty_cache(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "KLCOURSE_CACHE": str(cache)}
    args = ["-m", "pytest", "--nbval", "notebooks/06_beta_ablations.ipynb", "-q"]
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert any(p.name.startswith("sft-") for p in cache.iterdir()), "the notebook built the world itself"
