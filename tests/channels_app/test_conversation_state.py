"""channels_app is the one writer of a conversation's state: each service records
its change once (timeline event, audit row, signal, live event), and no other app
writes the columns itself."""

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from channels_app import signals
from channels_app.models import Conversation, Interaction
from channels_app.selectors import conversations_visible_to
from channels_app.services import (
    ConversationChangeRefused,
    conversation_assign,
    conversation_move_to_team,
    conversation_open,
    conversation_reopen,
    conversation_resolve,
    conversation_set_labels,
    conversation_set_priority,
    conversation_snooze,
)
from compliance.models import AuditEvent
from contactcenter import roles
from patients.models import Channel
from tests.factories import make_patient, make_staff

ROOT = Path(__file__).resolve().parents[2]

# --- No other app writes the state columns -------------------------------------------

STATE_COLUMNS = {
    "status",
    "team",
    "team_id",
    "assignee",
    "assignee_id",
    "priority",
    "snoozed_until",
    "labels",
    "resolved_at",
}
_WRITE_METHODS = {"update", "update_or_create", "get_or_create", "bulk_update", "create"}
# Not apps: the tests, benchmark tooling, and directories without Python of ours.
_NOT_APPS = {"channels_app", "tests", "bench", "docker", "scripts"}


def _mentions_conversation(node):
    return "conv" in ast.unparse(node).lower()


def _literal_names(node, constants):
    """The strings of a list/tuple literal, or of a module-level one named here."""
    if isinstance(node, ast.Name):
        node = constants.get(node.id, node)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return {elt.value for elt in node.elts if isinstance(elt, ast.Constant)}
    return set()


def state_writes(source):
    """(line, what) for each write of a conversation's state columns in `source`:
    an attribute assignment or setattr on a conversation, a queryset write on
    Conversation naming a state column, a save listing one in update_fields, or
    an SQL UPDATE of the table. Heuristic by name ("conv" in the expression),
    which is how every conversation variable in the tree is spelt."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                if (
                    isinstance(element, ast.Attribute)
                    and element.attr in STATE_COLUMNS
                    and _mentions_conversation(element.value)
                ):
                    found.append((node.lineno, f"assigns {ast.unparse(element)}"))
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Name)
                and func.id == "setattr"
                and len(node.args) >= 2
                and _mentions_conversation(node.args[0])
                and not (
                    isinstance(node.args[1], ast.Constant)
                    and node.args[1].value not in STATE_COLUMNS
                )
            ):
                found.append((node.lineno, "setattr on a conversation"))
            if isinstance(func, ast.Attribute) and _mentions_conversation(func.value):
                keywords = {kw.arg for kw in node.keywords}
                if func.attr in _WRITE_METHODS and (
                    keywords & STATE_COLUMNS
                    or any(kw.arg in (None, "defaults") for kw in node.keywords)
                    or (
                        func.attr == "bulk_update"
                        and len(node.args) > 1
                        and _literal_names(node.args[1], constants) & STATE_COLUMNS
                    )
                ):
                    found.append((node.lineno, f"{func.attr}() on conversations"))
                if func.attr == "save":
                    for kw in node.keywords:
                        if kw.arg == "update_fields" and (
                            _literal_names(kw.value, constants) & STATE_COLUMNS
                            or not _literal_names(kw.value, constants)
                        ):
                            found.append((node.lineno, "save(update_fields=...) of state"))
                    if not node.keywords:
                        found.append((node.lineno, "save() of a whole conversation"))
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "update" in node.value.lower()
            and "channels_app_conversation" in node.value.lower()
        ):
            found.append((node.lineno, "SQL UPDATE of channels_app_conversation"))
    return found


def _app_sources():
    for directory in sorted(ROOT.iterdir()):
        if (
            directory.is_dir()
            and (directory / "__init__.py").exists()
            and directory.name not in _NOT_APPS
        ):
            for path in sorted(directory.rglob("*.py")):
                if "migrations" not in path.parts:
                    yield path


def test_no_app_but_channels_app_writes_conversation_state():
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in _app_sources()
        for line, what in state_writes(path.read_text())
    ]
    assert [path.parent.name for path in _app_sources()], "the scan found no app"
    assert offences == []


@pytest.mark.parametrize(
    "source",
    [
        "conversation.status = 'resolved'",
        "conversation.team, conversation.assignee = team, None",
        "self.conversation.priority += 1",
        "setattr(conversation, 'labels', [])",
        "Conversation.objects.filter(pk=pk).update(status='resolved')",
        "Conversation.objects.filter(pk=pk).update(**changes)",
        "patient.conversations.update(assignee=None)",
        "Conversation.objects.bulk_update(rows, ['priority'])",
        "FIELDS = ['team']\nconversation.save(update_fields=FIELDS)",
        "conversation.save()",
        "cursor.execute('UPDATE channels_app_conversation SET status = %s', [s])",
    ],
)
def test_the_scan_finds_each_kind_of_direct_write(source):
    assert state_writes(source)


@pytest.mark.parametrize(
    "source",
    [
        "appointment.status = 'confirmed'",
        "conversation.escalated = True",
        "conversation.save(update_fields=['escalated', 'updated_at'])",
        "conversation_resolve(conversation=conversation)",
        "Conversation.objects.filter(status='open').count()",
    ],
)
def test_the_scan_leaves_other_writes_alone(source):
    assert state_writes(source) == []


# --- Each change is recorded once -------------------------------------------------------


@pytest.fixture
def agent(north):
    return make_staff("agent-n", role=roles.AGENT, teams=[north])


@pytest.fixture
def conversation(north):
    return conversation_open(
        channel=Channel.SMS,
        team=north,
        patient=make_patient(team=north),
        contact_address="+14155550100",
    )


@pytest.fixture
def received():
    """Every conversation change signal sent, as (kind, conversation id, actor)."""
    sent = []
    handlers = {}
    for kind, signal in signals.CONVERSATION_CHANGE_SIGNALS.items():

        def handler(sender, *, conversation, actor, kind=kind, **kwargs):
            sent.append((kind, conversation.pk, actor))

        handlers[kind] = handler
        signal.connect(handler, weak=False)
    yield sent
    for kind, signal in signals.CONVERSATION_CHANGE_SIGNALS.items():
        signal.disconnect(handlers[kind])


def _state_events(events, conversation):
    """This conversation's state-change events among `events`: the channel is the
    test run's, and other tests publish on it at the same time."""
    return [
        event
        for event in events
        if event["kind"] == "conversation" and event["conversation"] == str(conversation.pk)
    ]


def _change_records(conversation):
    events = list(
        Interaction.objects.filter(conversation=conversation, kind=Interaction.Kind.EVENT)
        .order_by("occurred_at", "id")
        .values_list("metadata__change", flat=True)
    )
    audits = list(
        AuditEvent.objects.filter(resource_type="conversation", resource_id=str(conversation.pk))
        .order_by("id")
        .values_list("details__change", "actor_username", "purpose_of_use")
    )
    return events, audits


@pytest.mark.django_db
def test_resolve_records_event_audit_signal_and_live_event_once(
    conversation, agent, received, live_events, django_capture_on_commit_callbacks
):
    live_events()  # anything the fixture published
    with django_capture_on_commit_callbacks(execute=True):
        changed = conversation_resolve(conversation=conversation, actor=agent)
        again = conversation_resolve(conversation=conversation, actor=agent)

    assert (changed, again) == (True, False)
    assert _change_records(conversation) == (
        ["status open → resolved"],
        [("resolved", "agent-n", "TREAT")],
    )
    assert received == [("resolved", conversation.pk, agent)]
    # The change's own event (its timeline event is announced as a "message", like
    # any interaction added to the conversation).
    assert _state_events(live_events(), conversation) == [
        {
            "kind": "conversation",
            "conversation": str(conversation.pk),
            "team": conversation.team_id,
            "change": "resolved",
        }
    ]


@pytest.mark.django_db
def test_every_service_sends_its_own_kind(
    conversation, north, south, agent, received, django_capture_on_commit_callbacks
):
    supervisor = make_staff("super-both", role=roles.SUPERVISOR, teams=[north, south])
    with django_capture_on_commit_callbacks(execute=True):
        conversation_snooze(conversation=conversation, until=timezone.now() + timedelta(hours=1))
        conversation_reopen(conversation=conversation)
        conversation_assign(conversation=conversation, assignee=supervisor)
        conversation_set_priority(
            conversation=conversation, priority=Conversation.Priority.HIGH, reason="rule"
        )
        conversation_set_labels(conversation=conversation, labels=["refill", "refill", "billing"])
        conversation_move_to_team(conversation=conversation, team=south)
        conversation_resolve(conversation=conversation)
        conversation_reopen(conversation=conversation)

    assert [kind for kind, _, _ in received] == [
        "snoozed",
        "reopened",
        "assigned",
        "priority",
        "labels",
        "moved",
        "resolved",
        "reopened",
    ]
    conversation.refresh_from_db()
    # The supervisor is in both teams, so the move keeps them as assignee.
    assert (conversation.team, conversation.assignee, conversation.labels) == (
        south,
        supervisor,
        ["billing", "refill"],
    )
    events, audits = _change_records(conversation)
    assert events[-1] == "reopened"
    assert len(audits) == 8
    assert {purpose for _, _, purpose in audits} == {"HOPERAT"}


@pytest.mark.django_db
def test_a_move_changes_access_and_lets_go_of_an_assignee_outside_the_new_team(
    conversation, south, agent, outsider
):
    conversation_assign(conversation=conversation, assignee=agent)

    conversation_move_to_team(conversation=conversation, team=south, actor=None)

    conversation.refresh_from_db()
    assert (conversation.team, conversation.assignee) == (south, None)
    assert conversations_visible_to(outsider).filter(pk=conversation.pk).exists()
    assert not conversations_visible_to(agent).filter(pk=conversation.pk).exists()


@pytest.mark.django_db
def test_a_refused_change_records_nothing(
    conversation, received, live_events, django_capture_on_commit_callbacks
):
    conversation_resolve(conversation=conversation)
    live_events()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(ConversationChangeRefused),
    ):
        conversation_snooze(conversation=conversation, until=timezone.now() + timedelta(hours=1))

    assert Conversation.objects.get(pk=conversation.pk).status == "resolved"
    assert _change_records(conversation)[0] == ["status open → resolved"]
    assert _state_events(live_events(), conversation) == []


@pytest.mark.django_db
def test_a_rolled_back_change_publishes_nothing(
    conversation, received, live_events, django_capture_on_commit_callbacks
):
    live_events()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        conversation_resolve(conversation=conversation)
        raise RuntimeError

    assert received == []
    assert _state_events(live_events(), conversation) == []
    assert Conversation.objects.get(pk=conversation.pk).status == "open"


@pytest.mark.django_db
def test_a_change_stands_when_redis_is_down(
    conversation, settings, django_capture_on_commit_callbacks
):
    # Port 1 refuses connections at once: nothing listens there.
    settings.LIVE_REDIS_URL = "redis://127.0.0.1:1/0"
    with django_capture_on_commit_callbacks(execute=True):
        assert conversation_resolve(conversation=conversation)

    assert Conversation.objects.get(pk=conversation.pk).status == "resolved"
