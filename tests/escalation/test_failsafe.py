"""A message whose automatic processing fails for good still reaches a person."""

import pytest

from channels_app.models import Conversation, Interaction
from escalation import services, tasks
from escalation.models import Escalation, EscalationRule, Notification
from tests.escalation.conftest import receive, reload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("blank_configuration")]


@pytest.fixture
def corrupt_rule(db):
    """A rule whose conditions were written around validation (an SQL edit, an old
    format after an upgrade): evaluating it raises TypeError."""
    rule = services.rule_create(
        name="Pharmacy", conditions={"phrases": ["refill"]}, actions={"set_priority": "high"}
    )
    EscalationRule.objects.filter(pk=rule.pk).update(conditions={"phrases": 5})
    return rule


def test_a_message_that_cannot_be_processed_is_escalated_to_a_person_once(
    front_desk, desk_supervisor, corrupt_rule
):
    interaction = receive(front_desk, "I think I am having a stroke")

    result = tasks.process_inbound.apply(args=[str(interaction.pk)])
    tasks.process_inbound.apply(args=[str(interaction.pk)])

    assert result.failed() and isinstance(result.result, TypeError)
    [escalation] = Escalation.objects.all()
    assert escalation.kind == Escalation.Kind.FAILSAFE
    assert escalation.interaction_id == interaction.pk
    assert escalation.to_team == front_desk
    assert "TypeError" in escalation.reason and "stroke" not in escalation.reason
    conversation = reload(interaction.conversation)
    assert conversation.escalated
    assert conversation.priority == Conversation.Priority.HIGH
    assert list(Notification.objects.values_list("user", flat=True)) == [desk_supervisor.pk]
    events = [
        event.body
        for event in Interaction.objects.filter(
            conversation=conversation, kind=Interaction.Kind.EVENT
        )
    ]
    assert any("Automatic processing of this message failed" in text for text in events)


def test_an_urgent_conversation_keeps_its_priority(front_desk, corrupt_rule):
    interaction = receive(front_desk, "help")
    Conversation.objects.filter(pk=interaction.conversation_id).update(
        priority=Conversation.Priority.URGENT
    )

    tasks.process_inbound.apply(args=[str(interaction.pk)])

    assert reload(interaction.conversation).priority == Conversation.Priority.URGENT


def test_a_message_processed_normally_raises_no_failsafe(front_desk):
    interaction = receive(front_desk, "Can I move my appointment?")

    result = tasks.process_inbound.apply(args=[str(interaction.pk)])

    assert result.successful()
    assert not Escalation.objects.exists()
