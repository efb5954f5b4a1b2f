"""An unknown sender in the patient panel: a number several patients share says
so and names them (audited); staff find a patient by phone, email or MRN through
the blind indexes and link the conversation, or create the patient with the
API's validation. The `/` search finds patients the same way."""

import pytest

from channels_app.models import Conversation, Interaction
from compliance.models import AuditEvent
from patients.models import Patient
from tests.factories import make_patient
from tests.workspace.conftest import receive_sms

pytestmark = pytest.mark.django_db


@pytest.fixture
def unknown(sms_account):
    return receive_sms(
        account=sms_account, phone="+14155550777", body="Hi, is this the clinic?"
    ).conversation


def test_an_unknown_sender_can_be_linked_to_a_patient_found_by_mrn(client, agent, north, unknown):
    patient = make_patient(
        team=north, phones=("+14155550778",), mrn="MRN-4242", given_name="Lin", family_name="Ked"
    )
    client.force_login(agent)
    page = client.get(f"/conversations/{unknown.pk}/").text
    assert "No patient you can see has this number on record." in page
    found = client.get(f"/conversations/{unknown.pk}/match/search/?q=MRN-4242")
    assert found.status_code == 200 and "Lin Ked" in found.text and "MRN MRN-4242" in found.text
    assert AuditEvent.objects.filter(
        actor_user_id=agent.pk, resource_type="patient", patient_ids=[str(patient.pk)]
    ).exists()
    nothing = client.get(f"/conversations/{unknown.pk}/match/search/?q=%2B14155550000")
    assert "No patient you can see has" in nothing.text

    linked = client.post(
        f"/conversations/{unknown.pk}/match/link/",
        {"patient": str(patient.pk)},
        HTTP_HX_REQUEST="true",
    )
    assert linked.status_code == 200
    unknown.refresh_from_db()
    assert unknown.patient_id == patient.pk
    assert Interaction.objects.filter(conversation=unknown, patient=patient).exists()
    # The panel now shows the patient's record.
    assert "<dt>MRN</dt><dd>MRN-4242</dd>" in linked.text
    assert Interaction.objects.filter(conversation=unknown, kind="event").exists()


def test_a_number_several_patients_share_says_so_and_names_them(client, agent, north, sms_account):
    for given in ("Ana", "Ben"):
        make_patient(team=north, phones=("+14155550779",), given_name=given, family_name="Share")
    conversation = receive_sms(
        account=sms_account, phone="+14155550779", body="It's one of the kids"
    ).conversation
    assert conversation.patient_id is None
    client.force_login(agent)
    page = client.get(f"/conversations/{conversation.pk}/").text
    assert "This number belongs to 2 patients" in page
    assert "Ana Share" in page and "Ben Share" in page
    event = AuditEvent.objects.filter(
        actor_user_id=agent.pk, resource_type="conversation", resource_id=str(conversation.pk)
    ).latest("id")
    assert sorted(event.patient_ids) == sorted(
        str(pk) for pk in Patient.objects.values_list("pk", flat=True)
    )


def test_a_new_patient_for_the_sender_is_validated_created_and_linked(
    client, agent, north, unknown
):
    make_patient(team=north, phones=("+14155550780",), mrn="TAKEN-1")
    client.force_login(agent)
    url = f"/conversations/{unknown.pk}/match/create/"
    bad = client.post(
        url, {"given_name": "", "family_name": "New", "mrn": "M-1"}, HTTP_HX_REQUEST="true"
    )
    assert bad.status_code == 400 and "First name: This field may not be blank." in bad.text
    taken = client.post(
        url, {"given_name": "Nu", "family_name": "New", "mrn": "TAKEN-1"}, HTTP_HX_REQUEST="true"
    )
    assert taken.status_code == 409 and "A patient with this MRN exists" in taken.text
    assert Patient.objects.count() == 1
    made = client.post(
        url,
        {"given_name": "Nu", "family_name": "New", "mrn": "M-2", "birth_date": "1990-02-03"},
        HTTP_HX_REQUEST="true",
    )
    assert made.status_code == 200
    unknown.refresh_from_db()
    patient = unknown.patient
    assert (patient.given_name, patient.team_id) == ("Nu", north.pk)
    assert [cp.value for cp in patient.contact_points.all()] == ["+14155550777"]
    assert AuditEvent.objects.filter(
        action="create", resource_type="patient", patient_ids=[str(patient.pk)]
    ).exists()


def test_an_outsider_cannot_search_link_or_create_for_the_conversation(
    client, outsider, north, unknown
):
    patient = make_patient(team=north, phones=("+14155550781",), mrn="MRN-1")
    client.force_login(outsider)
    assert client.get(f"/conversations/{unknown.pk}/match/search/?q=MRN-1").status_code == 404
    response = client.post(f"/conversations/{unknown.pk}/match/link/", {"patient": str(patient.pk)})
    assert response.status_code == 404
    response = client.post(
        f"/conversations/{unknown.pk}/match/create/",
        {"given_name": "X", "family_name": "Y", "mrn": "Z"},
    )
    assert response.status_code == 404
    assert Conversation.objects.get(pk=unknown.pk).patient_id is None
    assert Patient.objects.count() == 1


def test_the_slash_search_finds_patients_by_phone_email_or_mrn_and_audits_them(
    client, agent, outsider, north, make_sms_conversation
):
    conversation = make_sms_conversation(30, body="hello")
    patient = conversation.patient
    client.force_login(agent)
    for q in ("+1 (415) 555-0030", "415-555-0030", patient.mrn):
        page = client.get("/patients/search/", {"q": q})
        assert page.status_code == 200
        assert "Pat30 Lovelace" in page.text, q
        assert f'href="/conversations/{conversation.pk}/"' in page.text
    assert (
        AuditEvent.objects.filter(
            actor_user_id=agent.pk,
            details__path="/patients/search/",
            patient_ids=[str(patient.pk)],
        ).count()
        == 3
    )
    client.force_login(outsider)
    assert "Pat30" not in client.get("/patients/search/", {"q": patient.mrn}).text


def test_the_panel_and_the_search_cost_the_same_queries_for_2_or_6_matches(
    client, agent, north, sms_account
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def add(n):
        make_patient(team=north, phones=("+14155550790",), mrn=f"SH-{n}", given_name=f"S{n}")

    add(0)
    add(1)
    conversation = receive_sms(account=sms_account, phone="+14155550790", body="hi").conversation
    client.force_login(agent)
    paths = (
        f"/conversations/{conversation.pk}/",
        "/patients/search/?q=%2B14155550790",
        f"/conversations/{conversation.pk}/match/search/?q=%2B14155550790",
    )
    client.get(paths[0])

    def counts():
        result = []
        for path in paths:
            with CaptureQueriesContext(connection) as captured:
                assert client.get(path).status_code == 200
            result.append(len(captured))
        return result

    few = counts()
    for n in range(2, 6):
        add(n)
    assert counts() == few
