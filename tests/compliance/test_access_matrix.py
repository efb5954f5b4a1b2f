"""The one access rule (compliance.access) over every path that reads a patient or
a conversation: the API, the admin and the selectors the workspace and exports
build on. Four users: a member of the patient's team, a teammate, an outsider,
and an outsider holding a break-glass grant for the patient."""

from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app.selectors import InboxFilters, conversations_visible_to, inbox_page
from channels_app.services import conversation_open, inbound_record
from compliance.access import team_ids_of
from compliance.services import break_glass_grant
from contactcenter import roles
from contactcenter.keyset import PageRequest
from patients.models import Appointment, Channel
from patients.selectors import patients_visible_to
from tests.factories import make_patient, make_staff, token_for

pytestmark = pytest.mark.django_db

SEES = {"member": True, "teammate": True, "outsider": False, "break_glass": True}


@pytest.fixture
def world(north, south):
    patient = make_patient(team=north, mrn="MX-1")
    conversation = conversation_open(
        channel=Channel.SMS, team=north, patient=patient, contact_address="+14155550100"
    )
    inbound_record(
        channel=Channel.SMS,
        account=None,
        address="+14155550100",
        body="Can I move my visit?",
        provider_id="",
        occurred_at=timezone.now(),
        source="test",
        raw_payload={},
        conversation=conversation,
    )
    Appointment.objects.create(patient=patient, starts_at=timezone.now() + timedelta(days=2))
    users = {
        "member": make_staff("m-north", role=roles.AGENT, teams=[north]),
        "teammate": make_staff("t-north", role=roles.AGENT, teams=[north]),
        "outsider": make_staff("o-south", role=roles.AGENT, teams=[south]),
        "break_glass": make_staff("bg-south", role=roles.AGENT, teams=[south]),
    }
    break_glass_grant(
        user=users["break_glass"],
        patient_id=patient.pk,
        reason="Patient arrived unconscious at the ER; need the contact list.",
    )
    return patient, conversation, users


API_PATHS = {
    "patient": "/api/v1/patients/{patient}/",
    "timeline": "/api/v1/patients/{patient}/timeline/",
    "appointments": "/api/v1/patients/{patient}/appointments/",
    "conversation": "/api/v1/conversations/{conversation}/",
    "messages": "/api/v1/conversations/{conversation}/messages/",
}
ADMIN_PATHS = {
    "admin patient": "/admin/patients/patient/{patient}/change/",
    "admin conversation": "/admin/channels_app/conversation/{conversation}/change/",
}


@pytest.mark.parametrize("who", list(SEES))
@pytest.mark.parametrize("path", list(API_PATHS))
def test_api_paths_follow_the_rule(client, world, who, path):
    patient, conversation, users = world
    url = API_PATHS[path].format(patient=patient.pk, conversation=conversation.pk)

    response = client.get(url, **token_for(users[who]))

    assert response.status_code == (200 if SEES[who] else 404), response.content


@pytest.mark.parametrize("who", list(SEES))
@pytest.mark.parametrize("path", list(ADMIN_PATHS))
def test_admin_pages_follow_the_rule(client, world, who, path):
    patient, conversation, users = world
    client.force_login(users[who])
    url = ADMIN_PATHS[path].format(patient=patient.pk, conversation=conversation.pk)

    response = client.get(url)

    # The admin redirects a record it cannot find to its list.
    assert response.status_code == (200 if SEES[who] else 302)


@pytest.mark.parametrize("who", list(SEES))
def test_the_selectors_follow_the_rule(client, world, who):
    patient, conversation, users = world
    user = users[who]

    assert patients_visible_to(user).filter(pk=patient.pk).exists() == SEES[who]
    assert conversations_visible_to(user).filter(pk=conversation.pk).exists() == SEES[who]
    listed = client.get(f"/api/v1/patients/?mrn={'MX-1'}", **token_for(user)).json()["results"]
    assert [row["id"] for row in listed] == ([str(patient.pk)] if SEES[who] else [])


@pytest.mark.parametrize("who", list(SEES))
def test_the_inbox_is_the_rules_team_half(world, who):
    """The inbox lists the user's teams' conversations (the work queue): a
    break-glass grant opens a patient's records, it does not put their
    conversations in another team's queue."""
    _patient, conversation, users = world
    user = users[who]

    page = inbox_page(user=user, filters=InboxFilters(), page=PageRequest(size=50, cursor=None))

    in_my_teams = conversation.team_id in team_ids_of(user)
    assert [row["id"] for row in page.rows] == ([conversation.pk] if in_my_teams else [])
    assert in_my_teams == (who in ("member", "teammate"))
    # The team form never shows what the rule hides.
    if in_my_teams:
        assert conversations_visible_to(user).filter(pk=conversation.pk).exists()


def test_grants_follow_the_team_when_a_conversation_moves(world, south):
    """What makes the inbox's team form equal to the grants: the one service
    that moves a conversation moves its grant in the same transaction."""
    from channels_app.services import conversation_move_to_team

    _patient, conversation, users = world

    conversation_move_to_team(conversation=conversation, team=south)

    assert conversations_visible_to(users["outsider"]).filter(pk=conversation.pk).exists()
    assert not conversations_visible_to(users["member"]).filter(pk=conversation.pk).exists()


def _principals(users, north):
    from contactcenter.auth import ApiClientPrincipal
    from tests.factories import make_api_key

    return {
        **users,
        "team key": ApiClientPrincipal(make_api_key(scopes=["timeline:read"], team=north)[1]),
        "practice key": ApiClientPrincipal(make_api_key(scopes=["timeline:read"])[1]),
    }


@pytest.mark.parametrize(
    "who", [*SEES, "team key", "practice key", "another patient", "a patient id as text"]
)
def test_the_timelines_compiled_rule_is_the_rules_statement(world, north, who):
    """patient_visible_sql compiles the rule once per kind of principal and fills in
    the request's values; it must give the statement and parameters a fresh
    compilation of patients_visible_to() gives, for every principal (the clock
    aside: each reads it)."""
    from datetime import datetime

    from compliance.access import visible_sql
    from patients.selectors import patient_visible_sql

    patient, _conversation, users = world
    principals = _principals(users, north)
    user = principals.get(who, users["member"])
    patient_id = {
        "another patient": make_patient(team=north).pk,
        "a patient id as text": str(patient.pk),
    }.get(who, patient.pk)

    sql, params = patient_visible_sql(user, patient_id=patient_id)
    fresh_sql, fresh_params = visible_sql(patients_visible_to(user).filter(pk=patient_id))

    assert sql == fresh_sql
    assert len(params) == len(fresh_params)
    for value, fresh in zip(params, fresh_params, strict=True):
        if isinstance(fresh, datetime):
            assert isinstance(value, datetime)
            assert abs((value - fresh).total_seconds()) < 5
        else:
            assert (type(value), value) == (type(fresh), fresh)
