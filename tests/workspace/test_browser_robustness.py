"""The workspace when things go wrong, in a real browser: a lost live connection
shows a banner and the page reconnects by itself; a session that ended while the
agent wrote keeps the draft through signing in again; a send the provider refused
shows why. Screenshots at 1280 and 390 px of the empty inbox, a long thread, the
failed send and the lost-connection banner (test-artifacts/workspace_browser/)."""

import threading

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
from workspace import stream, views

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


# A busy server can answer a request after the live connection has reported what
# happened since the answer read the conversation. The tests below force that order
# instead of waiting for a busy machine to produce it.


def hold_answer(monkeypatch, reads_for_the_answer, meanwhile):
    """Late answers on purpose: workspace.views.<reads_for_the_answer> reads what a
    POST's answer shows; then `meanwhile()` changes it, and the answer leaves only
    once the returned event is set."""
    release = threading.Event()
    original = getattr(views, reads_for_the_answer)

    def held(request, *args, **kwargs):
        result = original(request, *args, **kwargs)
        if request.method == "POST":
            meanwhile()
            release.wait(WAIT_SECONDS)
        return result

    monkeypatch.setattr(views, reads_for_the_answer, held)
    return release


def release_once(browser, release, shown):
    """Let the held answer go once the page shows the change (or the wait fails)."""
    try:
        wait(browser, shown)
    finally:
        release.set()


def open_conversation(open_browser, live_server, agent, conversation, size=DESKTOP):
    browser = open_browser(size)
    sign_in(browser, live_server, agent, path=f"/conversations/{conversation.pk}/")
    wait_live(browser)
    return browser


def send_reply(browser, text):
    browser.find_element(By.ID, "composer-body").send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "#composer [data-send]").click()


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
    browser = open_conversation(open_browser, live_server, agent, conversation, size)
    name = "desktop" if size == DESKTOP else "phone"
    shot(browser, f"long-thread-{name}")
    send_reply(browser, "We got it, thank you.")
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
    """The worker meets the provider's refusal after the thread was read for the
    send's answer (the provider answers only then), and the page shows it before
    that answer arrives. The answer's older thread must not bring back "Queued"."""
    conversation = make_sms_conversation(143, body="Please text my new number")
    thread_read = threading.Event()
    live_settings.respond_next(
        status=400,
        code=21211,
        message="The 'To' number +14155550143 is not a valid phone number.",
        hold=thread_read,
    )
    release = hold_answer(monkeypatch, "_composer_response", meanwhile=thread_read.set)
    browser = open_conversation(open_browser, live_server, agent, conversation)
    send_reply(browser, "We got it, thank you.")

    def sent_message_state(driver):
        # The message itself, not the "Sending…" placeholder the page shows meanwhile.
        return text_of(driver, "#thread .msg-outbound[id^='m-'] .delivery")

    release_once(browser, release, lambda d: "Failed" in sent_message_state(d))
    wait_text(browser, "#notices", "Reply queued for sending")
    wait(browser, lambda d: "Failed" in sent_message_state(d))
    assert "not a valid phone number (Twilio 21211)" in sent_message_state(browser)


def test_a_message_that_arrives_before_the_sends_answer_stays_in_the_thread(
    open_browser, live_server, live_settings, agent, make_sms_conversation, sms_account, monkeypatch
):
    """The patient writes again after the thread was read for the send's answer, and
    the page shows it before that answer arrives. The older thread must not hide it."""
    conversation = make_sms_conversation(144, body="Is my prescription ready?")
    later = "Also, can I come at 4 today?"
    release = hold_answer(
        monkeypatch,
        "_composer_response",
        meanwhile=lambda: receive_sms(account=sms_account, phone="+14155550144", body=later),
    )
    browser = open_conversation(open_browser, live_server, agent, conversation)
    send_reply(browser, "Yes, it is ready for pickup.")
    release_once(browser, release, lambda d: later in text_of(d, "#thread"))
    wait_text(browser, "#notices", "Reply queued for sending")
    wait_text(browser, "#thread", later)
    assert "Yes, it is ready for pickup." in text_of(browser, "#thread")


def test_a_change_reported_before_an_actions_answer_is_not_undone_by_it(
    open_browser, live_server, live_settings, agent, teammate, make_sms_conversation, monkeypatch
):
    """A teammate raises the priority after the conversation was read for the
    answer to "Assign to me", and the page shows it before that answer arrives.
    The answer's older pane must not take it back."""
    from channels_app.models import Conversation
    from channels_app.services import conversation_change

    conversation = make_sms_conversation(145, body="Can someone call me back?")
    release = hold_answer(
        monkeypatch,
        "conversation_context",
        meanwhile=lambda: conversation_change(
            conversation=conversation,
            actor=teammate,
            actor_is_supervisor=False,
            changes={"priority": Conversation.Priority.HIGH},
        ),
    )
    browser = open_conversation(open_browser, live_server, agent, conversation)
    browser.find_element(By.CSS_SELECTOR, "button[value=assign_me]").click()

    def shown_and_pane_marked(driver):
        if "High priority" not in text_of(driver, "#thread"):
            return False
        # The answer replaces the whole pane: marked, so the test knows when it has.
        driver.execute_script("document.getElementById('work').dataset.beforeAnswer = 'yes';")
        return True

    release_once(browser, release, shown_and_pane_marked)
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
