import random
import uuid
from collections import defaultdict
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from bench.seed_synthetic import (
    BIG_TEAM_NAME,
    DEFERRED_DDL_TABLE,
    TEAM_NAME,
    SeedError,
    _Sealer,
    make_plan,
)
from bench.seed_synthetic import seed as seed_synthetic
from channels_app.models import (
    Conversation,
    ConversationGroupObjectPermission,
    Interaction,
    OutboundMessage,
)
from channels_app.services import _preview as preview_of
from contactcenter.blind_index import email_index, normalise_email, normalise_phone, phone_index
from contactcenter.crypto import DecryptionError
from contactcenter.models import Team
from patients.models import ContactPoint, Patient, PatientGroupObjectPermission
from tests.factories import TeamFactory, make_patient, token_for

PATIENTS = 60
INTERACTIONS = 900
BIG_TEAM_OPEN = 12


def seed(**options):
    defaults = {
        "patients": PATIENTS,
        "interactions": INTERACTIONS,
        "teams": 3,
        "big_team_open": BIG_TEAM_OPEN,
        "seed": 3,
        "workers": 1,
        "verbosity": 0,
        "stdout": StringIO(),
        "stderr": StringIO(),
    }
    seed_synthetic(**{**defaults, **options})


def heaviest_patient():
    counts = defaultdict(int)
    for patient_id in Interaction.objects.exclude(patient=None).values_list(
        "patient_id", flat=True
    ):
        counts[patient_id] += 1
    return Patient.objects.get(pk=max(counts, key=counts.get))


@pytest.mark.django_db
def test_seed_loads_the_requested_numbers_with_team_access_rows():
    seed()

    assert Patient.objects.count() == PATIENTS
    assert Interaction.objects.count() == INTERACTIONS
    big = Team.objects.get(name=BIG_TEAM_NAME)
    active = Conversation.objects.filter(team=big)
    assert active.filter(status="open").count() == BIG_TEAM_OPEN
    assert active.filter(status="pending").count() == 1
    assert set(Conversation.objects.values_list("channel", flat=True)) == {
        "sms",
        "email",
        "voice",
        "portal",
    }
    assert Conversation.objects.filter(status="resolved").exists()
    assert Conversation.objects.filter(patient=None).exists()
    assert Conversation.objects.filter(assignee=None).exists()
    assert Conversation.objects.exclude(assignee=None).exists()
    assert OutboundMessage.objects.exists()
    # One view grant per patient and per conversation, to the group of its own team.
    patient_grants = PatientGroupObjectPermission.objects.select_related("permission")
    assert patient_grants.count() == PATIENTS
    assert {g.permission.codename for g in patient_grants} == {"view_patient"}
    assert all(g.group_id == g.content_object.team.group_id for g in patient_grants)
    conversation_grants = ConversationGroupObjectPermission.objects.select_related("permission")
    assert conversation_grants.count() == Conversation.objects.count()
    assert {g.permission.codename for g in conversation_grants} == {"view_conversation"}
    assert all(g.group_id == g.content_object.team.group_id for g in conversation_grants)


@pytest.mark.django_db
def test_seeded_values_decrypt_through_the_orm_and_blind_indexes_match():
    seed()

    bodies = [interaction.body for interaction in Interaction.objects.all()]
    assert sum(1 for body in bodies if body) > INTERACTIONS // 2
    patient = Patient.objects.order_by("mrn_index").first()
    assert patient.given_name and patient.family_name and patient.mrn.startswith("SYN")
    assert patient.birth_date.year >= 1935
    assert patient.address["city"]
    for contact in ContactPoint.objects.all():
        # Stored in normalised form and indexed as the services index them.
        if contact.kind == ContactPoint.Kind.PHONE:
            assert normalise_phone(contact.value) == contact.value
            assert contact.value_index == phone_index(contact.value)
        else:
            assert normalise_email(contact.value) == contact.value
            assert contact.value_index == email_index(contact.value)
    for outbound in OutboundMessage.objects.select_related("interaction__conversation")[:50]:
        assert outbound.to_address == outbound.interaction.conversation.contact_address


@pytest.mark.django_db
def test_conversation_summary_columns_follow_their_latest_message():
    seed()

    by_conversation = defaultdict(list)
    for interaction in Interaction.objects.exclude(kind=Interaction.Kind.EVENT):
        by_conversation[interaction.conversation_id].append(interaction)
    conversations = list(Conversation.objects.all())
    assert conversations
    for conversation in conversations:
        messages = sorted(by_conversation[conversation.pk], key=lambda i: (i.occurred_at, i.id))
        assert conversation.last_interaction_at == messages[-1].occurred_at
        assert conversation.last_direction == messages[-1].direction
        with_body = [message for message in messages if message.body]
        expected = preview_of(with_body[-1].body) if with_body else ""
        assert conversation.last_preview == expected
        if conversation.status == "pending":
            assert conversation.last_direction == "outbound"


@pytest.mark.django_db
def test_seed_refuses_a_database_that_holds_patients_unless_appending():
    make_patient(team=TeamFactory(name="Existing team"))

    with pytest.raises(SeedError, match="--append"):
        seed()
    assert Interaction.objects.count() == 0

    seed(append=True)
    assert Patient.objects.count() == PATIENTS + 1


@pytest.mark.django_db
def test_a_seeded_agent_pages_the_inbox_timeline_and_counts(client):
    seed()
    user_model = get_user_model()
    agent = user_model.objects.get(username="synth-big-agent-01")
    outsider = user_model.objects.get(username="synth-t01-agent-01")
    big = Team.objects.get(name=BIG_TEAM_NAME)
    headers = token_for(agent)

    first = client.get("/api/v1/conversations/?page_size=5", **headers)
    assert first.status_code == 200
    page = first.json()
    assert len(page["results"]) == 5
    assert all(row["team"] == big.pk for row in page["results"])
    assert all(row["status"] in ("open", "pending") for row in page["results"])
    second = client.get(page["next"], **headers)
    assert second.status_code == 200
    assert {row["id"] for row in second.json()["results"]}.isdisjoint(
        row["id"] for row in page["results"]
    )

    counts = client.get("/api/v1/inbox/counts/", **headers).json()
    assert counts["my_teams"] == BIG_TEAM_OPEN + 1

    patient = heaviest_patient()
    assert patient.team == big
    timeline = client.get(f"/api/v1/patients/{patient.pk}/timeline/?page_size=5", **headers)
    assert timeline.status_code == 200
    items = timeline.json()["results"]
    assert len(items) == 5
    assert [item["occurred_at"] for item in items] == sorted(
        (item["occurred_at"] for item in items), reverse=True
    )
    assert any(item["body"] for item in items)
    hidden = client.get(f"/api/v1/patients/{patient.pk}/timeline/", **token_for(outsider))
    assert hidden.status_code == 404


def schema_of_loaded_tables():
    """Every index and constraint of the tables the seed loads or that point at them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename LIKE ANY (%s) ORDER BY 1",
            [["patients_%", "channels_app_%"]],
        )
        indexes = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        )
        constraints = cursor.fetchall()
    return set(indexes), set(constraints)


def assert_same_schema(before, after):
    for was, now in zip(before, after, strict=True):
        assert not (was - now) and not (now - was), (sorted(was - now), sorted(now - was))


def deferred_ddl_left():
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [DEFERRED_DDL_TABLE])
        return cursor.fetchone()[0] is not None


@pytest.mark.django_db(transaction=True)
def test_seed_with_two_worker_processes_loads_the_same_numbers():
    schema = schema_of_loaded_tables()

    seed(workers=2, patients=30, interactions=400, big_team_open=5)

    # The indexes and constraints dropped for the load are all back, as they were.
    assert_same_schema(schema, schema_of_loaded_tables())
    assert not deferred_ddl_left()
    assert Patient.objects.count() == 30
    assert Interaction.objects.count() == 400
    assert PatientGroupObjectPermission.objects.count() == 30
    assert Conversation.objects.filter(team__name=BIG_TEAM_NAME, status="open").count() == 5
    assert Team.objects.filter(name=TEAM_NAME.format(2)).exists()


def test_plan_at_full_size_has_a_long_tail_and_the_big_team_backlog():
    plan = make_plan(
        rng=random.Random(1),
        n_patients=100_000,
        n_interactions=1_000_000,
        n_teams=8,
        big_team_open=20_000,
    )

    sizes = sorted(
        (sum(size for size, _, _ in conversations) for conversations in plan.patient_conversations),
        reverse=True,
    )
    unmatched = sum(size for _, (size, _, _) in plan.unmatched)
    assert sum(sizes) + unmatched == 1_000_000
    assert sizes[0] >= 10_000
    assert sum(1 for size in sizes if size >= 1_000) >= 5
    assert plan.patient_teams[0] == 0
    big = plan.status_counts(team=0)
    assert big["open"] == 20_000
    assert big["resolved"] > big["open"]


@pytest.mark.django_db(transaction=True)
def test_a_failed_load_puts_the_indexes_and_constraints_back(monkeypatch):
    import bench.seed_synthetic as seed_module

    schema = schema_of_loaded_tables()
    load_batch = seed_module.load_batch

    def load_then_fail(batch):
        # The batch is loaded and committed, then the load fails (as a worker
        # killed mid-seed would leave it).
        load_batch(batch)
        raise RuntimeError("the load failed")

    monkeypatch.setattr(seed_module, "load_batch", load_then_fail)

    with pytest.raises(RuntimeError, match="the load failed"):
        seed(patients=30, interactions=400, big_team_open=5)

    assert_same_schema(schema, schema_of_loaded_tables())
    assert not deferred_ddl_left()
    assert Interaction.objects.exists()


def test_sealed_values_decrypt_for_their_own_row_only():
    field = Interaction._meta.get_field("body")
    pk, other = uuid.uuid4(), uuid.uuid4()

    stored = _Sealer(field).encrypt_value("Can I move my appointment?", pk=pk)

    assert stored != field.encrypt_value("Can I move my appointment?", pk=pk)  # fresh nonce
    assert field.decrypt_stored(stored, pk=pk) == "Can I move my appointment?"
    with pytest.raises(DecryptionError):
        field.decrypt_stored(stored, pk=other)
    assert _Sealer(field).encrypt_value(None, pk=pk) is None
