"""The Content-Security-Policy in a real browser (Debian's headless Chromium): the
admin, Swagger UI and the CSAT survey page load under the strict policy without a
single violation in the browser's console, and each still works (the admin's
script runs, Swagger UI renders the schema, the survey form records an answer)."""

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from channels_app.services import conversation_open
from contactcenter import roles
from patients.models import Channel
from reporting.models import SurveyRequest, SurveyResponse
from reporting.services import survey_link_url
from tests.chromium import chromium_driver, needs_chromium
from tests.factories import DEFAULT_PASSWORD, TeamFactory, make_patient, make_staff

pytestmark = [
    pytest.mark.django_db(transaction=True),
    needs_chromium,
]


@pytest.fixture
def browser():
    driver = chromium_driver(console_log=True)
    yield driver
    driver.quit()


def wait_until(browser, condition, timeout=20):
    return WebDriverWait(browser, timeout).until(lambda driver: condition(driver))


def csp_violations(browser):
    """Console lines about the policy since the last call (reading empties the log)."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]


def test_every_response_carries_the_strict_policy(db):
    policy = Client().get("/health/")["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def test_admin_swagger_ui_and_survey_page_work_without_a_policy_violation(browser, live_server):
    team = TeamFactory(name="CSP Clinic")
    make_staff("csp-admin", role=roles.ADMIN, teams=[team])
    patient = make_patient(team=team, phones=(), emails=("csp.patient@example.com",))
    conversation = conversation_open(
        channel=Channel.EMAIL,
        team=team,
        patient=patient,
        contact_address="csp.patient@example.com",
    )
    survey = SurveyRequest.objects.create(
        conversation=conversation,
        patient=patient,
        team=team,
        channel=Channel.EMAIL,
        state=SurveyRequest.State.SENT,
        scheduled_for=timezone.now(),
        sent_at=timezone.now(),
    )

    # The admin: log in, then a form page whose widgets are script-driven.
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("csp-admin")
    browser.find_element(By.NAME, "password").send_keys(DEFAULT_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "user-tools"))
    browser.get(f"{live_server.url}/admin/contactcenter/team/add/")
    wait_until(browser, lambda d: d.find_elements(By.NAME, "name"))
    # admin/js/theme.js ran: it marks the page with the colour theme.
    wait_until(browser, lambda d: d.execute_script("return document.documentElement.dataset.theme"))
    # The stylesheet applied: the header is the admin's, not the browser's default.
    header_colour = browser.find_element(By.ID, "header").value_of_css_property("background-color")
    assert header_colour not in ("rgba(0, 0, 0, 0)", "transparent")
    assert csp_violations(browser) == []

    # Swagger UI renders the schema it fetched: bundle, set-up script and styles loaded.
    browser.get(f"{live_server.url}{reverse('swagger-ui')}")
    title = wait_until(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title")
    )
    assert "contactcenter API" in title[0].text
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-tag"))
    assert csp_violations(browser) == []

    # The survey page styles itself from its own stylesheet and records an answer.
    browser.get(survey_link_url(survey).replace(settings.PUBLIC_BASE_URL, live_server.url))
    score = wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".scores label"))
    assert score[0].value_of_css_property("display") == "block"
    browser.find_element(By.CSS_SELECTOR, "input[name=score][value='5']").click()
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(browser, lambda d: SurveyResponse.objects.filter(survey=survey).exists())
    assert csp_violations(browser) == []
