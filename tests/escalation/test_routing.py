import multiprocessing
from collections import Counter

import pytest
from django.db import connection, connections

from channels_app.models import Conversation, Interaction
from channels_app.selectors import conversations_visible_to
from channels_app.services import conversation_open
from contactcenter import roles
from contactcenter.models import StaffProfile
from escalation import services
from patients.models import Channel
from tests.escalation.conftest import make_available, receive, reload
from tests.factories import TeamFactory, make_patient, make_staff, token_for

pytestmark = pytest.mark.usefixtures("blank_configuration")

AVAILABILITY = "/api/v1/staff/me/availability/"


@pytest.fixture
def team(db):
    return TeamFactory(name="Care coordination")


@pytest.fixture
def coordinator(team):
    return make_available(make_staff("coordinator", role=roles.AGENT, teams=[team]))


@pytest.fixture
def colleague(team):
    return make_available(make_staff("colleague", role=roles.AGENT, teams=[team]))


def open_conversation(team, *, patient=None, assignee=None, n=0):
    conversation = conversation_open(
        channel=Channel.SMS, team=team, patient=patient, contact_address=f"+1415555{n:04d}"
    )
    if assignee is not None:
        Conversation.objects.filter(pk=conversation.pk).update(assignee=assignee)
    return conversation


def give_load(user, team, count):
    for n in range(count):
        open_conversation(team, assignee=user, n=9000 + n)


def events(conversation):
    return [
        event.body
        for event in Interaction.objects.filter(conversation=conversation, kind="event").order_by(
            "created_at"
        )
    ]


def test_primary_coordinator_gets_their_patients_conversation_even_if_busier(
    team, coordinator, colleague
):
    give_load(coordinator, team, 5)
    patient = make_patient(team=team, primary_coordinator=coordinator)
    conversation = open_conversation(team, patient=patient)

    decision = services.conversation_route(conversation=conversation)

    assert decision.how == "coordinator"
    assert reload(conversation).assignee == coordinator
    assert events(conversation) == ["routed to coordinator: the patient's primary coordinator"]


@pytest.mark.parametrize("why", ["away", "busy", "full", "not_in_team"])
def test_without_the_coordinator_the_least_loaded_available_agent_gets_it(
    team, coordinator, colleague, why
):
    third = make_available(make_staff("third", role=roles.AGENT, teams=[team]))
    give_load(colleague, team, 2)
    give_load(third, team, 1)
    if why in ("away", "busy"):
        StaffProfile.objects.filter(user=coordinator).update(availability=why)
    elif why == "full":
        StaffProfile.objects.filter(user=coordinator).update(capacity=3)
        give_load(coordinator, team, 3)
    else:
        coordinator.groups.remove(team.group)
    patient = make_patient(team=team, primary_coordinator=coordinator)
    conversation = open_conversation(team, patient=patient)

    services.conversation_route(conversation=conversation)

    assert reload(conversation).assignee == third
    assert events(conversation) == ["routed to third: least loaded (1 open)"]


def test_resolved_conversations_do_not_count_against_capacity(team, coordinator):
    StaffProfile.objects.filter(user=coordinator).update(capacity=2)
    give_load(coordinator, team, 2)
    Conversation.objects.filter(assignee=coordinator).update(status="resolved")
    conversation = open_conversation(team)

    services.conversation_route(conversation=conversation)

    assert reload(conversation).assignee == coordinator


def test_nobody_available_leaves_it_unassigned_in_the_team_queue(team, coordinator):
    StaffProfile.objects.filter(user=coordinator).update(availability="away")
    conversation = open_conversation(team)

    decision = services.conversation_route(conversation=conversation)

    assert decision.assignee_id is None
    assert reload(conversation).assignee is None
    assert events(conversation) == ["no one available in Care coordination: left in the team queue"]


def test_routing_to_another_team_moves_access_with_the_conversation(team, coordinator):
    other = TeamFactory(name="Billing")
    biller = make_available(make_staff("biller", role=roles.AGENT, teams=[other]))
    conversation = open_conversation(team, assignee=coordinator)

    services.conversation_route(conversation=conversation, team=other)

    conversation = reload(conversation)
    assert (conversation.team, conversation.assignee) == (other, biller)
    assert conversations_visible_to(biller).filter(pk=conversation.pk).exists()
    assert not conversations_visible_to(coordinator).filter(pk=conversation.pk).exists()
    assert events(conversation)[0] == "moved from Care coordination to Billing"


def test_supervisor_routing_prefers_supervisors_and_falls_back_to_agents(team, coordinator):
    conversation = open_conversation(team)
    services.conversation_route(conversation=conversation, supervisors_only=True)
    assert reload(conversation).assignee == coordinator
    assert events(conversation)[-1].startswith("no supervisor of Care coordination available;")

    lead = make_available(make_staff("lead", role=roles.SUPERVISOR, teams=[team]))
    other = open_conversation(team, n=1)
    services.conversation_route(conversation=other, supervisors_only=True)
    assert reload(other).assignee == lead


def test_a_new_message_on_an_unassigned_conversation_is_routed(team, coordinator, colleague):
    patient = make_patient(team=team, primary_coordinator=colleague)
    interaction = receive(team, "Hello", patient=patient)

    services.interaction_process(interaction_id=interaction.pk)

    assert reload(interaction.conversation).assignee == colleague


def test_a_new_message_on_an_assigned_conversation_keeps_its_owner(team, coordinator, colleague):
    conversation = open_conversation(team, assignee=coordinator)
    interaction = receive(team, "Hello", conversation=conversation)

    services.interaction_process(interaction_id=interaction.pk)

    assert reload(conversation).assignee == coordinator
    assert events(conversation) == []


def _route_all(conversation_ids, barrier):
    """One worker process: route its share of conversations, one transaction each."""
    try:
        barrier.wait(timeout=60)
        for conversation_id in conversation_ids:
            services.conversation_route(conversation=Conversation(pk=conversation_id))
    finally:
        connection.close()


# Four routers racing for five agents, until every agent is full and the rest wait in
# the queue: each agent's last free place is contended, whatever the sizes. Small
# capacities keep the test short; the guard is the lock on the agent's profile.
AGENTS, CAPACITY, CONVERSATIONS = 5, 6, 40


@pytest.mark.django_db(transaction=True)
def test_conversations_routed_by_4_processes_never_put_an_agent_past_capacity(team):
    agents = [
        make_available(make_staff(f"agent-{n}", role=roles.AGENT, teams=[team]), capacity=CAPACITY)
        for n in range(AGENTS)
    ]
    conversation_ids = [str(open_conversation(team, n=n).pk) for n in range(CONVERSATIONS)]
    # Forked children must open their own connections, not share the parent's socket.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=_route_all, args=(conversation_ids[n::4], barrier)) for n in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    loads = Counter(Conversation.objects.exclude(assignee=None).values_list("assignee", flat=True))
    assert set(loads) == {agent.pk for agent in agents}
    assert max(loads.values()) <= CAPACITY
    assert sum(loads.values()) == AGENTS * CAPACITY
    assert Conversation.objects.filter(assignee=None).count() == CONVERSATIONS - AGENTS * CAPACITY


def test_staff_set_their_availability_through_the_api(client, team, coordinator):
    response = client.put(
        AVAILABILITY,
        {"availability": "busy"},
        content_type="application/json",
        **token_for(coordinator),
    )

    assert response.status_code == 200
    assert response.json() == {"availability": "busy", "capacity": 30}
    assert StaffProfile.objects.get(user=coordinator).availability == "busy"
    assert client.get(AVAILABILITY, **token_for(coordinator)).json()["availability"] == "busy"


def test_unknown_availability_is_a_400_and_compliance_has_no_availability(client, team):
    agent = make_staff("agent", role=roles.AGENT, teams=[team])
    officer = make_staff("officer", role=roles.COMPLIANCE)

    bad = client.put(
        AVAILABILITY,
        {"availability": "asleep"},
        content_type="application/json",
        **token_for(agent),
    )
    refused = client.put(
        AVAILABILITY,
        {"availability": "busy"},
        content_type="application/json",
        **token_for(officer),
    )

    assert bad.status_code == 400
    assert "availability" in bad.json()["error"]["details"]
    assert refused.status_code == 403


def test_a_routine_message_that_finds_nobody_available_adds_no_event(team, coordinator):
    StaffProfile.objects.filter(user=coordinator).update(availability="away")
    first = receive(team, "Hello")
    second = receive(team, "Anyone there?", conversation=first.conversation)

    for interaction in (first, second):
        services.interaction_process(interaction_id=interaction.pk)

    assert reload(first.conversation).assignee is None
    assert events(first.conversation) == []


def test_team_member_ids_are_the_team_members_querysets(team, coordinator, colleague):
    from escalation import selectors

    make_staff("other team", role=roles.AGENT, teams=[TeamFactory(name="Elsewhere")])
    gone = make_staff("gone", role=roles.AGENT, teams=[team])
    gone.is_active = False
    gone.save(update_fields=["is_active"])

    ids = selectors.team_member_ids(team=team)

    assert sorted(ids) == sorted(selectors.team_members(team=team).values_list("pk", flat=True))
    assert sorted(ids) == sorted([coordinator.pk, colleague.pk])
