"""A cheaper end for transactional tests, for the test suite only.

Django ends every transactional test (``transaction=True``, ``live_server``) with
``flush``: one TRUNCATE of all 78 tables, then the post_migrate signal, whose
receivers create the content types and permissions again (and, in a process that
has imported guardian's management package, guardian's anonymous user). TRUNCATE
gives PostgreSQL new files for every table and index, empty or not: about half a
second per test, most of a transactional test's teardown.

Here the end state is the same, reached more cheaply:

- one statement finds the tables holding rows; only those are emptied, with DELETE
  (Django's foreign keys are DEFERRABLE INITIALLY DEFERRED, so the order does not
  matter inside the transaction), the append-only audit table with TRUNCATE (its
  trigger refuses DELETE; the test settings allow TRUNCATE);
- the rows post_migrate created are kept, and post_migrate is not sent again, while
  they are exactly as post_migrate left them: after each post_migrate the rows it
  made are recorded (primary keys and a digest), and compared at each teardown;
  rows a test added beside them go. When a test changed or deleted any of them, or
  post_migrate has receivers it did not have then, everything is emptied and
  post_migrate is sent, as flush does.

Anything unusual (``available_apps``, ``serialized_rollback``, a database that is not
PostgreSQL, a table with many rows, an error) goes to Django's own flush.
"""

from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connections, transaction
from django.db.models.signals import post_migrate
from django.test import TransactionTestCase

# Past this many rows in one table DELETE loses to TRUNCATE: Django's flush does it.
_MAX_ROWS_TO_DELETE = 2000
# Tables refusing DELETE (an append-only trigger) and allowing TRUNCATE in tests.
_TRUNCATED = {"compliance_auditevent"}

# Per database alias: the post_migrate receivers and, per table post_migrate filled,
# (primary key column, the primary keys of its rows, a digest of those rows), as
# post_migrate last left the database in this process.
_post_migrate_rows = {}


def _receivers():
    return tuple(key for key, *_ in post_migrate.receivers)


def _digests(connection, cursor, rows):
    """A digest of the given rows of each table, {table: (pk column, pks or None for
    all)}, in one round trip."""
    if not rows:
        return {}
    qn = connection.ops.quote_name
    parts, params = [], []
    for table, (pk, pks) in sorted(rows.items()):
        where = ""
        if pks is not None:
            where = f" WHERE r.{qn(pk)} = ANY(%s)"
            params.append(list(pks))
        # Table and column names come from Django's introspection; values are parameters.
        parts.append(
            f"(SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''))"  # noqa: S608
            f" FROM {qn(table)} r{where})"
        )
    cursor.execute("SELECT " + ", ".join(parts), params)
    return dict(zip(sorted(rows), cursor.fetchone(), strict=True))


def _row_counts(connection, cursor, tables):
    """Rows in each table, counted up to _MAX_ROWS_TO_DELETE + 1, in one round trip."""
    qn = connection.ops.quote_name
    limit = _MAX_ROWS_TO_DELETE + 1
    parts = [
        f"(SELECT count(*) FROM (SELECT 1 FROM {qn(t)} LIMIT {limit}) s)"  # noqa: S608 - as above
        for t in tables
    ]
    cursor.execute("SELECT " + ", ".join(parts))
    return dict(zip(tables, cursor.fetchone(), strict=True))


def _tables(connection):
    return sorted(
        connection.introspection.django_table_names(only_existing=True, include_views=False)
    )


def _record_post_migrate_rows(alias):
    try:
        _post_migrate_rows[alias] = _post_migrate_rows_now(alias)
    except Exception:
        # Unknown, so the next teardown empties everything and sends post_migrate.
        _post_migrate_rows.pop(alias, None)


def _post_migrate_rows_now(alias):
    connection = connections[alias]
    tables = _tables(connection)
    qn = connection.ops.quote_name
    rows = {}
    with connection.cursor() as cursor:
        counts = _row_counts(connection, cursor, tables)
        for table in tables:
            if counts[table]:
                pk = connection.introspection.get_primary_key_column(cursor, table)
                cursor.execute(f"SELECT {qn(pk)} FROM {qn(table)}")  # noqa: S608 - as above
                rows[table] = (pk, frozenset(value for (value,) in cursor.fetchall()))
        digests = _digests(connection, cursor, rows)
    return (
        _receivers(),
        {table: (pk, pks, digests[table]) for table, (pk, pks) in rows.items()},
    )


def fast_flush(alias):
    """Empty the database as flush does; False when it must be left to flush."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return False
    tables = _tables(connection)
    qn = connection.ops.quote_name
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        counts = _row_counts(connection, cursor, tables)
        if max(counts.values(), default=0) > _MAX_ROWS_TO_DELETE:
            return False
        receivers, kept = _post_migrate_rows.get(alias, (None, {}))
        keep = receivers == _receivers() and _digests(
            connection, cursor, {table: (pk, pks) for table, (pk, pks, _) in kept.items()}
        ) == {table: digest for table, (_, _, digest) in kept.items()}
        for table in tables:
            if not counts[table]:
                continue
            if keep and table in kept:
                pk, pks, _ = kept[table]
                if counts[table] > len(pks):  # rows a test added beside post_migrate's
                    cursor.execute(
                        f"DELETE FROM {qn(table)} WHERE {qn(pk)} <> ALL(%s)",  # noqa: S608
                        [list(pks)],
                    )
            elif table in _TRUNCATED:
                cursor.execute(f"TRUNCATE {qn(table)}")
            else:
                cursor.execute(f"DELETE FROM {qn(table)}")  # noqa: S608 - as above
    if not keep:
        emit_post_migrate_signal(verbosity=0, interactive=False, db=alias)
        _record_post_migrate_rows(alias)
    return True


def _fixture_teardown(self):
    if self.available_apps is not None or self.serialized_rollback:
        return _django_fixture_teardown(self)
    for alias in self._databases_names(include_mirrors=False):
        try:
            done = fast_flush(alias)
        except Exception:
            # Whatever went wrong (a schema a migration test left half-way, a lost
            # connection) rolled back; Django's flush reports it as it always did.
            done = False
        if not done:
            _post_migrate_rows.pop(alias, None)
            call_command(
                "flush",
                verbosity=0,
                interactive=False,
                database=alias,
                reset_sequences=False,
                allow_cascade=False,
                inhibit_post_migrate=False,
            )
            if connections[alias].vendor == "postgresql":
                _record_post_migrate_rows(alias)
    return None


_django_fixture_teardown = TransactionTestCase._fixture_teardown


def install():
    TransactionTestCase._fixture_teardown = _fixture_teardown
