"""``klcourse seedcheck`` runs notebooks under each seed and reports what broke."""

import os

import nbformat

from klcourse.tools import seedcheck


def _notebook(path, source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbformat.write(nb, path)
    return path


def test_seedcheck_reports_each_seed_and_the_broken_assertion(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KLCOURSE_PRESET", "smoke")
    monkeypatch.delenv("KLCOURSE_SEED", raising=False)
    # passes for seed 0, fails for seed 1: the notebook sees KLCOURSE_SEED
    path = _notebook(
        tmp_path / "nb.ipynb",
        'import os\nassert os.environ["KLCOURSE_SEED"] != "1", "holds only for seed 0"',
    )
    before = path.read_text()
    assert seedcheck.main([str(path), "--seeds", "0", "1"]) == 1
    out = capsys.readouterr().out
    assert "seed 0  passed" in out and "seed 1  FAILED" in out and "holds only for seed 0" in out
    assert "1 passed, 1 failed" in out
    assert path.read_text() == before, "seedcheck never writes outputs into the notebook"
    assert "KLCOURSE_SEED" not in os.environ, "…and leaves the caller's environment as it was"
