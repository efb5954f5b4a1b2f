"""Outbound email through the real pipeline: a real Celery worker on Redis sends a
staff reply through Django's SMTP backend to a local SMTP server (aiosmtpd), and the
patient's answer to it threads back through the signed webhook."""

import secrets
import time
from email.message import EmailMessage

import pytest
from django.test import Client

from channels_app.models import ChannelAccount, Conversation, OutboundMessage
from channels_app.services import conversation_open, outbound_create
from contactcenter import roles
from patients.models import Channel
from tests.channels_app.test_webhooks_email import email_signature, post_raw_email
from tests.factories import TeamFactory, make_staff
from tests.stubs import fixtures as stub_fixtures

# The stub fixtures this module uses; tests/conftest.py makes only the Twilio ones suite-wide.
smtp_server = stub_fixtures.smtp_server
smtp_settings = stub_fixtures.smtp_settings

PRACTICE_ADDRESS = "care@practice.test"
PATIENT_ADDRESS = "pat.doe@example.com"
PATIENT_MESSAGE_ID = "first-1@mail.example.com"
REPLY_DOMAIN = "reply.practice.test"


@pytest.fixture
def email_settings(settings):
    settings.EMAIL_REPLY_DOMAIN = REPLY_DOMAIN
    settings.EMAIL_WEBHOOK_SECRET = f"whsec-{secrets.token_hex(16)}"
    settings.OUTBOUND_RETRY_BASE_SECONDS = 0.2
    return settings


@pytest.fixture
def care_team(transactional_db):
    return TeamFactory(name="Care team")


@pytest.fixture
def email_account(care_team):
    return ChannelAccount.objects.create(
        kind=Channel.EMAIL, name="Care inbox", address=PRACTICE_ADDRESS, team=care_team
    )


@pytest.fixture
def conversation(email_account):
    return conversation_open(
        channel=Channel.EMAIL,
        team=email_account.team,
        account=email_account,
        contact_address=PATIENT_ADDRESS,
        subject="Your results",
    )


@pytest.fixture
def staff(care_team):
    return make_staff("care-agent", role=roles.AGENT, teams=[care_team])


def post_signed(raw, settings):
    signature = email_signature(raw, secret=settings.EMAIL_WEBHOOK_SECRET)
    return post_raw_email(Client(), raw, signature=signature)


def patient_email(body, *, message_id, subject="Appointment", headers=None):
    message = EmailMessage()
    message["From"] = f"Pat Doe <{PATIENT_ADDRESS}>"
    message["To"] = PRACTICE_ADDRESS
    message["Subject"] = subject
    message["Message-ID"] = f"<{message_id}>"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes()


def wait_for_state(outbound, states, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outbound.refresh_from_db()
        if outbound.state in states:
            return outbound
        time.sleep(0.05)
    raise AssertionError(f"delivery stayed {outbound.state!r}, expected one of {states}")


def test_reply_is_sent_by_smtp_threaded_to_the_patients_message_and_the_answer_threads_back(
    email_settings, smtp_settings, celery_worker_real, email_account, staff
):
    inbound = patient_email("Can I come on Friday?", message_id=PATIENT_MESSAGE_ID)
    assert post_signed(inbound, email_settings).status_code == 201
    conversation = Conversation.objects.get()

    reply = outbound_create(
        conversation=conversation, body="Yes, Friday at 10:00 works.", author=staff
    )
    outbound = wait_for_state(reply.outbound, {OutboundMessage.State.SENT})

    [mail] = smtp_settings.messages
    sent = mail.message()
    assert mail.rcpt_tos == [PATIENT_ADDRESS]
    assert mail.mail_from == PRACTICE_ADDRESS
    assert sent["To"] == PATIENT_ADDRESS
    assert sent["Message-ID"] == f"<{outbound.provider_id}>"
    assert outbound.provider_id.endswith(f"@{REPLY_DOMAIN}")
    assert sent["In-Reply-To"] == f"<{PATIENT_MESSAGE_ID}>"
    assert f"<{PATIENT_MESSAGE_ID}>" in sent["References"].split()
    assert sent["Reply-To"] == f"reply+{conversation.reply_token}@{REPLY_DOMAIN}"
    assert sent["Subject"] == "Re: Appointment"
    assert sent.get_content().strip() == "Yes, Friday at 10:00 works."
    assert reply.email.message_id == outbound.provider_id
    assert outbound.attempts == 1

    answer = patient_email(
        "Great, see you then.",
        message_id="answer-2@mail.example.com",
        subject="Re: Appointment",
        headers={
            "In-Reply-To": sent["Message-ID"],
            "References": f"{sent['References']} {sent['Message-ID']}",
        },
    )
    assert post_signed(answer, email_settings).status_code == 201

    conversation = Conversation.objects.get()
    assert [i.direction for i in conversation.interactions.order_by("occurred_at")] == [
        "inbound",
        "outbound",
        "inbound",
    ]


def test_smtp_refusing_the_recipient_fails_the_delivery_without_retry(
    email_settings, smtp_settings, celery_worker_real, conversation, staff
):
    smtp_settings.refuse(PATIENT_ADDRESS)

    outbound = outbound_create(
        conversation=conversation, body="Your results are ready.", author=staff
    ).outbound
    outbound = wait_for_state(outbound, {OutboundMessage.State.FAILED})
    time.sleep(0.5)

    outbound.refresh_from_db()
    assert outbound.state == OutboundMessage.State.FAILED
    assert outbound.attempts == 1
    assert outbound.last_error == "smtp recipient refused [550]"
    assert smtp_settings.refusals == [PATIENT_ADDRESS]
    assert smtp_settings.messages == []


def test_a_temporary_recipient_refusal_is_retried_and_the_reply_sent_once(
    email_settings, smtp_settings, celery_worker_real, conversation, staff
):
    smtp_settings.refuse(PATIENT_ADDRESS, reply="450 4.7.1 Greylisted, try again later", times=1)

    outbound = outbound_create(
        conversation=conversation, body="Your results are ready.", author=staff
    ).outbound
    outbound = wait_for_state(outbound, {OutboundMessage.State.SENT, OutboundMessage.State.FAILED})

    assert outbound.state == OutboundMessage.State.SENT
    assert outbound.attempts == 2
    assert len(smtp_settings.messages) == 1
