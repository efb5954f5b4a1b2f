"""Canary values through every kind of write and every webhook, across real
processes: gunicorn (web), a Celery worker and Celery beat, each logging at DEBUG
through the production formatter, on the test database and a Redis of this test.
Then a pg_dump of the database and the three processes' logs are searched for the
canaries: there must be no hit. A scan that cannot find a value stored in plaintext
proves nothing, so the dump is first shown to contain a known plaintext (a staff
user name) and the logs a known line."""

import subprocess
import time
import uuid
from email.message import EmailMessage

import pytest
import requests
from django.conf import settings

from channels_app.models import ChannelAccount, Interaction, OutboundMessage
from contactcenter import roles
from patients.models import Channel
from tests.channels_app import isolated
from tests.channels_app.conftest import sms_params, twilio_signed
from tests.channels_app.test_webhooks_email import email_signature
from tests.factories import DEFAULT_PASSWORD, TeamFactory, make_api_key, make_staff
from tests.processes import WebServer, dump_test_database
from tests.stubs import fixtures as stub_fixtures

private_redis = isolated.private_redis
private_broker = isolated.private_broker
smtp_server = stub_fixtures.smtp_server

pytestmark = pytest.mark.django_db(transaction=True)

CELERY = isolated.CELERY
TAG = uuid.uuid4().hex[:6]
GIVEN, FAMILY = f"Canarygiven{TAG}", f"Canaryfamily{TAG}"
BODY = f"canary-body-{TAG}"
SUBJECT = f"canary-subject-{TAG}"
EMAIL = f"canary.{TAG}@example.com"
PHONE_DIGITS = "4155550" + str(100 + int(TAG, 16) % 900)
PHONE = "+1" + PHONE_DIGITS
MRN = f"MRN-CANARY-{TAG}"
STREET = f"{TAG} Canary Street"
PROVIDER = f"Dr. Canaryprovider{TAG}"
LOCATION = f"Canary suite {TAG}"
REASON = f"canary-reason-{TAG}"
RECIPIENT = f"Canaryrecipient{TAG}"
PRACTICE_NUMBER = "+15005550006"
PRACTICE_EMAIL = "care@practice.test"
NEEDLES = [
    GIVEN,
    FAMILY,
    BODY,
    SUBJECT,
    EMAIL,
    f"canary.{TAG}",
    PHONE_DIGITS,
    PHONE_DIGITS[3:],
    MRN,
    STREET,
    PROVIDER,
    LOCATION,
    REASON,
    RECIPIENT,
]


def _process_env(redis_url, twilio_stub, smtp):
    return isolated.worker_environment(
        broker_url=redis_url,
        twilio_stub=twilio_stub,
        DJANGO_SETTINGS_MODULE="tests.canary_settings",
        EMAIL_URL=f"smtp://{smtp.host}:{smtp.port}",
        EMAIL_WEBHOOK_SECRET=settings.EMAIL_WEBHOOK_SECRET,
    )


@pytest.fixture
def processes(private_broker, twilio_stub_settings, smtp_server, tmp_path, shipped_defaults):
    """gunicorn, a worker and beat; yields their log paths and the web URL."""
    env = _process_env(private_broker.url, twilio_stub_settings, smtp_server)
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker", "beat")}
    web = WebServer(env=env, log_path=logs["web"]).start()
    worker = isolated.WorkerProcess(name="canary", env=env, log_path=logs["worker"]).start()
    with open(logs["beat"], "ab") as beat_log:
        beat = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "config",
                "beat",
                "--schedule",
                str(tmp_path / "beat-schedule"),
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=beat_log,
            stderr=subprocess.STDOUT,
        )
    try:
        worker.wait_ready(timeout=60)
        yield web.url, logs
    finally:
        for process in (beat, worker.process, web.process):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (beat, worker.process, web.process):
            if process is not None:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def _api(base_url, headers):
    session = requests.Session()
    session.headers.update(headers)

    def call(method, path, payload=None, expected=(200, 201)):
        response = session.request(method, base_url + path, json=payload, timeout=30)
        assert response.status_code in expected, (
            method,
            path,
            response.status_code,
            response.text[:300],
        )
        return response.json() if response.content else None

    return call


def _canary_email():
    message = EmailMessage()
    message["From"] = f"{GIVEN} {FAMILY} <{EMAIL}>"
    message["To"] = PRACTICE_EMAIL
    message["Subject"] = SUBJECT
    message["Message-ID"] = f"<canary-{TAG}@mail.example.com>"
    message.set_content(f"{BODY}: this is {GIVEN} {FAMILY}, call me on {PHONE}.")
    return message.as_bytes()


def _drive_every_write(base_url):
    team = TeamFactory(name=f"Canary team {TAG}")
    ChannelAccount.objects.create(kind=Channel.SMS, name="Main", address=PRACTICE_NUMBER, team=team)
    ChannelAccount.objects.create(
        kind=Channel.EMAIL, name="Care", address=PRACTICE_EMAIL, team=team
    )
    make_staff("canary-supervisor", role=roles.SUPERVISOR, teams=[team])
    make_staff("canary-compliance", role=roles.COMPLIANCE)
    portal_key, _ = make_api_key(scopes=["portal:write"])
    scheduler_key, _ = make_api_key(
        scopes=["patients:write", "appointments:write", "disclosures:write"], team=team
    )

    login = requests.post(
        base_url + "/api/v1/auth/token/",
        json={"username": "canary-supervisor", "password": DEFAULT_PASSWORD},
        timeout=30,
    )
    assert login.status_code in (200, 201), login.text
    staff = _api(base_url, {"Authorization": f"Bearer {login.json()['token']}"})
    scheduler = _api(base_url, {"Authorization": f"Bearer {scheduler_key}"})
    portal = _api(base_url, {"Authorization": f"Bearer {portal_key}"})

    patient = staff(
        "POST",
        "/api/v1/patients/",
        {
            "mrn": MRN,
            "given_name": GIVEN,
            "family_name": FAMILY,
            "birth_date": "1970-01-02",
            "time_zone": "America/New_York",
            "team": team.pk,
            "address": {"line1": STREET, "city": "Springfield"},
            "phones": [{"value": PHONE, "preferred": True}],
            "emails": [{"value": EMAIL}],
        },
    )
    staff("PATCH", f"/api/v1/patients/{patient['id']}/", {"given_name": GIVEN})
    staff(
        "POST",
        f"/api/v1/patients/{patient['id']}/appointments/",
        {"starts_at": "2031-05-06T14:00:00Z", "provider_name": PROVIDER, "location": LOCATION},
    )
    scheduler(
        "PUT",
        f"/api/v1/appointments/by-external-id/ehr/{TAG}/",
        {
            "patient_id": patient["id"],
            "starts_at": "2031-05-07T14:00:00Z",
            "provider_name": PROVIDER,
            "location": LOCATION,
        },
    )
    scheduler(
        "POST",
        f"/api/v1/patients/{patient['id']}/disclosures/",
        {
            "disclosed_at": "2026-01-02T10:00:00Z",
            "recipient_name": RECIPIENT,
            "recipient_address": STREET,
            "description": BODY,
            "purpose": REASON,
        },
    )
    staff("POST", f"/api/v1/patients/{patient['id']}/break-glass/", {"reason": REASON}, (201, 403))

    # Webhooks: an SMS, an email, a portal message, all in canary words.
    params = sms_params(f"{BODY} from {GIVEN}", sid="SM" + uuid.uuid4().hex, sender=PHONE)
    sms = requests.post(
        base_url + "/webhooks/twilio/sms/",
        data=params,
        headers={
            "X-Twilio-Signature": twilio_signed("/webhooks/twilio/sms/", params)[
                "HTTP_X_TWILIO_SIGNATURE"
            ]
        },
        timeout=30,
    )
    assert sms.status_code == 200, sms.text
    raw = _canary_email()
    email = requests.post(
        base_url + "/webhooks/email/inbound/",
        data=raw,
        headers={
            "Content-Type": "message/rfc822",
            "X-Contactcenter-Signature": email_signature(raw, secret=settings.EMAIL_WEBHOOK_SECRET),
        },
        timeout=30,
    )
    assert email.status_code == 201, email.text
    portal(
        "POST",
        "/api/v1/portal/messages/",
        {"patient": patient["id"], "body": BODY, "subject": SUBJECT, "message_id": f"pm-{TAG}"},
    )

    # Staff work the conversations: a reply by SMS and by email, a note, an escalation.
    conversations = staff("GET", "/api/v1/conversations/?page_size=50")["results"]
    assert len(conversations) >= 3
    for conversation in conversations:
        path = f"/api/v1/conversations/{conversation['id']}"
        staff("POST", f"{path}/messages/", {"body": f"{BODY} reply to {GIVEN}"})
        staff("POST", f"{path}/messages/", {"body": f"{BODY} note", "internal": True})
        staff("PATCH", f"{path}/", {"labels": ["follow-up"], "priority": "high"})
    staff("POST", f"/api/v1/conversations/{conversations[0]['id']}/escalate/", {"reason": REASON})
    return patient


def _wait_for_the_worker():
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pending = (
            Interaction.objects.filter(
                direction=Interaction.Direction.INBOUND, processed_at__isnull=True
            ).exists()
            or OutboundMessage.objects.filter(
                state__in=[OutboundMessage.State.QUEUED, OutboundMessage.State.SENDING]
            ).exists()
        )
        if not pending:
            return
        time.sleep(0.2)
    raise AssertionError("the worker did not process and send everything within 90 s")


@pytest.mark.own_process
def test_canaries_appear_in_no_database_dump_and_no_log_of_web_worker_or_beat(
    processes, twilio_stub_settings, smtp_server
):
    base_url, logs = processes

    _drive_every_write(base_url)
    _wait_for_the_worker()
    # Long enough for beat to send the audit sealer (every 5 s) at least once.
    time.sleep(6)

    assert twilio_stub_settings.created_messages, "no SMS reached the provider: nothing was sent"
    assert smtp_server.messages, "no email reached the mail server: nothing was sent"
    dump = dump_test_database("--data-only")
    assert "canary-supervisor" in dump, (
        "the dump holds no plaintext at all, so its scan proves nothing"
    )
    texts = {name: path.read_text(errors="replace") for name, path in logs.items()}
    assert '"event": "request"' in texts["web"] and "inbound_process" in texts["worker"]
    assert "seal_audit_chain" in texts["beat"]

    hits = {
        where: sorted({needle for needle in NEEDLES if needle.lower() in text.lower()})
        for where, text in {"pg_dump": dump, **texts}.items()
    }
    assert hits == {"pg_dump": [], "web": [], "worker": [], "beat": []}, {
        where: [
            line[:300]
            for line in (dump if where == "pg_dump" else texts[where]).splitlines()
            if any(needle.lower() in line.lower() for needle in found)
        ][:5]
        for where, found in hits.items()
        if found
    }
