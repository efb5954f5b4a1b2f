"""What understanding adds to the worker's processing of one message, in SQL
statements and commits (bench/understanding_worker.py times it): the analysis and
the follow-up run in the rules' transaction, each in a savepoint, and read what they
need in one statement. A change that adds a round trip per message fails here."""

from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from escalation.services import interaction_process
from escalation.signals import inbound_analysing, inbound_processed
from tests.escalation.conftest import receive
from understanding import receivers
from understanding.models import IntentDecision

# Analysis: SAVEPOINT, INSERT decision, UPDATE conversation language, RELEASE.
# Follow-up: SAVEPOINT, SELECT what it looks at, UPDATE decision, RELEASE.
ADDED_PER_MESSAGE = 8

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
    # The same text in two fresh conversations, one processed without understanding.
    baseline = receive(front_desk, text, address="+14155550101")
    understood = receive(front_desk, text, address="+14155550102")
    with understanding_disconnected():
        without = statements(baseline)
    with_understanding = statements(understood)

    decision = IntentDecision.objects.get(interaction=understood)
    assert decision.action == action
    assert decision.acted_at is not None
    assert len(with_understanding) - len(without) == ADDED_PER_MESSAGE, with_understanding
    # One transaction for the whole message: the follow-up commits with the rules.
    assert with_understanding.count("COMMIT") == without.count("COMMIT") == 1
