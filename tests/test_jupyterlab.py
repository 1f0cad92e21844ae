"""Notebook 01 as a learner opens it: JupyterLab in headless Chromium, every cell run through the UI.

The test starts JupyterLab on the loopback address with a token, in a folder holding a copy of the
notebook (so autosave never touches the committed one) and with its own settings, workspaces and
runtime folders. It clears the outputs and runs all cells from the menus, then checks that every
code cell ran once, in order, that no cell shows an error, that the coin explorer renders as a live
widget, and that dragging its slider changes the KL it shows to the value klcourse computes for the
new slider positions. A screenshot of the explorer goes to ``build/screenshots/`` (the README's picture).
The server is shut down whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from chromium import chromium, free_port, require_browser, wait_for

from klcourse.widgets import coin_kl_text

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_what_kl_measures.ipynb"
SCREENSHOT = ROOT / "build" / "screenshots" / "jupyterlab-coin-explorer.png"

# JupyterLab settings for a test: every cell in the page (no virtual scrolling), no news prompt.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a copy of notebook 01; yields ``(base_url, token)``."""
    require_browser()
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, course / NOTEBOOK)
    for name, values in SETTINGS.items():
        path = tmp_path / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: server.poll() is not None or _alive(f"{base}/api/status?token={token}"),
            60,
            "JupyterLab to start",
        )
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with status {server.returncode}:\n{log.read_text()[-3000:]}")
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _menu(driver, menu: str, item: str) -> None:
    """Click ``menu`` in JupyterLab's menu bar, then ``item`` in the menu it opens."""
    from selenium.webdriver.common.by import By

    bar = f"//div[contains(@class,'lm-MenuBar-itemLabel') and normalize-space()='{menu}']"
    driver.find_element(By.XPATH, bar).click()
    label = f"contains(@class,'lm-Menu-itemLabel') and normalize-space()='{item}'"
    entry = f"//li[contains(@class,'lm-Menu-item')][.//div[{label}]]"
    wait_for(lambda: driver.find_elements(By.XPATH, entry), 10, f"the menu item {menu} → {item}")
    driver.find_element(By.XPATH, entry).click()


PROMPTS = """return [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.trim())"""
# "<kernel name> | <status>" from the notebook's toolbar: its kernel name and execution indicator
# (JupyterLab 4.6 no longer shows the kernel's status in the status bar).
STATUS = """const name = document.querySelector('.jp-NotebookPanel-toolbar .jp-KernelName');
    const state = document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator');
    return (name ? name.textContent.trim() : '') + ' | ' + (state ? state.dataset.status : '')"""
# Errors and tracebacks render as stderr outputs; warnings on stderr are not errors.
ERRORS = """return [...document.querySelectorAll('.jp-OutputArea-output')]
    .filter(e => e.dataset.mimeType === 'application/vnd.jupyter.stderr')
    .map(e => e.textContent).filter(t => /Traceback|Error|Exception/.test(t))"""


def _prompts(driver, pattern: str) -> list[str] | None:
    """The code cells' input prompts when every one of them matches ``pattern``, else None."""
    prompts = driver.execute_script(PROMPTS)
    return prompts if prompts and all(re.fullmatch(pattern, p) for p in prompts) else None


def _ran_or_failed(driver) -> bool:
    """Whether every code cell has run, or one shows an error."""
    return bool(_prompts(driver, r"\[\d+\]:") or driver.execute_script(ERRORS))


def _explorer(driver):
    """The coin explorer's output area (the output holding the ``widget-interact`` box)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-interact")


def _shown(driver) -> tuple[str, list[float]]:
    """The KL line the explorer shows and the two sliders' read-out values."""
    from selenium.webdriver.common.by import By

    box = _explorer(driver)
    text = box.find_element(By.CSS_SELECTOR, ".widget-output").text
    line = next((s for s in text.splitlines() if s.startswith("KL(A‖B)")), "")
    values = [float(e.text) for e in box.find_elements(By.CSS_SELECTOR, ".widget-readout")]
    return line, values


def test_notebook_01_runs_in_jupyterlab_and_its_slider_moves_kl(lab, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    base, token = lab
    started = time.monotonic()
    with chromium(tmp_path / "profile") as driver:
        driver.get(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
        wait_for(lambda: re.search(r"Python 3.*\| idle", driver.execute_script(STATUS)), 90, "an idle kernel")
        loaded = time.monotonic() - started

        _menu(driver, "Edit", "Clear Outputs of All Cells")
        prompts = wait_for(lambda: _prompts(driver, r"\[ \]:"), 10, "cleared outputs")
        _menu(driver, "Run", "Run All Cells")
        # Run All stops at a failing cell, so wait for either every prompt numbered or an error shown.
        wait_for(lambda: _ran_or_failed(driver), 240, "every code cell to run")
        errors = driver.execute_script(ERRORS)
        assert not errors, "a cell shows an error:\n" + "\n---\n".join(errors)
        wait_for(lambda: driver.execute_script(STATUS).endswith("| idle"), 30, "the kernel to finish")
        ran = time.monotonic() - started - loaded
        done = driver.execute_script(PROMPTS)
        in_order = [f"[{i}]:" for i in range(1, len(prompts) + 1)]
        assert done == in_order, "the cells did not run once each, in order"

        # The coin explorer is a live widget: two sliders and an output, not a text fallback.
        box = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".widget-interact"), 30, "the widget")[0]
        page = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
        assert "Error displaying widget" not in page and "interactive(children=" not in page
        sliders = box.find_elements(By.CSS_SELECTOR, ".widget-hslider")
        labels = [s.find_element(By.CSS_SELECTOR, ".widget-label").text for s in sliders]
        assert labels == ["A heads", "B heads"], labels
        line, values = wait_for(lambda: (s := _shown(driver))[0] and s, 30, "the explorer's KL line")
        assert line == coin_kl_text(*values), f"shows {line!r} for sliders at {values}"

        # Drag slider A to the left; the KL line follows, and matches the new slider positions.
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        handle = sliders[0].find_element(By.CSS_SELECTOR, ".noUi-handle")
        ActionChains(driver).click_and_hold(handle).move_by_offset(-60, 0).release().perform()
        moved, new_values = wait_for(
            lambda: (s := _shown(driver))[0] != line and s[0] and s, 30, "the KL line to change"
        )
        assert new_values[0] < values[0] and new_values[1] == values[1], (values, new_values)
        assert moved == coin_kl_text(*new_values), f"shows {moved!r} for sliders at {new_values}"

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    print(
        f"JupyterLab: an idle kernel after {loaded:.1f} s, {len(done)} code cells run in {ran:.1f} s; "
        f"slider A {values[0]:.2f} → {new_values[0]:.2f}: {line} → {moved}"
    )
