"""The admin in a real browser: Debian's headless Chromium driven by Selenium
against a live test server, logging in with password and TOTP. Screenshots of
every page land in test-artifacts/admin_browser/."""

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from channels_app.services import conversation_open, inbound_record
from compliance.models import AuditEvent
from contactcenter import roles
from contactcenter.models import Team
from escalation.models import EscalationRule
from patients.models import Channel
from reminders.models import ReminderPolicy
from tests.chromium import chromium_driver, gone, needs_chromium
from tests.factories import TeamFactory, current_totp, make_patient, make_staff

SCREENSHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "admin_browser"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    needs_chromium,
]


@pytest.fixture
def browser():
    driver = chromium_driver()
    driver.implicitly_wait(5)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(browser, name):
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def submit(browser, by, value):
    """Click a submit button and wait until the browser has loaded the answer.

    A click returns as soon as the event is dispatched; asserting on the
    database before the next page has replaced this one races the server."""
    button = browser.find_element(by, value)
    button.click()
    WebDriverWait(browser, 20).until(gone(button))
    WebDriverWait(browser, 20).until(
        lambda driver: driver.execute_script("return document.readyState") == "complete"
    )


def login(browser, live_server, user):
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(user.username)
    browser.find_element(By.NAME, "password").send_keys("correct-horse-battery-staple")
    browser.find_element(By.NAME, "otp_token").send_keys(current_totp(user))
    shot(browser, f"login-{user.username}")
    submit(browser, By.CSS_SELECTOR, "input[type=submit]")
    shot(browser, f"after-login-{user.username}")


def test_admin_configures_and_sees_masked_phi_and_compliance_cannot_edit_audit(
    browser, live_server, settings
):
    settings.MFA_REQUIRED = True
    clinic = TeamFactory(name="Browser Clinic")
    admin_user = make_staff("browser-admin", role=roles.ADMIN, teams=[clinic], totp=True)
    officer = make_staff("browser-officer", role=roles.COMPLIANCE, totp=True)
    patient = make_patient(team=clinic, given_name="Grace", family_name="Hopper", mrn="MRN-9876")
    conversation = conversation_open(
        channel=Channel.SMS, team=clinic, patient=patient, contact_address="+14155550100"
    )
    inbound_record(
        channel=Channel.SMS,
        account=None,
        address="+14155550100",
        body="Can I get a refill?",
        provider_id="",
        occurred_at=timezone.now(),
        source="test",
        raw_payload={},
        conversation=conversation,
    )

    login(browser, live_server, admin_user)
    assert "Configuration" in browser.page_source
    shot(browser, "admin-index")

    browser.get(f"{live_server.url}/admin/contactcenter/team/add/")
    browser.find_element(By.NAME, "name").send_keys("Night Shift")
    shot(browser, "team-add")
    submit(browser, By.NAME, "_save")
    assert Team.objects.filter(name="Night Shift").exists()
    shot(browser, "team-list")

    browser.get(f"{live_server.url}/admin/escalation/escalationrule/add/")
    browser.find_element(By.NAME, "name").send_keys("Fall at home")
    conditions = browser.find_element(By.NAME, "conditions")
    conditions.clear()
    conditions.send_keys('{"phrases": ["fell down", "fallen"]}')
    actions = browser.find_element(By.NAME, "actions")
    actions.clear()
    actions.send_keys('{"set_priority": "high"}')
    shot(browser, "rule-add")
    submit(browser, By.NAME, "_save")
    assert EscalationRule.objects.filter(name="Fall at home").exists()

    browser.get(f"{live_server.url}/admin/escalation/escalationrule/add/")
    browser.find_element(By.NAME, "name").send_keys("Broken rule")
    conditions = browser.find_element(By.NAME, "conditions")
    conditions.clear()
    conditions.send_keys('{"phrases": [""]}')
    submit(browser, By.NAME, "_save")
    shot(browser, "rule-invalid")
    assert "errornote" in browser.page_source
    assert not EscalationRule.objects.filter(name="Broken rule").exists()

    browser.get(f"{live_server.url}/admin/escalation/escalationrule/test/")
    browser.find_element(By.NAME, "message").send_keys("Mum has fallen in the kitchen")
    submit(browser, By.CSS_SELECTOR, "input[type=submit]")
    results = browser.find_element(By.ID, "rule-results").text
    shot(browser, "rule-test")
    assert "Fall at home" in results and '"fallen"' in results

    browser.get(f"{live_server.url}/admin/reminders/reminderpolicy/add/")
    browser.find_element(By.NAME, "name").send_keys("Surgery pre-op")
    offsets = browser.find_element(By.NAME, "offsets_minutes")
    offsets.clear()
    offsets.send_keys("[10080, 1440]")
    shot(browser, "reminder-policy-add")
    submit(browser, By.NAME, "_save")
    shot(browser, "reminder-policy-list")
    assert ReminderPolicy.objects.get(name="Surgery pre-op").offsets_minutes == [10080, 1440]

    browser.get(f"{live_server.url}/admin/patients/patient/")
    row = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr").text
    shot(browser, "patient-list")
    assert "G. H****" in row
    assert "***9876" in row
    assert "Grace" not in row and "Hopper" not in row

    browser.get(f"{live_server.url}/admin/patients/patient/{patient.pk}/change/")
    assert "Can I get a refill?" in browser.find_element(By.CSS_SELECTOR, "table.timeline").text
    shot(browser, "patient-detail")
    assert (
        AuditEvent.objects.filter(
            resource_type="patient", patient_ids__contains=[str(patient.pk)], details__via="admin"
        ).count()
        >= 2
    )

    browser.get(f"{live_server.url}/admin/compliance/auditevent/")
    shot(browser, "audit-as-admin")
    assert "Audit events" not in browser.title

    browser.delete_all_cookies()
    login(browser, live_server, officer)
    browser.get(f"{live_server.url}/admin/compliance/auditevent/")
    shot(browser, "audit-list")
    assert "Select audit event to view" in browser.page_source
    event = AuditEvent.objects.order_by("id").first()
    browser.get(f"{live_server.url}/admin/compliance/auditevent/{event.pk}/change/")
    shot(browser, "audit-detail")
    assert not browser.find_elements(By.NAME, "_save")
    assert "View audit event" in browser.page_source
