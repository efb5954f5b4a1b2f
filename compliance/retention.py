"""What the application keeps, and for how long: a registry the apps above fill.

compliance sits below the apps that hold messages and recordings, so it cannot
name their models; each app registers its kinds of data in its AppConfig.ready()
with `register_retention`, and compliance.services.retention_purge purges them.
How long each kind is kept is `settings.RETENTION_DAYS[kind]`, else the default
the app registered.

A kind is purged either by deleting its rows (`delete_rows`) or, when the row must
stay (a message's row counts in KPIs), by crypto-shredding: its encrypted columns
are overwritten with a fresh encryption of nothing (`shred_fields`), so the old
ciphertext is gone from the table and no key can bring it back.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router

from compliance.models import AuditEvent
from contactcenter.fields import EncryptedFieldMixin


@dataclass(frozen=True)
class RetentionKind:
    kind: str
    # The rows of this kind, whether past retention or not; the purge filters them
    # by date_field itself.
    queryset_factory: Callable
    # The field whose age counts (lookups across relations allowed). A field set
    # when the row is stored is safest: an imported old message is then kept for
    # the full term from its import, and no row can land behind a checkpoint.
    date_field: str
    default_days: int
    # purge(pks, *, cutoff) removes the data of these rows (primary keys of the
    # queryset's model), in the caller's transaction, and returns how many rows
    # it purged. It must be idempotent: a run interrupted mid-way repeats a batch.
    purge: Callable


_REGISTRY: dict[str, RetentionKind] = {}


def register_retention(kind, *, queryset_factory, date_field, default_days, purge):
    """Declare a kind of data the purge removes once it is older than its retention."""
    if kind in _REGISTRY:
        raise ImproperlyConfigured(f"Retention kind {kind!r} is registered twice.")
    if queryset_factory().model is AuditEvent:
        raise ImproperlyConfigured("Audit events are never purged by the application.")
    _REGISTRY[kind] = RetentionKind(
        kind=kind,
        queryset_factory=queryset_factory,
        date_field=date_field,
        default_days=default_days,
        purge=purge,
    )


def registered_kinds() -> list[RetentionKind]:
    return [_REGISTRY[kind] for kind in sorted(_REGISTRY)]


def delete_rows(model):
    """A purge that deletes the rows (with what cascades from them)."""

    def purge(pks, *, cutoff):
        deleted = model._default_manager.filter(pk__in=pks).delete()[1]
        return deleted.get(model._meta.label, 0)

    return purge


def shred_fields(model, pks, field_names) -> int:
    """Overwrite the encrypted columns `field_names` of the rows `pks` with an
    encryption of nothing (NULL for nullable columns); return the rows changed.

    One parameterised UPDATE per row, sent with executemany: each value is
    encrypted with its own row's primary key as associated data, which
    QuerySet.update() cannot do, and no save() signal fires for a purge."""
    fields = [model._meta.get_field(name) for name in field_names]
    for field in fields:
        if not isinstance(field, EncryptedFieldMixin):
            raise TypeError(f"{field} is not encrypted; shredding it would leave plaintext.")
    if not pks:
        return 0
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    # Only quoted identifiers from the model's metadata are formatted in.
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {quote(model._meta.pk.column)} = %s"
    )
    pk_field = model._meta.pk
    params = [
        (
            *(None if field.null else str(field.encrypt_value("", pk=pk)) for field in fields),
            pk_field.get_db_prep_value(pk, connection),
        )
        for pk in pks
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return len(params)
