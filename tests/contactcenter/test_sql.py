"""contactcenter.sql: hand-written statements read values as the ORM would."""

import datetime
import uuid

import psycopg
import pytest
from django.db import connection
from psycopg.pq import Format

from contactcenter import sql
from contactcenter.models import Team

pytestmark = pytest.mark.django_db

MOMENTS = [
    datetime.datetime(2025, 3, 9, 6, 59, 59, 999_999, tzinfo=datetime.UTC),
    datetime.datetime(1999, 12, 31, 23, 0, 0, 1, tzinfo=datetime.UTC),
    datetime.datetime(2026, 11, 1, 5, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-4))),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_fetched_timestamps_equal_the_orms_to_the_microsecond(moment, north):
    team = north
    Team.objects.filter(pk=team.pk).update(created_at=moment)
    orm = Team.objects.values_list("created_at", flat=True).get(pk=team.pk)

    (fetched,) = sql.fetch(
        "SELECT created_at FROM contactcenter_team WHERE id = %s",
        [team.pk],
        [Team._meta.get_field("created_at")],
    )[0]

    assert fetched == orm == moment
    assert fetched.tzinfo is orm.tzinfo is datetime.UTC


TIMESTAMPTZ = psycopg.adapters.types["timestamptz"].oid


def test_fetch_parses_timestamps_with_psycopgs_loader_and_leaves_the_orms_alone():
    with connection.cursor() as cursor:
        sql._load_timestamps_natively(cursor)
        loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ, Format.TEXT)
        assert loader is sql._TIMESTAMPTZ_LOADER
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ, Format.TEXT)
        assert loader is not sql._TIMESTAMPTZ_LOADER


def test_exists_says_whether_the_statement_has_a_row(north):
    statement = "SELECT 1 FROM contactcenter_team WHERE id = %s"
    assert sql.exists(statement, [north.pk]) is True
    assert sql.exists(statement, [north.pk + 10_000]) is False


def test_update_row_changes_one_row_and_respects_unless_set(north, django_assert_num_queries):
    from django.utils import timezone

    from channels_app.models import Interaction
    from tests.escalation.conftest import receive

    first, second = receive(north, "Hello"), receive(north, "Hello again")
    moment = timezone.now()

    with django_assert_num_queries(1):
        changed = sql.update_row(
            Interaction, str(first.pk), unless_set=["processed_at"], processed_at=moment
        )
    assert changed == 1
    # Set already: the condition refuses a second mark, as the inbound task relies on.
    later = moment + datetime.timedelta(minutes=5)
    again = sql.update_row(Interaction, first.pk, unless_set=["processed_at"], processed_at=later)
    assert again == 0
    assert sql.update_row(Interaction, first.pk, sentiment=-0.5) == 1

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.processed_at == moment
    assert first.sentiment == -0.5
    assert second.processed_at is None and second.sentiment is None


def _columns(instance):
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_get_all_returns_the_querysets_instances_in_its_order(django_assert_num_queries, db):
    from escalation.models import EscalationRule

    EscalationRule.objects.all().delete()
    for name, order, active, actions in [
        ("late", 300, True, {"priority": 3}),
        ("early", 10, True, {}),
        ("off", 5, False, {"notify_supervisors": True}),
        ("tied", 10, True, {"labels": ["x"]}),
    ]:
        EscalationRule.objects.create(
            name=name, order=order, active=active, conditions={"keywords": [name]}, actions=actions
        )
    orm = list(EscalationRule.objects.filter(active=True))

    with django_assert_num_queries(1):
        fetched = sql.get_all(EscalationRule, active=True)

    assert (
        [rule.name for rule in fetched] == [rule.name for rule in orm] == ["early", "tied", "late"]
    )
    assert [_columns(rule) for rule in fetched] == [_columns(rule) for rule in orm]
    assert not any(rule._state.adding for rule in fetched)
    assert isinstance(fetched[0].conditions, dict)
    assert [rule.name for rule in sql.get_all(EscalationRule)] == ["off", "early", "tied", "late"]


def _decision(interaction, **extra):
    from understanding.models import IntentDecision

    return IntentDecision(
        interaction_id=interaction.pk,
        conversation_id=interaction.conversation_id,
        intent="refill",
        confidence=0.91,
        clinical_probability=0.2,
        language="es",
        explanation=["receta", "refill"],
        model_version="t1",
        action="answered",
        action_reason="sent the refill form",
        **extra,
    )


def test_insert_row_stores_what_save_would(north, django_assert_num_queries):
    from tests.escalation.conftest import receive
    from understanding.models import IntentDecision

    saved, inserted = _decision(receive(north, "One")), _decision(receive(north, "Two"))
    saved.save(force_insert=True)

    with django_assert_num_queries(1):
        assert sql.insert_row(inserted) is True

    assert not inserted._state.adding
    assert inserted.created_at is not None  # auto_now_add, set as save() sets it
    stored = {d.pk: d for d in IntentDecision.objects.filter(pk__in=[saved.pk, inserted.pk])}
    ignore = {"id", "interaction_id", "conversation_id", "created_at"}
    as_saved = {k: v for k, v in _columns(stored[saved.pk]).items() if k not in ignore}
    as_inserted = {k: v for k, v in _columns(stored[inserted.pk]).items() if k not in ignore}
    assert as_inserted == as_saved
    assert stored[inserted.pk].created_at == inserted.created_at
    # Encrypted at rest, bound to its row, as save() stores it.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT action_reason, explanation::text FROM understanding_intentdecision "
            "WHERE id = %s",
            [inserted.pk],
        )
        reason, explanation = cursor.fetchone()
    assert "refill" not in reason and "receta" not in explanation


def test_insert_row_skips_a_conflict_only_when_asked(north):
    from django.db import IntegrityError, transaction

    from tests.escalation.conftest import receive

    interaction = receive(north, "Once")
    assert sql.insert_row(_decision(interaction)) is True
    # The interaction's decision is one-to-one: a second one conflicts.
    assert sql.insert_row(_decision(interaction), skip_conflicts=True) is False
    with pytest.raises(IntegrityError), transaction.atomic():
        sql.insert_row(_decision(interaction))


def test_save_fields_writes_the_named_fields_as_save_would(north, django_assert_num_queries):
    from channels_app.models import Conversation
    from tests.escalation.conftest import receive

    conversation = receive(north, "Hello").conversation
    before = conversation.updated_at
    conversation.escalated, conversation.sentiment_latest = True, -0.75
    conversation.subject = "not saved: not named"

    with django_assert_num_queries(1):
        sql.save_fields(conversation, ["escalated", "sentiment_latest", "updated_at"])

    stored = Conversation.objects.get(pk=conversation.pk)
    assert stored.escalated is True and stored.sentiment_latest == -0.75
    assert stored.subject == ""
    assert stored.updated_at == conversation.updated_at > before  # auto_now, as in save()


def test_save_fields_refuses_a_row_that_is_not_there(north):
    from django.db import DatabaseError, transaction

    from tests.escalation.conftest import receive

    conversation = receive(north, "Hello").conversation
    conversation.id = uuid.uuid4()
    with pytest.raises(DatabaseError, match="did not affect any rows"), transaction.atomic():
        sql.save_fields(conversation, ["escalated"])


def test_a_model_with_save_receivers_is_saved_by_save(north):
    from django.db.models.signals import post_save

    from tests.escalation.conftest import receive
    from understanding.models import IntentDecision

    heard = []

    def receiver(sender, instance, created, update_fields, **kwargs):
        heard.append((created, update_fields and sorted(update_fields)))

    post_save.connect(receiver, sender=IntentDecision)
    try:
        decision = _decision(receive(north, "Hello"))
        sql.insert_row(decision)
        decision.action = "none"
        sql.save_fields(decision, ["action"])
    finally:
        post_save.disconnect(receiver, sender=IntentDecision)

    assert heard == [(True, None), (False, ["action"])]
    assert IntentDecision.objects.get(pk=decision.pk).action == "none"


def test_save_fields_refuses_what_is_not_a_column(north):
    from tests.escalation.conftest import receive

    conversation = receive(north, "Hello").conversation
    with pytest.raises(ValueError, match="not a column"):
        sql.save_fields(conversation, ["interactions"])


def test_constant_in_list_writes_plain_words_in_and_refuses_anything_else():
    assert sql.constant_in_list(["open", "pending"]) == "('open', 'pending')"
    for bad in (["open'); DROP TABLE x; --"], ["two words"], [""], [1]):
        with pytest.raises(ValueError, match="plain word"):
            sql.constant_in_list(bad)
