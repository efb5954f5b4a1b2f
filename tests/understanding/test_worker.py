"""Understanding in the worker's processing of one message: what it adds in SQL
statements and commits (bench/understanding_worker.py times it), and that a failure
of its follow-up, which runs in the rules' transaction, never costs the rules' work
nor the decision."""

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import ChannelAccount, Conversation
from channels_app.services import normalise_address
from escalation.models import Escalation, EscalationRun
from escalation.services import interaction_process
from escalation.signals import inbound_analysing, inbound_processed
from patients.models import Channel
from tests.escalation.conftest import receive
from understanding import receivers, services
from understanding.models import IntentDecision, SelfServiceResolution

# The analysis writes nothing (the rules' own UPDATE of the conversation stores the
# language). Follow-up: SAVEPOINT, SELECT what it looks at, INSERT the decision with
# its action, RELEASE.
ADDED_PER_MESSAGE = 4

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("blank_configuration", "routes", "answers"),
]


@contextmanager
def understanding_disconnected():
    inbound_analysing.disconnect(receivers.analyse_inbound)
    inbound_processed.disconnect(receivers.follow_up_inbound)
    try:
        yield
    finally:
        inbound_analysing.connect(receivers.analyse_inbound)
        inbound_processed.connect(receivers.follow_up_inbound)


def statements(interaction):
    with CaptureQueriesContext(connection) as captured:
        interaction_process(interaction_id=interaction.pk)
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("can I book an appointment for next tuesday morning", IntentDecision.Action.NONE),
        ("I have chest pain and I can't breathe", IntentDecision.Action.HELD),
    ],
)
def test_understanding_adds_a_fixed_number_of_statements_and_no_commit(
    front_desk, defaults, text, action
):
    # The same text in two fresh conversations, one processed without understanding,
    # after a first message has loaded what each worker process keeps (the rules, the
    # SLA policies), as in a worker that is running.
    statements(receive(front_desk, "hello", address="+14155550100"))
    baseline = receive(front_desk, text, address="+14155550101")
    understood = receive(front_desk, text, address="+14155550102")
    with understanding_disconnected():
        without = statements(baseline)
    with_understanding = statements(understood)

    decision = IntentDecision.objects.get(interaction=understood)
    assert decision.action == action
    assert decision.acted_at is not None
    # The language the analysis set for the rules is stored by their own UPDATE.
    assert Conversation.objects.get(pk=understood.conversation_id).language == "en"
    assert len(with_understanding) - len(without) == ADDED_PER_MESSAGE, with_understanding
    # One transaction for the whole message: the follow-up commits with the rules.
    assert with_understanding.count("COMMIT") == without.count("COMMIT") == 1


def test_a_conversation_that_knows_its_language_is_not_written_again(front_desk, defaults):
    text = "can I book an appointment for next tuesday morning"
    first = receive(front_desk, text, address="+14155550103")
    interaction_process(interaction_id=first.pk)
    second = receive(front_desk, text, conversation=first.conversation, address="+14155550103")
    baseline = receive(front_desk, text, address="+14155550104")
    with understanding_disconnected():
        interaction_process(interaction_id=baseline.pk)
        again = receive(
            front_desk, text, conversation=baseline.conversation, address="+14155550104"
        )
        without = statements(again)
    with_understanding = statements(second)

    assert len(with_understanding) - len(without) == ADDED_PER_MESSAGE
    assert IntentDecision.objects.get(interaction=second).language == "en"


def test_a_failing_follow_up_keeps_the_rules_work_and_stores_the_decision(
    front_desk, defaults, monkeypatch
):
    def failing_act(*args, **kwargs):
        # A real database error inside the follow-up's savepoint.
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    monkeypatch.setattr(services, "_act", failing_act)
    interaction = receive(front_desk, "I have chest pain, what time do you open?")

    [escalation] = interaction_process(interaction_id=interaction.pk)

    # Committed with the rules: the escalation, the run, the sentiment, the language.
    assert not transaction.get_connection().in_atomic_block
    assert Escalation.objects.filter(pk=escalation.pk).exists()
    assert EscalationRun.objects.filter(interaction_id=interaction.pk).exists()
    conversation = Conversation.objects.get(pk=interaction.conversation_id)
    assert conversation.escalated
    assert conversation.sentiment_latest is not None
    assert conversation.language == "en"
    decision = IntentDecision.objects.get(interaction=interaction)
    assert (decision.action, decision.acted_at) == ("", None)
    assert (decision.language, bool(decision.explanation)) == ("en", True)


@pytest.mark.parametrize("failure", ["database", "python"])
def test_in_the_inbound_task_a_failing_follow_up_is_retried_with_its_savepoint(
    front_desk, defaults, monkeypatch, failure
):
    """The inbound task's first attempt has no savepoints (contactcenter.savepoints):
    the follow-up's failure ends it, nothing of it commits, and the second attempt,
    on the interaction read again, keeps the rules' work and stores the decision
    without an action, as the processing does outside the task."""
    from channels_app.models import Interaction
    from channels_app.tasks import inbound_process

    def failing_act(*args, **kwargs):
        if failure == "python":
            raise RuntimeError("a bug in an action")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    monkeypatch.setattr(services, "_act", failing_act)
    interaction = receive(front_desk, "I have chest pain, what time do you open?")

    with CaptureQueriesContext(connection) as queries:
        inbound_process.run(str(interaction.pk))

    sqls = [q["sql"] for q in queries.captured_queries]
    assert (sqls.count("ROLLBACK"), sqls.count("COMMIT")) == (1, 1)
    attempt, retry = sqls[: sqls.index("ROLLBACK")], sqls[sqls.index("ROLLBACK") :]
    # The same statements twice, but for three savepoints only the second attempt
    # made: the two parts' (escalation's, understanding's) and the one that stores the
    # decision after the follow-up failed. The services' own inside the parts (a
    # priority change, a team move, the auto-reply) are in both.
    assert sum(q.startswith("SAVEPOINT") for q in attempt) + 3 == sum(
        q.startswith("SAVEPOINT") for q in retry
    )
    assert Interaction.objects.filter(pk=interaction.pk, processed_at__isnull=False).exists()
    assert Escalation.objects.filter(interaction_id=interaction.pk).count() == 1
    assert EscalationRun.objects.filter(interaction_id=interaction.pk).count() == 1
    assert Conversation.objects.get(pk=interaction.conversation_id).escalated
    decision = IntentDecision.objects.get(interaction=interaction)
    assert (decision.action, decision.acted_at) == ("", None)


def test_in_the_inbound_task_a_failure_after_the_follow_up_is_retried_and_acts_once(
    front_desk, defaults
):
    """A part that fails after understanding acted (another receiver of the same
    signal) ends the first attempt after the decision was stored and acted on, in
    the transaction that rolls back: the second attempt decides and acts again, and
    once only, on the interaction read again."""
    from channels_app.models import Interaction
    from channels_app.tasks import inbound_process

    def failing_receiver(sender, **kwargs):
        raise RuntimeError("a bug in another receiver")

    inbound_processed.connect(failing_receiver)
    try:
        interaction = receive(front_desk, "what time do you open on saturday")
        inbound_process.run(str(interaction.pk))
    finally:
        inbound_processed.disconnect(failing_receiver)

    assert Interaction.objects.filter(pk=interaction.pk, processed_at__isnull=False).exists()
    decision = IntentDecision.objects.get(interaction=interaction)
    assert decision.acted_at is not None and decision.action
    answers = Interaction.objects.filter(
        conversation_id=interaction.conversation_id, direction=Interaction.Direction.OUTBOUND
    )
    assert answers.count() == (1 if decision.action == IntentDecision.Action.ANSWERED else 0)


def test_a_failing_analysis_leaves_the_rules_to_run(front_desk, defaults, monkeypatch):
    def failing_classify(text):
        raise RuntimeError("model missing")

    monkeypatch.setattr(services, "classify", failing_classify)
    interaction = receive(front_desk, "I have chest pain and I can't breathe")

    [escalation] = interaction_process(interaction_id=interaction.pk)

    assert Escalation.objects.filter(pk=escalation.pk).exists()
    assert Conversation.objects.get(pk=interaction.conversation_id).escalated
    assert not IntentDecision.objects.filter(interaction=interaction).exists()


@pytest.mark.parametrize(
    "text",
    [
        "I was charged twice on my bill, can you check my insurance claim",
        "what time do you open on saturday",
    ],
)
def test_the_orm_reading_of_the_facts_is_the_statements_reading(front_desk, defaults, text):
    """`make run`'s SQLite reads the follow-up's facts through the ORM (_FACTS_SQL is
    PostgreSQL's); on PostgreSQL both readings agree, after an automated answer too."""
    line = ChannelAccount.objects.create(
        kind=Channel.SMS, name="Main line", address="+15005550006", team=front_desk
    )
    first = receive(front_desk, "what time do you open on saturday", address="+14155550105")
    # Both conversations on one line and one sender, as the webhooks open them.
    _address, index = normalise_address(Channel.SMS, "+14155550105")
    Conversation.objects.filter(pk=first.conversation_id).update(account=line, contact_index=index)
    answered = Conversation.objects.get(pk=first.conversation_id)
    # An automated answer that closed the sender's earlier conversation a minute ago.
    SelfServiceResolution.objects.create(
        conversation=answered,
        team=answered.team,
        channel=answered.channel,
        account_id=answered.account_id,
        contact_index=answered.contact_index,
        resolved_at=timezone.now() - timedelta(minutes=1),
    )
    message = receive(front_desk, text, address="+14155550105")
    Conversation.objects.filter(pk=message.conversation_id).update(
        account=line, contact_index=index
    )
    interaction_process(interaction_id=message.pk)
    decision = IntentDecision.objects.select_related("interaction").get(interaction=message)
    conversation = Conversation.objects.get(pk=message.conversation_id)

    by_statement = services._facts(decision, conversation)
    by_orm = services._facts_orm(decision, conversation)

    assert by_orm == by_statement
    assert by_statement.previous is not None
    assert by_statement.previous.conversation_id == answered.pk
