"""Sealing the audit trail into a hash chain, and verifying it."""

import threading
import time
import uuid
from datetime import UTC, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction

from compliance import chain
from compliance.models import AuditEvent
from compliance.services import audit_record
from compliance.tasks import seal_audit_chain


@pytest.fixture
def committed_audit(transactional_db):
    """For tests whose threads commit for real. Empties the audit table afterwards
    with the triggers off for this transaction only, so the suite's TRUNCATE-based
    flush finds nothing to protect."""
    yield
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM compliance_auditevent")


def _record(n, **kwargs):
    return [
        audit_record(
            action="read",
            resource_type="patient",
            resource_id=str(i),
            patient_ids=[uuid.uuid4()],
            **kwargs,
        )
        for i in range(n)
    ]


def _tamper(sql, params):
    """Change the table as a superuser with the append-only triggers switched off."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER ALL")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER ALL")


def _verify_command(*args):
    out = StringIO()
    call_command("verify_audit_chain", *args, stdout=out)
    return out.getvalue()


def _broken(*args):
    with pytest.raises(CommandError) as raised:
        _verify_command(*args)
    assert raised.value.returncode == 1
    return str(raised.value)


def _sealed_positions():
    return list(
        AuditEvent.objects.filter(chain_position__isnull=False)
        .order_by("chain_position")
        .values_list("chain_position", flat=True)
    )


@pytest.mark.django_db
def test_sealing_links_every_event_to_the_one_before_from_genesis():
    events = _record(3)

    assert chain.seal_pending() == 3

    sealed = list(AuditEvent.objects.order_by("chain_position"))
    assert [e.pk for e in sealed] == [e.pk for e in events]
    assert [e.chain_position for e in sealed] == [1, 2, 3]
    assert sealed[0].prev_hash == chain.GENESIS_HASH
    assert sealed[1].prev_hash == sealed[0].hash
    assert sealed[2].prev_hash == sealed[1].hash
    assert all(e.sealed_at is not None and len(e.hash) == 64 for e in sealed)
    assert chain.seal_pending() == 0


@pytest.mark.django_db
def test_sealing_in_small_batches_continues_the_chain():
    _record(5)

    assert chain.seal_pending(batch_size=2) == 5
    assert _sealed_positions() == [1, 2, 3, 4, 5]
    assert chain.verify_chain().ok


@pytest.mark.django_db
def test_hash_covers_the_content_in_canonical_form():
    event = _record(1)[0]
    chain.seal_pending()
    row = AuditEvent.objects.values(*chain.HASHED_FIELDS, "hash").get(pk=event.pk)

    canonical = chain.canonical_content(row)

    assert b" " not in canonical
    assert canonical.startswith(b'{"action":"read","actor_role":""')
    assert (
        row["recorded_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode("ascii")
        in canonical
    )
    assert row["hash"] == chain.event_hash(prev_hash=chain.GENESIS_HASH, content=row)


@pytest.mark.django_db
def test_verify_command_prints_count_and_head_and_seals_nothing():
    _record(3)
    chain.seal_pending()
    _record(2)
    head = AuditEvent.objects.get(chain_position=3).hash

    assert _verify_command() == (
        f"OK: 3 events, head {head}; no checkpoint to compare the head with\n"
    )
    assert AuditEvent.objects.filter(chain_position__isnull=True).count() == 2


@pytest.mark.django_db
def test_verify_command_can_seal_first():
    _record(4)

    output = _verify_command("--seal-first")

    head = AuditEvent.objects.get(chain_position=4).hash
    assert output == (
        f"Sealed 4 pending events.\nOK: 4 events, head {head}; "
        "no checkpoint to compare the head with\n"
    )


@pytest.mark.django_db
def test_verify_on_an_empty_trail_reports_genesis():
    assert _verify_command() == (
        f"OK: 0 events, head {chain.GENESIS_HASH}; no checkpoint to compare the head with\n"
    )


@pytest.mark.django_db
def test_row_edited_with_triggers_disabled_is_named_as_edited():
    events = _record(5)
    chain.seal_pending()
    target = events[2]

    _tamper(
        "UPDATE compliance_auditevent SET resource_id = 'someone-else' WHERE id = %s",
        [target.pk],
    )

    message = _broken()
    assert f"event id {target.pk}, position 3: edited" in message
    assert "2 events before it verify" in message
    result = chain.verify_chain()
    assert (result.ok, result.broken_id, result.broken_position, result.reason) == (
        False,
        target.pk,
        3,
        chain.EDITED,
    )


@pytest.mark.django_db
def test_details_edited_with_triggers_disabled_is_named_as_edited():
    events = _record(2, details={"rule": "R1"})
    chain.seal_pending()

    _tamper(
        'UPDATE compliance_auditevent SET details = \'{"rule": "R2"}\' WHERE id = %s',
        [events[1].pk],
    )

    result = chain.verify_chain()
    assert (result.broken_id, result.reason) == (events[1].pk, chain.EDITED)


@pytest.mark.django_db
def test_row_deleted_with_triggers_disabled_is_named_as_deleted():
    events = _record(5)
    chain.seal_pending()

    _tamper("DELETE FROM compliance_auditevent WHERE id = %s", [events[1].pk])

    message = _broken()
    assert f"event id {events[2].pk}, position 3: deleted" in message
    assert "positions 2 to 2 are missing" in message


@pytest.mark.django_db
def test_first_row_deleted_is_named_as_deleted():
    events = _record(3)
    chain.seal_pending()

    _tamper("DELETE FROM compliance_auditevent WHERE id = %s", [events[0].pk])

    result = chain.verify_chain()
    assert (result.broken_id, result.broken_position, result.reason) == (
        events[1].pk,
        2,
        chain.DELETED,
    )


@pytest.mark.django_db
def test_deleted_tail_with_renumbering_is_caught_by_the_links():
    events = _record(4)
    chain.seal_pending()

    # Remove position 2 and close the gap, as a careful attacker would: through
    # negative positions, since the unique constraint is checked row by row and one
    # UPDATE moving 4 to 3 before 3 to 2 (the heap's order decides) would collide.
    _tamper("DELETE FROM compliance_auditevent WHERE id = %s", [events[1].pk])
    _tamper(
        "UPDATE compliance_auditevent SET chain_position = -chain_position "
        "WHERE chain_position > 2",
        [],
    )
    _tamper(
        "UPDATE compliance_auditevent SET chain_position = -chain_position - 1 "
        "WHERE chain_position < 0",
        [],
    )

    result = chain.verify_chain()
    assert (result.broken_id, result.broken_position, result.reason) == (
        events[2].pk,
        2,
        chain.REORDERED,
    )


@pytest.mark.django_db
def test_swapped_rows_are_named_as_reordered():
    events = _record(4)
    chain.seal_pending()

    _tamper(
        "UPDATE compliance_auditevent SET chain_position = -chain_position WHERE id IN (%s, %s)",
        [events[1].pk, events[2].pk],
    )
    _tamper(
        "UPDATE compliance_auditevent SET chain_position = CASE chain_position "
        "WHEN -2 THEN 3 ELSE 2 END WHERE chain_position < 0",
        [],
    )

    result = chain.verify_chain()
    assert (result.broken_id, result.broken_position, result.reason) == (
        events[2].pk,
        2,
        chain.REORDERED,
    )


@pytest.mark.django_db
def test_backdated_row_is_named_as_inserted_before_and_after_sealing():
    _record(3)
    chain.seal_pending()
    backdated = audit_record(action="read", resource_type="patient", resource_id="x")
    _tamper(
        "UPDATE compliance_auditevent SET recorded_at = recorded_at - interval '2 days' "
        "WHERE id = %s",
        [backdated.pk],
    )

    unsealed = chain.verify_chain()
    assert (unsealed.broken_id, unsealed.broken_position, unsealed.reason) == (
        backdated.pk,
        None,
        chain.INSERTED,
    )
    assert f"event id {backdated.pk}, position unsealed: inserted" in _broken()

    chain.seal_pending()
    sealed = chain.verify_chain()
    assert (sealed.broken_id, sealed.broken_position, sealed.reason) == (
        backdated.pk,
        4,
        chain.INSERTED,
    )
    # However long the grace, the row's MAC no longer matches its timestamp.
    assert chain.verify_chain(grace=timedelta(days=3)).reason == chain.FORGED


@pytest.mark.django_db
def test_verify_can_stop_after_a_limit():
    _record(5)
    chain.seal_pending()

    partial = chain.verify_chain(limit=2)
    whole = chain.verify_chain(limit=5)

    assert (partial.ok, partial.complete, partial.count, partial.head_position) == (
        True,
        False,
        2,
        2,
    )
    assert (whole.complete, whole.count) == (True, 5)
    assert "(stopped at position 2; later events not verified)" in _verify_command("--limit", "2")


@pytest.mark.django_db
def test_verify_stops_when_its_time_budget_is_spent():
    _record(3)
    chain.seal_pending()

    result = chain.verify_chain(time_budget_seconds=0)

    assert (result.ok, result.complete, result.count) == (True, False, 1)


@pytest.mark.django_db
def test_seal_task_seals_pending_events():
    _record(2)

    seal_audit_chain.apply()

    assert _sealed_positions() == [1, 2]


def test_concurrent_writers_and_a_running_sealer_leave_one_contiguous_chain(committed_audit):
    writers, per_writer = 8, 500
    start = threading.Barrier(writers + 1)
    writers_done = threading.Event()
    errors = []
    sealed_while_writing = []

    def write():
        try:
            start.wait()
            for i in range(per_writer):
                audit_record(
                    action="read",
                    resource_type="patient",
                    resource_id=str(i),
                    patient_ids=[uuid.uuid4()],
                )
        except Exception as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    def seal():
        try:
            start.wait()
            while not writers_done.is_set():
                sealed_while_writing.append(chain.seal_pending(batch_size=200))
                time.sleep(0.005)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write) for _ in range(writers)]
    sealer = threading.Thread(target=seal)
    for thread in [*threads, sealer]:
        thread.start()
    for thread in threads:
        thread.join()
    writers_done.set()
    sealer.join()
    chain.seal_pending()

    assert errors == []
    assert sum(sealed_while_writing) > 0
    assert AuditEvent.objects.count() == writers * per_writer
    assert not AuditEvent.objects.filter(chain_position__isnull=True).exists()
    assert _sealed_positions() == list(range(1, writers * per_writer + 1))
    result = chain.verify_chain()
    assert (result.ok, result.count) == (True, writers * per_writer)


def test_row_committed_late_is_sealed_after_later_rows_and_the_chain_verifies(committed_audit):
    inserted, release = threading.Event(), threading.Event()
    late = {}
    errors = []

    def slow_transaction():
        try:
            with transaction.atomic():
                late["event"] = audit_record(action="update", resource_type="patient")
                inserted.set()
                release.wait(timeout=30)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            inserted.set()
            connections.close_all()

    thread = threading.Thread(target=slow_transaction)
    thread.start()
    assert inserted.wait(timeout=10)
    later = _record(3)

    assert chain.seal_pending() == 3
    release.set()
    thread.join()
    assert chain.seal_pending() == 1

    assert errors == []
    late_row = AuditEvent.objects.get(pk=late["event"].pk)
    assert late_row.pk < min(e.pk for e in later)
    assert late_row.chain_position == 4
    assert late_row.prev_hash == AuditEvent.objects.get(chain_position=3).hash
    result = chain.verify_chain()
    assert (result.ok, result.count) == (True, 4)
