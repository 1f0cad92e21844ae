"""``klcourse doctor``: is this set-up ready for the course, and if not, what to run.

Each check prints one line: ``ok``, ``todo`` (the course still works, but something will be slow or
missing, e.g. a world not built yet) or ``FAIL`` (something will break), and every ``todo`` or
``FAIL`` comes with a one-line fix. The checks:

* Python and every package against the versions ``pyproject.toml`` asks for (the test and site
  extras too, as ``todo``: only the tests and the website need them);
* the device and preset the course will pick, and the environment variables it reads;
* the cache: where it is, and the state of each artifact of the chosen preset's world —
  ``verified`` (every file matches its recorded SHA-256), ``stale`` (there but failing that check:
  the next notebook rebuilds it), ``missing`` — and the folders of other presets or seeds
  (``built``) and of older versions of the world (``stale``, never read again);
* whether a Jupyter kernel (``python3``, the one the notebooks name) starts and imports this
  ``klcourse``;
* whether ipywidgets' JupyterLab extension is installed (the coin explorer needs it);
* the free disk where the cache lives.

The exit status is 1 when any check fails, else 0.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import klcourse
from klcourse.settings import CACHE_ENV, PRESET_ENV, SEED_ENV, SettingError

ROOT = Path(klcourse.__file__).resolve().parents[1]
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
#: Free disk below this where the cache lives is a failure: builds, runs and pip need room.
MIN_FREE_BYTES = 1 << 30
KERNEL = "python3"


@dataclass(frozen=True)
class Check:
    """One line of the report: ``status`` is ``ok``, ``todo`` or ``FAIL``; ``fix`` is a command or an
    instruction, given for every ``todo`` and ``FAIL``."""

    status: str
    what: str
    detail: str
    fix: str = ""


def _ok(what: str, detail: str) -> Check:
    return Check("ok", what, detail)


# ---------------------------------------------------------------- Python and packages


def project_requirements(root: Path = ROOT) -> tuple[SpecifierSet, list[Requirement], dict[str, list]]:
    """``requires-python``, the dependencies and the optional ones by extra, from ``pyproject.toml``
    in a source checkout, else from the installed package's metadata (which pip wrote from it)."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads(pyproject.read_text())["project"]
        extras = {k: [Requirement(r) for r in v] for k, v in project.get("optional-dependencies", {}).items()}
        return (
            SpecifierSet(project.get("requires-python", "")),
            [Requirement(r) for r in project["dependencies"]],
            extras,
        )
    meta = importlib.metadata.metadata("klcourse")
    required, extras = [], {}
    for line in importlib.metadata.requires("klcourse") or []:
        req = Requirement(line)
        extra = re.search(r"extra == ['\"]([\w-]+)['\"]", str(req.marker or ""))
        if extra:
            req.marker = None
            extras.setdefault(extra.group(1), []).append(req)
        else:
            required.append(req)
    return SpecifierSet(meta.get("Requires-Python", "")), required, extras


def check_python(spec: SpecifierSet) -> Check:
    """The running Python against ``requires-python``."""
    version = ".".join(map(str, sys.version_info[:3]))
    if spec.contains(version):
        return _ok("python", f"Python {version} ({sys.executable}) satisfies {spec or 'any'}")
    return Check(
        "FAIL",
        "python",
        f"Python {version} does not satisfy {spec}",
        f"create the venv with a newer Python: python3.11 -m venv .venv (requires {spec})",
    )


def check_packages(requirements: list[Requirement], what: str, status: str, install: str) -> Check:
    """Each requirement installed at a version it allows; ``status`` when not (``FAIL`` or ``todo``)."""
    found, problems = [], []
    for req in requirements:
        if req.name == "klcourse":  # an extra naming another extra of this package
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{req.name} is missing")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} does not satisfy {req.specifier}")
        else:
            found.append(f"{req.name} {version}")
    if problems:
        return Check(status, what, "; ".join(problems), install)
    return _ok(what, ", ".join(found))


# ---------------------------------------------------------------- device, preset, cache


def check_settings() -> tuple[Check, object | None]:
    """The device and the preset the course will pick (and ``$KLCOURSE_*``); returns the preset too."""
    from klcourse.config import describe, get_preset, pick_device
    from klcourse.settings import env_seed

    try:
        device = pick_device()
        preset = get_preset(None, device)
        seed = env_seed()
    except SettingError as e:
        variable, example = (SEED_ENV, "3") if SEED_ENV in str(e) else (PRESET_ENV, "laptop")
        return Check("FAIL", "settings", str(e), f"unset {variable}  (or export {variable}={example})"), None
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    seed_note = f", {SEED_ENV}={seed}" if seed is not None else ""
    chosen = describe(preset, device).removeprefix("klcourse: ")
    return _ok("device", f"{chosen}{seed_note} (torch {torch.__version__}, {build})"), preset


def check_cache(preset) -> list[Check]:
    """Where the cache is, the state of each artifact of ``preset``'s world, and the other folders."""
    from klcourse.config import PRESETS, with_seed
    from klcourse.seeding import course_seed
    from klcourse.world.artifacts import artifact_folder, cache_root, verify
    from klcourse.world.core import artifact_configs

    try:
        root = cache_root()
    except SettingError as e:
        return [Check("FAIL", "cache", str(e), f"export {CACHE_ENV}=/a/writable/folder")]
    checks = [_ok("cache", f"{root} (writable; {CACHE_ENV} moves it)")]
    configs = artifact_configs(preset)
    needed = set()
    for name, config in configs.items():
        folder = artifact_folder(name, config, root)
        needed.add(folder.name)
        if not folder.exists():
            state, fix = "missing", "klcourse build  (else the first notebook that needs it will)"
        elif (problem := verify(folder, config)) is None:
            checks.append(_ok(f"  {name}", f"verified  {folder.name}"))
            continue
        else:
            state, fix = f"stale ({problem})", "klcourse build  (rebuilds it)"
        checks.append(Check("todo", f"  {name}", f"{state}  {folder.name}", fix))
    others = {
        artifact_folder(name, config, root).name
        for other in PRESETS.values()
        for name, config in artifact_configs(with_seed(other, course_seed())).items()
    }
    artifact = re.compile(rf"({'|'.join(configs)})-[0-9a-f]{{12}}")  # the world's artifact folders
    built, stale = [], []
    for folder in sorted(p for p in root.glob("*-*") if p.is_dir() and p.name not in needed):
        if artifact.fullmatch(folder.name):
            (built if folder.name in others else stale).append(folder)
    if built:
        checks.append(_ok("  other presets", f"built: {', '.join(p.name for p in built)}"))
    if stale:
        size = sum(f.stat().st_size for p in stale for f in p.rglob("*") if f.is_file())
        checks.append(
            Check(
                "todo",
                "  stale",
                f"{len(stale)} folders of older worlds or other seeds ({size / 1e6:.1f} MB), unused here",
                f"cd {root} && rm -r {' '.join(p.name for p in stale)}  (to free the space)",
            )
        )
    return checks


def check_disk(path: Path, minimum: int = MIN_FREE_BYTES) -> Check:
    """Free disk on the file system that holds ``path`` (or its nearest existing parent)."""
    while not path.exists():
        path = path.parent
    free = shutil.disk_usage(path).free
    detail = f"{free / 2**30:.1f} GiB free at {path}"
    if free < minimum:
        fix = f"free at least {minimum / 2**30:.0f} GiB there, or move the cache: export {CACHE_ENV}=…"
        return Check("FAIL", "disk", detail, fix)
    return _ok("disk", detail)


# ---------------------------------------------------------------- Jupyter


def check_kernel(name: str = KERNEL, timeout: float = 60) -> Check:
    """Start the Jupyter kernel ``name`` as JupyterLab would, and import ``klcourse`` in it: it must
    be this very package (the same folder), not another copy or none."""
    from jupyter_client.kernelspec import NoSuchKernel
    from jupyter_client.manager import start_new_kernel

    fix = kernel_fix(name)
    code = "import sys; import klcourse; print(sys.executable); print(klcourse.__file__)"
    try:
        # the kernel's own stderr only warns about its transport; errors come back as messages
        manager, client = start_new_kernel(
            kernel_name=name, startup_timeout=timeout, stderr=subprocess.DEVNULL
        )
    except NoSuchKernel:
        return Check("FAIL", "kernel", f"no Jupyter kernel named {name!r}", fix)
    except RuntimeError as e:
        return Check("FAIL", "kernel", f"the kernel {name!r} did not start: {e}", fix)
    lines: list[str] = []
    errors: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            lines.extend(msg["content"]["text"].split())
        elif msg["msg_type"] == "error":
            errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    try:
        client.execute_interactive(code, timeout=timeout, output_hook=hook)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    if errors:
        return Check("FAIL", "kernel", f"kernel {name!r} cannot import klcourse ({errors[0]})", fix)
    python, module = lines[:2] if len(lines) >= 2 else ("?", "?")
    here = Path(klcourse.__file__).resolve().parent
    if Path(module).resolve().parent != here:
        detail = f"kernel {name!r} ({python}) imports klcourse from {module}, not {here}"
        return Check("FAIL", "kernel", detail, fix)
    return _ok("kernel", f"{name!r} ({python}) imports klcourse from {here}")


def kernel_fix(name: str = KERNEL) -> str:
    """The command that makes the kernel ``name`` run this Python: rewrite the kernel folder Jupyter
    finds first when it is the user's or this environment's; remove it when it is another one (one
    that ``$JUPYTER_PATH`` puts first, say)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_core.paths import jupyter_data_dir

    try:
        folder = Path(KernelSpecManager().get_kernel_spec(name).resource_dir).resolve()
    except NoSuchKernel:
        return "python -m ipykernel install --user"
    if folder == (Path(jupyter_data_dir()) / "kernels" / name).resolve():
        return "python -m ipykernel install --user  (rewrites the kernel for this Python)"
    if folder.is_relative_to(Path(sys.prefix).resolve()):
        return "python -m ipykernel install --sys-prefix  (rewrites the kernel for this Python)"
    return f"rm -r {folder}  (the kernel folder Jupyter finds first), then run this again"


def check_widgets(paths: list[str] | None = None) -> Check:
    """ipywidgets' JupyterLab extension in one of Jupyter's ``labextensions`` folders."""
    import json

    from jupyter_core.paths import jupyter_path

    for folder in paths if paths is not None else jupyter_path("labextensions"):
        package = Path(folder) / WIDGETS_EXTENSION / "package.json"
        if package.is_file():
            version = json.loads(package.read_text()).get("version", "?")
            return _ok("widgets", f"{WIDGETS_EXTENSION} {version} in {folder}")
    return Check(
        "FAIL",
        "widgets",
        f"ipywidgets' JupyterLab extension ({WIDGETS_EXTENSION}) is missing: the coin explorer cannot render",
        'pip install "ipywidgets>=8" jupyterlab_widgets, then restart JupyterLab',
    )


# ---------------------------------------------------------------- all together


def diagnose(kernel: bool = True) -> list[Check]:
    """Every check, in the order of the report (``kernel=False`` skips starting a kernel)."""
    spec, required, extras = project_requirements()
    checks = [
        check_python(spec),
        check_packages(required, "packages", "FAIL", "pip install -e .  (from the course folder)"),
    ]
    for extra, reqs in sorted(extras.items()):
        checks.append(check_packages(reqs, f"[{extra}] extra", "todo", f'pip install -e ".[{extra}]"'))
    settings, preset = check_settings()
    checks.append(settings)
    if preset is not None:
        checks += check_cache(preset)
    if kernel:
        checks.append(check_kernel())
    checks.append(check_widgets())
    try:
        from klcourse.world.artifacts import cache_root

        where = cache_root()
    except SettingError:
        where = Path.home()
    checks.append(check_disk(where))
    return checks


def report(checks: list[Check]) -> tuple[str, int]:
    """The printed report and the exit status (1 if any check failed)."""
    lines = [f"klcourse doctor ({Path(klcourse.__file__).parent})"]
    for c in checks:
        lines.append(f"{c.status:5s} {c.what:15s} {c.detail}")
        if c.fix:
            lines.append(f"{'':5s} {'':15s} fix: {c.fix}")
    failed = sum(c.status == "FAIL" for c in checks)
    todo = sum(c.status == "todo" for c in checks)
    if failed:
        lines.append(f"{failed} problem{'s' * (failed > 1)} to fix (marked FAIL); then run this again")
    else:
        lines.append("healthy" + (f"; {todo} thing{'s' * (todo > 1)} still to do (todo)" if todo else ""))
    return "\n".join(lines), int(failed > 0)


def run() -> int:
    """Print the report; return the exit status."""
    text, status = report(diagnose())
    print(text)
    return status
