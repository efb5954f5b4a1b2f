"""The cheaper end of transactional tests (tests/fast_flush.py) leaves the database
as Django's flush does: every table empty but for the rows post_migrate creates
(content types, permissions, and guardian's anonymous user once its management
package is imported)."""

from contextlib import contextmanager

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.db.models.signals import post_migrate

from compliance.models import AuditEvent
from compliance.services import audit_record
from tests import fast_flush
from tests.factories import TeamFactory, make_patient, make_staff

pytestmark = pytest.mark.django_db(transaction=True)


def _tables_with_rows():
    tables = fast_flush._tables(connection)
    with connection.cursor() as cursor:
        counts = fast_flush._row_counts(connection, cursor, tables)
    return {table for table, count in counts.items() if count}


def _row_counts():
    tables = fast_flush._tables(connection)
    with connection.cursor() as cursor:
        return fast_flush._row_counts(connection, cursor, tables)


def _rows(tables):
    """A digest of each table's rows."""
    with connection.cursor() as cursor:
        return fast_flush._digests(connection, cursor, {table: (None, None) for table in tables})


@pytest.fixture
def post_migrate_sent(monkeypatch):
    """The databases fast_flush sent post_migrate for."""
    sent = []
    emit = fast_flush.emit_post_migrate_signal

    def recording(**kwargs):
        sent.append(kwargs["db"])
        emit(**kwargs)

    monkeypatch.setattr(fast_flush, "emit_post_migrate_signal", recording)
    return sent


@contextmanager
def _post_migrate_receiver(receiver):
    post_migrate.connect(receiver, dispatch_uid="test_fast_flush")
    try:
        yield
    finally:
        post_migrate.disconnect(dispatch_uid="test_fast_flush")


def _fill():
    team = TeamFactory(name="North")
    staff = make_staff("agent", teams=[team])
    make_patient(team=team)
    audit_record(action="read", actor=staff, resource_type="patient", resource_id="1")


def _flush():
    call_command("flush", verbosity=0, interactive=False, database="default")


def test_the_tables_are_left_as_djangos_flush_leaves_them():
    _fill()
    _flush()
    after_flush = _row_counts()
    post_migrate_tables = {table for table, count in after_flush.items() if count}
    assert {"django_content_type", "auth_permission"} <= post_migrate_tables

    _fill()
    assert {"auth_user", "patients_patient", "compliance_auditevent"} <= _tables_with_rows()
    # Append-only: DELETE is refused, so this one is truncated.
    assert AuditEvent.objects.exists()
    assert fast_flush.fast_flush("default")

    assert _row_counts() == after_flush


def test_unchanged_rows_of_post_migrate_are_kept_without_sending_it_again(post_migrate_sent):
    fast_flush.fast_flush("default")  # this process now knows post_migrate's rows
    post_migrate_tables = _tables_with_rows()
    kept = _rows(post_migrate_tables)
    _fill()
    post_migrate_sent.clear()

    assert fast_flush.fast_flush("default")

    assert post_migrate_sent == []
    assert _tables_with_rows() == post_migrate_tables
    assert _rows(post_migrate_tables) == kept


def test_rows_of_post_migrate_a_test_changed_are_made_again(post_migrate_sent):
    fast_flush.fast_flush("default")
    post_migrate_tables = _tables_with_rows()
    Permission.objects.filter(codename="view_patient").delete()
    post_migrate_sent.clear()

    assert fast_flush.fast_flush("default")

    assert post_migrate_sent == ["default"]  # as flush does
    assert Permission.objects.filter(codename="view_patient").exists()
    assert _tables_with_rows() == post_migrate_tables


def test_a_new_post_migrate_receiver_is_sent_and_its_rows_are_kept_from_then_on(
    post_migrate_sent,
):
    """As guardian's anonymous user: its receiver is connected once its management
    package is imported, and from then on flush leaves that user in place."""
    fast_flush.fast_flush("default")

    def anonymous_user(app_config, using, **kwargs):
        if app_config.label == "auth":
            get_user_model().objects.using(using).get_or_create(username="AnonymousTest")

    def usernames():
        return set(get_user_model().objects.values_list("username", flat=True))

    post_migrate_sent.clear()
    with _post_migrate_receiver(anonymous_user):
        assert fast_flush.fast_flush("default")
        assert post_migrate_sent == ["default"]
        assert "AnonymousTest" in usernames()

        make_staff("agent")  # a row post_migrate did not make
        assert fast_flush.fast_flush("default")
        assert "AnonymousTest" in usernames()
        assert "agent" not in usernames()


def test_a_large_table_is_left_to_djangos_flush(monkeypatch):
    monkeypatch.setattr(fast_flush, "_MAX_ROWS_TO_DELETE", 1)
    team = TeamFactory(name="North")
    make_staff("one", teams=[team])
    make_staff("two", teams=[team])

    assert fast_flush.fast_flush("default") is False
    assert "auth_user" in _tables_with_rows()  # untouched: the caller flushes
