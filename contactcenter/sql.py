"""Hand-written SQL for the hottest reads (the inbox and the timeline).

Building and compiling a QuerySet, then instantiating a model per row, costs
several times the query itself on a page of fifty (bench/inbox_timeline.py). These
helpers run a fixed statement through Django's own connection, so it keeps the
request's transaction, query logging and test query counts, and apply the same
conversions the ORM would: parameters are adapted by the model field (UUIDs and
datetimes differ between PostgreSQL and the SQLite of local development) and
values come back through the field's converters. Encrypted columns come back as
stored; the caller decrypts with `field.decrypt_stored(value, pk=...)`.
"""

from functools import lru_cache

from django.db import connection


def param(field, value):
    """`value` as the database expects it for `field`'s column."""
    return field.get_db_prep_value(value, connection, prepared=False)


@lru_cache(maxsize=64)
def _converters(fields, vendor):
    converters = []
    for index, field in enumerate(fields):
        if field is None:
            continue
        expression = field.cached_col
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


def in_list(values):
    """`(%s, %s, ...)` for an IN over `values` (SQLite has no `= ANY(array)`)."""
    return "(" + ", ".join(["%s"] * len(values)) + ")"
