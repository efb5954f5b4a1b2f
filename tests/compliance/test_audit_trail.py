"""Writing audit events, and the database triggers that keep them append-only."""

import importlib
import uuid
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group, User
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.utils import timezone

from compliance import chain
from compliance.models import AuditEvent, AuditTrailImmutableError
from compliance.services import audit_record, audit_record_many, audit_write
from compliance.tasks import seal_audit_chain
from config.celery import app as celery_app
from contactcenter import roles

pytestmark = pytest.mark.django_db

CHAIN_COLUMNS = {"chain_position", "prev_hash", "hash", "sealed_at"}


def _staff(username, role):
    user = User.objects.create_user(username=username, password="irrelevant-password-1")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def _raw(sql, params=()):
    # A savepoint, so the rejected statement does not abort the test's transaction.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def _seal_row(event_id, digest="a" * 64):
    _raw(
        "UPDATE compliance_auditevent SET chain_position = %s, prev_hash = %s, hash = %s, "
        "sealed_at = now() WHERE id = %s",
        [event_id, chain.GENESIS_HASH, digest, event_id],
    )


def test_audit_record_takes_actor_role_request_id_ip_and_user_agent_from_request():
    nurse = _staff("nurse.ratched", roles.CLINICIAN)
    patient_id = uuid.uuid4()
    request = RequestFactory().get(
        "/api/v1/patients/x/", REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Firefox/128.0"
    )
    request.request_id = "req-42"

    event = audit_record(
        action="read",
        resource_type="patient",
        resource_id=patient_id,
        patient_ids=[patient_id],
        http_status=200,
        actor=nurse,
        request=request,
        details={"fields": ["name"]},
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_user_id == nurse.pk
    assert stored.actor_username == "nurse.ratched"
    assert stored.actor_role == roles.CLINICIAN
    assert stored.request_id == "req-42"
    assert stored.source_ip == "203.0.113.9"
    assert stored.user_agent == "Firefox/128.0"
    assert stored.resource_id == str(patient_id)
    assert stored.patient_ids == [str(patient_id)]
    assert stored.outcome == AuditEvent.Outcome.SUCCESS
    assert stored.purpose_of_use == AuditEvent.PurposeOfUse.TREAT
    assert stored.http_status == 200
    assert stored.details == {"fields": ["name"]}
    assert stored.chain_position is None and stored.hash is None


def _patient_read(actor, request, patient_id):
    """audit_write's arguments for a read of one patient's record."""
    return {
        "action": "read",
        "resource_type": "patient",
        "resource_id": patient_id,
        "patient_ids": [patient_id],
        "http_status": 200,
        "actor": actor,
        "request": request,
        "details": {"method": "GET"},
    }


def test_audit_write_stores_the_row_audit_record_stores_with_a_valid_mac():
    # The request path (compliance.mixins) writes through audit_write, which
    # makes no model instance; the row and its MAC must be audit_record's.
    request = RequestFactory().get(
        "/api/v1/patients/x/", REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Firefox/128.0"
    )
    request.request_id = "req-7"
    patient_id = uuid.uuid4()
    fields = _patient_read(_staff("nurse.write", roles.CLINICIAN), request, patient_id)

    assert audit_write(**fields) is None
    returned = audit_record(**fields)

    written, recorded = AuditEvent.objects.order_by("id")
    compared = [name for name in chain.MAC_FIELDS if name != "recorded_at"]
    assert [getattr(written, name) for name in compared] == [
        getattr(recorded, name) for name in compared
    ]
    assert written.request_id == "req-7" and written.patient_ids == [str(patient_id)]
    for event in (written, recorded):
        content = {name: getattr(event, name) for name in chain.MAC_FIELDS}
        assert chain.row_mac_valid(content, event.mac)
    # audit_record's instance is the stored row, as a query would load it.
    assert (returned.pk, returned.mac, returned.recorded_at) == (
        recorded.pk,
        recorded.mac,
        recorded.recorded_at,
    )


def _synchronous_commit():
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_row_written_without_the_flush_relaxes_its_own_transaction_only():
    # AUDIT_READ_ASYNC_COMMIT: a read's row, its own transaction, is committed
    # without waiting for the WAL flush, in the same one statement. The same row and
    # MAC as a durable one; the session keeps its setting; inside a transaction (a
    # write's) the row commits as that transaction does, durably.
    from django.test.utils import CaptureQueriesContext

    from compliance.services import _insert_sql, _insert_values

    fields = _patient_read(
        _staff("nurse.async", roles.CLINICIAN),
        RequestFactory().get("/api/v1/patients/x/", REMOTE_ADDR="203.0.113.9"),
        uuid.uuid4(),
    )
    with CaptureQueriesContext(connection) as relaxed:
        audit_write(durable=False, **fields)
    with transaction.atomic(), CaptureQueriesContext(connection) as in_transaction:
        audit_write(durable=False, **fields)
        assert _synchronous_commit() == "on"
    audit_write(**fields)

    assert "set_config('synchronous_commit', 'off', true)" in relaxed.captured_queries[-1]["sql"]
    assert not [q for q in in_transaction.captured_queries if "set_config" in q["sql"]]
    assert _synchronous_commit() == "on"
    rows = list(AuditEvent.objects.order_by("id"))
    assert len(rows) == 3
    compared = [name for name in chain.MAC_FIELDS if name != "recorded_at"]
    assert len({tuple(str(getattr(row, name)) for name in compared) for row in rows}) == 1
    for row in rows:
        content = {name: getattr(row, name) for name in chain.MAC_FIELDS}
        assert chain.row_mac_valid(content, row.mac)

    # What the statement does to the transaction it runs in: synchronous_commit off
    # until that transaction ends (rolled back here, so no row is left).
    row = {field.attname: getattr(rows[0], field.attname) for field in AuditEvent._meta.fields}
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_insert_sql(connection.alias, False), _insert_values(row, connection))
        assert _synchronous_commit() == "off"
        transaction.set_rollback(True)
    assert _synchronous_commit() == "on"
    assert AuditEvent.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_only_reads_are_committed_without_the_flush_and_only_when_the_practice_chose_it(
    client, settings, north
):
    from django.test.utils import CaptureQueriesContext

    from tests.factories import TeamFactory, make_patient, make_staff, token_for

    member = make_staff("member.async", role=roles.AGENT, teams=[north])
    patient = make_patient(team=north, given_name="Ada", family_name="Lovelace")
    headers = token_for(member)
    url = f"/api/v1/patients/{patient.pk}/"

    def audit_inserts(method, path, **extra):
        with CaptureQueriesContext(connection) as queries:
            response = getattr(client, method)(path, **extra, **headers)
        assert response.status_code < 400, response.content
        return [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith(f'INSERT INTO "{AuditEvent._meta.db_table}"')
        ]

    [durable_read] = audit_inserts("get", url)
    settings.AUDIT_READ_ASYNC_COMMIT = True
    [relaxed_read] = audit_inserts("get", url)
    [write] = audit_inserts(
        "patch", url, data={"family_name": "Byron"}, content_type="application/json"
    )
    # A denied read (a patient of another team) is the row an investigation starts
    # from: it waits for the flush whatever the setting.
    other = make_patient(team=TeamFactory(name="Elsewhere"), given_name="Alan", family_name="T")
    with CaptureQueriesContext(connection) as queries:
        denied = client.get(f"/api/v1/patients/{other.pk}/", **headers)
    assert denied.status_code == 404
    [denied_row] = [
        q["sql"] for q in queries.captured_queries if "compliance_auditevent" in q["sql"]
    ]

    assert "set_config" not in durable_read
    assert "set_config('synchronous_commit', 'off', true)" in relaxed_read
    assert "set_config" not in write
    assert denied_row.startswith("INSERT") and "set_config" not in denied_row
    assert AuditEvent.objects.filter(resource_id=str(patient.pk)).count() == 3
    assert AuditEvent.objects.get(resource_id=str(other.pk)).outcome == "denied"


def test_audit_record_keeps_the_role_held_at_the_time():
    user = _staff("moved.on", roles.AGENT)
    first = audit_record(action="read", actor=user)
    user.groups.set([Group.objects.get_or_create(name=roles.SUPERVISOR)[0]])
    promoted = User.objects.get(pk=user.pk)
    second = audit_record(action="read", actor=promoted)

    assert AuditEvent.objects.get(pk=first.pk).actor_role == roles.AGENT
    assert AuditEvent.objects.get(pk=second.pk).actor_role == roles.SUPERVISOR


def test_audit_record_outlives_the_user_it_names():
    user = _staff("leaver", roles.AGENT)
    event = audit_record(action="login", actor=user)
    user.delete()

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_username == "leaver"


def test_audit_record_truncates_user_agent_and_ignores_an_unparsable_address():
    request = RequestFactory().get("/", REMOTE_ADDR="not-an-ip", HTTP_USER_AGENT="x" * 2000)

    event = audit_record(action="login_failed", outcome="denied", request=request)

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.source_ip is None
    assert len(stored.user_agent) == 512
    assert stored.request_id == ""
    assert stored.actor_user_id is None


def test_audit_record_names_the_api_client_and_ignores_an_anonymous_actor():
    from django.contrib.auth.models import AnonymousUser

    client = SimpleNamespace(pk=7, name="patient-portal")

    event = audit_record(action="create", actor=AnonymousUser(), api_client=client)

    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.api_client_id, stored.api_client_name) == (7, "patient-portal")
    assert (stored.actor_user_id, stored.actor_username, stored.actor_role) == (None, "", "")


def test_audit_record_deduplicates_and_normalises_patient_ids():
    patient = uuid.uuid4()
    other = uuid.uuid4()

    event = audit_record(
        action="read", patient_ids=[patient, str(patient).upper(), str(other), patient]
    )

    assert sorted(AuditEvent.objects.get(pk=event.pk).patient_ids) == sorted(
        [str(patient), str(other)]
    )


def test_audit_record_rejects_what_is_not_a_patient_id_or_a_known_code():
    with pytest.raises(ValueError):
        audit_record(action="read", patient_ids=["Jane Doe"])
    with pytest.raises(ValueError):
        audit_record(action="peek")
    with pytest.raises(ValueError):
        audit_record(action="read", purpose_of_use="CURIOSITY")
    with pytest.raises(TypeError):
        audit_record(action="read", details="free text")
    assert not AuditEvent.objects.exists()


def test_patient_lookup_finds_every_event_naming_the_patient():
    patient = uuid.uuid4()
    audit_record(action="read", patient_ids=[patient])
    audit_record(action="read", patient_ids=[uuid.uuid4(), patient])
    audit_record(action="read", patient_ids=[uuid.uuid4()])

    assert AuditEvent.objects.filter(patient_ids__contains=[str(patient)]).count() == 2


def test_audit_record_many_writes_each_event_with_the_shared_actor():
    user = _staff("bulk.user", roles.SUPERVISOR)
    request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.2")
    request.request_id = "bulk-1"

    events = audit_record_many(
        events=[
            {"action": "export", "resource_type": "report", "resource_id": "r1"},
            {"action": "read", "patient_ids": [uuid.uuid4()], "outcome": "denied"},
        ],
        actor=user,
        request=request,
    )

    stored = list(AuditEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("id"))
    assert [e.action for e in stored] == ["export", "read"]
    assert {(e.actor_user_id, e.actor_role, e.request_id) for e in stored} == {
        (user.pk, roles.SUPERVISOR, "bulk-1")
    }


def test_orm_refuses_to_change_or_delete_events():
    event = audit_record(action="read")

    with pytest.raises(AuditTrailImmutableError):
        event.save()
    with pytest.raises(AuditTrailImmutableError):
        event.delete()
    with pytest.raises(AuditTrailImmutableError):
        AuditEvent.objects.filter(pk=event.pk).update(resource_id="x")
    with pytest.raises(AuditTrailImmutableError):
        AuditEvent.objects.all().delete()


def test_raw_update_is_rejected_by_the_database():
    event = audit_record(action="read", resource_type="patient", resource_id="p1")

    with pytest.raises(DatabaseError, match="append-only"):
        _raw(
            "UPDATE compliance_auditevent SET resource_id = 'p2' WHERE id = %s",
            [event.pk],
        )
    assert AuditEvent.objects.get(pk=event.pk).resource_id == "p1"


def test_raw_delete_is_rejected_by_the_database():
    event = audit_record(action="read")

    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM compliance_auditevent WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_truncate_is_rejected_by_the_database():
    audit_record(action="read")

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        # Whatever the connection options say, this session has not opted in.
        cursor.execute("SET LOCAL compliance.allow_truncate = 'off'")
        cursor.execute("TRUNCATE compliance_auditevent")
    assert AuditEvent.objects.count() == 1


def test_truncate_goes_through_only_for_a_session_that_opted_in():
    audit_record(action="read")

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL compliance.allow_truncate = 'on'")
        cursor.execute("TRUNCATE compliance_auditevent")
    assert AuditEvent.objects.count() == 0


def test_sealing_update_is_allowed_once_and_a_second_one_is_rejected():
    event = audit_record(action="read")

    _seal_row(event.pk)
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(
            "UPDATE compliance_auditevent SET hash = %s WHERE id = %s",
            ["b" * 64, event.pk],
        )
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(
            "UPDATE compliance_auditevent SET chain_position = NULL, prev_hash = NULL, "
            "hash = NULL, sealed_at = NULL WHERE id = %s",
            [event.pk],
        )
    assert AuditEvent.objects.get(pk=event.pk).hash == "a" * 64


def test_sealing_update_that_also_changes_content_is_rejected():
    event = audit_record(action="read", resource_id="p1")

    with pytest.raises(DatabaseError, match="append-only"):
        _raw(
            "UPDATE compliance_auditevent SET chain_position = 1, prev_hash = %s, hash = %s, "
            "sealed_at = now(), resource_id = 'p2' WHERE id = %s",
            [chain.GENESIS_HASH, "a" * 64, event.pk],
        )


def test_partial_sealing_update_is_rejected():
    event = audit_record(action="read")

    with pytest.raises(DatabaseError, match="append-only"):
        _raw("UPDATE compliance_auditevent SET hash = %s WHERE id = %s", ["a" * 64, event.pk])


def test_hash_and_sqlite_trigger_cover_every_content_column():
    # A column added to AuditEvent must be a deliberate decision for both.
    # The row MAC is neither hashed nor a chain column; the trigger guards it too.
    triggers = importlib.import_module("compliance.migrations.0003_auditevent_append_only_triggers")
    latest_triggers = importlib.import_module("compliance.migrations.0005_auditevent_mac")
    content = {field.column for field in AuditEvent._meta.concrete_fields} - CHAIN_COLUMNS

    assert set(chain.HASHED_FIELDS) == content - {"mac"}
    assert set(chain.MAC_FIELDS) == content - {"mac", "id"}
    assert set(latest_triggers.CONTENT_COLUMNS) == content
    assert set(triggers.CHAIN_COLUMNS) == CHAIN_COLUMNS


def test_the_indexes_the_compliance_queries_need_exist():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'compliance_auditevent'"
        )
        indexes = dict(cursor.fetchall())

    assert "jsonb_path_ops" in indexes["audit_patient_ids_gin"]
    assert "WHERE (chain_position IS NULL)" in indexes["audit_unsealed_idx"]
    assert {"audit_recorded_idx", "audit_actor_idx", "audit_resource_idx", "audit_action_idx"} <= (
        set(indexes)
    )


def test_sealer_runs_every_five_seconds_on_the_default_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["seal-audit-chain"]
    route = celery_app.amqp.router.route({}, "compliance.tasks.seal_audit_chain")

    assert entry["task"] == "compliance.tasks.seal_audit_chain"
    assert entry["schedule"] == 5.0
    assert entry["options"]["expires"] <= entry["schedule"]
    assert route["queue"].name == "default"
    assert seal_audit_chain.name == "compliance.tasks.seal_audit_chain"
    assert seal_audit_chain.ignore_result


def test_recorded_at_defaults_to_now():
    before = timezone.now()
    event = audit_record(action="logout")

    assert before <= AuditEvent.objects.get(pk=event.pk).recorded_at <= timezone.now()
