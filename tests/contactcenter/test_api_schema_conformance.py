"""Every operation of the published schema, called as every kind of caller, answers
what the schema says: no server error, a documented status code, a body and a
content type that conform. schemathesis generates the requests from /api/schema/
itself (valid and invalid ones) and sends them through Django's WSGI application.

Path ids are either the random ones schemathesis draws (404) or the ids of the
records the caller's team owns, so that the success paths are checked too."""

import uuid
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from channels_app.models import ChannelAccount, Conversation
from channels_app.services import inbound_record
from compliance.services import break_glass_grant
from contactcenter import roles
from escalation.services import escalation_manual_create, rule_create
from patients.models import Channel
from patients.services import appointment_create
from tests.factories import TeamFactory, make_api_key, make_patient, make_staff, token_for

# Examples per operation and caller, bounded so that 43 operations x 11 callers
# stay well within CI's budget on two cores; each run draws new ones.
KNOWN_RECORD_EXAMPLES = 2
DRAWN_EXAMPLES = 3

STAFF_ROLES = (roles.AGENT, roles.SUPERVISOR, roles.CLINICIAN, roles.COMPLIANCE, roles.ADMIN)
API_KEY_SCOPES = (
    "patients:read",
    "patients:write",
    "appointments:write",
    "portal:write",
    "timeline:read",
    "disclosures:write",
)
CALLERS = [*STAFF_ROLES, *(f"key:{scope}" for scope in API_KEY_SCOPES)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@contextmanager
def connection_kept_open():
    """Django's test client keeps the test's transaction open the same way: the
    WSGI handler would otherwise close the connection around each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture(scope="session")
def schema(django_db_blocker):
    with django_db_blocker.unblock(), connection_kept_open():
        return schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


class World:
    """One team's records and the credentials of the caller under test."""

    def __init__(self, caller):
        team = TeamFactory(name="North")
        self.team = team
        if caller.startswith("key:"):
            key, _ = make_api_key(scopes=[caller.removeprefix("key:")], team=team)
            self.headers = {"Authorization": f"Bearer {key}"}
            actor = make_staff("fuzz-owner", role=roles.SUPERVISOR, teams=[team])
        else:
            teams = [] if caller in (roles.COMPLIANCE, roles.ADMIN) else [team]
            actor = make_staff(f"fuzz-{caller}", role=caller, teams=teams)
            self.headers = {"Authorization": bearer_value(token_for(actor))}
            if caller in (roles.COMPLIANCE, roles.ADMIN):
                actor = make_staff("fuzz-owner", role=roles.SUPERVISOR, teams=[team])
        self.patient = make_patient(team=team, phones=("+14155550123",))
        account = ChannelAccount.objects.create(
            kind=Channel.SMS, name="Main line", address="+15005550006", team=team
        )
        self.interaction = inbound_record(
            channel=Channel.SMS,
            account=account,
            address="+14155550123",
            body="Can I move my appointment?",
            provider_id="SM" + uuid.uuid4().hex,
            occurred_at=timezone.now(),
            source="twilio_sms",
            raw_payload="{}",
        ).interaction
        self.conversation = Conversation.objects.get(pk=self.interaction.conversation_id)
        self.appointment = appointment_create(
            patient=self.patient,
            starts_at=self.interaction.occurred_at,
            provider_name="Dr. Example",
        )
        self.escalation = escalation_manual_create(
            conversation=self.conversation, actor=actor, reason="Patient asked for a nurse"
        )
        self.grant = break_glass_grant(
            user=actor, patient_id=self.patient.pk, reason="Unconscious patient in ED"
        )
        self.rule = rule_create(
            name="Chest pain",
            conditions={"phrases": ["chest pain"]},
            actions={"set_priority": "urgent"},
        )

    def path_parameters(self, path):
        """The ids of this team's records for a path that names one."""
        if "{patient_id}" in path or path.startswith("/api/v1/patients/{id}"):
            name = "patient_id" if "{patient_id}" in path else "id"
            return {name: str(self.patient.pk)}
        if "{id}" not in path:
            return None
        for prefix, record in (
            ("/api/v1/conversations/", self.conversation),
            ("/api/v1/appointments/", self.appointment),
            ("/api/v1/escalations/", self.escalation),
            ("/api/v1/break-glass/", self.grant),
            ("/api/v1/escalation-rules/", self.rule),
        ):
            if path.startswith(prefix):
                return {"id": str(record.pk)}
        return None


def bearer_value(headers):
    return headers["HTTP_AUTHORIZATION"]


@pytest.fixture
def world(caller, db):
    with connection_kept_open():
        yield World(caller)


def _run(strategy, world, examples):
    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case):
        case.call_and_validate(headers=world.headers, checks=CHECKS)

    call()


def _failures_of_operation(operation, world):
    """Requests drawn from the operation's schema: valid ones aimed at the caller's
    own records (when the path names one), then valid and invalid ones with drawn
    ids. The first failure's report, or None."""
    runs = []
    known = world.path_parameters(operation.path)
    if known:
        runs.append(
            (
                operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known),
                KNOWN_RECORD_EXAMPLES,
            )
        )
    runs.append(
        (
            st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            ),
            DRAWN_EXAMPLES,
        )
    )
    try:
        for strategy, examples in runs:
            _run(strategy, world, examples)
    except (Exception, FailureGroup) as failure:  # each one is reported by the test
        found = failure.exceptions if isinstance(failure, FailureGroup) else [failure]
        kinds = sorted({getattr(each, "title", None) or repr(each)[:200] for each in found})
        return f"{operation.label}: {'; '.join(kinds)}"
    return None


@pytest.mark.parametrize("caller", CALLERS)
def test_every_operation_answers_as_documented(caller, world, schema):
    failures = []
    for result in schema.get_all_operations():
        report = _failures_of_operation(result.ok(), world)
        if report:
            failures.append(report)
    assert not failures, f"{len(failures)} operations failed for {caller}:\n" + "\n".join(failures)
