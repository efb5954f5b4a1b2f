"""The list endpoints that had no query-count test: each page costs the same
number of statements whatever its size (no query per row), within a bound."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.services import conversation_open, outbound_create
from compliance.services import audit_record, break_glass_grant, disclosure_create
from contactcenter import roles
from escalation.services import escalation_manual_create, rule_create
from patients.models import Channel
from patients.services import appointment_create
from tests.factories import make_patient, make_staff, token_for

pytestmark = pytest.mark.django_db

ROWS = 30
SMALL, LARGE = 5, 25
REASON = "Patient arrived unconscious at the ER; need the contact list."


def statements_for(client, user, url, page_size):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, {"page_size": page_size}, **token_for(user))
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == page_size
    return len(captured)


def assert_constant(client, user, url, bound):
    # The first request fills per-process caches (content types, the token's
    # user), which later requests do not pay again.
    statements_for(client, user, url, SMALL)
    small = statements_for(client, user, url, SMALL)
    large = statements_for(client, user, url, LARGE)
    assert small == large
    assert large <= bound


@pytest.fixture
def supervisor(north):
    return make_staff("lead-n", role=roles.SUPERVISOR, teams=[north])


@pytest.fixture
def conversations(north):
    return [
        conversation_open(
            channel=Channel.SMS,
            team=north,
            patient=make_patient(team=north, phones=[f"+1415555{2000 + n:04d}"]),
            contact_address=f"+1415555{2000 + n:04d}",
        )
        for n in range(ROWS)
    ]


def test_escalations(client, supervisor, conversations):
    for conversation in conversations:
        escalation_manual_create(conversation=conversation, actor=supervisor, reason="Needs a lead")

    assert_constant(client, supervisor, "/api/v1/escalations/", bound=8)


def test_escalation_rules(client, db):
    admin = make_staff("admin-rules", role=roles.ADMIN)
    for n in range(ROWS):
        rule_create(
            name=f"rule {n}",
            conditions={"phrases": [f"word{n}"]},
            actions={"set_priority": "high"},
            order=n,
        )

    assert_constant(client, admin, "/api/v1/escalation-rules/", bound=8)


def test_audit_events(client, compliance_officer, north):
    patient = make_patient(team=north)
    for n in range(ROWS):
        audit_record(
            action="read", resource_type="patient", resource_id=n, patient_ids=[patient.pk]
        )

    assert_constant(client, compliance_officer, "/api/v1/audit-events/", bound=8)


def test_access_report(client, compliance_officer, north):
    patient = make_patient(team=north)
    for n in range(ROWS):
        audit_record(
            action="read", resource_type="patient", resource_id=n, patient_ids=[patient.pk]
        )

    url = f"/api/v1/patients/{patient.pk}/access-report/"
    assert_constant(client, compliance_officer, url, bound=9)


def test_break_glass_queue(client, compliance_officer, north, south):
    for n in range(ROWS):
        user = make_staff(f"er-{n}", role=roles.AGENT, teams=[south])
        break_glass_grant(user=user, patient_id=make_patient(team=north).pk, reason=REASON)

    assert_constant(client, compliance_officer, "/api/v1/break-glass/", bound=8)


def test_disclosures(client, compliance_officer, north):
    patient = make_patient(team=north)
    for n in range(ROWS):
        disclosure_create(
            patient_id=patient.pk,
            disclosed_at=timezone.now() - timedelta(days=n),
            recipient_name="County health department",
            recipient_address="1 Main St",
            description="Immunisation record",
            purpose="public health",
        )

    url = f"/api/v1/patients/{patient.pk}/disclosures/"
    assert_constant(client, compliance_officer, url, bound=9)


def test_appointments(client, member, north):
    patient = make_patient(team=north)
    for n in range(ROWS):
        appointment_create(patient=patient, starts_at=timezone.now() + timedelta(days=n + 1))

    url = f"/api/v1/patients/{patient.pk}/appointments/"
    assert_constant(client, member, url, bound=9)


def test_conversation_messages(client, north, conversations):
    agent = make_staff("agent-msgs", role=roles.AGENT, teams=[north])
    conversation = conversations[0]
    for n in range(ROWS):
        outbound_create(conversation=conversation, body=f"Reply {n}", author=agent)

    url = f"/api/v1/conversations/{conversation.pk}/messages/"
    assert_constant(client, agent, url, bound=9)
