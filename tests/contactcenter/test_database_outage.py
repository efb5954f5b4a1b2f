"""PostgreSQL stopped under traffic. The web server is gunicorn (the production
entry point) on a PostgreSQL cluster this test starts for itself (never the shared
one), holding a copy of the test database. While the database is down every path
answers 503 `service_unavailable` with Retry-After in the one JSON shape, never a
500; nothing answered 2xx is lost; once the database is back, requests succeed."""

import json
import os
import threading
import time
import uuid

import pytest
import requests
from django.conf import settings

from channels_app.models import ChannelAccount
from contactcenter import roles
from patients.models import Channel
from tests.channels_app.conftest import PRACTICE_NUMBER, sms_params, twilio_signed
from tests.channels_app.test_webhooks_email import email_signature, patient_email
from tests.factories import TeamFactory, make_api_key, make_patient, make_staff, token_for
from tests.processes import PrivatePostgres, WebServer

pytestmark = pytest.mark.django_db(transaction=True)

SMS = "/webhooks/twilio/sms/"


@pytest.fixture
def private_postgres():
    server = PrivatePostgres().init().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def practice(db):
    team = TeamFactory(name="Front desk")
    ChannelAccount.objects.create(kind=Channel.SMS, name="Main", address=PRACTICE_NUMBER, team=team)
    ChannelAccount.objects.create(
        kind=Channel.EMAIL, name="Care", address="care@practice.test", team=team
    )
    agent = make_staff("outage-agent", role=roles.AGENT, teams=[team])
    portal_key, _ = make_api_key(scopes=["portal:write"])
    return {
        "patient": make_patient(team=team),
        "staff_auth": token_for(agent)["HTTP_AUTHORIZATION"],
        "portal_auth": f"Bearer {portal_key}",
    }


@pytest.fixture
def web_on_private_database(practice, private_postgres, tmp_path):
    database = "contactcenter_outage"
    private_postgres.restore_from_test_database(database)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": private_postgres.url(database),
        # Tasks it queues go to a prefix no worker reads.
        "CC_TEST_PREFIX": f"cc-outage-{uuid.uuid4().hex[:8]}-",
        "FIELD_ENCRYPTION_KEYS": settings.FIELD_ENCRYPTION_KEYS,
        "BLIND_INDEX_KEY": settings.BLIND_INDEX_KEY,
        "PUBLIC_BASE_URL": settings.PUBLIC_BASE_URL,
        "EMAIL_WEBHOOK_SECRET": settings.EMAIL_WEBHOOK_SECRET,
    }
    server = WebServer(env=env, log_path=tmp_path / "web.log").start()
    try:
        yield server, private_postgres, database
    finally:
        server.stop()


def _post_sms(base_url, sid):
    params = sms_params("Running late", sid=sid)
    signature = twilio_signed(SMS, params)["HTTP_X_TWILIO_SIGNATURE"]
    return requests.post(
        base_url + SMS, data=params, headers={"X-Twilio-Signature": signature}, timeout=30
    )


def _every_path(base_url, practice):
    """One request of each kind: API read and write, each webhook, health, admin."""
    raw = patient_email(message_id=f"<{uuid.uuid4().hex}@mail.example.com>").as_bytes()
    signature = email_signature(raw, secret=settings.EMAIL_WEBHOOK_SECRET)
    portal = {"patient": str(practice["patient"].pk), "body": "Refill", "message_id": "pm-x"}
    staff = {"Authorization": practice["staff_auth"]}
    return {
        "api list": requests.get(f"{base_url}/api/v1/patients/", headers=staff, timeout=30),
        "api read": requests.get(
            f"{base_url}/api/v1/patients/{practice['patient'].pk}/", headers=staff, timeout=30
        ),
        "token": requests.post(
            f"{base_url}/api/v1/auth/token/",
            json={"username": "outage-agent", "password": "x" * 12},
            timeout=30,
        ),
        "portal": requests.post(
            f"{base_url}/api/v1/portal/messages/",
            data=json.dumps(portal),
            headers={"Authorization": practice["portal_auth"], "Content-Type": "application/json"},
            timeout=30,
        ),
        "sms webhook": _post_sms(base_url, "SM" + uuid.uuid4().hex),
        "email webhook": requests.post(
            f"{base_url}/webhooks/email/inbound/",
            data=raw,
            headers={"Content-Type": "message/rfc822", "X-Contactcenter-Signature": signature},
            timeout=30,
        ),
        "readiness": requests.get(f"{base_url}/health/ready/", timeout=30),
        # A signed-in admin's session is read from the database.
        "admin": requests.get(
            f"{base_url}/admin/", cookies={settings.SESSION_COOKIE_NAME: "s" * 32}, timeout=30
        ),
    }


def _assert_service_unavailable(name, response):
    assert response.status_code == 503, (name, response.status_code, response.text[:300])
    assert int(response.headers["Retry-After"]) > 0, name
    error = response.json()["error"]
    assert error["code"] == "service_unavailable", name
    assert error["request_id"] == response.headers["X-Request-ID"], name


def _stored_sids(postgres, database):
    with postgres.connect(database) as conn:
        rows = conn.execute(
            "SELECT provider_id FROM channels_app_interaction WHERE channel = %s", [Channel.SMS]
        ).fetchall()
    return {row[0] for row in rows}


def test_database_stopped_under_traffic_answers_503_and_loses_nothing_answered(
    web_on_private_database, practice
):
    web, postgres, database = web_on_private_database
    answers = []  # (sid, status, Retry-After)
    stop_sending = threading.Event()

    def send_sms_until_stopped():
        while not stop_sending.is_set():
            sid = "SM" + uuid.uuid4().hex
            try:
                response = _post_sms(web.url, sid)
            except requests.RequestException:
                answers.append((sid, None, None))  # no answer is not a 2xx either
                continue
            answers.append((sid, response.status_code, response.headers.get("Retry-After")))

    senders = [threading.Thread(target=send_sms_until_stopped) for _ in range(3)]
    for sender in senders:
        sender.start()
    try:
        wait_for_count = time.monotonic() + 60
        while sum(1 for _, status, _ in answers if status == 200) < 10:
            assert time.monotonic() < wait_for_count, answers[-5:]
            time.sleep(0.02)
        postgres.stop()
        stopped_at = len(answers)
        while len(answers) < stopped_at + 15:
            time.sleep(0.02)
    finally:
        stop_sending.set()
        for sender in senders:
            sender.join(timeout=30)

    while_down = _every_path(web.url, practice)
    postgres.start()
    after = _post_sms(web.url, "SM-after-" + uuid.uuid4().hex)

    statuses = {status for _, status, _ in answers}
    assert statuses <= {200, 503, None}, statuses
    assert 503 in statuses
    assert all(retry_after for _, status, retry_after in answers if status == 503)
    for name, response in while_down.items():
        _assert_service_unavailable(name, response)
    assert after.status_code == 200, after.text[:300]
    answered_2xx = {sid for sid, status, _ in answers if status == 200}
    missing = answered_2xx - _stored_sids(postgres, database)
    assert not missing, f"{len(missing)} SMS answered 200 but not stored"
    assert "server_error" not in web.log()
