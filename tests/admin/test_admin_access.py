import pytest

from compliance.models import AuditEvent
from contactcenter import roles
from tests.factories import make_patient, make_staff

pytestmark = pytest.mark.django_db

PATIENTS = "/admin/patients/patient/"


def test_agent_sees_only_their_teams_patients_in_the_admin(client, north, south):
    mine = make_patient(team=north, mrn="N-0001")
    other = make_patient(team=south, mrn="S-0002")
    agent = make_staff("agent", role=roles.AGENT, teams=[north])
    client.force_login(agent)

    listing = client.get(PATIENTS)

    assert listing.status_code == 200
    assert [p.pk for p in listing.context["cl"].result_list] == [mine.pk]
    assert client.get(f"{PATIENTS}{other.pk}/change/").status_code == 302
    assert client.get(f"{PATIENTS}{mine.pk}/change/").status_code == 200


def test_admin_without_a_team_sees_no_patient_even_as_superuser(client, north):
    patient = make_patient(team=north)
    admin_user = make_staff("root", role=roles.ADMIN)
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)

    listing = client.get(PATIENTS)

    assert list(listing.context["cl"].result_list) == []
    assert client.get(f"{PATIENTS}{patient.pk}/change/").status_code == 302


def test_every_admin_phi_page_view_leaves_an_audit_row(client, north):
    patient = make_patient(team=north)
    agent = make_staff("agent", role=roles.AGENT, teams=[north])
    client.force_login(agent)

    client.get(PATIENTS)
    client.get(f"{PATIENTS}{patient.pk}/change/")

    events = AuditEvent.objects.filter(details__via="admin").order_by("id")
    assert [(e.action, e.patient_ids) for e in events] == [
        ("read", [str(patient.pk)]),
        ("read", [str(patient.pk)]),
    ]
    assert all(e.actor_user_id == agent.pk for e in events)


def test_list_rows_mask_names_and_mrn(client, north):
    make_patient(team=north, given_name="Grace", family_name="Hopper", mrn="MRN-9876")
    client.force_login(make_staff("agent", role=roles.AGENT, teams=[north]))

    page = client.get(PATIENTS).content.decode()

    assert "G. H****" in page and "***9876" in page
    assert "Hopper" not in page and "MRN-9876" not in page


def test_audit_events_are_read_only_even_for_superusers(client):
    officer = make_staff("officer", role=roles.COMPLIANCE)
    root = make_staff("root", role=roles.ADMIN)
    root.is_superuser = True
    root.save()
    client.force_login(officer)
    client.get("/admin/")
    event = AuditEvent.objects.create(action="read", resource_type="patient")

    assert client.get("/admin/compliance/auditevent/").status_code == 200
    assert (
        client.post(
            f"/admin/compliance/auditevent/{event.pk}/change/", {"action": "delete"}
        ).status_code
        == 403
    )
    assert client.get("/admin/compliance/auditevent/add/").status_code == 403
    client.force_login(root)
    assert client.get("/admin/compliance/auditevent/").status_code == 403


def test_config_pages_are_for_the_admin_role(client):
    client.force_login(make_staff("agent", role=roles.AGENT))
    assert client.get("/admin/contactcenter/team/").status_code == 403
    client.force_login(make_staff("boss", role=roles.ADMIN))
    assert client.get("/admin/contactcenter/team/").status_code == 200
