"""The inbound email webhook: a raw RFC 5322 message, HMAC-signed, stored once,
threaded into its conversation, its attachments kept encrypted."""

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from channels_app.email_ingest import ingest_raw_email
from channels_app.models import (
    Attachment,
    ChannelAccount,
    Conversation,
    EmailDetail,
    Interaction,
    RawEvent,
)
from compliance.models import AuditEvent
from patients.models import Channel
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

INBOUND = "/webhooks/email/inbound/"
PRACTICE_ADDRESS = "care@practice.test"
REPLY_DOMAIN = "reply.practice.test"
CORPUS = Path(__file__).parent / "email_corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
TWENTY_MB = 20 * 1024 * 1024


def email_signature(body, *, secret, timestamp=None):
    """The X-Contactcenter-Signature value: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def post_raw_email(client, raw, *, signature):
    return client.post(
        INBOUND, data=raw, content_type="message/rfc822", HTTP_X_CONTACTCENTER_SIGNATURE=signature
    )


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    # A fresh secret per test: the view accepts each signature once (a unique row;
    # parallel test databases are separate, but one test may post the same message
    # twice in a second), so two posts must not produce the same signature.
    settings.EMAIL_WEBHOOK_SECRET = f"whsec-{secrets.token_hex(16)}"
    return settings.EMAIL_WEBHOOK_SECRET


@pytest.fixture(autouse=True)
def reply_domain(settings):
    settings.EMAIL_REPLY_DOMAIN = REPLY_DOMAIN
    return REPLY_DOMAIN


@pytest.fixture
def email_account(db):
    return ChannelAccount.objects.create(
        kind=Channel.EMAIL,
        name="Care inbox",
        address=PRACTICE_ADDRESS,
        team=TeamFactory(name="Care team"),
    )


@pytest.fixture
def post_email(webhook_secret):
    """Post a raw message signed like the provider does. Each delivery is signed
    anew, a second earlier than the one before, as a provider re-signs a retry."""
    client = Client(raise_request_exception=False)
    timestamps = itertools.count(int(time.time()), -1)

    def post(raw):
        timestamp = next(timestamps)
        signature = email_signature(raw, secret=webhook_secret, timestamp=timestamp)
        return post_raw_email(client, raw, signature=signature)

    return post


def patient_email(
    body="Can I move my appointment to Friday?",
    *,
    message_id="<first-1@mail.example.com>",
    sender="Pat Doe <pat.doe@example.com>",
    to=PRACTICE_ADDRESS,
    subject="Appointment",
    headers=None,
):
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Mon, 3 Mar 2025 09:14:11 -0500"
    if message_id:
        message["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message


def assert_denied(response, reason):
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "invalid_signature"
    assert error["message"]
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.outcome, event.http_status) == ("denied", "denied", 403)
    assert event.details == {"reason": reason, "webhook": "email_inbound"}


# Signature -------------------------------------------------------------------------


def test_signed_email_is_stored_with_its_raw_event_and_answered_201(email_account, post_email):
    raw = (CORPUS / "01_plain_text.eml").read_bytes()

    response = post_email(raw)

    assert response.status_code == 201
    interaction = Interaction.objects.get()
    assert interaction.channel == Channel.EMAIL
    assert interaction.direction == Interaction.Direction.INBOUND
    assert "Could we move it to\nnext week" in interaction.body
    assert interaction.conversation.account_id == email_account.pk
    assert interaction.conversation.contact_address == "maria.gonzalez@example.com"
    assert interaction.email.message_id == EXPECTED["01_plain_text.eml"]["message_id"]
    event = RawEvent.objects.get(interaction=interaction)
    assert event.source == "email_webhook"
    assert base64.b64decode(event.payload["rfc822_base64"]) == raw


def test_the_same_message_id_delivered_again_answers_200_and_stores_nothing_new(
    email_account, post_email
):
    raw = patient_email().as_bytes()

    responses = [post_email(raw) for _ in range(3)]

    assert [r.status_code for r in responses] == [201, 200, 200]
    assert Interaction.objects.count() == 1
    assert RawEvent.objects.count() == 1
    assert EmailDetail.objects.count() == 1


@pytest.mark.parametrize("tamper", ["wrong_secret", "changed_body", "missing", "malformed"])
def test_bad_signature_is_403_in_the_error_shape_with_an_audit_row(
    email_account, webhook_secret, tamper
):
    raw = patient_email().as_bytes()
    signature = email_signature(raw, secret=webhook_secret)
    if tamper == "wrong_secret":
        signature = email_signature(raw, secret="not-the-secret")
    elif tamper == "changed_body":
        raw += b"\nP.S. added after signing"
    elif tamper == "missing":
        signature = ""
    else:
        signature = signature.replace("t=", "time=")

    response = post_raw_email(Client(), raw, signature=signature)

    assert_denied(response, "bad_signature")
    assert not Interaction.objects.exists()
    assert not RawEvent.objects.exists()


@pytest.mark.parametrize("skew", [-301, -3600, 301])
def test_timestamp_more_than_five_minutes_off_is_refused(email_account, webhook_secret, skew):
    raw = patient_email().as_bytes()
    signature = email_signature(raw, secret=webhook_secret, timestamp=int(time.time()) + skew)

    response = post_raw_email(Client(), raw, signature=signature)

    assert_denied(response, "stale_timestamp")
    assert not Interaction.objects.exists()


def test_a_replay_of_the_same_signed_request_is_refused(email_account, webhook_secret):
    raw = patient_email().as_bytes()
    signature = email_signature(raw, secret=webhook_secret)

    first = post_raw_email(Client(), raw, signature=signature)
    replayed = post_raw_email(Client(), raw, signature=signature)

    assert first.status_code == 201
    assert_denied(replayed, "replayed")
    assert Interaction.objects.count() == 1


# The corpus and what cannot be parsed ------------------------------------------------


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_every_corpus_message_is_stored_through_the_webhook(email_account, post_email, filename):
    raw = (CORPUS / filename).read_bytes()
    expected = EXPECTED[filename]

    response = post_email(raw)

    assert response.status_code == 201, response.content
    interaction = Interaction.objects.get()
    assert expected["new_text_contains"] in interaction.body
    assert interaction.conversation.contact_address == expected["from_address"]
    assert interaction.attachments.count() == len(expected["attachments"])
    assert RawEvent.objects.get().interaction_id == interaction.pk


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b"\x00\x01\x02 not an email \xff", "no header fields"),
        (b"Subject: hello\r\n\r\nNo sender here.\r\n", "no sender"),
    ],
    ids=["empty", "binary", "no_sender"],
)
def test_unparseable_input_is_kept_as_a_raw_event_and_answered_422_with_the_reason(
    email_account, post_email, raw, reason
):
    response = post_email(raw)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unparseable_email"
    assert reason in error["message"]
    event = RawEvent.objects.get()
    assert str(event.pk) == error["details"]["raw_event_id"]
    assert event.source == "email_webhook_unparseable"
    assert base64.b64decode(event.payload["rfc822_base64"]) == raw
    assert not Interaction.objects.exists()


def test_email_to_no_configured_mailbox_is_kept_unrouted_with_the_reason(post_email):
    response = post_email(patient_email().as_bytes())

    assert response.status_code == 422
    assert "No mailbox" in response.json()["error"]["message"]
    assert RawEvent.objects.get().source == "email_webhook_unrouted"


# Threading -----------------------------------------------------------------------------


def test_a_reply_naming_a_stored_message_in_in_reply_to_joins_its_conversation(
    email_account, post_email
):
    post_email(patient_email(message_id="<first-1@mail.example.com>").as_bytes())
    reply = patient_email(
        "Actually Thursday works too.",
        message_id="<second-2@mail.example.com>",
        subject="Re: Appointment",
        headers={"In-Reply-To": "<first-1@mail.example.com>"},
    )

    response = post_email(reply.as_bytes())

    assert response.status_code == 201
    conversation = Conversation.objects.get()
    assert conversation.interactions.count() == 2


def test_a_new_message_without_threading_headers_opens_its_own_conversation(
    email_account, post_email
):
    post_email(patient_email(message_id="<first-1@mail.example.com>").as_bytes())

    post_email(patient_email(message_id="<other-2@mail.example.com>").as_bytes())

    assert Conversation.objects.count() == 2


def test_a_reply_with_only_the_reply_address_joins_the_conversation_of_its_token(
    email_account, post_email
):
    post_email(patient_email().as_bytes())
    conversation = Conversation.objects.get()
    reply = patient_email(
        "Replying from my phone.",
        message_id="<from-phone-3@mail.example.com>",
        sender="Pat Doe <pat.doe.mobile@example.net>",
        to=f"Care team <reply+{conversation.reply_token}@{REPLY_DOMAIN}>",
        subject="Different subject entirely",
    )

    response = post_email(reply.as_bytes())

    assert response.status_code == 201
    assert Conversation.objects.get().pk == conversation.pk
    assert conversation.interactions.count() == 2


def test_a_reply_address_with_an_unknown_token_opens_a_new_conversation(email_account, post_email):
    post_email(patient_email().as_bytes())
    reply = patient_email(
        message_id="<guess-4@mail.example.com>",
        to=f"reply+NotARealToken123@{REPLY_DOMAIN}, {PRACTICE_ADDRESS}",
    )

    post_email(reply.as_bytes())

    assert Conversation.objects.count() == 2


def test_a_reply_to_a_resolved_conversation_reopens_it(email_account, post_email):
    post_email(patient_email(message_id="<first-1@mail.example.com>").as_bytes())
    Conversation.objects.update(status=Conversation.Status.RESOLVED)
    reply = patient_email(
        "One more question.",
        message_id="<after-5@mail.example.com>",
        headers={
            "In-Reply-To": "<first-1@mail.example.com>",
            "References": "<first-1@mail.example.com>",
        },
    )

    post_email(reply.as_bytes())

    conversation = Conversation.objects.get()
    assert conversation.status == Conversation.Status.OPEN
    assert conversation.resolved_at is None
    # Both messages, and the reopening as a timeline event (channels_app's service).
    assert conversation.interactions.exclude(kind="event").count() == 2
    events = conversation.interactions.filter(kind="event")
    assert list(events.values_list("metadata__change", flat=True)) == ["reopened"]


# Attachments ---------------------------------------------------------------------------


def message_with_attachment(content, *, filename="scan.pdf"):
    message = patient_email("The scan is attached.", message_id="<scan-6@mail.example.com>")
    message.add_attachment(content, maintype="application", subtype="pdf", filename=filename)
    return message.as_bytes()


def test_a_20_mb_attachment_posted_to_the_webhook_is_kept_as_rejected_without_content(
    email_account, post_email
):
    response = post_email(message_with_attachment(b"%PDF-1.4\n" + b"\0" * TWENTY_MB))

    assert response.status_code == 201
    attachment = Attachment.objects.get()
    assert attachment.content is None
    assert "over the" in attachment.rejected_reason


def test_an_attachment_over_the_cap_is_kept_as_rejected_without_content(email_account):
    raw = message_with_attachment(b"%PDF-1.4\n" + b"\0" * TWENTY_MB)

    outcome = ingest_raw_email(raw=raw, source="imap")

    assert outcome.created
    attachment = Attachment.objects.get()
    assert attachment.content is None
    assert attachment.size == TWENTY_MB + len(b"%PDF-1.4\n")
    assert attachment.rejected_reason.endswith("-byte attachment limit")
    assert attachment.filename == "scan.pdf"
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM channels_app_attachment")
        assert cursor.fetchone() == (None,)


def test_attachment_content_and_name_are_stored_encrypted(email_account, post_email):
    raw = (CORPUS / "09_pdf_attachment.eml").read_bytes()

    assert post_email(raw).status_code == 201

    attachment = Attachment.objects.get()
    content = base64.b64decode(attachment.content)
    assert content.startswith(b"%PDF-1.4")
    assert attachment.filename == "Lab results March 2025.pdf"
    with connection.cursor() as cursor:
        cursor.execute("SELECT content, filename FROM channels_app_attachment")
        stored_content, stored_filename = cursor.fetchone()
    for plaintext in ("%PDF", base64.b64encode(content).decode()[:40]):
        assert plaintext not in stored_content
    assert "Lab results" not in stored_filename
