"""The agent workspace in a real browser (Debian's headless Chromium) against
the live test server, a real Celery worker on Redis and the loopback Twilio
stub. Screenshots of each step land in test-artifacts/workspace_browser/ (the
README's copies are in docs/screenshots/)."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions

from channels_app.models import CannedResponse, Conversation, Interaction, OutboundMessage
from compliance.models import AuditEvent
from contactcenter import roles
from tests.chromium import needs_chromium
from tests.factories import make_staff
from tests.workspace.browser import (
    PHONE,
    shot,
    sign_in,
    wait,
    wait_idle,
    wait_live,
    wait_text,
)

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]


def post_inbound_sms(live_server, *, sender, to, body, sid):
    """An inbound SMS as Twilio posts it: signed with the auth token."""
    import requests
    from django.conf import settings
    from twilio.request_validator import RequestValidator

    url = f"{live_server.url}/webhooks/twilio/sms/"
    params = {
        "MessageSid": sid,
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
    }
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
    response = requests.post(
        url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10
    )
    assert response.status_code == 200, response.text


def test_sign_in_read_an_sms_reply_and_see_it_delivered(
    open_browser, live_server, live_settings, celery_worker_real, agent, make_sms_conversation
):
    conversation = make_sms_conversation(101, body="Can I move my appointment to Friday?")
    make_sms_conversation(102, body="Thanks for the reminder!")
    browser = open_browser()
    browser.get(f"{live_server.url}/signin/")
    shot(browser, "signin-desktop")
    sign_in(browser, live_server, agent)
    assert browser.current_url.endswith("/inbox/")
    wait_live(browser)
    shot(browser, "inbox-desktop")

    browser.find_element(By.CSS_SELECTOR, f"[data-conversation='{conversation.pk}'] a").click()
    wait_text(browser, "#thread", "Can I move my appointment to Friday?")
    assert "/conversations/" in browser.current_url
    textarea = browser.find_element(By.ID, "composer-body")
    textarea.send_keys("Yes: Friday at 10:30 is free. Shall I book it?")
    wait_text(browser, "[data-segments]", "1 text message")
    shot(browser, "conversation-composing-desktop")
    browser.find_element(By.CSS_SELECTOR, "#composer [data-send]").click()
    wait_text(browser, "#thread", "Friday at 10:30 is free")

    wait(browser, lambda d: live_settings.created_messages)
    sent = live_settings.created_messages[0]
    assert sent["body"] == "Yes: Friday at 10:30 is free. Shall I book it?"
    assert sent["to"] == "+14155550101"
    assert live_settings.send_status_callback(sent, "delivered") == 204
    wait_text(browser, "#thread .msg-outbound .delivery", "Delivered")
    assert OutboundMessage.objects.get().state == "delivered"
    shot(browser, "conversation-delivered-desktop")
    assert AuditEvent.objects.filter(
        resource_type="conversation",
        resource_id=str(conversation.pk),
        actor_user_id=agent.pk,
        details__via="workspace",
    ).exists()


def test_inbound_sms_appears_in_open_inbox_and_conversation_without_reload(
    open_browser,
    live_server,
    live_settings,
    celery_worker_real,
    agent,
    teammate,
    make_sms_conversation,
    sms_account,
):
    conversation = make_sms_conversation(103, body="Is the pharmacy open today?")
    for title, body in (
        ("Pharmacy hours", "Our pharmacy is open 9 to 5 on weekdays."),
        ("Flu shots", "Flu shots are given without an appointment on weekday mornings."),
    ):
        CannedResponse.objects.create(team=conversation.team, title=title, body=body)
    inbox = open_browser()
    sign_in(inbox, live_server, agent)
    wait_live(inbox)
    thread = open_browser()
    sign_in(thread, live_server, teammate, path=f"/conversations/{conversation.pk}/")
    wait_live(thread)
    marker = thread.find_element(By.TAG_NAME, "body")
    inbox_marker = inbox.find_element(By.TAG_NAME, "body")

    post_inbound_sms(
        live_server,
        sender="+14155550103",
        to=sms_account.address,
        body="Also, can I get a flu shot?",
        sid="SM" + "3" * 32,
    )
    wait_text(thread, "#thread", "Also, can I get a flu shot?")
    # The suggested replies follow the newest message without a reload.
    wait_text(thread, "#composer-suggestions", "shares the words flu")
    post_inbound_sms(
        live_server,
        sender="+14155550999",
        to=sms_account.address,
        body="Hello, this is a new number",
        sid="SM" + "4" * 32,
    )
    wait_text(inbox, "#inbox-list", "Hello, this is a new number")
    # Nothing reloaded: the elements found before the messages are still the page's.
    assert marker.is_displayed() and inbox_marker.is_displayed()
    shot(inbox, "inbox-live-desktop")
    shot(thread, "conversation-live-desktop")


def test_two_agents_see_each_other_and_the_stale_reply_guard_fires(
    open_browser,
    live_server,
    live_settings,
    celery_worker_real,
    agent,
    teammate,
    make_sms_conversation,
    sms_account,
):
    conversation = make_sms_conversation(104, body="My prescription ran out")
    path = f"/conversations/{conversation.pk}/"
    first = open_browser()
    sign_in(first, live_server, agent, path=path)
    wait_live(first)
    second = open_browser()
    sign_in(second, live_server, teammate, path=path)
    wait_live(second)

    wait_text(first, "#presence", "maria")
    wait_text(second, "#presence", "agent.north")
    second.find_element(By.ID, "composer-body").send_keys("Checking with the doctor")
    wait_text(first, "#presence", "maria is replying")
    shot(first, "two-agents-presence-desktop")

    first.find_element(By.ID, "composer-body").send_keys("We renewed it; pick it up at 3.")
    post_inbound_sms(
        live_server,
        sender="+14155550104",
        to=sms_account.address,
        body="Actually I found a spare box, no rush",
        sid="SM" + "5" * 32,
    )
    wait_text(first, "#thread", "found a spare box")
    first.find_element(By.CSS_SELECTOR, "#composer [data-send]").click()
    wait_text(first, "#composer .error-message", "The patient wrote again since you last looked")
    assert first.find_element(By.ID, "composer-body").get_attribute("value") == (
        "We renewed it; pick it up at 3."
    )
    # The worker's refill intake may already have asked its automated question; the
    # guard is about the agent's reply.
    assert not Interaction.objects.filter(direction="outbound", author=agent).exists()
    shot(first, "stale-reply-refused-desktop")
    first.find_element(By.CSS_SELECTOR, "#composer [data-send]").click()
    wait(first, lambda d: Interaction.objects.filter(direction="outbound", author=agent).exists())
    wait_text(first, "#thread", "pick it up at 3.")


def press(browser, key):
    """A key pressed with nothing in particular focused, as a keyboard user would
    after Esc; the body is looked up afresh since htmx swaps parts of the page."""
    browser.find_element(By.TAG_NAME, "body").send_keys(key)


def test_keyboard_only_triage_of_three_conversations(
    open_browser, live_server, live_settings, celery_worker_real, agent, make_sms_conversation
):
    conversations = [make_sms_conversation(110 + n, body=f"Question number {n}") for n in range(3)]
    browser = open_browser()
    sign_in(browser, live_server, agent)
    wait_live(browser)
    for n in range(3):
        press(browser, "j")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".row.is-cursor"))
        browser.switch_to.active_element.send_keys(Keys.ENTER)
        wait(browser, expected_conditions.presence_of_element_located((By.ID, "composer")))
        wait_idle(browser)
        heading = browser.execute_script(
            "return document.getElementById('thread-heading').textContent"
        )
        press(browser, "a")
        wait_text(browser, "#thread [data-assignee]", "Assigned to you")
        wait_idle(browser)
        press(browser, "r")
        wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "composer-body")
        browser.switch_to.active_element.send_keys(f"Thanks {heading}, we are on it.")
        browser.switch_to.active_element.send_keys(Keys.CONTROL, Keys.ENTER)
        wait_text(browser, "#thread", f"Thanks {heading}, we are on it.")
        wait_idle(browser)
        browser.switch_to.active_element.send_keys(Keys.ESCAPE)
        press(browser, "e")
        wait_text(browser, "#thread .thread-meta", "Resolved")
        wait_idle(browser)
        if n == 0:
            shot(browser, "keyboard-triage-desktop")
    for conversation in conversations:
        conversation.refresh_from_db()
        assert conversation.status == Conversation.Status.RESOLVED
        assert conversation.assignee_id == agent.pk
    assert Interaction.objects.filter(direction="outbound").count() == 3


def test_an_outsider_gets_the_404_page(
    open_browser, live_server, live_settings, south, make_sms_conversation
):
    outsider = make_staff("outsider", role=roles.AGENT, teams=[south], totp=True)
    conversation = make_sms_conversation(120)
    browser = open_browser()
    sign_in(browser, live_server, outsider, path=f"/conversations/{conversation.pk}/")
    assert "Page not found" in browser.find_element(By.TAG_NAME, "h1").text
    assert "Can I get a refill" not in browser.page_source
    shot(browser, "not-found-desktop")
    assert AuditEvent.objects.filter(
        actor_user_id=outsider.pk, outcome="denied", patient_ids=[str(conversation.patient_id)]
    ).exists()


def test_phone_width_stacks_the_panes(
    open_browser, live_server, live_settings, agent, make_sms_conversation
):
    conversation = make_sms_conversation(130, body="Running ten minutes late, sorry!")
    make_sms_conversation(131, body="What should I bring to my first visit?")
    browser = open_browser(PHONE)
    sign_in(browser, live_server, agent)
    shot(browser, "inbox-phone")
    browser.find_element(By.CSS_SELECTOR, f"[data-conversation='{conversation.pk}'] a").click()
    wait_text(browser, "#thread", "Running ten minutes late")
    assert not browser.find_element(By.ID, "inbox-list").is_displayed()
    shot(browser, "conversation-phone")
    browser.find_element(By.CSS_SELECTOR, "[data-back]").click()
    wait(browser, lambda d: d.find_element(By.ID, "inbox-list").is_displayed())
