"""Every entry point answers bad input, a full disk and Ctrl-C in one line, through the real commands."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import sweep_args

from klcourse.sweep import collect

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_what_kl_measures.ipynb"


def run(args: list[str], env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python args…`` from the repository root, with ``env`` added to the environment."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT
    )


def assert_one_line(proc: subprocess.CompletedProcess, status: int, *says: str) -> None:
    """Exit ``status``, no traceback, and one line on stderr that contains every one of ``says``."""
    _assert_one_line(proc.returncode, proc.stderr, status, says)


def _assert_one_line(returncode, stderr: str, status: int, says) -> None:
    err = stderr.strip()
    assert returncode == status, (returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    lines = err.splitlines()
    assert len(lines) == 1, err
    for text in says:
        assert text in lines[0], (text, lines[0])


def assert_each_one_line(cases: list[tuple[list[str], dict, list[str]]], status: int = 2) -> None:
    """Run every ``(args, env, says)`` command line in one process (``cli_harness.py``: the same
    entry points as ``python -m …``, with torch imported once) and check each as :func:`assert_one_line`."""
    payload = [{"module": args[1], "argv": args[2:], "env": env} for args, env, _ in cases]
    assert all(args[0] == "-m" for args, _, _ in cases)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("cli_harness.py"))],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for (args, env, says), result in zip(cases, json.loads(proc.stdout), strict=True):
        try:
            _assert_one_line(result["status"], result["stderr"], status, says)
        except AssertionError as error:
            raise AssertionError(f"{' '.join(args)} with {env}: {error}") from None


def test_bad_options(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    hub = ["--policy", "p", "--reward", "r", "--prompts", str(tmp_path / "none.txt")]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the film\na plot\n")
    cases = [
        (["-m", "klcourse", "sweep", "--betas", "0.1", "-1"], ["--betas", "'-1'", "≥ 0"]),
        (["-m", "klcourse", "sweep", "--seeds", "-2"], ["--seeds", "'-2'", "non-negative integer"]),
        (["-m", "klcourse", "sweep", "--seeds", "1.5"], ["--seeds", "'1.5'", "integer"]),
        (["-m", "klcourse", "sweep", "--adaptive", "1", "0", "100"], ["--adaptive", "'0'", "> 0"]),
        (["-m", "klcourse", "sweep", "--adaptive", "1", "2", "10.5"], ["--adaptive", "10.5", "whole number"]),
        (["-m", "klcourse", "sweep", "--betas", "nan"], ["--betas", "'nan'", "finite"]),
        (["-m", "klcourse", "sweep", "--jobs", "0"], ["--jobs", "'0'", "positive integer"]),
        (["-m", "klcourse", "compare", "--beta", "0"], ["--beta", "'0'", "> 0"]),
        (["-m", "klcourse", "compare", "--episodes", "0"], ["--episodes", "'0'", "positive integer"]),
        (["-m", "klcourse", "compare", "--jobs", "0"], ["--jobs", "'0'", "positive integer"]),
        (["-m", "klcourse", "sweep", "--out", str(a_file / "sub")], ["--out", "Not a directory"]),
        (["-m", "klcourse", "sweep", "--out", "/proc/klcourse"], ["--out", "/proc/klcourse"]),
        (["-m", "klcourse", "build", "--preset", "huge"], ["--preset", "'huge'", "laptop"]),
        (["-m", "klcourse", "launch"], ["invalid choice", "build"]),
        (["-m", "klcourse", "bench", "kl-cost", "--batch", "0"], ["--batch", "'0'", "positive integer"]),
        (["-m", "klcourse", "bench", "kl-cost", "--device", "tpu"], ["--device", "'tpu'", "cpu, cuda"]),
        (["-m", "klcourse", "bench", "stability", "--settings", "3e-4"], ["--settings", "LRxEPOCHS"]),
        (["-m", "klcourse", "bench", "stability", "--seeds", "-1"], ["--seeds", "'-1'"]),
        (["-m", "klcourse", "bench", "ppo", "--preset", "huge"], ["--preset", "'huge'"]),
        (
            ["-m", "klcourse", "regenerate", "notebooks/99_missing.ipynb"],
            ["no such notebook", "99_missing"],
        ),
        (["-m", "klcourse", "regenerate", "README.md"], ["must be a .ipynb notebook", "README.md"]),
        (["-m", "klcourse", "regenerate", "--root", str(tmp_path / "none")], ["--root", "no such folder"]),
        (["-m", "klcourse", "regenerate", "--root", str(tmp_path)], ["--root", "no notebooks found"]),
        (["-m", "klcourse", "seedcheck", "--seeds", "-1"], ["--seeds", "'-1'"]),
        (["-m", "klcourse", "seedcheck"], ["--seeds", "required"]),
        (["-m", "klcourse", "ppo", "--reward", "r", "--prompts", "p"], ["required", "--policy"]),
        (["-m", "klcourse", "sweep", "--gold", "g"], ["--gold", "only with --policy"]),
        (
            ["-m", "klcourse", "sweep", "--policy", "p"],
            ["--policy, --reward and --prompts", "--reward, --prompts"],
        ),
        (
            ["-m", "klcourse", "ppo", *hub, "--beta", "0.1", "--adaptive", "1", "6", "100"],
            ["not allowed with"],
        ),
        (["-m", "klcourse", "ppo", *hub, "--prompt-tokens", "3"], ["--prompt-tokens", "2 arguments"]),
        (
            ["-m", "klcourse", "ppo", *hub, "--batch-size", "8", "--mini-batch-size", "3"],
            ["--mini-batch-size", "does not divide", "8"],
        ),
        (["-m", "klcourse", "ppo", *hub], ["prompts", str(tmp_path / "none.txt"), "no such file"]),
        (
            [
                "-m",
                "klcourse",
                "ppo",
                "--policy",
                "no-such-org/no-such-model",
                *hub[2:4],
                "--prompts",
                str(prompts),
            ],
            ["'no-such-org/no-such-model'", "no such model folder here", "HF_HUB_OFFLINE is set"],
        ),
    ]
    if not torch.cuda.is_available():
        cases.append(
            (["-m", "klcourse", "bench", "kl-cost", "--device", "cuda"], ["'cuda'", "no CUDA device"])
        )
    assert_each_one_line([(args, {"HF_HUB_OFFLINE": "1"}, says) for args, says in cases])
    # one of them as a real process, for the exit status the shell sees
    args, says = cases[0]
    assert_one_line(run(args), 2, *says)


BAD_ENVIRONMENT = [
    ({"KLCOURSE_PRESET": "huge"}, ["KLCOURSE_PRESET='huge'", "smoke, laptop, gpu"]),
    ({"KLCOURSE_CACHE": "/proc/klcourse-cache"}, ["KLCOURSE_CACHE='/proc/klcourse-cache'", "writable"]),
    ({"KLCOURSE_SEED": "-3"}, ["KLCOURSE_SEED='-3'", "non-negative integer"]),
    ({"KLCOURSE_SEED": "three"}, ["KLCOURSE_SEED='three'"]),
]


def test_bad_environment_variables(tmp_path):
    nb = tmp_path / "x.ipynb"
    shutil.copy(NOTEBOOK, nb)
    commands = [
        ["-m", "klcourse", "build"],
        ["-m", "klcourse", "sweep"],
        ["-m", "klcourse", "regenerate", str(nb)],
    ]
    assert_each_one_line([(command, env, says) for command in commands for env, says in BAD_ENVIRONMENT])
    # one of them as a real process, for the exit status the shell sees
    env, says = BAD_ENVIRONMENT[0]
    assert_one_line(run(commands[0], env), 2, *says)


def test_a_full_disk_is_one_line(tmp_path):
    """The world's first write fails with ENOSPC, as on a full disk."""
    script = (
        "import errno, sys, klcourse.world.artifacts as a\n"
        "def full(*args, **kwargs):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device', kwargs.get('dir'))\n"
        "a.tempfile.mkdtemp = full\n"
        "from klcourse.__main__ import main\n"
        "main(['build', '--preset', 'smoke', '--quiet'])\n"
    )
    proc = run(["-c", script], {"KLCOURSE_CACHE": str(tmp_path)})
    assert_one_line(proc, 1, "cannot write", str(tmp_path), "the disk is full")
    assert list(tmp_path.iterdir()) == []


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 300) -> tuple[str, str]:
    """Send Ctrl-C (SIGINT) to ``proc`` once ``ready()`` holds; return its stdout and stderr."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=120)


def _popen(args: list[str], env: dict) -> subprocess.Popen:
    """``python args…`` as a terminal would start it: with Ctrl-C's default disposition, even when
    this test runs under a parent that ignores SIGINT (a shell's background job, as CI may be)."""
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
def test_ctrl_c_during_build_keeps_no_partial_artifact(tmp_path):
    proc = _popen(
        ["-m", "klcourse", "build", "--preset", "smoke", "--quiet"], {"KLCOURSE_CACHE": str(tmp_path)}
    )
    # interrupt while the SFT model trains: the tokenizer is finished, the SFT folder is temporary
    _, err = _interrupt_when(proc, lambda: any(p.name.startswith(".sft-") for p in tmp_path.iterdir()))
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert "interrupted" in err and str(tmp_path) in err and "run the same command" in err
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".klcourse-probe"))
    assert [n.split("-")[0] for n in left] == ["tokenizer"], left  # finished work kept, nothing partial


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_during_sweep_keeps_finished_runs(smoke_root, tmp_path, jobs):
    out = tmp_path / "sweep"
    args = [*sweep_args(out, "0", "10"), "--jobs", jobs]
    proc = _popen(args, {"KLCOURSE_CACHE": str(smoke_root)})
    _, err = _interrupt_when(proc, lambda: any(out.glob("*_seed-0.json")))
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    finished = sorted(p.name for p in out.glob("*.json"))
    assert f"{len(finished)} finished runs are kept in {out}" in err and "run the same command" in err
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary file is left"
    if jobs == "2":
        # the same command resumes: its two processes share the runs left and the sweep completes
        kept = {name: (out / name).read_bytes() for name in finished}
        resumed = _popen(args, {"KLCOURSE_CACHE": str(smoke_root)})
        stdout, stderr = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, stderr[-3000:]
        assert set(collect(out)) == {"beta-0_seed-0", "beta-10_seed-0", "adaptive-1_seed-0"}
        provenance = json.loads((out / "provenance.json").read_text())
        assert "3 runs in" in stdout and provenance["runs"] == 3
        assert all((out / name).read_bytes() == data for name, data in kept.items()), "none is redone"


@pytest.mark.slow
def test_ctrl_c_during_regenerate_leaves_the_notebook_as_it_was(tmp_path):
    nb = tmp_path / "01.ipynb"
    shutil.copy(NOTEBOOK, nb)
    before = nb.read_bytes()
    proc = _popen(["-m", "klcourse", "regenerate", str(nb)], {})
    started = time.monotonic()
    _, err = _interrupt_when(proc, lambda: time.monotonic() - started > 6)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert "0 notebooks were regenerated" in err and f"To finish: klcourse regenerate {nb}" in err
    assert nb.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01.ipynb"], "no temporary file is left"


def test_the_installed_klcourse_script_has_every_readme_command():
    """The console script `pip install` puts beside this Python: ``--help`` names every command of the
    README's table, and a bad option is one line and status 2 (the tools' own command lines, reached
    through it, are checked in one process by ``test_bad_options``)."""
    script = Path(sys.executable).with_name("klcourse")
    assert script.exists(), "pyproject's [project.scripts] installs `klcourse`"
    readme = (ROOT / "README.md").read_text()
    commands = set(re.findall(r"^\| `klcourse ([a-z-]+)", readme, re.MULTILINE))
    assert {"build", "sweep", "doctor", "site", "bench", "regenerate", "seedcheck", "compare"} <= commands
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert shown.returncode == 0
    listed = re.search(r"\{([a-z,-]+)\}", shown.stdout).group(1).split(",")
    assert commands <= set(listed), commands - set(listed)
    bad = subprocess.run([script, "sweep", "--betas", "-1"], capture_output=True, text=True, cwd=ROOT)
    assert_one_line(bad, 2, "klcourse sweep", "--betas", "'-1'")


def test_the_thread_report_gives_medians_ranges_and_each_repeats_ratio():
    from klcourse.tools.bench import Throughput, thread_report

    runs = {
        1: [Throughput("1 threads", 640, s) for s in (2.0, 1.0, 1.6)],  # 320, 640, 400 episodes/s
        2: [Throughput("2 threads", 640, s) for s in (1.0, 1.25, 2.0)],  # 640, 512, 320
    }
    report = " ".join(thread_report(runs).split())
    assert "PPO at 1 torch threads 400.0 episodes/s (min 320.0, max 640.0)" in report
    assert "PPO at 2 torch threads 512.0 episodes/s (min 320.0, max 640.0)" in report
    # the repeats' own ratios are 2.0, 0.8 and 0.8
    assert "2 threads / 1, each repeat's own ratio: median 0.80 (min 0.80, max 2.00)" in report


def test_the_throughput_report_gives_medians_ranges_both_ratios_and_phase_times():
    from klcourse.tools.bench import Throughput, ThroughputComparison

    ppo = [Throughput("klcourse PPO", 640, s) for s in (1.0, 2.0, 1.25)]  # 640, 320, 512 episodes/s
    rloo = [Throughput("TRL RLOOTrainer", 640, s) for s in (2.0, 1.6, 1.0)]  # 320, 400, 640
    shares = [{"generate": g, "update": 1 - g} for g in (0.2, 0.3, 0.25)]
    report = " ".join(ThroughputComparison(ppo, rloo, shares, [], batch_size=64).report().split())
    assert "klcourse PPO 512.0 episodes/s (min 320.0, max 640.0)" in report
    assert "TRL RLOOTrainer 400.0 episodes/s (min 320.0, max 640.0)" in report
    assert "PPO / RLOO, episodes/s: ratio of medians 1.28;" in report and "TRL 1.12" not in report
    # the repeats' own ratios are 2.0, 0.8 and 0.8
    assert "each repeat's own ratio: median 0.80 (min 0.80, max 2.00)" in report
    # the median step is 64 / 512 s = 125 ms; the median generate share 25 % of it
    assert "PPO's step, 125 ms" in report and "generate 25% (31.2 ms), update 75% (93.8 ms)" in report
