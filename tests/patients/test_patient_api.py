import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance.models import AuditEvent
from patients.models import ContactPoint, Patient
from tests.factories import make_patient, make_staff, token_for

pytestmark = pytest.mark.django_db

LIST = "/api/v1/patients/"


def detail(patient_id):
    return f"/api/v1/patients/{patient_id}/"


def last_audit():
    return AuditEvent.objects.order_by("-id").first()


def valid_payload(**overrides):
    payload = {
        "mrn": "MRN-1001",
        "given_name": "Katherine",
        "family_name": "Johnson",
        "birth_date": "1970-08-26",
        "sex": "female",
        "time_zone": "America/Chicago",
        "phones": [{"value": "(312) 555-0142", "preferred": True}],
        "emails": [{"value": " Katherine@Example.org "}],
        "preferred_channel": "sms",
        "needs_interpreter": True,
    }
    payload.update(overrides)
    return payload


# --- Access: the team member, a teammate, an outsider, the compliance officer --


def test_team_member_and_teammate_read_the_patient_with_an_audit_row(
    client, patient, member, teammate
):
    for user in (member, teammate):
        response = client.get(detail(patient.pk), **token_for(user))

        assert response.status_code == 200
        body = response.json()
        assert body["given_name"] == "Grace"
        assert body["phones"][0]["value"] == "+14155550100"
        event = last_audit()
        assert (event.action, event.outcome) == ("read", "success")
        assert event.actor_user_id == user.pk
        assert event.patient_ids == [str(patient.pk)]


@pytest.mark.parametrize("who", ["outsider", "compliance_officer"])
def test_outsiders_get_404_and_a_denied_audit_row(client, patient, who, request):
    user = request.getfixturevalue(who)

    response = client.get(detail(patient.pk), **token_for(user))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    event = last_audit()
    assert (event.outcome, event.http_status) == ("denied", 404)
    assert event.patient_ids == [str(patient.pk)]
    assert event.actor_user_id == user.pk


def test_superuser_without_team_sees_no_patient(client, patient):
    admin = make_staff("root", role="admin")
    admin.is_superuser = admin.is_staff = True
    admin.save()

    assert client.get(detail(patient.pk), **token_for(admin)).status_code == 404
    assert client.get(LIST, **token_for(admin)).status_code == 403


def test_api_key_needs_the_read_scope(client, patient, api_key_headers):
    without = client.get(detail(patient.pk), **api_key_headers("portal:write"))
    denied = last_audit()
    with_scope = client.get(detail(patient.pk), **api_key_headers("patients:read"))

    assert without.status_code == 403
    assert (denied.outcome, denied.http_status) == ("denied", 403)
    assert with_scope.status_code == 200
    assert last_audit().api_client_id is not None


def test_api_key_bound_to_another_team_gets_404(client, patient, south, api_key_headers):
    response = client.get(detail(patient.pk), **api_key_headers("patients:read", team=south))

    assert response.status_code == 404


def test_list_writes_one_audit_row_naming_every_returned_patient(client, north, south, member):
    mine = [make_patient(team=north) for _ in range(3)]
    make_patient(team=south)
    before = AuditEvent.objects.count()

    response = client.get(LIST, **token_for(member))

    assert response.status_code == 200
    assert {row["id"] for row in response.json()["results"]} == {str(p.pk) for p in mine}
    assert AuditEvent.objects.count() == before + 1
    assert sorted(last_audit().patient_ids) == sorted(str(p.pk) for p in mine)


# --- Lookups through blind indexes ---------------------------------------------


@pytest.mark.parametrize("formatted", ["+14155550100", "415.555.0100", "(415) 555-0100"])
def test_phone_lookup_finds_any_format_of_the_number(client, patient, member, formatted):
    response = client.get(LIST, {"phone": formatted}, **token_for(member))

    assert [row["id"] for row in response.json()["results"]] == [str(patient.pk)]


def test_shared_family_number_returns_every_patient_on_it(client, north, member):
    parent = make_patient(team=north, phones=["+14155550177"])
    child = make_patient(team=north, phones=["415-555-0177"])

    response = client.get(LIST, {"phone": "4155550177"}, **token_for(member))

    assert {row["id"] for row in response.json()["results"]} == {str(parent.pk), str(child.pk)}


def test_email_and_mrn_lookups(client, north, member):
    target = make_patient(team=north, emails=["ada@example.org"], mrn="A-77")
    make_patient(team=north)

    by_email = client.get(LIST, {"email": " ADA@example.org"}, **token_for(member))
    by_mrn = client.get(LIST, {"mrn": "A-77"}, **token_for(member))

    assert [r["id"] for r in by_email.json()["results"]] == [str(target.pk)]
    assert [r["id"] for r in by_mrn.json()["results"]] == [str(target.pk)]


def test_impossible_phone_lookup_is_a_400(client, member):
    response = client.get(LIST, {"phone": "12"}, **token_for(member))

    assert response.status_code == 400
    assert "phone" in response.json()["error"]["details"]


def test_filter_by_flag(client, north, member):
    flagged = make_patient(team=north, needs_interpreter=True)
    make_patient(team=north)

    response = client.get(LIST, {"flag": "needs_interpreter"}, **token_for(member))

    assert [r["id"] for r in response.json()["results"]] == [str(flagged.pk)]


# --- Create and validate --------------------------------------------------------


def test_create_patient_stores_normalised_contacts_and_grants_the_team(
    client, member, teammate, outsider
):
    response = client.post(
        LIST, valid_payload(), content_type="application/json", **token_for(member)
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["phones"][0]["value"] == "+13125550142"
    assert body["emails"][0]["value"] == "katherine@example.org"
    assert body["needs_interpreter"] is True
    assert client.get(detail(body["id"]), **token_for(teammate)).status_code == 200
    assert client.get(detail(body["id"]), **token_for(outsider)).status_code == 404
    event = AuditEvent.objects.filter(action="create").get()
    assert event.patient_ids == [body["id"]]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"phones": [{"value": "+1 555"}]}, "phones"),
        ({"emails": [{"value": "not-an-email"}]}, "emails"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"team": 999999}, "team"),
        ({"mrn": "   "}, "mrn"),
        ({"preferred_channel": "fax"}, "preferred_channel"),
    ],
)
def test_bad_input_gives_400_with_a_field_message(client, member, overrides, field):
    response = client.post(
        LIST, valid_payload(**overrides), content_type="application/json", **token_for(member)
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"]
    assert not Patient.objects.exists()


def test_one_bad_phone_among_three_creates_nothing(client, member):
    phones = [{"value": "+14155550101"}, {"value": "555"}, {"value": "+14155550103"}]

    response = client.post(
        LIST, valid_payload(phones=phones), content_type="application/json", **token_for(member)
    )

    assert response.status_code == 400
    assert response.json()["error"]["details"]["phones"]["1"]["value"]
    assert not Patient.objects.exists()
    assert not ContactPoint.objects.exists()


def test_team_the_caller_is_not_in_is_refused(client, member, south):
    response = client.post(
        LIST, valid_payload(team=south.pk), content_type="application/json", **token_for(member)
    )

    assert response.status_code == 400
    assert "team" in response.json()["error"]["details"]


def test_duplicate_mrn_is_409_with_the_id_only_for_callers_who_may_see_it(
    client, patient, member, outsider
):
    payload = valid_payload(mrn=patient.mrn)

    seen = client.post(LIST, payload, content_type="application/json", **token_for(member))
    unseen = client.post(LIST, payload, content_type="application/json", **token_for(outsider))

    assert seen.status_code == 409
    assert seen.json()["error"]["details"] == {"existing_id": str(patient.pk)}
    assert unseen.status_code == 409
    assert unseen.json()["error"]["details"] == {}


def test_patch_replaces_phones_and_keeps_consent_of_numbers_that_stay(client, patient, member):
    ContactPoint.objects.filter(patient=patient).update(sms_opted_out=True)
    phones = [{"value": "+1 415 555 0100"}, {"value": "+1 415 555 0199", "preferred": True}]

    response = client.patch(
        detail(patient.pk),
        {"phones": phones, "vip": True},
        content_type="application/json",
        **token_for(member),
    )

    assert response.status_code == 200, response.json()
    by_value = {p["value"]: p for p in response.json()["phones"]}
    assert by_value["+14155550100"]["sms_opted_out"] is True
    assert by_value["+14155550199"]["preferred"] is True
    assert response.json()["vip"] is True
    assert last_audit().action == "update"


def test_patch_by_outsider_is_404_and_changes_nothing(client, patient, outsider):
    response = client.patch(
        detail(patient.pk),
        {"given_name": "Mallory"},
        content_type="application/json",
        **token_for(outsider),
    )

    assert response.status_code == 404
    patient.refresh_from_db()
    assert patient.given_name == "Grace"


# --- Query counts ------------------------------------------------------------------


def _queries_for_list(client, user, page_size):
    headers = token_for(user)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(LIST, {"page_size": page_size}, **headers)
    assert response.status_code == 200
    assert len(response.json()["results"]) == page_size
    return len(captured)


def test_list_query_count_is_constant_in_page_size_and_contact_points(client, north, member):
    for i in range(60):
        phones = [f"+1415555{1000 + i * 3 + k:04d}" for k in range(1 + i % 3)]
        make_patient(team=north, phones=phones, emails=[f"p{i}@example.org"])

    small = _queries_for_list(client, member, 10)
    large = _queries_for_list(client, member, 50)

    assert small == large
    assert large <= 8


def test_duplicate_mrn_attempt_is_audited_against_the_existing_patient(client, patient, outsider):
    response = client.post(
        LIST, valid_payload(mrn=patient.mrn), content_type="application/json", **token_for(outsider)
    )

    assert response.status_code == 409
    assert str(patient.pk) not in response.content.decode()
    event = AuditEvent.objects.get(resource_type="patient", action="create")
    assert event.outcome == "error"
    assert event.patient_ids == [str(patient.pk)]
    assert event.actor_username == "outsider"
