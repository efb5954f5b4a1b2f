"""The CSV export of the audit search: streamed, filtered like the search, and
itself audited as an export."""

import csv
import io
import uuid

import pytest
from django.http import StreamingHttpResponse
from django.test import RequestFactory

from compliance import exports
from compliance.models import AuditEvent
from compliance.services import audit_record
from tests.factories import token_for

pytestmark = pytest.mark.django_db

EXPORT = "/api/v1/audit-events/export.csv"


def rows_of(response):
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_csv_export_streams_every_matching_row(client, compliance_officer):
    patient_id = uuid.uuid4()
    for n in range(5):
        audit_record(
            action="read",
            resource_type="patient",
            resource_id=str(n),
            patient_ids=[patient_id],
            details={"page": n},
        )
    audit_record(action="read", resource_type="patient", resource_id="other")

    # resource_type: the export's own audit row, written before the first byte
    # streams, names the patient too.
    response = client.get(
        EXPORT,
        {"patient": str(patient_id), "resource_type": "patient"},
        **token_for(compliance_officer),
    )

    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="audit-events.csv"' in response["Content-Disposition"]
    rows = rows_of(response)
    assert [row["resource_id"] for row in rows] == ["0", "1", "2", "3", "4"]
    assert rows[0]["patient_ids"] == str(patient_id)
    assert rows[0]["details"] == '{"page":0}'
    assert list(rows[0]) == list(exports.AUDIT_EVENT_COLUMNS)


def test_the_export_is_audited_as_an_export_with_its_filters(client, compliance_officer):
    patient_id = uuid.uuid4()

    response = client.get(
        EXPORT,
        {"patient": str(patient_id), "action": "read"},
        **token_for(compliance_officer),
    )
    rows_of(response)

    event = AuditEvent.objects.filter(action="export").get()
    assert (event.resource_type, event.outcome, event.purpose_of_use) == (
        "audit_event",
        "success",
        "HCOMPL",
    )
    assert event.actor_user_id == compliance_officer.pk
    assert event.patient_ids == [str(patient_id)]
    assert event.details["filters"] == {"patient": str(patient_id), "action": "read"}


def test_the_export_comes_in_chunks_not_in_one_piece():
    for n in range(7):
        audit_record(action="read", resource_type="chunk-test", resource_id=str(n))
    rows = AuditEvent.objects.filter(resource_type="chunk-test").order_by("id")

    chunks = list(exports.stream_csv(rows, exports.AUDIT_EVENT_COLUMNS, chunk_size=3))

    assert len(chunks) == 3
    assert b"".join(chunks).decode().count("\n") == 8


def test_the_export_accepts_an_accept_text_csv_header(client, compliance_officer):
    response = client.get(EXPORT, HTTP_ACCEPT="text/csv", **token_for(compliance_officer))

    assert response.status_code == 200
    rows_of(response)


def test_a_malformed_filter_is_a_json_400_and_nothing_streams(client, compliance_officer):
    response = client.get(EXPORT, {"since": "last tuesday"}, **token_for(compliance_officer))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize("who", ["member", "admin_user"])
def test_agents_and_admins_get_404_from_the_export(client, who, request):
    response = client.get(EXPORT, **token_for(request.getfixturevalue(who)))

    assert response.status_code == 404
    assert AuditEvent.objects.get(action="export").outcome == "denied"


def test_cells_that_a_spreadsheet_would_run_as_formulas_are_defused(client, compliance_officer):
    request = RequestFactory().get("/", HTTP_USER_AGENT='=HYPERLINK("http://evil.example")')
    audit_record(action="read", resource_type="formula-test", request=request)

    response = client.get(
        EXPORT, {"resource_type": "formula-test"}, **token_for(compliance_officer)
    )

    assert rows_of(response)[0]["user_agent"] == '\'=HYPERLINK("http://evil.example")'
