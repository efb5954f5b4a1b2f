"""No plaintext PHI outside encrypted columns. Canary strings (a message text, a
patient's name, phone number and email address) go in through the SMS webhook, the
email webhook and the portal API and out through staff replies by SMS and email, the
whole pipeline running on a real Celery worker. Afterwards no database column, log
record or published task may contain any of them."""

import json
import secrets
import threading
import time
from email.message import EmailMessage

import pytest
import structlog
from celery.signals import before_task_publish
from django.db import connection
from django.test import Client

from channels_app.models import ChannelAccount, Conversation, Interaction, OutboundMessage
from channels_app.services import outbound_create
from contactcenter import roles
from contactcenter.logging import FOREIGN_PRE_CHAIN, FORMATTER_PROCESSORS
from patients.models import Channel
from tests.channels_app.conftest import PRACTICE_NUMBER, sms_params, twilio_signed
from tests.channels_app.test_webhooks_email import email_signature, post_raw_email
from tests.factories import TeamFactory, bearer, make_api_key, make_patient, make_staff
from tests.stubs import fixtures as stub_fixtures

# The stub fixtures this module uses; tests/conftest.py makes only the Twilio ones suite-wide.
smtp_server = stub_fixtures.smtp_server
smtp_settings = stub_fixtures.smtp_settings

CANARY_BODY = "CANARY-BODY-7f3a"
CANARY_GIVEN_NAME = "Canarina"
CANARY_FAMILY_NAME = "Vogelsang-7f3a"
CANARY_PHONE = "+14155550199"
CANARY_EMAIL = "canary.patient.7f3a@example.com"
# Every form a canary could take in storage: the phone number also as a national
# number and with its usual punctuation.
NEEDLES = [
    CANARY_BODY,
    CANARY_GIVEN_NAME,
    CANARY_FAMILY_NAME,
    "4155550199",
    "555-0199",
    "555 0199",
    "canary.patient.7f3a",
]
PRACTICE_ADDRESS = "care@practice.test"


@pytest.fixture
def published_tasks():
    """The body and headers of every task published while the test runs."""
    published = []
    lock = threading.Lock()

    def record(sender=None, body=None, headers=None, properties=None, **kwargs):
        with lock:
            published.append({"task": sender, "body": body, "headers": headers})

    before_task_publish.connect(record, weak=False)
    yield published
    before_task_publish.disconnect(record)


def wait_until(condition, what, timeout=45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def columns_containing(needle):
    """(table, column) of every text-like column in the database holding `needle`,
    compared case-insensitively on the column's text form."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.table_name, c.column_name
            FROM information_schema.columns c
            JOIN information_schema.tables t
              ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE c.table_schema = current_schema()
              AND t.table_type = 'BASE TABLE'
              AND c.data_type IN
                ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY')
            ORDER BY 1, 2
            """
        )
        columns = cursor.fetchall()
        quote = connection.ops.quote_name
        found = []
        for table, column in columns:
            cursor.execute(
                f"SELECT 1 FROM {quote(table)} WHERE {quote(column)}::text ILIKE %s LIMIT 1",  # noqa: S608 - quoted identifiers from the catalogue
                [f"%{needle}%"],
            )
            if cursor.fetchone():
                found.append((table, column))
    return found


def log_texts(records):
    """Each record as the production JSON formatter writes it, and its bare message."""
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=FORMATTER_PROCESSORS, foreign_pre_chain=FOREIGN_PRE_CHAIN
    )
    return [f"{record.getMessage()}\n{formatter.format(record)}" for record in records]


def canary_email():
    message = EmailMessage()
    message["From"] = f"{CANARY_GIVEN_NAME} {CANARY_FAMILY_NAME} <{CANARY_EMAIL}>"
    message["To"] = PRACTICE_ADDRESS
    message["Subject"] = f"{CANARY_BODY} about my results"
    message["Message-ID"] = "<canary-email-1@mail.example.com>"
    message.set_content(
        f"{CANARY_BODY}: this is {CANARY_GIVEN_NAME} {CANARY_FAMILY_NAME}, "
        f"call me at (415) 555-0199."
    )
    message.add_attachment(
        f"%PDF-1.4 {CANARY_BODY} {CANARY_FAMILY_NAME}".encode(),
        maintype="application",
        subtype="pdf",
        filename=f"{CANARY_FAMILY_NAME} results.pdf",
    )
    return message.as_bytes()


def test_canaries_sent_through_every_channel_appear_in_no_table_log_or_task(
    twilio_stub_settings, smtp_settings, settings, celery_worker_real, published_tasks, caplog
):
    caplog.set_level("DEBUG")
    settings.EMAIL_WEBHOOK_SECRET = f"whsec-{secrets.token_hex(16)}"
    team = TeamFactory(name="Canary team")
    ChannelAccount.objects.create(
        kind=Channel.SMS, name="Main line", address=PRACTICE_NUMBER, team=team
    )
    ChannelAccount.objects.create(
        kind=Channel.EMAIL, name="Care inbox", address=PRACTICE_ADDRESS, team=team
    )
    patient = make_patient(
        team=team,
        given_name=CANARY_GIVEN_NAME,
        family_name=CANARY_FAMILY_NAME,
        phones=[CANARY_PHONE],
        emails=[CANARY_EMAIL],
    )
    staff = make_staff("canary-agent", role=roles.AGENT, teams=[team])
    client = Client(raise_request_exception=False)

    params = sms_params(
        f"{CANARY_BODY} from {CANARY_GIVEN_NAME} {CANARY_FAMILY_NAME}", sender=CANARY_PHONE
    )
    sms = client.post(
        "/webhooks/twilio/sms/", params, **twilio_signed("/webhooks/twilio/sms/", params)
    )
    raw_email = canary_email()
    email = post_raw_email(
        client,
        raw_email,
        signature=email_signature(raw_email, secret=settings.EMAIL_WEBHOOK_SECRET),
    )
    key, _ = make_api_key(scopes=["portal:write"])
    portal = client.post(
        "/api/v1/portal/messages/",
        {
            "patient": str(patient.pk),
            "subject": f"{CANARY_BODY} portal subject",
            "body": f"{CANARY_BODY}: {CANARY_GIVEN_NAME} {CANARY_FAMILY_NAME}, {CANARY_PHONE}",
            "thread_id": "portal-thread-1",
            "message_id": "portal-message-1",
        },
        content_type="application/json",
        **bearer(key),
    )
    assert (sms.status_code, email.status_code, portal.status_code) == (200, 201, 201)

    replies = [
        outbound_create(
            conversation=Conversation.objects.get(channel=channel),
            body=f"Hello {CANARY_GIVEN_NAME} {CANARY_FAMILY_NAME}, re {CANARY_BODY}",
            author=staff,
        )
        for channel in (Channel.SMS, Channel.EMAIL)
    ]
    wait_until(
        lambda: (
            not OutboundMessage.objects.filter(pk__in=[r.outbound.pk for r in replies])
            .exclude(state=OutboundMessage.State.SENT)
            .exists()
        ),
        "both replies to be sent",
    )
    wait_until(
        lambda: (
            not Interaction.objects.filter(
                direction=Interaction.Direction.INBOUND, processed_at__isnull=True
            ).exists()
        ),
        "the worker to process the three inbound messages",
    )
    assert Interaction.objects.filter(patient=patient).count() == 5
    assert len(twilio_stub_settings.requests) == 1
    assert len(smtp_settings.messages) == 1

    assert ("auth_user", "username") in columns_containing("canary-agent"), (
        "the scan does not find a value stored in plaintext, so it proves nothing"
    )
    for needle in NEEDLES:
        assert columns_containing(needle) == [], f"{needle!r} stored in plaintext"

    logged = log_texts(caplog.get_records("setup") + caplog.records)
    assert logged, "no log record was captured, so the log check proves nothing"
    for needle in NEEDLES:
        assert [text for text in logged if needle.lower() in text.lower()] == []

    assert {p["task"] for p in published_tasks} >= {
        "channels_app.tasks.inbound_drain",
        "channels_app.tasks.outbound_send",
    }
    for publish in published_tasks:
        payload = json.dumps([publish["body"], publish["headers"]], default=repr).lower()
        for needle in NEEDLES:
            assert needle.lower() not in payload, f"{needle!r} in a {publish['task']} task"
