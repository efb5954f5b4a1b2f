"""Escalation's processing runs inside the inbound task, with a real worker on Redis:
a drain task takes the message (channels_app.inbound_queue), no task of its own, and a
processing that fails there still ends in the escalation task's retries and failsafe,
never in silence."""

import pytest
from celery.signals import task_postrun
from kombu.exceptions import OperationalError

from channels_app.models import Conversation, Interaction
from escalation import services
from escalation.models import Escalation, EscalationRule, EscalationRun
from tests.channels_app import isolated
from tests.escalation.conftest import receive
from tests.processes import wait_for

pytestmark = pytest.mark.usefixtures("blank_configuration")

INBOUND = "channels_app.tasks.inbound_process"
DRAIN = "channels_app.tasks.inbound_drain"
ESCALATION = "escalation.tasks.process_inbound"

private_redis = isolated.private_redis
private_broker = isolated.private_broker


@pytest.fixture
def tasks_run():
    """(name, arguments) of the tasks the in-process worker finished, in order. The
    worker may also run tasks an earlier test of the same process left queued (an
    automated answer's send): `for_message` keeps this test's message's."""
    ran = []

    def record(sender=None, args=None, **kwargs):
        ran.append((sender.name, tuple(str(arg) for arg in args or ())))

    task_postrun.connect(record, weak=False)
    yield ran
    task_postrun.disconnect(record)


def for_message(tasks_run, interaction):
    return [name for name, args in tasks_run if str(interaction.pk) in args]


def inbound_tasks(tasks_run):
    # A drain task's argument is its slot, not a message.
    return {name for name, _args in tasks_run if name in (INBOUND, DRAIN)}


def test_a_drain_task_processes_an_inbound_message(celery_worker_real, tasks_run, front_desk):
    # Stored as the webhook stores it: handed over on commit.
    interaction = receive(front_desk, "Can I move my appointment to Friday?")

    wait_for(
        lambda: Interaction.objects.filter(pk=interaction.pk, processed_at__isnull=False).exists(),
        timeout=20,
        what="the inbound task to mark the message processed",
    )

    assert EscalationRun.objects.filter(interaction=interaction, stage="text").count() == 1
    assert Interaction.objects.get(pk=interaction.pk).sentiment is not None
    assert inbound_tasks(tasks_run) == {DRAIN}
    assert for_message(tasks_run, interaction) == []


def test_a_processing_that_fails_in_the_inbound_task_goes_to_the_escalation_task(
    celery_worker_real, tasks_run, front_desk, desk_supervisor
):
    rule = services.rule_create(
        name="Pharmacy", conditions={"phrases": ["refill"]}, actions={"set_priority": "high"}
    )
    # Written around validation: evaluating it raises TypeError, in the inbound task
    # and again in the escalation task, which gives up at once (not a transient error).
    EscalationRule.objects.filter(pk=rule.pk).update(conditions={"phrases": 5})

    interaction = receive(front_desk, "I think I am having a stroke")

    failsafe = wait_for(
        lambda: Escalation.objects.filter(
            interaction_id=interaction.pk, kind=Escalation.Kind.FAILSAFE
        ).first(),
        timeout=20,
        what="the escalation task's failsafe",
    )
    wait_for(
        lambda: for_message(tasks_run, interaction) and inbound_tasks(tasks_run),
        timeout=20,
        what="both tasks to finish",
    )
    assert for_message(tasks_run, interaction) == [ESCALATION]
    assert inbound_tasks(tasks_run) == {DRAIN}
    assert failsafe.to_team == front_desk
    # The drain queued the escalation task, then marked the message: nothing
    # is left for the sweeper, and the failed try in it committed nothing.
    assert Interaction.objects.filter(pk=interaction.pk, processed_at__isnull=False).exists()
    assert not EscalationRun.objects.filter(interaction=interaction).exists()
    assert Escalation.objects.count() == 1


@pytest.mark.django_db
def test_the_statements_of_an_inbound_message(front_desk, django_assert_num_queries):
    """What the inbound task costs for a message on a queued conversation, escalation's
    processing included, in a worker that has loaded what each process keeps (the
    rules, the SLA policies, the FHIR subscriptions' patients): the task's read, the
    conversation locked (its team's group and hours joined), the run row with the
    sentiment and the processed mark (one statement), the team's members, the
    conversation's update, understanding's follow-up (its read and its decision); no
    savepoint around escalation's or understanding's part and no mark of its own
    (the optimistic attempt); inside this test's transaction, the task's transaction
    is a savepoint and its release. A statement more fails."""
    from channels_app.tasks import inbound_process

    inbound_process.run(str(receive(front_desk, "Hello", address="+14155550109").pk))
    interaction = receive(front_desk, "Can I move my appointment to Friday?")

    with django_assert_num_queries(9):
        inbound_process.run(str(interaction.pk))

    assert EscalationRun.objects.filter(interaction=interaction).exists()
    assert Interaction.objects.get(pk=interaction.pk).processed_at is not None


@pytest.mark.django_db
def test_a_patient_whose_language_was_given_is_not_sent_an_update(front_desk):
    """The first message of a conversation teaches it its language; the patient's
    record takes it only when none was given. The patient read with the message
    says so, and no UPDATE goes out to change nothing; one with none given gets it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels_app.tasks import inbound_process
    from patients.models import Patient
    from tests.factories import make_patient

    given = make_patient(team=front_desk, phones=("+14155550100",), mrn="MRN-LANG-1")
    Patient.objects.filter(pk=given.pk).update(preferred_language_source="record")
    interaction = receive(front_desk, "Can I move my appointment to Friday?", patient=given)
    with CaptureQueriesContext(connection) as queries:
        inbound_process.run(str(interaction.pk))
    patient_table = Patient._meta.db_table
    assert not [q for q in queries.captured_queries if f'UPDATE "{patient_table}"' in q["sql"]]
    assert Conversation.objects.get(pk=interaction.conversation_id).language == "en"

    other = make_patient(team=front_desk, phones=("+14155550111",), mrn="MRN-LANG-2")
    interaction = receive(
        front_desk, "Can I move my appointment to Friday?", patient=other, address="+14155550111"
    )
    inbound_process.run(str(interaction.pk))
    other.refresh_from_db()
    assert other.preferred_language_source == "detected"


@pytest.mark.django_db(transaction=True)
def test_an_inbound_message_is_processed_and_marked_in_one_commit(front_desk):
    """The processing and the mark share one transaction: one WAL flush a message,
    what a worker waits on when the database is busy writing."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels_app.tasks import inbound_process

    interaction = receive(front_desk, "Can I move my appointment to Friday?")

    with CaptureQueriesContext(connection) as queries:
        inbound_process.run(str(interaction.pk))

    statements = [query["sql"].strip().upper() for query in queries.captured_queries]
    assert statements.count("COMMIT") == 1, statements
    assert statements[-1] == "COMMIT"
    assert Interaction.objects.get(pk=interaction.pk).processed_at is not None
    assert EscalationRun.objects.filter(interaction=interaction).exists()


@pytest.mark.django_db
def test_a_processing_that_fails_while_the_broker_is_down_is_left_to_the_sweeper(
    private_broker, front_desk
):
    from channels_app.tasks import inbound_process

    rule = services.rule_create(
        name="Pharmacy", conditions={"phrases": ["refill"]}, actions={"set_priority": "high"}
    )
    EscalationRule.objects.filter(pk=rule.pk).update(conditions={"phrases": 5})
    interaction = receive(front_desk, "I think I am having a stroke")
    private_broker.stop()

    # The processing fails in the inbound task and the escalation task cannot be
    # queued: the task fails before its mark, so the channels sweeper sends it again.
    with pytest.raises(OperationalError):
        inbound_process.run(str(interaction.pk))

    assert Interaction.objects.get(pk=interaction.pk).processed_at is None
    assert not EscalationRun.objects.filter(interaction=interaction).exists()
    assert not Escalation.objects.exists()


def _concrete_values(instance):
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


@pytest.mark.django_db
@pytest.mark.parametrize("with_hours_and_patient", [True, False])
def test_the_locked_conversation_is_the_querysets(
    with_hours_and_patient, front_desk, django_assert_num_queries
):
    """The conversation the processing locks, read by a fixed statement, holds what
    the select_related QuerySet it replaces held: the same columns of the
    conversation, its team, the team's group and business hours and the patient,
    each cached, so reading them costs no statement; none cached as absent when the
    team keeps no hours or no patient is matched yet."""
    from django.db import transaction

    from escalation.models import BusinessHours
    from tests.factories import make_patient

    patient = None
    if with_hours_and_patient:
        BusinessHours.objects.create(team=front_desk, time_zone="America/Chicago", weekly={})
        patient = make_patient(team=front_desk, given_name="Ada", family_name="Lovelace")
    interaction = receive(front_desk, "Hello", patient=patient)

    with transaction.atomic(), django_assert_num_queries(1):
        locked = services._locked_conversation(interaction.conversation_id)
        team, group = locked.team, locked.team.group
        try:
            hours = team.business_hours
        except BusinessHours.DoesNotExist:
            hours = None
        locked_patient = locked.patient
    orm = Conversation.objects.select_related("team__group", "team__business_hours", "patient").get(
        pk=interaction.conversation_id
    )

    assert _concrete_values(locked) == _concrete_values(orm)
    assert _concrete_values(team) == _concrete_values(orm.team)
    assert _concrete_values(group) == _concrete_values(orm.team.group)
    if with_hours_and_patient:
        assert _concrete_values(hours) == _concrete_values(orm.team.business_hours)
        assert _concrete_values(locked_patient) == _concrete_values(orm.patient)
        assert locked_patient.given_name == "Ada"
    else:
        assert hours is None and locked_patient is None
    with pytest.raises(Conversation.DoesNotExist):
        services._locked_conversation("00000000-0000-0000-0000-000000000000")
