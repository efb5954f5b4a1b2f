"""The compliance officer's workbench: audit search, access reports, chain
verification and the accounting of disclosures."""

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from compliance.chain import seal_pending
from compliance.models import AuditEvent, Disclosure
from compliance.services import audit_record
from tests.factories import token_for

pytestmark = pytest.mark.django_db

AUDIT = "/api/v1/audit-events/"
VERIFY = "/api/v1/audit-events/verify/"


def access_report(patient_id):
    return f"/api/v1/patients/{patient_id}/access-report/"


def disclosures(patient_id):
    return f"/api/v1/patients/{patient_id}/disclosures/"


def read_patient(client, user, patient):
    return client.get(f"/api/v1/patients/{patient.pk}/", **token_for(user))


def last_audit():
    return AuditEvent.objects.order_by("-id").first()


# --- Who may use it -------------------------------------------------------------


def test_compliance_officer_sees_the_audit_api(client, compliance_officer):
    response = client.get(AUDIT, **token_for(compliance_officer))

    assert response.status_code == 200
    assert "results" in response.json()


@pytest.mark.parametrize("who", ["member", "admin_user"])
@pytest.mark.parametrize("path", [AUDIT, VERIFY, "/api/v1/break-glass/"])
def test_agents_and_admins_get_404_from_the_audit_api_and_a_denied_audit_row(
    client, who, path, request
):
    user = request.getfixturevalue(who)

    response = client.get(path, **token_for(user))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    event = last_audit()
    assert (event.outcome, event.actor_user_id, event.http_status) == ("denied", user.pk, 404)


def test_access_report_is_404_to_agents_even_for_their_own_patient(client, member, patient):
    response = client.get(access_report(patient.pk), **token_for(member))

    assert response.status_code == 404


def test_an_api_key_gets_404_from_the_audit_api(client, api_key_headers):
    response = client.get(AUDIT, **api_key_headers("patients:read", "disclosures:write"))

    assert response.status_code == 404


def test_no_token_gets_401_from_the_audit_api(client):
    assert client.get(AUDIT).status_code == 401


# --- Audit search ----------------------------------------------------------------


def test_audit_search_filters_by_actor_patient_action_outcome_and_time(
    client, compliance_officer, member, outsider, patient
):
    read_patient(client, member, patient)
    read_patient(client, outsider, patient)
    since = timezone.now()
    read_patient(client, member, patient)
    headers = token_for(compliance_officer)

    def ids(**params):
        # resource_type: the officer's own searches name the patient too.
        response = client.get(AUDIT, {"resource_type": "patient", **params}, **headers)
        assert response.status_code == 200, response.content
        return [(row["actor_username"], row["outcome"]) for row in response.json()["results"]]

    assert ids(patient=str(patient.pk)) == [
        ("member", "success"),
        ("outsider", "denied"),
        ("member", "success"),
    ]
    assert ids(patient=str(patient.pk), actor=outsider.pk) == [("outsider", "denied")]
    assert ids(patient=str(patient.pk), outcome="denied") == [("outsider", "denied")]
    assert ids(patient=str(patient.pk), since=since.isoformat()) == [("member", "success")]
    assert ids(patient=str(patient.pk), until=since.isoformat(), action="read") == [
        ("outsider", "denied"),
        ("member", "success"),
    ]
    assert ids(patient=str(uuid.uuid4())) == []


def test_audit_search_filters_by_resource_type_purpose_api_client_and_ip(
    client, compliance_officer
):
    client_stub = type("Client", (), {"pk": 77, "name": "ehr"})()
    audit_record(action="read", resource_type="patient", api_client=client_stub)
    audit_record(action="login", resource_type="auth", purpose_of_use="HSYSADMIN")
    headers = token_for(compliance_officer)

    def types(**params):
        response = client.get(AUDIT, params, **headers)
        assert response.status_code == 200, response.content
        return [row["resource_type"] for row in response.json()["results"]]

    assert types(api_client=77) == ["patient"]
    assert types(purpose="HSYSADMIN", resource_type="auth") == ["auth"]
    assert types(ip="198.51.100.7") == []


def test_audit_search_pages_newest_first_with_a_cursor(client, compliance_officer):
    for n in range(5):
        audit_record(action="read", resource_type="page-test", resource_id=str(n))
    headers = token_for(compliance_officer)

    first = client.get(AUDIT, {"resource_type": "page-test", "page_size": 3}, **headers).json()
    second = client.get(first["next"], **headers).json()

    assert [row["resource_id"] for row in first["results"]] == ["4", "3", "2"]
    assert [row["resource_id"] for row in second["results"]] == ["1", "0"]
    assert "offset" not in first["next"]


def test_audit_search_refuses_a_malformed_filter_with_400(client, compliance_officer):
    headers = token_for(compliance_officer)

    for params in ({"ip": "not-an-address"}, {"patient": "nobody"}, {"since": "yesterday"}):
        response = client.get(AUDIT, params, **headers)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "invalid"


def test_audit_rows_in_the_api_hold_ids_and_usernames_never_patient_names(
    client, compliance_officer, member, patient
):
    read_patient(client, member, patient)

    response = client.get(AUDIT, {"patient": str(patient.pk)}, **token_for(compliance_officer))

    row = response.json()["results"][0]
    assert row["patient_ids"] == [str(patient.pk)]
    assert row["actor_username"] == "member"
    assert b"Grace" not in response.content and b"Hopper" not in response.content


def test_the_officers_search_is_itself_audited_with_the_patient_searched_for(
    client, compliance_officer, patient
):
    client.get(AUDIT, {"patient": str(patient.pk)}, **token_for(compliance_officer))

    event = last_audit()
    assert (event.action, event.resource_type, event.purpose_of_use) == (
        "read",
        "audit_event",
        "HCOMPL",
    )
    assert event.patient_ids == [str(patient.pk)]
    assert event.details["filters"] == {"patient": str(patient.pk)}


# --- Access report ---------------------------------------------------------------


def test_access_report_says_who_touched_the_patient_when_what_why_and_the_outcome(
    client, compliance_officer, member, outsider, patient
):
    read_patient(client, member, patient)
    read_patient(client, outsider, patient)

    response = client.get(access_report(patient.pk), **token_for(compliance_officer))

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["actor_username"], r["action"], r["purpose_of_use"], r["outcome"]) for r in rows][
        :2
    ] == [("outsider", "read", "TREAT", "denied"), ("member", "read", "TREAT", "success")]
    assert all(r["resource_type"] == "patient" for r in rows[:2])


def test_access_report_covers_six_years_by_default_and_the_range_asked_for(
    client, compliance_officer, patient
):
    now = timezone.now()
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                action="read",
                resource_type="patient",
                resource_id=name,
                patient_ids=[str(patient.pk)],
                recorded_at=now - age,
            )
            for name, age in (
                ("five-years", timedelta(days=5 * 365)),
                ("seven-years", timedelta(days=7 * 365)),
                ("last-week", timedelta(days=7)),
            )
        ]
    )
    headers = token_for(compliance_officer)

    default = client.get(access_report(patient.pk), **headers).json()["results"]
    ranged = client.get(
        access_report(patient.pk),
        {
            "since": (now - timedelta(days=8 * 365)).isoformat(),
            "until": (now - timedelta(days=30)).isoformat(),
        },
        **headers,
    ).json()["results"]

    assert [r["resource_id"] for r in default] == ["last-week", "five-years"]
    assert [r["resource_id"] for r in ranged] == ["five-years", "seven-years"]


def test_access_report_as_csv_streams_the_same_rows_and_is_audited_as_an_export(
    client, compliance_officer, member, patient
):
    read_patient(client, member, patient)

    response = client.get(
        access_report(patient.pk), {"format": "csv"}, **token_for(compliance_officer)
    )

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["actor_username"], r["action"], r["outcome"]) for r in rows] == [
        ("member", "read", "success")
    ]
    event = last_audit()
    assert (event.action, event.resource_type, event.patient_ids) == (
        "export",
        "access_report",
        [str(patient.pk)],
    )


# --- Chain verification ----------------------------------------------------------


def test_verify_answers_ok_with_the_count_and_head_hash(client, compliance_officer):
    for n in range(3):
        audit_record(action="read", resource_type="patient", resource_id=str(n))
    seal_pending()
    head = AuditEvent.objects.order_by("-chain_position").first()

    response = client.get(VERIFY, **token_for(compliance_officer))

    body = response.json()
    assert response.status_code == 200
    assert body["ok"] is True and body["complete"] is True
    assert body["count"] == head.chain_position
    assert body["head_hash"] == head.hash
    assert last_audit().resource_type == "audit_chain"


def test_verify_names_the_first_broken_row(client, compliance_officer):
    events = [audit_record(action="read", resource_type="patient") for _ in range(3)]
    seal_pending()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER ALL")
        cursor.execute(
            "UPDATE compliance_auditevent SET resource_id = 'edited' WHERE id = %s",
            [events[1].pk],
        )
        cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER ALL")

    body = client.get(VERIFY, **token_for(compliance_officer)).json()

    assert body["ok"] is False
    assert (body["broken_id"], body["reason"]) == (events[1].pk, "edited")


# --- Accounting of disclosures ---------------------------------------------------


def disclosure_payload(**overrides):
    payload = {
        "disclosed_at": (timezone.now() - timedelta(days=2)).isoformat(),
        "recipient_name": "County Public Health Department",
        "recipient_address": "1 Main Street, Springfield",
        "description": "Immunisation record",
        "purpose": "Mandatory public health reporting",
    }
    payload.update(overrides)
    return payload


def test_compliance_officer_records_a_disclosure_and_lists_it(client, compliance_officer, patient):
    headers = token_for(compliance_officer)

    created = client.post(
        disclosures(patient.pk), disclosure_payload(), content_type="application/json", **headers
    )
    listed = client.get(disclosures(patient.pk), **headers)

    assert created.status_code == 201, created.content
    assert created.json()["created_by_username"] == "officer"
    rows = listed.json()["results"]
    assert [r["recipient_name"] for r in rows] == ["County Public Health Department"]
    assert rows[0]["patient_id"] == str(patient.pk)
    event = AuditEvent.objects.filter(resource_type="disclosure", action="create").get()
    assert event.patient_ids == [str(patient.pk)]


def test_disclosure_texts_are_stored_encrypted(client, compliance_officer, patient):
    client.post(
        disclosures(patient.pk),
        disclosure_payload(),
        content_type="application/json",
        **token_for(compliance_officer),
    )

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT recipient_name, recipient_address, description, purpose "
            "FROM compliance_disclosure"
        )
        stored = cursor.fetchone()
    assert all(value.startswith("v1:") for value in stored)
    assert not any("Public Health" in value for value in stored)


def test_an_integration_with_the_scope_records_a_disclosure(client, patient, api_key_headers):
    response = client.post(
        disclosures(patient.pk),
        disclosure_payload(),
        content_type="application/json",
        **api_key_headers("disclosures:write"),
    )

    assert response.status_code == 201, response.content
    assert Disclosure.objects.get().api_client.scopes == ["disclosures:write"]


def test_an_integration_without_the_scope_is_refused(client, patient, api_key_headers):
    response = client.post(
        disclosures(patient.pk),
        disclosure_payload(),
        content_type="application/json",
        **api_key_headers("patients:read"),
    )

    assert response.status_code == 403
    assert not Disclosure.objects.exists()


def test_disclosures_are_404_to_agents(client, member, patient):
    assert client.get(disclosures(patient.pk), **token_for(member)).status_code == 404


def test_disclosure_of_an_unknown_patient_is_404(client, compliance_officer):
    response = client.post(
        disclosures(uuid.uuid4()),
        disclosure_payload(),
        content_type="application/json",
        **token_for(compliance_officer),
    )

    assert response.status_code == 404
    assert not Disclosure.objects.exists()


def test_a_disclosure_in_the_future_is_refused(client, compliance_officer, patient):
    response = client.post(
        disclosures(patient.pk),
        disclosure_payload(disclosed_at=(timezone.now() + timedelta(days=1)).isoformat()),
        content_type="application/json",
        **token_for(compliance_officer),
    )

    assert response.status_code == 400
    assert "disclosed_at" in response.json()["error"]["details"]


def test_the_accounting_lists_six_years_of_disclosures(client, compliance_officer, patient):
    for years in (1, 5, 7):
        Disclosure.objects.create(
            patient_id=patient.pk,
            disclosed_at=timezone.now() - timedelta(days=365 * years),
            recipient_name=f"{years} years ago",
            description="Record",
            purpose="Subpoena",
        )

    rows = client.get(disclosures(patient.pk), **token_for(compliance_officer)).json()["results"]

    assert [r["recipient_name"] for r in rows] == ["1 years ago", "5 years ago"]
