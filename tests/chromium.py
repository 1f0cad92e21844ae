"""Headless Chromium for the browser tests, driven by Selenium through Debian's ``chromium`` and
``chromium-driver`` (nothing downloads a browser at run time).

Where no browser is installed a browser test skips, saying what to install; under CI
(``$CI`` set, as ``.ci/run`` does) it fails instead, so CI cannot pass without running it.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"

# Flags for a browser on a machine with a closed network: no sandbox (CI runs as root), no GPU, and
# none of the background connections Chromium would otherwise try at every start.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def find_browser() -> tuple[str, str] | None:
    """Paths of a Chromium binary and its ChromeDriver, or None when either is missing."""
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def require_browser() -> tuple[str, str]:
    """The browser and driver paths; else skip with the reason, or fail under CI."""
    found = find_browser()
    if found is None:
        missing = "no Chromium and ChromeDriver on PATH"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but there is {missing}; .ci/run must {INSTALL}")
        pytest.skip(f"{missing}: {INSTALL}")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail('selenium is missing: pip install -e ".[test]"')
    return found


@contextmanager
def chromium(profile: Path) -> Iterator:
    """A headless Chromium under Selenium with a fresh profile folder; quit on exit, whatever happens."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.25):
    """Poll ``condition`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
