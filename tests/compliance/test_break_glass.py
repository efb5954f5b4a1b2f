"""Break-glass: emergency access with a reason, for a limited time, reviewed by
compliance."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from compliance.models import AuditEvent, BreakGlassGrant
from contactcenter import roles
from patients.selectors import patients_visible_to
from tests.factories import make_patient, make_staff, token_for

pytestmark = pytest.mark.django_db

REASON = "Patient arrived unconscious at the ER; need the contact list."
QUEUE = "/api/v1/break-glass/"


def break_glass(patient_id):
    return f"/api/v1/patients/{patient_id}/break-glass/"


def patient_detail(patient):
    return f"/api/v1/patients/{patient.pk}/"


def request_access(client, user, patient_id, reason=REASON):
    body = {} if reason is None else {"reason": reason}
    return client.post(
        break_glass(patient_id), body, content_type="application/json", **token_for(user)
    )


def review(client, user, grant_id, **body):
    return client.patch(
        f"{QUEUE}{grant_id}/", body, content_type="application/json", **token_for(user)
    )


@pytest.mark.parametrize("reason", [None, "", "   ", "too short reason"])
def test_break_glass_without_a_reason_of_20_characters_is_400_and_grants_nothing(
    client, outsider, patient, reason
):
    response = request_access(client, outsider, patient.pk, reason=reason)

    assert response.status_code == 400
    assert "reason" in response.json()["error"]["details"]
    assert not BreakGlassGrant.objects.exists()
    assert client.get(patient_detail(patient), **token_for(outsider)).status_code == 404


def test_a_grant_opens_the_patient_for_its_time_and_not_a_second_longer(
    client, outsider, patient, settings
):
    settings.BREAK_GLASS_MINUTES = 15
    headers = token_for(outsider)
    assert client.get(patient_detail(patient), **headers).status_code == 404

    response = request_access(client, outsider, patient.pk)

    assert response.status_code == 201, response.content
    grant = BreakGlassGrant.objects.get(pk=response.json()["id"])
    assert grant.expires_at - grant.granted_at == timedelta(minutes=15)
    assert client.get(patient_detail(patient), **headers).status_code == 200

    # Time passes: the grant is moved back so that it ends 2 s from now, then 1 s ago.
    grant_time = timedelta(minutes=15)
    ends = timezone.now() + timedelta(seconds=2)
    BreakGlassGrant.objects.filter(pk=grant.pk).update(
        granted_at=ends - grant_time, expires_at=ends
    )
    assert client.get(patient_detail(patient), **headers).status_code == 200

    ended = timezone.now() - timedelta(seconds=1)
    BreakGlassGrant.objects.filter(pk=grant.pk).update(
        granted_at=ended - grant_time, expires_at=ended
    )
    assert client.get(patient_detail(patient), **headers).status_code == 404
    assert not patients_visible_to(outsider).filter(pk=patient.pk).exists()


def test_a_grant_opens_only_that_patient_and_only_for_its_holder(
    client, outsider, north, south, patient
):
    other_patient = make_patient(team=north)
    colleague = make_staff("colleague", role=roles.AGENT, teams=[south])

    request_access(client, outsider, patient.pk)

    assert set(patients_visible_to(outsider).values_list("pk", flat=True)) >= {patient.pk}
    assert not patients_visible_to(outsider).filter(pk=other_patient.pk).exists()
    assert not patients_visible_to(colleague).filter(pk=patient.pk).exists()


def test_break_glass_is_audited_as_break_glass_with_purpose_etreat(client, outsider, patient):
    response = request_access(client, outsider, patient.pk)

    event = AuditEvent.objects.filter(action="break_glass").get()
    assert event.purpose_of_use == "ETREAT"
    assert event.outcome == "success"
    assert event.actor_user_id == outsider.pk
    assert event.patient_ids == [str(patient.pk)]
    assert event.resource_id == response.json()["id"]
    assert REASON not in str(event.details)


def test_the_reason_is_stored_encrypted(client, outsider, patient):
    request_access(client, outsider, patient.pk)

    with connection.cursor() as cursor:
        cursor.execute("SELECT reason FROM compliance_breakglassgrant")
        (stored,) = cursor.fetchone()
    assert stored.startswith("v1:") and "unconscious" not in stored
    assert BreakGlassGrant.objects.get().reason == REASON


def test_break_glass_on_an_unknown_patient_is_404(client, outsider):
    response = request_access(client, outsider, uuid.uuid4())

    assert response.status_code == 404
    assert not BreakGlassGrant.objects.exists()


@pytest.mark.parametrize("who", ["compliance_officer", "admin_user"])
def test_only_care_roles_may_break_the_glass(client, patient, who, request):
    response = request_access(client, request.getfixturevalue(who), patient.pk)

    assert response.status_code == 404
    assert not BreakGlassGrant.objects.exists()


def test_the_review_queue_shows_the_grant_and_patch_records_the_review(
    client, outsider, compliance_officer, patient
):
    grant_id = request_access(client, outsider, patient.pk).json()["id"]
    headers = token_for(compliance_officer)

    queue = client.get(QUEUE, {"reviewed": "false"}, **headers).json()["results"]
    assert [(g["id"], g["username"], g["patient_id"], g["reason"]) for g in queue] == [
        (grant_id, "outsider", str(patient.pk), REASON)
    ]
    assert queue[0]["active"] is True and queue[0]["reviewed_at"] is None

    response = review(
        client,
        compliance_officer,
        grant_id,
        review_outcome="appropriate",
        review_comment="ER admission confirmed.",
    )

    assert response.status_code == 200, response.content
    grant = BreakGlassGrant.objects.get(pk=grant_id)
    assert grant.reviewed_by == compliance_officer
    assert grant.reviewed_at is not None
    assert grant.review_outcome == "appropriate"
    assert grant.review_comment == "ER admission confirmed."
    assert client.get(QUEUE, {"reviewed": "false"}, **headers).json()["results"] == []
    reviewed = client.get(QUEUE, {"reviewed": "true"}, **headers).json()["results"]
    assert reviewed[0]["reviewed_by_username"] == "officer"
    event = AuditEvent.objects.filter(action="update", resource_type="break_glass_grant").get()
    assert event.patient_ids == [str(patient.pk)]
    assert event.details["review_outcome"] == "appropriate"


def test_a_final_review_cannot_be_overwritten_but_a_follow_up_can_be_closed(
    client, outsider, compliance_officer, patient
):
    grant_id = request_access(client, outsider, patient.pk).json()["id"]

    follow_up = review(
        client,
        compliance_officer,
        grant_id,
        review_outcome="needs_follow_up",
        review_comment="Ask the ER for the admission record.",
    )
    closed = review(
        client,
        compliance_officer,
        grant_id,
        review_outcome="inappropriate",
        review_comment="No admission on record.",
    )
    again = review(client, compliance_officer, grant_id, review_outcome="appropriate")

    assert (follow_up.status_code, closed.status_code, again.status_code) == (200, 200, 409)
    assert BreakGlassGrant.objects.get(pk=grant_id).review_outcome == "inappropriate"


def test_an_adverse_review_needs_a_comment(client, outsider, compliance_officer, patient):
    grant_id = request_access(client, outsider, patient.pk).json()["id"]

    response = review(client, compliance_officer, grant_id, review_outcome="inappropriate")

    assert response.status_code == 400
    assert BreakGlassGrant.objects.get(pk=grant_id).reviewed_at is None


def test_agents_cannot_see_or_review_the_queue(client, outsider, member, patient):
    grant_id = request_access(client, outsider, patient.pk).json()["id"]

    assert client.get(QUEUE, **token_for(member)).status_code == 404
    response = review(client, member, grant_id, review_outcome="appropriate")
    assert response.status_code == 404
    assert BreakGlassGrant.objects.get(pk=grant_id).reviewed_at is None
