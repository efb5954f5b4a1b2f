"""The supervisor's pages in a real browser (Debian's headless Chromium) against
the live test server and the live events on Redis: a reassignment from the team
board reaches the agent's open inbox without a reload, and a KPI figure drills
down to exactly the conversations the API counts. Screenshots at 1280 and 390 px
land in test-artifacts/workspace_browser/."""

from datetime import datetime, time, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from channels_app.models import Conversation
from channels_app.services import conversation_reopen, conversation_resolve
from contactcenter import roles
from escalation import services as escalation_services
from reporting.selectors import kpi_settings, kpi_today
from reporting.services import kpi_rollup_intraday
from tests.chromium import chromium_driver, needs_chromium
from tests.factories import make_staff, token_for
from tests.workspace.browser import PHONE, shot, sign_in, wait, wait_live, wait_text

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]


@pytest.fixture
def lead(north):
    # No second factor: it signs in twice within one TOTP step (desktop and phone).
    return make_staff("lead.north", role=roles.SUPERVISOR, teams=[north])


def test_supervisor_reassigns_from_the_board_and_the_agents_inbox_updates_live(
    open_browser, live_server, lead, agent, make_sms_conversation
):
    conversation = make_sms_conversation(301, body="My prescription ran out")
    late = make_sms_conversation(302, body="Still waiting for a call")
    Conversation.objects.filter(pk=conversation.pk).update(
        sla_due_at=timezone.now() + timedelta(minutes=12)
    )
    Conversation.objects.filter(pk=late.pk).update(
        sla_due_at=timezone.now() - timedelta(minutes=40)
    )
    escalation_services.escalation_manual_create(
        conversation=late, actor=lead, reason="Patient called twice about the same refill"
    )
    escalation_services.staff_availability_set(user=agent, availability="available")

    inbox = open_browser()
    sign_in(inbox, live_server, agent, path="/inbox/?tab=mine")
    wait_live(inbox)
    assert "Pat301" not in inbox.find_element(By.ID, "inbox-list").text
    marker = inbox.find_element(By.TAG_NAME, "body")

    board = open_browser()
    sign_in(board, live_server, lead, path="/supervisor/board/")
    wait_live(board)
    wait_text(board, "#sla-watch", "Pat301 Lovelace")
    shot(board, "supervisor-board-desktop")

    # By keyboard: the row's list, the agent's name typed, Tab to the button, Enter.
    select = board.find_element(By.ID, f"sla-assignee-{conversation.pk}")
    select.send_keys("agent.north")
    select.send_keys(Keys.TAB)
    focused = board.switch_to.active_element
    assert focused.get_attribute("id") == f"sla-go-{conversation.pk}"
    focused.send_keys(Keys.ENTER)

    # The answer's notice can be replaced within moments by the live refresh the
    # assignment itself sets off, so the test waits for the row, which both show.
    wait_text(
        board,
        f"#sla-watch [data-conversation='{conversation.pk}'] [data-assignee]",
        "agent.north",
    )
    wait_text(inbox, "#inbox-list", "Pat301 Lovelace")
    assert marker.is_displayed()  # the agent's page was not reloaded
    conversation.refresh_from_db()
    assert conversation.assignee == agent
    row = board.find_element(By.CSS_SELECTOR, f"#sla-watch [data-conversation='{conversation.pk}']")
    assert "agent.north" in row.find_element(By.CSS_SELECTOR, "[data-assignee]").text
    wait_text(board, "[data-agent='agent.north'] [data-open]", "1")
    shot(board, "supervisor-board-reassigned-desktop")
    shot(inbox, "supervisor-reassign-agent-inbox-desktop")

    phone = open_browser(PHONE)
    sign_in(phone, live_server, lead, path="/supervisor/board/")
    wait_text(phone, "#escalations", "Patient called twice about the same refill")
    shot(phone, "supervisor-board-phone")


def test_a_kpi_figure_drills_down_to_exactly_the_conversations_the_api_counts(
    open_browser, live_server, lead, agent, make_sms_conversation
):
    resolved = []
    for n in range(401, 406):
        conversation = make_sms_conversation(n)
        if n in (401, 402):
            escalation_services.escalation_manual_create(
                conversation=conversation, actor=lead, reason="needs a nurse"
            )
        conversation_resolve(conversation=conversation, actor=agent)
        if n == 403:
            conversation_reopen(conversation=conversation, actor=agent)
            conversation_resolve(conversation=conversation, actor=agent)
        resolved.append(conversation)
    make_sms_conversation(409)  # still open
    api = Client().get("/api/v1/reports/kpis/", **token_for(lead)).json()["period"]

    browser = open_browser()
    sign_in(browser, live_server, lead, path="/supervisor/kpis/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart"))
    shot(browser, "supervisor-kpis-desktop")
    browser.execute_script("document.getElementById('charts-heading').scrollIntoView()")
    shot(browser, "supervisor-kpis-charts-desktop")
    for figure, expected in (
        ("escalated", resolved[:2]),
        ("reopened", [resolved[2]]),
        ("resolved", resolved),
    ):
        browser.get(f"{live_server.url}/supervisor/kpis/")
        link = browser.find_element(By.CSS_SELECTOR, f"#figures a[data-figure='{figure}']")
        shown = int(link.find_element(By.CSS_SELECTOR, ".figure-value").text)
        assert shown == api["conversations"][figure]
        link.click()
        wait(browser, lambda d: d.find_elements(By.ID, "drilldown"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#drilldown tbody tr[data-conversation]")
        listed = {row.get_attribute("data-conversation") for row in rows}
        assert listed == {str(c.pk) for c in expected}, figure
        assert len(listed) == api["conversations"][figure]
        if figure == "escalated":
            shot(browser, "supervisor-drilldown-desktop")

    # Today rolled up in part, as the intraday rollup leaves it: the page says up to
    # when, and the figures stay the API's.
    zone = kpi_settings().time_zone
    kpi_rollup_intraday(now=datetime.combine(kpi_today(), time(23, 40), tzinfo=zone))
    phone = open_browser(PHONE)
    sign_in(phone, live_server, lead, path="/supervisor/kpis/")
    wait(phone, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart"))
    sources = phone.find_element(By.XPATH, "//p[contains(., 'from the intraday rollup')]")
    assert sources.is_displayed()
    resolved_link = phone.find_element(By.CSS_SELECTOR, "#figures a[data-figure='resolved']")
    shown = int(resolved_link.find_element(By.CSS_SELECTOR, ".figure-value").text)
    assert shown == api["conversations"]["resolved"]
    shot(phone, "supervisor-kpis-phone")
    escalation_services.rule_create(
        name="Refill questions", conditions={"phrases": ["refill"]}, actions={}
    )
    phone.get(f"{live_server.url}/supervisor/rules/dry-run/")
    wait_text(phone, "#dry-run-summary", "would have escalated 6 of last week's 6 messages")
    shot(phone, "supervisor-dry-run-phone")


def test_the_supervisor_pages_load_under_the_strict_policy_without_a_violation(
    live_server, lead, agent, make_sms_conversation
):
    conversation = make_sms_conversation(501)
    Conversation.objects.filter(pk=conversation.pk).update(
        sla_due_at=timezone.now() + timedelta(minutes=5)
    )
    escalation_services.escalation_manual_create(
        conversation=conversation, actor=lead, reason="check the policy"
    )
    escalation_services.rule_create(name="Refills", conditions={"phrases": ["refill"]}, actions={})
    conversation_resolve(conversation=make_sms_conversation(502), actor=agent)
    browser = chromium_driver(console_log=True)
    try:
        sign_in(browser, live_server, lead, path="/supervisor/board/")
        wait_live(browser)
        for path, ready in (
            ("/supervisor/kpis/", "svg.chart"),
            ("/supervisor/kpis/conversations/?figure=resolved", "#drilldown"),
            ("/supervisor/rules/", "#rules"),
            ("/supervisor/rules/dry-run/", "#dry-run"),
        ):
            browser.get(f"{live_server.url}{path}")
            wait(browser, lambda d, css=ready: d.find_elements(By.CSS_SELECTOR, css))
        violations = [
            entry["message"]
            for entry in browser.get_log("browser")
            if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
        ]
    finally:
        browser.quit()
    assert violations == []
