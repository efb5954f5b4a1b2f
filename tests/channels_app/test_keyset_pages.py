"""The inbox, timeline and message lists are read by hand-written keyset SQL
(channels_app.selectors): paging, ties, both directions, several teams, and the
access rule inside the statement."""

import base64
import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app.models import Interaction
from compliance.models import AuditEvent
from compliance.services import break_glass_grant
from contactcenter import roles
from tests.channels_app.test_inbox import INBOX, converse
from tests.factories import make_api_key, make_patient, make_staff, token_for

pytestmark = pytest.mark.django_db


def flat(pages):
    return [row for page in pages for row in page]


def walk(client, url, headers, params):
    """Every page from `url` by `next`, then back by `previous`: (forward pages, backward pages)."""
    forward, response = [], client.get(url, params, **headers)
    while True:
        assert response.status_code == 200, response.json()
        body = response.json()
        forward.append([row["id"] for row in body["results"]])
        if not body["next"]:
            break
        response = client.get(body["next"], **headers)
    backward = [forward[-1]]
    while body["previous"]:
        body = client.get(body["previous"], **headers).json()
        backward.append([row["id"] for row in body["results"]])
    return forward, backward


def test_timeline_pages_walk_rows_with_equal_times_once_each_way(client, north):
    agent = make_staff("agent-n", role=roles.AGENT, teams=[north])
    patient = make_patient(team=north)
    conversation = converse(north, patient=patient, minutes_ago=60)
    same_moment = timezone.now() - timedelta(minutes=30)
    # Seven messages at the same instant: only the id orders them, so a cursor on
    # the time alone (or time plus an offset) would skip or repeat some.
    for n in range(7):
        Interaction.objects.create(
            conversation=conversation,
            patient=patient,
            channel=conversation.channel,
            direction=Interaction.Direction.INBOUND,
            body=f"tie {n}",
            occurred_at=same_moment,
        )
    expected = [
        str(pk)
        for pk in Interaction.objects.filter(patient=patient)
        .order_by("-occurred_at", "-id")
        .values_list("pk", flat=True)
    ]
    url = f"/api/v1/patients/{patient.pk}/timeline/"

    forward, backward = walk(client, url, token_for(agent), {"page_size": 3})

    assert [len(page) for page in forward] == [3, 3, 2]
    assert flat(forward) == expected
    assert backward == forward[::-1]


def test_inbox_of_an_agent_in_two_teams_merges_both_in_order(client, north, south):
    agent = make_staff("agent-ns", role=roles.AGENT, teams=[north, south])
    created = [converse(north if i % 3 else south, minutes_ago=i) for i in range(9)]
    converse(north, status="resolved")

    forward, backward = walk(client, INBOX, token_for(agent), {"page_size": 2})

    assert flat(forward) == [str(c.pk) for c in created]
    assert backward == forward[::-1]


def test_inbox_sorted_by_sla_pages_soonest_first(client, north):
    agent = make_staff("agent-n", role=roles.AGENT, teams=[north])
    now = timezone.now()
    due = [converse(north, sla_due_at=now + timedelta(minutes=m)) for m in (50, 10, 30, 20, 40)]
    converse(north)  # owes no response: not in this sort

    forward, _ = walk(client, INBOX, token_for(agent), {"page_size": 2, "sort": "sla_due"})

    assert flat(forward) == [str(c.pk) for c in sorted(due, key=lambda c: c.sla_due_at)]


def test_inbox_names_only_patients_the_caller_may_see(client, north, south):
    agent = make_staff("agent-n", role=roles.AGENT, teams=[north])
    theirs = make_patient(team=south, given_name="Grace", family_name="Hopper")
    ours = make_patient(team=north, given_name="Ada", family_name="Lovelace")
    # A conversation of our team about a patient of another team (a family line).
    about_theirs = converse(north, patient=theirs, minutes_ago=1)
    converse(north, patient=ours, minutes_ago=2)

    def names():
        rows = client.get(INBOX, **token_for(agent)).json()["results"]
        return {row["id"]: row["patient_name"] for row in rows}

    assert sorted(names().values(), key=str) == ["Ada Lovelace", None]

    break_glass_grant(user=agent, patient_id=theirs.pk, reason="Patient collapsed at reception")

    assert names()[str(about_theirs.pk)] == "Grace Hopper"


def test_timeline_opens_with_a_break_glass_grant_and_closes_when_it_ends(client, north, south):
    outsider = make_staff("agent-s", role=roles.AGENT, teams=[south])
    patient = make_patient(team=north)
    converse(north, patient=patient, body="private")
    url = f"/api/v1/patients/{patient.pk}/timeline/"
    headers = token_for(outsider)

    assert client.get(url, **headers).status_code == 404
    grant = break_glass_grant(
        user=outsider, patient_id=patient.pk, reason="Covering the north desk tonight"
    )
    assert [m["body"] for m in client.get(url, **headers).json()["results"]] == ["private"]

    type(grant).objects.filter(pk=grant.pk).update(expires_at=timezone.now())
    assert client.get(url, **headers).status_code == 404


def test_a_team_bound_api_key_reads_only_its_team_timelines(client, north, south):
    patient = make_patient(team=north)
    converse(north, patient=patient, body="hello")
    url = f"/api/v1/patients/{patient.pk}/timeline/"
    own, _ = make_api_key(scopes=["timeline:read"], team=north)
    other, _ = make_api_key(scopes=["timeline:read"], team=south)

    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {own}").status_code == 200
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 404


def test_an_empty_timeline_of_a_visible_patient_is_an_empty_page(client, north):
    agent = make_staff("agent-n", role=roles.AGENT, teams=[north])
    patient = make_patient(team=north)

    response = client.get(f"/api/v1/patients/{patient.pk}/timeline/", **token_for(agent))

    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


def encoded(payload):
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        encoded({"k": []}),
        encoded({"k": ["2026-01-01T00:00:00+00:00", "not-a-uuid"], "b": 0}),
        encoded({"k": ["2026-01-01T00:00:00", str(uuid.uuid4())], "b": 0}),  # naive time
        encoded({"k": ["2026-01-01T00:00:00+00:00", str(uuid.uuid4())], "b": 7}),
    ],
)
def test_a_cursor_this_list_did_not_hand_out_is_a_400(client, north, cursor):
    agent = make_staff("agent-n", role=roles.AGENT, teams=[north])

    response = client.get(INBOX, {"cursor": cursor}, **token_for(agent))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


def test_a_page_size_that_is_not_a_number_is_a_400(client, north):
    agent = make_staff("agent-n", role=roles.AGENT, teams=[north])

    response = client.get(INBOX, {"page_size": "many"}, **token_for(agent))

    assert response.status_code == 400


def test_an_assignee_that_is_not_a_user_id_is_a_400(client, north):
    agent = make_staff("agent-n", role=roles.AGENT, teams=[north])

    response = client.get(INBOX, {"assignee": "everyone"}, **token_for(agent))

    assert response.status_code == 400
    assert "assignee" in response.json()["error"]["details"]


def test_conversation_messages_page_by_keyset(client, north):
    agent = make_staff("agent-n", role=roles.AGENT, teams=[north])
    conversation = converse(north, minutes_ago=10)
    for n in range(4):
        Interaction.objects.create(
            conversation=conversation,
            channel=conversation.channel,
            direction=Interaction.Direction.INBOUND,
            body=f"m{n}",
            occurred_at=timezone.now() - timedelta(minutes=9 - n),
        )
    url = f"{INBOX}{conversation.pk}/messages/"

    forward, backward = walk(client, url, token_for(agent), {"page_size": 2})

    expected = [
        str(pk)
        for pk in Interaction.objects.filter(conversation=conversation)
        .order_by("-occurred_at", "-id")
        .values_list("pk", flat=True)
    ]
    assert [len(page) for page in forward] == [2, 2, 1]
    assert flat(forward) == expected
    assert backward == forward[::-1]


def test_a_refused_timeline_is_audited_against_the_patient(client, north, south):
    outsider = make_staff("agent-s", role=roles.AGENT, teams=[south])
    patient = make_patient(team=north)

    response = client.get(f"/api/v1/patients/{patient.pk}/timeline/", **token_for(outsider))

    assert response.status_code == 404
    event = AuditEvent.objects.filter(resource_type="timeline").get()
    assert event.outcome == "denied"
    assert event.patient_ids == [str(patient.pk)]
