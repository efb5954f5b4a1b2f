"""Regression tests for the requests that answered 500 or the wrong 4xx (issue 16):
each named after what it guards."""

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from contactcenter import roles
from tests.factories import make_staff, token_for


def disclosure_payload(**overrides):
    payload = {
        "disclosed_at": (timezone.now() - timedelta(days=2)).isoformat(),
        "recipient_name": "County Public Health Department",
        "description": "Immunisation record",
        "purpose": "Mandatory public health reporting",
    }
    payload.update(overrides)
    return payload


# --- 1. Disclosures -------------------------------------------------------------------


def test_a_disclosure_without_recipient_address_is_recorded(client, compliance_officer, patient):
    response = client.post(
        f"/api/v1/patients/{patient.pk}/disclosures/",
        disclosure_payload(),
        content_type="application/json",
        **token_for(compliance_officer),
    )
    assert response.status_code == 201, response.content
    assert response.json()["recipient_address"] == ""


@pytest.mark.parametrize("payload", [disclosure_payload(), {}])
def test_a_disclosure_for_an_unknown_patient_is_a_404(client, compliance_officer, payload):
    response = client.post(
        f"/api/v1/patients/{uuid.uuid4()}/disclosures/",
        payload,
        content_type="application/json",
        **token_for(compliance_officer),
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- 2. Bad filter values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/v1/patients/", "team=abc", "team"),
        ("/api/v1/patients/", "team=99999999999999999999", "team"),
        ("/api/v1/patients/", "flag=nonsense", "flag"),
        ("/api/v1/patients/", "team=abc&phone=415-555-0100", "team"),
        ("/api/v1/patients/", "mrn=--", "mrn"),
        ("/api/v1/conversations/", "team=abc", "team"),
        ("/api/v1/conversations/", "assignee=99999999999999999999", "assignee"),
    ],
)
def test_a_bad_filter_value_is_a_400_naming_the_parameter(client, member, path, query, field):
    response = client.get(f"{path}?{query}", **token_for(member))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["details"]) == [field]


def test_a_bad_audit_filter_value_is_a_400_naming_the_parameter(client, compliance_officer):
    response = client.get(
        "/api/v1/audit-events/?actor=99999999999999999999", **token_for(compliance_officer)
    )
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["actor"]


# --- 3. OPTIONS ------------------------------------------------------------------------


def _api_routes(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _api_routes(entry, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/v1/"):
            yield route


def _concrete(route):
    path = route
    for converter in ("<uuid:pk>", "<uuid:patient_id>"):
        path = path.replace(converter, str(uuid.uuid4()))
    for converter in ("<int:pk>", "<str:source>", "<str:external_id>"):
        path = path.replace(converter, "1")
    return "/" + path


@pytest.mark.parametrize("role", [roles.AGENT, roles.COMPLIANCE, roles.ADMIN])
def test_options_answers_every_api_path_without_a_server_error(api_client_raw, north, role):
    headers = token_for(make_staff(f"opt-{role}", role=role, teams=[north]))
    routes = sorted(set(_api_routes()))
    assert "api/v1/staff/me/availability/" in routes
    for route in routes:
        response = api_client_raw.options(_concrete(route), **headers)
        assert response.status_code in (200, 403, 404), (route, response.status_code)
        if response.status_code == 200:
            assert "OPTIONS" in response["Allow"]


# --- 4. Cursors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/v1/patients/", "/api/v1/conversations/", "/api/v1/escalations/"],
)
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        # Decodes, but its position is not a value of the list's sort column.
        "cD1ub3QtYS1kYXRl",
    ],
)
def test_a_cursor_no_list_handed_out_is_a_400_invalid_cursor(client, member, path, cursor):
    response = client.get(f"{path}?cursor={cursor}", **token_for(member))
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_cursor"


def test_a_bad_audit_cursor_is_a_400_invalid_cursor(client, compliance_officer):
    response = client.get("/api/v1/audit-events/?cursor=garbage", **token_for(compliance_officer))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


# --- 6. Ids ---------------------------------------------------------------------------


def test_ids_are_canonical_on_sqlite_and_following_them_finds_the_record(tmp_path):
    """`make run` uses SQLite, which stores UUIDs as 32 hex digits: the hand-written
    inbox and timeline reads must convert them as the ORM does."""
    # In memory when the machine has /dev/shm: migrating a SQLite file on disk
    # waits for an fsync per migration.
    directory = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    database = directory / f"cc-ids-{uuid.uuid4().hex}.sqlite3"
    try:
        completed = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("sqlite_ids_probe.py")), str(database)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "REDIS_URL": ""},
        )
    finally:
        database.unlink(missing_ok=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    for value in result["ids"]:
        assert value == str(uuid.UUID(value)), value
    assert result["followed"] == {"patient": 200, "conversation": 200}
    assert result["same_thread"] is True
    assert result["processed"] is True
    assert result["conversation_sentiment"] is True
    assert result["intent_stored"] is True
    assert result["routed_to_agent"] is True
    assert result["kpi_partly_rolled_up"] == 1
    assert result["kpi_rolled_equals_live"] is True
    assert result["survey_limit"] == [30, False]
    # The agent's reads above name the patient; the officer finds them by patient.
    assert result["audit_search"] == [200, ["conversation", "patient", "timeline"]]
    assert result["access_report"] == 200


def test_ids_are_canonical_on_postgresql(client, member, patient, north):
    from channels_app.models import ChannelAccount
    from channels_app.services import inbound_record
    from patients.models import Channel

    account = ChannelAccount.objects.create(
        kind=Channel.SMS, name="Main line", address="+15005550006", team=north
    )
    inbound_record(
        channel=Channel.SMS,
        account=account,
        address="+14155550100",
        body="Hello",
        provider_id="SM" + "2" * 32,
        occurred_at=timezone.now(),
        source="twilio_sms",
        raw_payload="{}",
    )
    headers = token_for(member)
    row = client.get("/api/v1/conversations/", **headers).json()["results"][0]
    entry = client.get(f"/api/v1/patients/{patient.pk}/timeline/", **headers).json()["results"][0]
    for value in (row["id"], row["patient"], entry["id"], entry["conversation"]):
        assert value == str(uuid.UUID(value))
    assert client.get(f"/api/v1/patients/{row['patient']}/", **headers).status_code == 200
