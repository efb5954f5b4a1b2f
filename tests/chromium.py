"""Debian's headless Chromium for the browser tests (admin, CSP, workspace): one
place for its flags, so every browser test starts the same browser."""

import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

needs_chromium = pytest.mark.skipif(
    not Path(CHROMEDRIVER).exists(),
    reason="Debian's chromium-driver is not installed (.ci/run installs it)",
)


def chromium_driver(size=(1400, 1000), *, console_log=False):
    """A headless Chromium of this window size. Without the background-networking
    flags it keeps dialling Google's hosts, which this machine refuses."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(flag)
    if size[0] < 500:
        # Headless Chromium keeps windows at least 500 px wide: a phone is emulated.
        options.add_experimental_option(
            "mobileEmulation",
            {"deviceMetrics": {"width": size[0], "height": size[1], "pixelRatio": 1}},
        )
    if console_log:
        # The console, where Chromium reports every Content-Security-Policy violation.
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def gone(element):
    """Until the element has left the document (the page it was on was replaced).
    Chromium sometimes reports a node of a page being replaced as "does not belong
    to the document" rather than as stale; both mean it is gone."""

    def predicate(_driver):
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return predicate
