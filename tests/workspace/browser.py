"""Browser fixtures for workspace pages: Debian's headless Chromium driven by
Selenium against the live test server, at desktop (1280 px) and phone (390 px)
widths. Screenshots go to test-artifacts/workspace_browser/ (ignored by git, so a
test run leaves the work tree clean); the README's are copies in docs/screenshots/.
Every wait is for a condition on the page, never for a fixed time."""

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.chromium import chromium_driver, gone
from tests.factories import current_totp

SCREENSHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "workspace_browser"
DESKTOP = (1280, 900)
PHONE = (390, 844)
# Live updates are promised within 2 seconds; the waits allow for a loaded CI machine.
WAIT_SECONDS = 30


@pytest.fixture
def open_browser():
    """A factory of browsers (two agents need two); all quit after the test."""
    drivers = []

    def start(size=DESKTOP):
        driver = chromium_driver(size)
        drivers.append(driver)
        return driver

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield start
    for driver in drivers:
        driver.quit()


def shot(browser, name):
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def wait(browser, condition, seconds=WAIT_SECONDS):
    return WebDriverWait(browser, seconds).until(condition)


def wait_text(browser, css, text, seconds=WAIT_SECONDS):
    return wait(
        browser,
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text),
        seconds,
    )


def text_of(browser, css):
    """The first match's text, read in one script: an element the page swaps while a
    test looks (a message whose delivery state moved) has no stale reference to fail
    on. "" when nothing matches."""
    return browser.execute_script(
        "var found = document.querySelector(arguments[0]); return found ? found.innerText : '';",
        css,
    )


def wait_live(browser):
    """Until the page's live connection is open (it only adds to the page)."""
    wait(
        browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "open"
    )


def sign_in(browser, live_server, user, *, path="/inbox/"):
    browser.get(f"{live_server.url}/signin/?next={path}")
    browser.find_element(By.ID, "id_username").send_keys(user.username)
    browser.find_element(By.ID, "id_password").send_keys("correct-horse-battery-staple")
    if getattr(user, "totp_secret", None):
        browser.find_element(By.ID, "id_otp").send_keys(current_totp(user))
    button = browser.find_element(By.CSS_SELECTOR, "button[type=submit]")
    button.click()
    wait(browser, gone(button))
    wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")


def wait_idle(browser):
    """Until htmx has no request in flight and nothing swapping or settling."""
    wait(
        browser,
        lambda d: d.execute_script(
            "return !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
        ),
    )
