"""The workspace when things go wrong, in a real browser: a lost live connection
shows a banner and the page reconnects by itself; a session that ended while the
agent wrote keeps the draft through signing in again; a send the provider refused
shows why. Screenshots at 1280 and 390 px of the empty inbox, a long thread, the
failed send and the lost-connection banner (test-artifacts/workspace_browser/)."""

import pytest
from django.contrib.sessions.backends.cached_db import SessionStore
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from contactcenter import roles
from contactcenter.middleware import SIGNED_IN_AT
from tests.chromium import needs_chromium
from tests.factories import make_staff
from tests.workspace.browser import (
    DESKTOP,
    PHONE,
    WAIT_SECONDS,
    shot,
    sign_in,
    text_of,
    wait,
    wait_live,
    wait_text,
)
from tests.workspace.conftest import receive_sms
from workspace import stream

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]


def next_totp(user):
    """A code the server has not seen yet: django-otp accepts each 30-second step once
    and one step of drift, so after a sign-in in this step, the next step's code;
    after one in an earlier step, this step's."""
    import base64

    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user).order_by("pk").last()
    secret = user.totp_secret + "=" * (-len(user.totp_secret) % 8)
    totp = TOTP(base64.b32decode(secret), step=device.step, t0=device.t0)
    step = max(totp.t(), device.last_t + 1)
    totp.time = device.t0 + step * device.step
    return f"{totp.token():06d}"


def banner(browser):
    status = browser.find_element(By.ID, "live-status")
    return status.text if status.is_displayed() else ""


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_lost_live_connection_shows_a_banner_and_reconnects(
    open_browser, live_server, live_settings, agent, make_sms_conversation, monkeypatch, size
):
    conversation = make_sms_conversation(140, body="Are you open on Monday?")
    browser = open_browser(size)
    sign_in(browser, live_server, agent, path=f"/conversations/{conversation.pk}/")
    wait_live(browser)
    assert banner(browser) == ""
    # The server stops streaming: the open stream ends, and every reconnect gets an
    # empty answer, as when a proxy or the web process drops the connection.
    monkeypatch.setattr(stream, "LIVE_STREAM_SECONDS", -1)
    monkeypatch.setattr(stream._Stream, "opening", lambda self: ": down\n\n")
    wait(browser, lambda d: "Live updates lost" in banner(d))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "lost"
    name = "desktop" if size == DESKTOP else "phone"
    shot(browser, f"live-lost-{name}")
    monkeypatch.undo()
    wait(
        browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "open"
    )
    wait(browser, lambda d: banner(d) == "")


def test_an_ended_session_keeps_the_draft_through_signing_in_again(
    open_browser, live_server, live_settings, agent, make_sms_conversation
):
    conversation = make_sms_conversation(141, body="Can you call me after 5?")
    browser = open_browser()
    sign_in(browser, live_server, agent, path=f"/conversations/{conversation.pk}/")
    wait_live(browser)
    draft = "Of course, we will call you at 5:15."
    browser.find_element(By.ID, "composer-body").send_keys(draft)
    # The session ends on the server (its absolute limit passed) while the agent writes.
    session = SessionStore(session_key=browser.get_cookie("sessionid")["value"])
    session[SIGNED_IN_AT] = 0
    session.save()
    browser.find_element(By.CSS_SELECTOR, "#composer [data-send]").click()
    wait_text(browser, "#notices", "Your session ended, so this was not done.")
    assert browser.find_element(By.ID, "composer-body").get_attribute("value") == draft
    shot(browser, "session-ended-desktop")
    link = browser.find_element(By.CSS_SELECTOR, "#notices a")
    link.click()
    wait(browser, expected_conditions.presence_of_element_located((By.ID, "id_username")))
    browser.find_element(By.ID, "id_username").send_keys(agent.username)
    browser.find_element(By.ID, "id_password").send_keys("correct-horse-battery-staple")
    # The code of the next 30-second step: the first sign-in may have used this
    # step's, and a code is accepted once (django-otp allows one step of drift).
    browser.find_element(By.ID, "id_otp").send_keys(next_totp(agent))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda d: f"/conversations/{conversation.pk}/" in d.current_url)
    wait(
        browser,
        lambda d: d.find_element(By.ID, "composer-body").get_attribute("value") == draft,
    )
    from channels_app.models import Interaction

    assert not Interaction.objects.filter(direction="outbound").exists()


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_send_the_provider_refuses_shows_the_reason(
    open_browser,
    live_server,
    live_settings,
    celery_worker_real,
    agent,
    make_sms_conversation,
    sms_account,
    size,
):
    conversation = make_sms_conversation(142, body="Please text my new number")
    for n in range(24):
        receive_sms(
            account=sms_account,
            phone="+14155550142",
            body=f"Message {n} of a long day: the patient keeps writing about their appointment.",
        )
    live_settings.respond_next(
        status=400, code=21211, message="The 'To' number +14155550142 is not a valid phone number."
    )
    browser = open_browser(size)
    sign_in(browser, live_server, agent, path=f"/conversations/{conversation.pk}/")
    wait_live(browser)
    name = "desktop" if size == DESKTOP else "phone"
    shot(browser, f"long-thread-{name}")
    browser.find_element(By.ID, "composer-body").send_keys("We got it, thank you.")
    browser.find_element(By.CSS_SELECTOR, "#composer [data-send]").click()
    wait_text(browser, "#thread .msg-outbound .delivery", "Failed", seconds=60)
    failed = text_of(browser, "#thread .msg-outbound .delivery")
    assert "not a valid phone number (Twilio 21211)" in failed
    shot(browser, f"failed-send-{name}")


def test_a_failure_reported_before_the_sends_answer_is_not_undone_by_it(
    open_browser,
    live_server,
    live_settings,
    celery_worker_real,
    agent,
    make_sms_conversation,
    monkeypatch,
):
    """The send's answer carries the thread as the server read it; on a busy server
    the worker can meet the provider's refusal, and the live connection report it,
    before that answer arrives. Forced here in that order: the provider answers only
    after the thread was read for the send's answer, and the answer leaves only after
    the page has shown the failure. The stale copy must not bring back "Queued"."""
    import threading

    from workspace import views

    conversation = make_sms_conversation(143, body="Please text my new number")
    thread_read = threading.Event()
    answer_may_leave = threading.Event()
    live_settings.respond_next(
        status=400,
        code=21211,
        message="The 'To' number +14155550143 is not a valid phone number.",
        hold=thread_read,
    )
    composer_response = views._composer_response

    def answer_after_the_failure_was_shown(*args, **kwargs):
        response = composer_response(*args, **kwargs)
        thread_read.set()
        answer_may_leave.wait(WAIT_SECONDS)
        return response

    monkeypatch.setattr(views, "_composer_response", answer_after_the_failure_was_shown)
    browser = open_browser(DESKTOP)
    sign_in(browser, live_server, agent, path=f"/conversations/{conversation.pk}/")
    wait_live(browser)
    browser.find_element(By.ID, "composer-body").send_keys("We got it, thank you.")
    browser.find_element(By.CSS_SELECTOR, "#composer [data-send]").click()

    def sent_message_state(driver):
        # The message itself, not the "Sending…" placeholder the page shows meanwhile.
        return text_of(driver, "#thread .msg-outbound[id^='m-'] .delivery")

    try:
        wait(browser, lambda d: "Failed" in sent_message_state(d))
    finally:
        answer_may_leave.set()
    wait_text(browser, "#notices", "Reply queued for sending")
    wait(browser, lambda d: "Failed" in sent_message_state(d))
    assert "not a valid phone number (Twilio 21211)" in sent_message_state(browser)


def test_a_message_that_arrives_before_the_sends_answer_stays_in_the_thread(
    open_browser, live_server, live_settings, agent, make_sms_conversation, sms_account, monkeypatch
):
    """The same order with the patient writing again: their message is read by the
    page's live connection after the thread was read for the send's answer, and
    shown before that answer arrives. The answer's older thread must not hide it."""
    import threading

    from workspace import views

    conversation = make_sms_conversation(144, body="Is my prescription ready?")
    answer_may_leave = threading.Event()
    composer_response = views._composer_response

    def answer_after_the_patient_wrote(*args, **kwargs):
        response = composer_response(*args, **kwargs)
        receive_sms(account=sms_account, phone="+14155550144", body="Also, can I come at 4 today?")
        answer_may_leave.wait(WAIT_SECONDS)
        return response

    monkeypatch.setattr(views, "_composer_response", answer_after_the_patient_wrote)
    browser = open_browser(DESKTOP)
    sign_in(browser, live_server, agent, path=f"/conversations/{conversation.pk}/")
    wait_live(browser)
    browser.find_element(By.ID, "composer-body").send_keys("Yes, it is ready for pickup.")
    browser.find_element(By.CSS_SELECTOR, "#composer [data-send]").click()
    try:
        wait_text(browser, "#thread", "Also, can I come at 4 today?")
    finally:
        answer_may_leave.set()
    wait_text(browser, "#notices", "Reply queued for sending")
    wait_text(browser, "#thread", "Also, can I come at 4 today?")
    assert "Yes, it is ready for pickup." in text_of(browser, "#thread")


def test_a_change_reported_before_an_actions_answer_is_not_undone_by_it(
    open_browser, live_server, live_settings, agent, teammate, make_sms_conversation, monkeypatch
):
    """An action's answer carries the conversation as the server read it; a
    teammate's change committed after that read, and shown through the live
    connection before the answer arrives, must still show after it."""
    import threading

    from channels_app.models import Conversation
    from channels_app.services import conversation_change
    from workspace import views

    conversation = make_sms_conversation(145, body="Can someone call me back?")
    answer_may_leave = threading.Event()
    context_of = views.conversation_context

    def answer_after_a_teammate_changed_it(request, found, *args, **kwargs):
        context = context_of(request, found, *args, **kwargs)
        if request.method == "POST":
            conversation_change(
                conversation=found,
                actor=teammate,
                actor_is_supervisor=False,
                changes={"priority": Conversation.Priority.HIGH},
            )
            answer_may_leave.wait(WAIT_SECONDS)
        return context

    monkeypatch.setattr(views, "conversation_context", answer_after_a_teammate_changed_it)
    browser = open_browser(DESKTOP)
    sign_in(browser, live_server, agent, path=f"/conversations/{conversation.pk}/")
    wait_live(browser)
    browser.find_element(By.CSS_SELECTOR, "button[value=assign_me]").click()
    try:
        wait_text(browser, "#thread", "High priority")
        # The answer replaces the whole conversation pane: marked, so the test knows
        # when the answer has been swapped in.
        browser.execute_script("document.getElementById('work').dataset.beforeAnswer = 'yes';")
    finally:
        answer_may_leave.set()
    wait(
        browser,
        lambda d: d.execute_script("return !document.querySelector('#work[data-before-answer]');"),
    )
    wait_text(browser, "#thread", "High priority")
    assert "Assigned to you" in text_of(browser, "#thread [data-assignee]")


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_empty_inbox(open_browser, live_server, live_settings, north, size):
    newcomer = make_staff("new.agent", role=roles.AGENT, teams=[north], totp=True)
    browser = open_browser(size)
    sign_in(browser, live_server, newcomer)
    wait_text(browser, "#inbox-list", "Nothing here")
    shot(browser, f"inbox-empty-{'desktop' if size == DESKTOP else 'phone'}")
