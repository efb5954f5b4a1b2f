"""The issue's searches that name no patient: Communication by sent, received,
medium; Appointment by date and status; AuditEvent by agent, date, entity. Each
reads the client's team only, pages by keyset (Bundle next links, no offset) and
costs the same queries whatever the page holds."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from fhirpy import SyncFHIRClient

from channels_app.models import ChannelAccount
from channels_app.services import inbound_record, reply_create
from compliance.models import AuditEvent
from compliance.services import audit_record
from contactcenter import roles
from patients.models import Channel
from patients.services import appointment_create
from tests.factories import make_api_key, make_patient, make_staff
from tests.fhir.conftest import validated


def _texts(account, address, count, *, start, prefix):
    interactions = []
    for n in range(count):
        ingested = inbound_record(
            channel=Channel.SMS,
            account=account,
            address=address,
            body=f"{prefix} {n}",
            provider_id=f"SM{prefix}{n:030d}",
            occurred_at=start + timedelta(minutes=n),
            source="twilio",
            raw_payload={},
        )
        interactions.append(ingested.interaction)
    return interactions


@pytest.fixture
def two_teams(db, north, south):
    now = timezone.now()
    north_line = ChannelAccount.objects.create(
        kind=Channel.SMS, name="North", address="+15005550006", team=north
    )
    south_line = ChannelAccount.objects.create(
        kind=Channel.SMS, name="South", address="+15005550007", team=south
    )
    ours = make_patient(team=north, phones=("+14155550100",))
    theirs = make_patient(team=south, phones=("+14155550199",))
    ours_in = _texts(north_line, "+14155550100", 5, start=now - timedelta(hours=2), prefix="N")
    theirs_in = _texts(south_line, "+14155550199", 3, start=now - timedelta(hours=1), prefix="S")
    agent = make_staff("north-agent", role=roles.AGENT, teams=[north])
    reply, _ = reply_create(conversation=ours_in[0].conversation, author=agent, body="Answer")
    return {
        "ours": ours,
        "theirs": theirs,
        "ours_in": ours_in,
        "theirs_in": theirs_in,
        "reply": reply,
        "agent": agent,
    }


@pytest.mark.django_db(transaction=True)
def test_communication_by_received_and_medium_pages_the_teams_messages_only(
    live_server, north, two_teams
):
    key, api_client = make_api_key(scopes=["communications:read"], team=north)
    fhir = SyncFHIRClient(f"{live_server.url}/fhir", authorization=f"Bearer {key}")
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    search = fhir.resources("Communication").search(received=f"ge{since}", medium="sms").limit(2)
    assert len(search.fetch()) == 2
    every = search.fetch_all()  # three pages of 2, through the next links
    ids = [c.id for c in every]
    assert ids == [str(i.pk) for i in reversed(two_teams["ours_in"])]  # newest first
    for communication in every:
        resource = validated(communication.serialize())
        assert resource.subject.reference == f"Patient/{two_teams['ours'].pk}"
        assert resource.payload is None  # communications:read carries no content
    sent = fhir.resources("Communication").search(sent=f"ge{since}").fetch_all()
    assert [c.id for c in sent] == [str(two_teams["reply"].pk)]
    everything = fhir.resources("Communication").fetch_all()
    assert str(two_teams["theirs_in"][0].pk) not in {c.id for c in everything}
    rows = AuditEvent.objects.filter(api_client_id=api_client.pk, resource_type="timeline")
    assert rows.exists()
    assert {pid for row in rows for pid in row.patient_ids} == {str(two_teams["ours"].pk)}


@pytest.mark.django_db
def test_a_practice_wide_client_reads_every_team(client, two_teams):
    key, _ = make_api_key(scopes=["communications:read"], team=None)
    body = client.get(
        "/fhir/Communication?medium=sms&_count=200", HTTP_AUTHORIZATION=f"Bearer {key}"
    ).json()
    ids = {entry["resource"]["id"] for entry in body["entry"]}
    expected = two_teams["ours_in"] + two_teams["theirs_in"] + [two_teams["reply"]]
    assert ids == {str(i.pk) for i in expected}


@pytest.mark.django_db
def test_communication_search_costs_the_same_queries_for_2_or_8_rows(client, north, two_teams):
    key, _ = make_api_key(scopes=["timeline:read"], team=None)
    # A first request notes the key's use; the two measured ones are alike.
    client.get("/fhir/Communication?_count=1", HTTP_AUTHORIZATION=f"Bearer {key}")
    counts = []
    for size in (2, 8):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(
                f"/fhir/Communication?medium=sms&_count={size}",
                HTTP_AUTHORIZATION=f"Bearer {key}",
            )
        assert len(response.json()["entry"]) == size
        counts.append(len(captured))
    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_the_team_wide_communication_page_is_an_index_range_scan(north, two_teams):
    from channels_app.selectors import TimelineFilters, interactions_page
    from contactcenter.auth import ApiClientPrincipal
    from contactcenter.keyset import PageRequest

    _key, api_client = make_api_key(scopes=["timeline:read"], team=north)
    principal = ApiClientPrincipal(api_client)
    first = interactions_page(
        user=principal, filters=TimelineFilters(), page=PageRequest(cursor=None, size=2)
    )
    with CaptureQueriesContext(connection) as captured:
        interactions_page(
            user=principal, filters=TimelineFilters(), page=PageRequest(cursor=first.next, size=2)
        )
    statement = captured.captured_queries[-1]["sql"]
    assert "OFFSET" not in statement.upper()
    with connection.cursor() as cursor:
        # A handful of rows: without this the planner sorts them in memory.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + statement)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "interaction_occurred_idx" in plan


@pytest.mark.django_db
def test_appointments_by_date_and_status_without_a_patient(client, north, two_teams):
    soon = timezone.now() + timedelta(days=3)
    ours = appointment_create(patient=two_teams["ours"], starts_at=soon)
    appointment_create(patient=two_teams["ours"], starts_at=soon + timedelta(days=30))
    appointment_create(patient=two_teams["theirs"], starts_at=soon)
    key, _ = make_api_key(scopes=["patients:read"], team=north)
    day = soon.date().isoformat()
    body = client.get(
        f"/fhir/Appointment?date={day}&status=booked", HTTP_AUTHORIZATION=f"Bearer {key}"
    ).json()
    validated(body)
    assert [e["resource"]["id"] for e in body["entry"]] == [str(ours.pk)]
    row = AuditEvent.objects.filter(resource_type="appointment").latest("id")
    assert row.patient_ids == [str(two_teams["ours"].pk)]


@pytest.mark.django_db
def test_audit_events_by_agent_date_entity_for_a_team_client(client, north, two_teams):
    agent = two_teams["agent"]
    ours, theirs = two_teams["ours"], two_teams["theirs"]
    for patient_ids in ([ours.pk], [theirs.pk], [ours.pk, theirs.pk], []):
        audit_record(
            action="read",
            resource_type="patient",
            resource_id=str(patient_ids[0]) if patient_ids else "",
            patient_ids=patient_ids,
            actor=agent,
        )
    key, _ = make_api_key(scopes=["audit:read"], team=north)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    today = timezone.now().date().isoformat()
    body = client.get(f"/fhir/AuditEvent?agent={agent.username}&date={today}", **headers).json()
    validated(body)
    # Only the row about North's patient alone: not South's, not the mixed one,
    # not the one about no patient.
    assert len(body["entry"]) == 1
    entities = {e["what"].get("reference") for e in body["entry"][0]["resource"]["entity"]}
    assert f"Patient/{ours.pk}" in entities
    by_entity = client.get(f"/fhir/AuditEvent?entity=patient/{ours.pk}", **headers).json()
    assert len(by_entity["entry"]) == 1
    hidden = client.get(f"/fhir/AuditEvent?entity=patient/{theirs.pk}", **headers).json()
    assert "entry" not in hidden
    practice = make_api_key(scopes=["audit:read"], team=None)[0]
    everything = client.get(
        f"/fhir/AuditEvent?agent={agent.username}", HTTP_AUTHORIZATION=f"Bearer {practice}"
    ).json()
    assert len(everything["entry"]) == 4
    unknown = client.get("/fhir/AuditEvent?action=read", **headers)
    assert unknown.status_code == 400
    assert unknown.json()["resourceType"] == "OperationOutcome"


def test_every_registered_search_parameter_has_its_parser():
    from fhir import registry, views

    for name in dir(views):
        view = getattr(views, name)
        if isinstance(view, type) and issubclass(view, views.FhirSearchView) and view.resource_type:
            spec = registry.spec_of(view.resource_type)
            assert set(view.search_table) == spec.search_param_names(), view.__name__
