"""Hand-written SQL for the hottest reads: the inbox, the timeline and the bearer
token looked up on every request, and the look-ups and writes every inbound
message makes on the webhook's request and in the worker (`get_all`, `exists`,
`update_row`, `insert_row`, `save_fields`).

Building and compiling a QuerySet, then instantiating a model per row, costs
several times the query itself on a page of fifty (bench/inbox_timeline.py). These
helpers run a fixed statement through Django's own connection, so it keeps the
request's transaction, query logging and test query counts, and apply the same
conversions the ORM would: parameters are adapted by the model field (UUIDs and
datetimes differ between PostgreSQL and the SQLite of local development) and
values come back through the field's converters (timestamps parsed by psycopg's
native loader, see `_load_timestamps_natively`). Encrypted columns come back as
stored; the caller decrypts with `field.decrypt_stored(value, pk=...)`.

`analytic_statements()` is for the other end: reports whose statements aggregate
a day, a month or a year with the same text.
"""

import datetime
from contextlib import contextmanager
from functools import lru_cache

from django.db import DatabaseError, connection, connections, transaction
from django.db.models.signals import post_save, pre_save

try:
    import psycopg
    from psycopg.pq import Format

    # psycopg's own timestamptz loader: its C version when psycopg[binary] is
    # installed. Django registers a Python subclass of the Python version, which
    # parses each value in Python: 3.6 µs a value against 0.4 µs here.
    _TIMESTAMPTZ_LOADER = psycopg.adapters.get_loader(
        psycopg.adapters.types["timestamptz"].oid, Format.TEXT
    )
except ImportError:  # no psycopg: SQLite only
    _TIMESTAMPTZ_LOADER = None


def param(field, value):
    """`value` as the database expects it for `field`'s column."""
    return field.get_db_prep_value(value, connection, prepared=False)


@lru_cache(maxsize=64)
def _converters(fields, vendor):
    # A reach into Django's internals (Field.cached_col, the backend's
    # get_db_converters): the same converter list the SQL compiler builds for a
    # QuerySet column, so a hand-written row comes back exactly as the ORM's would
    # (booleans on SQLite, JSON, aware datetimes). Cached per field tuple and
    # database vendor, since the list depends on both.
    converters = []
    for index, field in enumerate(fields):
        if field is None:
            continue
        # get_col, as the ORM's compiler does: a foreign key's column converts as
        # its target (a UUID comes back as a UUID on SQLite too, not as its hex).
        expression = field.get_col(field.model._meta.db_table)
        functions = connection.ops.get_db_converters(expression) + expression.get_db_converters(
            connection
        )
        if functions:
            converters.append((index, expression, tuple(functions)))
    return tuple(converters)


def fetch(sql, params, fields):
    """Rows of `sql` as lists, each value converted as the model `fields` (one per
    selected column, None for a column that needs no conversion) would convert it."""
    with connection.cursor() as cursor:
        _load_timestamps_natively(cursor)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    converters = _converters(tuple(fields), connection.vendor)
    if not converters:
        return [list(row) for row in rows]
    converted = []
    for row in rows:
        row = list(row)
        for index, expression, functions in converters:
            value = row[index]
            for function in functions:
                value = function(value, expression, connection)
            row[index] = value
        converted.append(row)
    return converted


def _load_timestamps_natively(cursor):
    """psycopg's loader for this cursor's timestamps instead of Django's. Both give
    the same aware datetimes in `datetime.UTC` when the connection's time zone is
    UTC (USE_TZ and no database TIME_ZONE, as in every settings module here);
    with any other zone Django's loader stays."""
    if (
        _TIMESTAMPTZ_LOADER is not None
        and connection.vendor == "postgresql"
        and connection.timezone is datetime.UTC
    ):
        cursor.cursor.adapters.register_loader("timestamptz", _TIMESTAMPTZ_LOADER)


def in_list(values):
    """`(%s, %s, ...)` for an IN over `values` (SQLite has no `= ANY(array)`)."""
    return "(" + ", ".join(["%s"] * len(values)) + ")"


def constant_in_list(values):
    """`('open', 'pending')`: an IN list with the values written into the statement,
    for code's own constants and validated choices, never free text. A partial
    index's condition (`WHERE status IN ('open', 'pending')`) is then visible in
    the plan PostgreSQL keeps for the prepared statement; with parameters in their
    place it cannot use the index in that plan, and plans the statement again on
    every execution instead, which costs more than running it. Anything but a
    plain word is refused, so nothing here needs quoting."""
    values = list(values)
    for value in values:
        if not (isinstance(value, str) and value.isidentifier()):
            raise ValueError(f"Not a plain word for a constant IN list: {value!r}")
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


@lru_cache(maxsize=16)
def _joined_select(model, fk_name):
    """`SELECT <model's columns>, <the related model's> FROM <model> a JOIN <related>
    b ON ...`, the two field lists; a non-null foreign key (an inner join)."""
    quote = connection.ops.quote_name
    fk = model._meta.get_field(fk_name)
    if fk.null:
        raise ValueError(f"{model.__name__}.{fk_name} is nullable: an inner join would drop rows")
    related = fk.related_model
    own, theirs = model._meta.concrete_fields, related._meta.concrete_fields
    columns = [f"a.{quote(f.column)}" for f in own] + [f"b.{quote(f.column)}" for f in theirs]
    statement = (
        f"SELECT {', '.join(columns)} FROM {quote(model._meta.db_table)} a "
        f"JOIN {quote(related._meta.db_table)} b "
        f"ON b.{quote(related._meta.pk.column)} = a.{quote(fk.column)}"
    )
    return statement, own, theirs


def select_with_related(model, fk_name, where, params, *, limit=None):
    """`model.objects.select_related(fk_name)` filtered by `where`, a fixed condition
    on the model's table (alias `a`) with `params`, as a fixed statement: real model
    instances, the related one cached on the foreign key. For reads made on every
    request or message, where building the QuerySet cost more than running it."""
    statement, own, theirs = _joined_select(model, fk_name)
    statement = f"{statement} WHERE {where}"
    if limit is not None:
        statement += f" LIMIT {int(limit)}"
    instances = []
    for values in fetch(statement, params, [*own, *theirs]):
        instance = model.from_db(connection.alias, [f.attname for f in own], values[: len(own)])
        related = theirs[0].model.from_db(
            connection.alias, [f.attname for f in theirs], values[len(own) :]
        )
        setattr(instance, fk_name, related)
        instances.append(instance)
    return instances


def get_with_related(model, fk_name, **lookup):
    """`model.objects.select_related(fk_name).filter(**lookup).first()` for one
    exact lookup on a unique column, as a fixed statement (select_with_related).
    For lookups made on every request (the bearer token) or every message (the
    inbound task's)."""
    ((where_name, value),) = lookup.items()
    field = model._meta.get_field(where_name)
    found = select_with_related(
        model, fk_name, f"a.{connection.ops.quote_name(field.column)} = %s", [param(field, value)]
    )
    return found[0] if found else None


@lru_cache(maxsize=16)
def _all_statement(model, where_names):
    quote = connection.ops.quote_name
    meta = model._meta
    fields = meta.concrete_fields
    order = []
    for name in meta.ordering:
        if not isinstance(name, str) or name == "?":
            raise ValueError(f"{model.__name__}'s ordering is not plain field names")
        descending = name.startswith("-")
        column = quote(meta.get_field(name.lstrip("-")).column)
        order.append(f"{column} DESC" if descending else column)
    statement = f"SELECT {', '.join(quote(f.column) for f in fields)} FROM {quote(meta.db_table)}"
    if where_names:
        conditions = [f"{quote(meta.get_field(name).column)} = %s" for name in where_names]
        statement += f" WHERE {' AND '.join(conditions)}"
    if order:
        statement += f" ORDER BY {', '.join(order)}"
    return statement, fields


def get_all(model, **lookup):
    """`list(model.objects.filter(**lookup))` for exact lookups on columns, in the
    model's Meta.ordering (plain field names), as a fixed statement. For
    configuration every message reads (the active escalation rules)."""
    names = tuple(lookup)
    statement, fields = _all_statement(model, names)
    params = [param(model._meta.get_field(name), lookup[name]) for name in names]
    attnames = [f.attname for f in fields]
    return [
        model.from_db(connection.alias, attnames, row) for row in fetch(statement, params, fields)
    ]


@lru_cache(maxsize=64)
def _update_statement(model, names, unset_names):
    quote = connection.ops.quote_name
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    for field in fields:
        if not field.concrete or field.many_to_many:
            raise ValueError(f"{model.__name__}.{field.name} is not a column of its table")
    conditions = [f"{quote(meta.pk.column)} = %s"] + [
        f"{quote(meta.get_field(name).column)} IS NULL" for name in unset_names
    ]
    statement = (
        f"UPDATE {quote(meta.db_table)} "
        f"SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "
        f"WHERE {' AND '.join(conditions)}"
    )
    return statement, fields


def update_row(model, pk, *, unless_set=(), **changes):
    """`model.objects.filter(pk=pk, <each of unless_set>__isnull=True).update(**changes)`
    as a fixed statement (no signals, as update() sends none): the number of rows
    changed, 0 or 1. For the writes the worker makes on every message."""
    names = tuple(changes)
    statement, fields = _update_statement(model, names, tuple(unless_set))
    values = [field.get_db_prep_save(changes[field.name], connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(statement, [*values, param(model._meta.pk, pk)])
        return cursor.rowcount


def _sends_save_signals(model):
    return pre_save.has_listeners(model) or post_save.has_listeners(model)


@lru_cache(maxsize=32)
def _insert_statement(model, skip_conflicts):
    if model._meta.parents:
        # Its row is in two tables: save() writes both.
        raise ValueError(f"{model.__name__} inherits another model's table")
    quote = connection.ops.quote_name
    # An auto-increment key is the database's to give (and is not read back).
    fields = tuple(
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and field.get_internal_type().endswith("AutoField"))
    )
    # Identifiers come from the model's metadata; every value is a parameter.
    statement = (
        f"INSERT INTO {quote(model._meta.db_table)} "
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if skip_conflicts:
        statement += " ON CONFLICT DO NOTHING"
    return statement, fields


def insert_row(instance, *, skip_conflicts=False):
    """`instance.save(force_insert=True)` as a fixed statement: each value prepared
    by its field's pre_save as save() prepares it (an encrypted value with its row's
    id bound, auto_now_add set). True when the row was inserted; with
    `skip_conflicts`, False when a unique constraint already holds its values (ON
    CONFLICT DO NOTHING: the constraint decides, also between racing transactions).
    A model with save receivers is saved by save(), which sends them, unless
    `skip_conflicts` (which save() cannot do: no receiver runs then)."""
    model = type(instance)
    if _sends_save_signals(model) and not skip_conflicts:
        instance.save(force_insert=True)
        return True
    statement, fields = _insert_statement(model, skip_conflicts)
    values = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
        inserted = cursor.rowcount == 1
    if inserted:
        instance._state.adding = False
        instance._state.db = connection.alias
    return inserted


def save_fields(instance, names):
    """`instance.save(update_fields=names)` as a fixed statement: each value
    prepared by its field's pre_save, so an auto_now column takes the time and an
    encrypted one is encrypted, as save() would. A model with save receivers is
    saved by save(), which sends them."""
    model = type(instance)
    if _sends_save_signals(model):
        instance.save(update_fields=names)
        return
    statement, fields = _update_statement(model, tuple(names), ())
    values = [
        field.get_db_prep_save(field.pre_save(instance, False), connection) for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement, [*values, param(model._meta.pk, instance.pk)])
        if cursor.rowcount == 0:
            # What save(update_fields=...) says of a row that is not there.
            raise DatabaseError("Save with update_fields did not affect any rows.")


def exists(statement, params):
    """Whether the fixed `statement` (a SELECT) returns a row."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS ({statement})", params)
        return bool(cursor.fetchone()[0])


_ANALYTIC_FLAG = "_contactcenter_analytic_statements"


@contextmanager
def analytic_statements():
    """Inside, PostgreSQL plans every statement for its own parameters and does not
    JIT-compile it; both settings end with the transaction this opens (or the
    caller's, when there is one).

    - With prepared statements (DATABASE_PREPARED_STATEMENTS), PostgreSQL moves to
      one generic plan after five runs of a statement. A generic plan cannot see
      how wide a date range is, and a day of KPIs took three times as long with it.
    - Correlated subqueries push a statement's estimated cost past jit_above_cost.
      Compiling then took 45 ms of a 90 ms statement on a day of KPIs, and a year
      computed live was faster without it too (bench/kpi_report.py).
    """
    # Nested (the report around its live computation): the outer block's
    # transaction-local settings already hold.
    from contactcenter.replica import read_alias

    alias = read_alias()
    connection = connections[alias]
    if connection.vendor != "postgresql" or getattr(connection, _ANALYTIC_FLAG, False):
        yield
        return
    with transaction.atomic(using=alias, savepoint=False):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                "set_config('jit', 'off', true)"
            )
        setattr(connection, _ANALYTIC_FLAG, True)
        try:
            yield
        finally:
            setattr(connection, _ANALYTIC_FLAG, False)
