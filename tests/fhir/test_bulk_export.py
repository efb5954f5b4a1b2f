"""Bulk export: kicked off over FHIR, written by a real Celery worker, read back."""

import json
import time
from datetime import timedelta

import pytest

from compliance.models import AuditEvent
from fhir import services
from fhir.models import ExportJob
from tests.fhir.conftest import validated

pytestmark = pytest.mark.slow


def _wait_for_manifest(client, url, headers, deadline_seconds=60):
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        response = client.get(url, **headers)
        if response.status_code != 202:
            return response
        assert response["X-Progress"]
        time.sleep(0.2)
    raise AssertionError("The export did not complete in time.")


def test_patient_export_is_written_by_the_worker_and_read_back(
    celery_worker_real, client, fhir_key, patient, thread, other_patient, settings, tmp_path
):
    settings.FHIR_EXPORT_DIR = str(tmp_path)
    headers = fhir_key("patients:read", "timeline:read")
    refused = client.get("/fhir/Patient/$export", **headers)
    assert refused.status_code == 400  # no Prefer: respond-async
    kicked = client.get("/fhir/Patient/$export", HTTP_PREFER="respond-async", **headers)
    assert kicked.status_code == 202, kicked.content
    status_url = kicked["Content-Location"]
    manifest = _wait_for_manifest(client, status_url, headers)
    assert manifest.status_code == 200, manifest.content
    body = manifest.json()
    assert body["requiresAccessToken"] is True
    counts = {item["type"]: item["count"] for item in body["output"]}
    # One patient of the client's team (the other team's is not exported); four
    # interactions and the header of their conversation.
    assert counts == {"Patient": 1, "Communication": 5}
    for item in body["output"]:
        download = client.get(item["url"], **headers)
        assert download.status_code == 200
        assert download["Content-Type"] == "application/fhir+ndjson"
        lines = b"".join(download.streaming_content).decode().splitlines()
        assert len(lines) == item["count"]
        resources = [validated(json.loads(line)) for line in lines]
        assert {r.get_resource_type() for r in resources} == {item["type"]}
        if item["type"] == "Patient":
            assert resources[0].id == str(patient.pk)
    batch_rows = AuditEvent.objects.filter(resource_type="fhir_export", action="export")
    assert any(row.patient_ids == [str(patient.pk)] for row in batch_rows)
    assert not any(str(other_patient.pk) in row.patient_ids for row in batch_rows)
    # Another client cannot read this export's status or files.
    stranger = fhir_key("patients:read")
    assert client.get(status_url, **stranger).status_code == 404
    # Expired: the files go with the job.
    job = ExportJob.objects.get()
    purged = services.expired_exports_purge(now=job.expires_at + timedelta(seconds=1))
    assert purged == 1
    assert not list(tmp_path.iterdir())
    assert client.get(status_url, **headers).status_code == 404


def test_group_export_refuses_another_team_and_unknown_types(db, client, fhir_key, south, north):
    headers = fhir_key("patients:read")
    other = client.get(f"/fhir/Group/{south.pk}/$export", HTTP_PREFER="respond-async", **headers)
    assert other.status_code == 404
    unknown = client.get(
        f"/fhir/Group/{north.pk}/$export?_type=Observation", HTTP_PREFER="respond-async", **headers
    )
    assert unknown.status_code == 400
    not_allowed = client.get(
        f"/fhir/Group/{north.pk}/$export?_type=Communication",
        HTTP_PREFER="respond-async",
        **headers,
    )
    assert not_allowed.status_code == 403
    assert not ExportJob.objects.exists()
