"""The compliance desk in a real browser (Debian's headless Chromium) against the
live test server and a real Celery worker: an officer finds an agent's read of a
patient, downloads the search as CSV, reviews a break-glass grant, verifies the
chain in the worker; every page is walked at 1280 and 390 px with screenshots
(test-artifacts/workspace_browser/compliance-*.png), and no page shows any of
the patient's message bodies."""

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from compliance.models import AuditEvent, BreakGlassGrant
from compliance.services import break_glass_grant, practice_today
from tests.chromium import needs_chromium
from tests.workspace.browser import DESKTOP, PHONE, shot, sign_in, wait, wait_idle, wait_text
from tests.workspace.compliance_fixtures import BODIES, REASON

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]


def assert_no_body(browser, where):
    html = browser.page_source
    for body in BODIES:
        assert body not in html, where
        assert body.split()[-1] not in html, where


def downloaded(folder, name):
    """The file once Chromium has finished writing it."""
    path = Path(folder) / name

    def done(_driver):
        return path.exists() and not list(Path(folder).glob("*.crdownload"))

    return path, done


def test_officer_finds_an_agents_read_exports_it_and_reviews_the_grant(
    open_browser, live_server, settings, desk_data, tmp_path
):
    settings.MFA_REQUIRED = True
    data = desk_data
    browser = open_browser(DESKTOP)
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    sign_in(browser, live_server, data.officer, path="/compliance/")
    assert browser.current_url.endswith("/compliance/audit/")
    nav = browser.find_element(By.CSS_SELECTOR, "nav.desk-nav")
    assert nav.find_element(By.CSS_SELECTOR, "[aria-current=page]").text == "Audit search"

    # Find the agent's read of the patient.
    browser.find_element(By.ID, "a-patient").send_keys(str(data.patient_id))
    browser.find_element(By.ID, "a-staff").send_keys(data.agent.username)
    browser.find_element(By.CSS_SELECTOR, "#a-action option[value=read]").click()
    browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait_text(browser, "#audit-results", f"/conversations/{data.conversation.pk}/")
    read = AuditEvent.objects.filter(
        actor_user_id=data.agent.pk,
        action="read",
        resource_type="conversation",
        resource_id=str(data.conversation.pk),
    ).get()
    row = browser.find_element(By.CSS_SELECTOR, f"[data-audit-id='{read.pk}']")
    assert data.agent.username in row.text and "success" in row.text
    assert_no_body(browser, "audit search")
    shot(browser, "compliance-audit-search-desktop")

    # Export it: the CSV lands in the download folder with that row.
    browser.find_element(By.CSS_SELECTOR, "[data-export]").click()
    path, done = downloaded(tmp_path, "audit-events.csv")
    wait(browser, done)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert str(read.pk) in {r["id"] for r in rows}
    assert {r["actor_username"] for r in rows} == {data.agent.username}
    for body in BODIES:
        assert body not in path.read_text()

    # Review the break-glass grant as justified.
    browser.find_element(By.LINK_TEXT, "Break-glass reviews").click()
    card = f"#g-{data.grant.pk}"
    wait_text(browser, card, REASON)
    assert "What was viewed during it" in browser.find_element(By.CSS_SELECTOR, card).text
    assert_no_body(browser, "break-glass queue")
    shot(browser, "compliance-break-glass-desktop")
    browser.find_element(
        By.CSS_SELECTOR, f"{card} input[name=review_outcome][value=appropriate]"
    ).click()
    browser.find_element(By.CSS_SELECTOR, f"{card} .review button[type=submit]").click()
    wait_text(browser, card, "Review saved.")
    wait_idle(browser)
    assert "Reviewed: Justified" in browser.find_element(By.CSS_SELECTOR, card).text
    shot(browser, "compliance-break-glass-reviewed-desktop")
    grant = BreakGlassGrant.objects.get(pk=data.grant.pk)
    assert (grant.review_outcome, grant.reviewed_by_id) == ("appropriate", data.officer.pk)


def test_verify_now_runs_in_the_worker_and_reports_progress(
    open_browser, live_server, settings, celery_worker_real, desk_data
):
    settings.MFA_REQUIRED = True
    browser = open_browser(DESKTOP)
    sign_in(browser, live_server, desk_data.officer, path="/compliance/chain/")
    wait_text(browser, "#last-verification", "Never verified.")
    browser.find_element(By.CSS_SELECTOR, "[data-verify]").click()
    wait_text(browser, "#chain-run", "events verified", seconds=60)
    shot(browser, "compliance-chain-verified-desktop")
    run = AuditEvent.objects.filter(
        resource_type="audit_chain", action="execute", details__via="worker"
    ).get()
    assert run.details["ok"] is True and run.actor_user_id == desk_data.officer.pk
    browser.find_element(By.LINK_TEXT, "Refresh the status").click()
    wait_text(browser, "#last-verification", "OK")


@pytest.mark.parametrize(("size", "label"), [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_every_desk_page_at_both_widths_shows_no_message_body(
    open_browser, live_server, settings, desk_data, size, label
):
    settings.MFA_REQUIRED = True
    data = desk_data
    patient = str(data.patient_id)
    # A second grant, four days old and not reviewed: overdue.
    old = break_glass_grant(user=data.agent, patient_id=data.patient_id, reason=REASON)
    BreakGlassGrant.objects.filter(pk=old.pk).update(
        granted_at=timezone.now() - timedelta(days=4),
        expires_at=timezone.now() - timedelta(days=4) + timedelta(hours=1),
    )
    browser = open_browser(size)
    sign_in(browser, live_server, data.officer, path="/compliance/audit/")
    pages = [
        ("audit-search", f"/compliance/audit/?patient={patient}", "#audit-results"),
        ("access-report", f"/compliance/access-report/?patient={patient}", "#access-results"),
        ("break-glass-waiting", "/compliance/break-glass/", ".grant"),
        ("break-glass-all", "/compliance/break-glass/?show=all", ".grant"),
        ("disclosures", f"/compliance/disclosures/?patient={patient}", "#disclosure-results"),
        ("chain", "/compliance/chain/", "#last-checkpoint"),
        ("anomalies", f"/compliance/anomalies/?day={practice_today().isoformat()}", "table"),
    ]
    for name, path, ready in pages:
        browser.get(f"{live_server.url}{path}")
        wait(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ready)))
        wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
        assert_no_body(browser, name)
        if label == "phone":
            # Usable at 390 px: nothing wider than the screen.
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1"
            ), name
        if name == "break-glass-waiting":
            # Oldest first: the overdue review leads the queue.
            first = browser.find_element(By.CSS_SELECTOR, ".grant")
            assert first.get_attribute("id") == f"g-{old.pk}"
            assert "Overdue: review was due" in first.text
        shot(browser, f"compliance-{name}-{label}")
    # The page did show the conversation's trail, so the check above is not vacuous.
    browser.get(f"{live_server.url}/compliance/audit/?patient={patient}")
    wait_text(browser, "#audit-results", str(data.conversation.pk))
