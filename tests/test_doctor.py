"""``klcourse doctor`` on a healthy set-up and on broken ones: every problem is found, has a
one-line fix, and makes the exit status non-zero."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from klcourse.tools import doctor

ROOT = Path(__file__).resolve().parents[1]


def _doctor(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "klcourse", "doctor"],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _lines(out: str, status: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(status)]


def _fix_follows_each(out: str, status: str) -> bool:
    lines = out.splitlines()
    return all(
        lines[i + 1].strip().startswith("fix: ") for i, line in enumerate(lines) if line.startswith(status)
    )


def test_healthy_setup_passes(smoke_root):
    result = _doctor({"KLCOURSE_CACHE": str(smoke_root), "KLCOURSE_PRESET": "smoke"})
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not _lines(result.stdout, "FAIL")
    assert result.stdout.splitlines()[-1].startswith("healthy")
    verified = [line.split()[1] for line in _lines(result.stdout, "ok") if "verified" in line]
    assert verified == ["tokenizer", "sft", "reward", "drifted"]
    assert "preset=smoke" in result.stdout
    assert f"imports klcourse from {ROOT / 'klcourse'}" in result.stdout


def test_broken_setup_fails_with_a_fix_for_each_problem(smoke_root, tmp_path):
    # A cache with one artifact missing and one modified after it was built.
    cache = tmp_path / "cache"
    shutil.copytree(smoke_root, cache)
    shutil.rmtree(next(cache.glob("drifted-*")))
    weights = next(cache.glob("reward-*")) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    # A Jupyter kernel "python3" that finds a broken copy of klcourse first on its path.
    shadow = tmp_path / "shadow" / "klcourse"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("a broken copy of klcourse")\n')
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (shadowed)",
        "language": "python",
        "env": {"PYTHONPATH": str(shadow.parent)},
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))

    result = _doctor(
        {"KLCOURSE_CACHE": str(cache), "KLCOURSE_PRESET": "smoke", "JUPYTER_PATH": str(tmp_path / "jupyter")}
    )
    print(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = _lines(result.stdout, "FAIL")
    assert len(failed) == 1 and "cannot import klcourse (ImportError: a broken copy" in failed[0]
    todo = _lines(result.stdout, "todo")
    assert any("reward" in line and "stale (model.safetensors does not match" in line for line in todo)
    assert any("drifted" in line and "missing" in line for line in todo)
    assert _fix_follows_each(result.stdout, "FAIL") and _fix_follows_each(result.stdout, "todo")
    assert f"fix: rm -r {spec}" in result.stdout  # the kernel folder that JUPYTER_PATH puts first
    assert "1 problem to fix" in result.stdout.splitlines()[-1]


def test_bad_setting_fails_and_names_the_variable():
    result = _doctor({"KLCOURSE_PRESET": "huge"})
    assert result.returncode == 1, result.stdout + result.stderr
    failed = _lines(result.stdout, "FAIL")
    assert len(failed) == 1 and "KLCOURSE_PRESET='huge'" in failed[0]
    assert "fix: unset KLCOURSE_PRESET" in result.stdout


def test_each_check_fails_on_its_own_problem(tmp_path):
    assert doctor.check_python(SpecifierSet(">=4.0")).status == "FAIL"
    assert doctor.check_python(SpecifierSet(">=3.0")).status == "ok"
    packages = doctor.check_packages(
        [Requirement("numpy>=999"), Requirement("no-such-package-x")], "p", "FAIL", "f"
    )
    assert packages.status == "FAIL"
    assert "numpy" in packages.detail and "does not satisfy >=999" in packages.detail
    assert "no-such-package-x is missing" in packages.detail
    assert doctor.check_packages([Requirement("numpy>=1")], "p", "FAIL", "f").status == "ok"
    widgets = doctor.check_widgets(paths=[str(tmp_path)])
    assert widgets.status == "FAIL" and "pip install" in widgets.fix
    disk = doctor.check_disk(tmp_path / "not" / "yet", minimum=1 << 62)
    assert disk.status == "FAIL" and "GiB free" in disk.detail
    text, status = doctor.report([doctor.Check("ok", "a", "fine"), disk])
    assert status == 1 and "fix: " in text
    assert doctor.report([doctor.Check("todo", "a", "later", "do it")])[1] == 0


def test_requirements_from_pyproject_match_the_installed_metadata(tmp_path):
    spec, required, extras = doctor.project_requirements(ROOT)
    meta_spec, meta_required, meta_extras = doctor.project_requirements(tmp_path)  # no pyproject there
    assert str(spec) == str(meta_spec) and ">=3.10" in str(spec)
    assert sorted(r.name for r in required) == sorted(r.name for r in meta_required)
    assert {k: sorted(r.name for r in v) for k, v in extras.items()} == {
        k: sorted(r.name for r in v) for k, v in meta_extras.items()
    }
    assert {"test", "site"} <= set(extras)
