from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Conversation, Interaction, OutboundMessage
from channels_app.services import conversation_open, conversations_wake_snoozed, inbound_record
from compliance.models import AuditEvent
from contactcenter import roles
from patients.models import Channel
from tests.factories import make_patient, make_staff, token_for

pytestmark = pytest.mark.django_db

INBOX = "/api/v1/conversations/"


@pytest.fixture
def agent(north):
    return make_staff("agent-n", role=roles.AGENT, teams=[north])


@pytest.fixture
def colleague(north):
    return make_staff("colleague-n", role=roles.AGENT, teams=[north])


@pytest.fixture
def supervisor(north):
    return make_staff("super-n", role=roles.SUPERVISOR, teams=[north])


@pytest.fixture
def outsider(south):
    return make_staff("agent-s", role=roles.AGENT, teams=[south])


def converse(
    team,
    *,
    patient=None,
    minutes_ago=0,
    address="+14155550100",
    body="Hello there",
    channel=Channel.SMS,
    **fields,
):
    at = timezone.now() - timedelta(minutes=minutes_ago)
    conversation = conversation_open(
        channel=channel, team=team, patient=patient, contact_address=address, occurred_at=at
    )
    inbound_record(
        channel=channel,
        account=None,
        address=address,
        body=body,
        provider_id="",
        occurred_at=at,
        source="test",
        raw_payload={},
        conversation=conversation,
    )
    if fields:
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
    conversation.refresh_from_db()
    return conversation


def ids(response):
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def test_inbox_row_carries_masked_contact_name_preview_and_unread(client, north, agent):
    patient = make_patient(team=north, given_name="Grace", family_name="Hopper")
    conversation = converse(north, patient=patient, body="My prescription ran out")

    [row] = client.get(INBOX, **token_for(agent)).json()["results"]

    assert row["id"] == str(conversation.pk)
    assert row["patient_name"] == "Grace Hopper"
    assert row["contact"] == "+1 *** *** 0100"
    assert row["preview"] == "My prescription ran out"
    assert row["last_direction"] == "inbound"
    assert row["unread"] is True
    assert row["priority"] == "normal"


def test_inbox_is_newest_first_and_only_my_teams(client, north, south, agent):
    older = converse(north, minutes_ago=10)
    newer = converse(north, minutes_ago=1)
    converse(south)

    assert ids(client.get(INBOX, **token_for(agent))) == [str(newer.pk), str(older.pk)]


def test_every_filter(client, north, agent, colleague):
    patient = make_patient(team=north)
    mine = converse(north, assignee=agent, minutes_ago=1)
    theirs = converse(north, assignee=colleague, minutes_ago=2)
    unassigned_email = converse(
        north, channel=Channel.EMAIL, address="a@example.org", minutes_ago=3
    )
    urgent = converse(north, priority=Conversation.Priority.URGENT, minutes_ago=4)
    labelled = converse(north, labels=["billing"], minutes_ago=5)
    escalated = converse(north, escalated=True, minutes_ago=6)
    of_patient = converse(north, patient=patient, minutes_ago=7)
    resolved = converse(north, status="resolved", minutes_ago=8)
    snoozed = converse(north, status="snoozed", minutes_ago=9)
    old = converse(north, minutes_ago=600)
    headers = token_for(agent)

    def query(**params):
        return set(ids(client.get(INBOX, params, **headers)))

    assert query(assignee="me") == {str(mine.pk)}
    assert query(assignee=str(colleague.pk)) == {str(theirs.pk)}
    assert str(mine.pk) not in query(assignee="unassigned")
    assert query(channel="email") == {str(unassigned_email.pk)}
    assert query(priority="urgent") == {str(urgent.pk)}
    assert query(label="billing") == {str(labelled.pk)}
    assert query(escalated="true") == {str(escalated.pk)}
    assert query(patient=str(patient.pk)) == {str(of_patient.pk)}
    assert str(of_patient.pk) not in query(unmatched="true")
    assert query(status="resolved") == {str(resolved.pk)}
    assert query(status=["snoozed", "resolved"]) == {str(snoozed.pk), str(resolved.pk)}
    assert str(old.pk) not in query(updated_since=(timezone.now() - timedelta(hours=1)).isoformat())
    assert query(team=str(north.pk)) >= {str(mine.pk)}


def test_sort_by_sla_due_lists_soonest_first(client, north, agent):
    now = timezone.now()
    later = converse(north, sla_due_at=now + timedelta(hours=2))
    sooner = converse(north, sla_due_at=now + timedelta(minutes=5))
    converse(north)

    assert ids(client.get(INBOX, {"sort": "sla_due"}, **token_for(agent))) == [
        str(sooner.pk),
        str(later.pk),
    ]


def test_cursor_pages_walk_every_row_once(client, north, agent):
    created = [converse(north, minutes_ago=i) for i in range(7)]
    seen, url, params = [], INBOX, {"page_size": 3}
    while url:
        body = client.get(url, params, **token_for(agent)).json()
        seen.extend(row["id"] for row in body["results"])
        url, params = body["next"], {}

    assert seen == [str(c.pk) for c in created]


def test_counts_per_tab(client, north, south, agent):
    converse(north, assignee=agent)
    converse(north)
    converse(north, escalated=True)
    converse(north, status="resolved")
    converse(south)

    response = client.get("/api/v1/inbox/counts/", **token_for(agent))

    assert response.json() == {
        "mine": 1,
        "unassigned": 2,
        "my_teams": 3,
        "escalated": 1,
        "capped": [],
    }


def test_counts_cover_every_team_of_the_caller_and_none_of_a_teamless_one(
    client, north, south, agent
):
    converse(north)
    converse(south, escalated=True)
    both = make_staff("agent-ns", role=roles.AGENT, teams=[north, south])
    teamless = make_staff("agent-none", role=roles.AGENT)
    converse(north, assignee=teamless)

    counts = {
        user.username: client.get("/api/v1/inbox/counts/", **token_for(user)).json()
        for user in (agent, both, teamless)
    }

    assert counts["agent-n"]["my_teams"] == 2
    assert (counts["agent-ns"]["my_teams"], counts["agent-ns"]["escalated"]) == (3, 1)
    assert counts["agent-none"] == {
        "mine": 1,
        "unassigned": 0,
        "my_teams": 0,
        "escalated": 0,
        "capped": [],
    }


def test_counts_stop_at_the_cap_and_name_the_capped_tabs(client, north, agent, monkeypatch):
    from channels_app import selectors

    monkeypatch.setattr(selectors, "INBOX_COUNT_CAP", 3)
    for _ in range(5):
        converse(north)
    converse(north, assignee=agent)
    converse(north, escalated=True)

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/inbox/counts/", **token_for(agent))

    assert response.json() == {
        "mine": 1,
        "unassigned": 4,
        "my_teams": 4,
        "escalated": 1,
        "capped": ["unassigned", "my_teams"],
    }
    counting = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counting) == 1
    # Each tab's subquery stops at CAP + 1 rows, whatever the team holds.
    assert counting[0].upper().count("LIMIT 4") == 4


def test_capped_counts_plan_bounded_index_scans(north, agent):
    """The statement as built, EXPLAINed: every tab is a Limit over an index scan,
    so its cost does not grow with the team's open conversations."""
    from channels_app import selectors

    for _ in range(3):
        converse(north)
    converse(north, escalated=True)
    with CaptureQueriesContext(connection) as queries:
        selectors.inbox_counts(user=agent)
    (statement,) = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + statement)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert plan.count("Limit") == 4, plan
    assert "conv_team_escalated_idx" in plan, plan


@pytest.mark.parametrize("page_size", [10, 100])
def test_inbox_query_count_is_constant_in_page_size(
    client, north, agent, page_size, django_assert_max_num_queries
):
    for i in range(100):
        converse(
            north,
            patient=make_patient(team=north) if i % 3 == 0 else None,
            minutes_ago=i,
            assignee=agent if i % 2 else None,
        )
    headers = token_for(agent)

    with django_assert_max_num_queries(9):
        response = client.get(INBOX, {"page_size": page_size}, **headers)

    assert len(response.json()["results"]) == page_size


# --- Access ------------------------------------------------------------------------


def test_three_users_on_a_conversation(client, north, agent, colleague, outsider):
    patient = make_patient(team=north)
    conversation = converse(north, patient=patient)
    url = f"{INBOX}{conversation.pk}/"

    assert client.get(url, **token_for(agent)).status_code == 200
    assert client.get(url, **token_for(colleague)).status_code == 200
    denied = client.get(url, **token_for(outsider))

    assert denied.status_code == 404
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.outcome, event.patient_ids) == ("denied", [str(patient.pk)])
    assert client.get(f"{url}messages/", **token_for(outsider)).status_code == 404
    assert client.post(f"{url}read/", **token_for(outsider)).status_code == 404


def test_compliance_officer_gets_no_inbox(client, north):
    officer = make_staff("officer", role=roles.COMPLIANCE)
    converse(north)

    assert client.get(INBOX, **token_for(officer)).status_code == 403


def test_inbox_list_audit_row_names_every_patient_on_the_page(client, north, agent):
    patients = [make_patient(team=north) for _ in range(3)]
    for patient in patients:
        converse(north, patient=patient)

    client.get(INBOX, **token_for(agent))

    event = AuditEvent.objects.filter(resource_type="conversation").last()
    assert sorted(event.patient_ids) == sorted(str(p.pk) for p in patients)


# --- Changes -------------------------------------------------------------------------


def patch(client, user, conversation, **changes):
    return client.patch(
        f"{INBOX}{conversation.pk}/", changes, content_type="application/json", **token_for(user)
    )


def events(conversation):
    return list(
        Interaction.objects.filter(conversation=conversation, kind="event")
        .order_by("created_at")
        .values_list("metadata__change", flat=True)
    )


def test_resolve_then_reopen_leaves_events(client, north, agent):
    conversation = converse(north)

    assert patch(client, agent, conversation, status="resolved").status_code == 200
    assert patch(client, agent, conversation, status="open").status_code == 200

    assert events(conversation) == ["status open → resolved", "reopened"]


def test_illegal_transition_is_409(client, north, agent):
    conversation = converse(north, status="resolved")

    response = patch(client, agent, conversation, status="pending")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"


def test_snooze_needs_a_future_time_and_beat_wakes_it(client, north, agent):
    conversation = converse(north)

    refused = patch(client, agent, conversation, status="snoozed")
    snoozed = patch(
        client,
        agent,
        conversation,
        status="snoozed",
        snoozed_until=(timezone.now() + timedelta(hours=1)).isoformat(),
    )
    Conversation.objects.filter(pk=conversation.pk).update(
        snoozed_until=timezone.now() - timedelta(seconds=1)
    )
    woken = conversations_wake_snoozed()

    assert refused.status_code == 400
    assert snoozed.json()["status"] == "snoozed"
    assert woken == 1
    conversation.refresh_from_db()
    assert conversation.status == "open"
    assert events(conversation)[-1] == "woken"


def test_a_new_inbound_message_wakes_a_snoozed_conversation(north):
    conversation = converse(
        north, status="snoozed", snoozed_until=timezone.now() + timedelta(days=1)
    )

    inbound_record(
        channel=Channel.SMS,
        account=None,
        address="+14155550100",
        body="hello?",
        provider_id="",
        occurred_at=timezone.now(),
        source="test",
        raw_payload={},
        conversation=conversation,
    )

    conversation.refresh_from_db()
    assert (conversation.status, conversation.snoozed_until) == ("open", None)


def test_agent_takes_an_unassigned_one_and_gives_it_back(client, north, agent):
    conversation = converse(north)

    assert patch(client, agent, conversation, assignee=agent.pk).json()["assignee"] == agent.pk
    assert patch(client, agent, conversation, assignee=None).json()["assignee"] is None


def test_agent_cannot_assign_others_or_take_a_taken_one(client, north, agent, colleague):
    conversation = converse(north)
    taken = converse(north, assignee=colleague)

    to_other = patch(client, agent, conversation, assignee=colleague.pk)
    steal = patch(client, agent, taken, assignee=agent.pk)

    assert to_other.status_code == 400
    assert to_other.json()["error"]["code"] == "assignment_not_allowed"
    assert steal.status_code == 400


def test_supervisor_assigns_team_members_only(client, north, supervisor, colleague, outsider):
    conversation = converse(north)

    ok = patch(client, supervisor, conversation, assignee=colleague.pk)
    foreign = patch(client, supervisor, conversation, assignee=outsider.pk)

    assert ok.status_code == 200
    assert foreign.json()["error"]["code"] == "assignee_not_in_team"
    assert events(conversation) == ["assigned to colleague-n"]


def test_priority_and_labels(client, north, agent):
    conversation = converse(north)

    response = patch(client, agent, conversation, priority="high", labels=["billing", "refill"])

    assert response.json()["priority"] == "high"
    assert response.json()["labels"] == ["billing", "refill"]
    assert events(conversation) == ["priority normal → high", "labels set to billing, refill"]


def test_staff_match_an_unmatched_conversation_to_a_patient(client, north, agent):
    patient = make_patient(team=north)
    conversation = converse(north)

    response = patch(client, agent, conversation, patient=str(patient.pk))

    assert response.json()["patient"] == str(patient.pk)
    assert Interaction.objects.filter(conversation=conversation, patient=patient).exists()


# --- Messages, replies, notes, read ---------------------------------------------------


def test_reply_with_idempotency_key_sends_once(client, north, agent):
    conversation = converse(north)
    url = f"{INBOX}{conversation.pk}/messages/"
    headers = {**token_for(agent), "HTTP_IDEMPOTENCY_KEY": "reply-1"}

    first = client.post(url, {"body": "On my way"}, content_type="application/json", **headers)
    again = client.post(url, {"body": "On my way"}, content_type="application/json", **headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert first.json() == again.json()
    assert OutboundMessage.objects.count() == 1
    assert first.json()["delivery_status"] == "queued"


def test_internal_note_is_never_sent(client, north, agent):
    conversation = converse(north)

    response = client.post(
        f"{INBOX}{conversation.pk}/messages/",
        {"body": "Called pharmacy", "internal": True},
        content_type="application/json",
        **token_for(agent),
    )

    assert response.json()["kind"] == "note"
    assert response.json()["direction"] == "internal"
    assert not OutboundMessage.objects.exists()


def test_canned_response_fills_the_patient_first_name(client, north, agent):
    from channels_app.models import CannedResponse

    patient = make_patient(team=north, given_name="Ada")
    conversation = converse(north, patient=patient)
    canned = CannedResponse.objects.create(team=north, title="Hi", body="Hello $first_name!")

    response = client.post(
        f"{INBOX}{conversation.pk}/messages/",
        {"canned_response": canned.pk},
        content_type="application/json",
        **token_for(agent),
    )

    assert response.json()["body"] == "Hello Ada!"


def test_unread_is_per_user(client, north, agent, colleague):
    conversation = converse(north)

    client.post(f"{INBOX}{conversation.pk}/read/", **token_for(agent))

    assert client.get(INBOX, **token_for(agent)).json()["results"][0]["unread"] is False
    assert client.get(INBOX, **token_for(colleague)).json()["results"][0]["unread"] is True


def test_messages_are_newest_first(client, north, agent):
    conversation = converse(north, body="first")
    client.post(
        f"{INBOX}{conversation.pk}/messages/",
        {"body": "second"},
        content_type="application/json",
        **token_for(agent),
    )

    bodies = [
        m["body"]
        for m in client.get(f"{INBOX}{conversation.pk}/messages/", **token_for(agent)).json()[
            "results"
        ]
    ]

    assert bodies == ["second", "first"]


# --- Timeline ----------------------------------------------------------------------------


def test_timeline_spans_conversations_and_channels(
    client, north, agent, outsider, django_assert_max_num_queries
):
    patient = make_patient(team=north)
    converse(north, patient=patient, body="sms one", minutes_ago=3)
    converse(
        north,
        patient=patient,
        channel=Channel.EMAIL,
        address="p@example.org",
        body="email two",
        minutes_ago=1,
    )
    url = f"/api/v1/patients/{patient.pk}/timeline/"

    with django_assert_max_num_queries(8):
        response = client.get(url, **token_for(agent))
    email_only = client.get(url, {"channel": "email"}, **token_for(agent))

    assert [m["body"] for m in response.json()["results"]] == ["email two", "sms one"]
    assert [m["body"] for m in email_only.json()["results"]] == ["email two"]
    assert client.get(url, **token_for(outsider)).status_code == 404


def test_timeline_needs_the_timeline_scope(client, north):
    from tests.factories import make_api_key

    patient = make_patient(team=north)
    url = f"/api/v1/patients/{patient.pk}/timeline/"
    without, _ = make_api_key(scopes=["patients:read"])
    with_scope, _ = make_api_key(scopes=["timeline:read"])

    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {without}").status_code == 403
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {with_scope}").status_code == 200


def test_timeline_query_count_is_constant_in_page_size(client, north, agent):
    patient = make_patient(team=north)
    for i in range(40):
        converse(north, patient=patient, minutes_ago=i)

    headers = token_for(agent)

    def count(size):
        with CaptureQueriesContext(connection) as captured:
            client.get(f"/api/v1/patients/{patient.pk}/timeline/", {"page_size": size}, **headers)
        return len(captured)

    assert count(10) == count(40)
