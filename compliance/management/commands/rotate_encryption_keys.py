"""Re-encrypt every encrypted column to the first key of FIELD_ENCRYPTION_KEYS.

Safe while the application serves: each batch is its own short transaction that
locks only its rows (SELECT ... FOR UPDATE SKIP LOCKED) and writes them with plain
UPDATE statements, so no save(), signal or auto_now runs. Resumable: only rows
still holding a value under another key are selected, in primary-key order, so a
run that was killed is simply started again and carries on with what is left.

Everything runs on the database the router picks for writes, so a read replica
never answers for a table being rotated.
"""

import sys
import time

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, models, router, transaction
from django.db.models import Count, ExpressionWrapper, F, Q
from django.db.models.lookups import IsNull, StartsWith
from tqdm import tqdm

from contactcenter import crypto
from contactcenter.fields import encrypted_fields


def encrypted_tables():
    """(model, its own encrypted fields) for every installed concrete model."""
    return [
        (model, fields)
        for model in apps.get_models()
        if not model._meta.proxy and (fields := encrypted_fields(model))
    ]


def _stored(field):
    # The raw column as text: the encrypted field itself refuses lookups.
    return ExpressionWrapper(F(field.attname), output_field=models.TextField())


def _under_key(field, key_id):
    return StartsWith(_stored(field), crypto.stored_prefix(key_id))


def stale_rows(*, model, fields, key_id):
    """Rows with at least one value not under key_id."""
    condition = Q()
    for field in fields:
        condition |= Q(IsNull(_stored(field), False)) & ~Q(_under_key(field, key_id))
    return model._base_manager.using(router.db_for_write(model)).filter(condition)


def _update_statement(model, fields, connection):
    quote = connection.ops.quote_name
    # NULL means "keep": a row may have only some of its columns under an old key.
    assignments = ", ".join(
        f"{quote(field.column)} = COALESCE(%s, {quote(field.column)})" for field in fields
    )
    # Only quoted identifiers from the model's metadata are interpolated.
    return (
        f"UPDATE {quote(model._meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {quote(model._meta.pk.column)} = %s"
    )


def rotate_batch(*, model, fields, after_pk, batch_size):
    """Re-encrypt up to batch_size stale rows after after_pk in one transaction.
    Returns the primary keys it took, in order; empty when none are left.

    One parameterised UPDATE per row, sent with executemany: a CASE expression per
    column over the batch (bulk_update's way) costs five times as much here."""
    using = router.db_for_write(model)
    connection = connections[using]
    key_id = crypto.field_keyring().primary_id
    prefix = crypto.stored_prefix(key_id)
    with transaction.atomic(using=using):
        rows = stale_rows(model=model, fields=fields, key_id=key_id)
        if after_pk is not None:
            rows = rows.filter(pk__gt=after_pk)
        rows = list(
            rows.order_by("pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", *(field.attname for field in fields))[:batch_size]
        )
        updates = []
        for pk, *stored_values in rows:
            new_values = [
                None
                if stored is None or stored.startswith(prefix)
                else crypto.reencrypt(stored, context=field.context_for(pk))
                for field, stored in zip(fields, stored_values, strict=True)
            ]
            updates.append([*new_values, model._meta.pk.get_db_prep_value(pk, connection)])
        if updates:
            with connection.cursor() as cursor:
                cursor.executemany(_update_statement(model, fields, connection), updates)
    return [row[0] for row in rows]


def rotate_table(*, model, fields, batch_size, pause=0.0, progress=None):
    """Re-encrypt every stale row of model, batch after batch; returns how many
    rows it rewrote. Rows locked by others are skipped and stay stale."""
    done = 0
    after_pk = None
    while pks := rotate_batch(model=model, fields=fields, after_pk=after_pk, batch_size=batch_size):
        done += len(pks)
        after_pk = pks[-1]
        if progress is not None:
            progress.update(len(pks))
        if pause:
            time.sleep(pause)
    return done


def key_counts(*, model, fields):
    """{field name: {key id: count, ..., "other": count}}, counted in SQL on the
    stored prefix. "other" is a value under a key id missing from the keyring or
    not in the stored format at all."""
    key_ids = crypto.field_keyring().key_ids
    aggregates = {}
    for f_index, field in enumerate(fields):
        aggregates[f"total_{f_index}"] = Count(field.attname)
        for k_index, key_id in enumerate(key_ids):
            aggregates[f"key_{f_index}_{k_index}"] = Count(
                "pk", filter=Q(_under_key(field, key_id))
            )
    totals = model._base_manager.using(router.db_for_write(model)).aggregate(**aggregates)
    counts = {}
    for f_index, field in enumerate(fields):
        per_key = {
            key_id: totals[f"key_{f_index}_{k_index}"] for k_index, key_id in enumerate(key_ids)
        }
        per_key["other"] = totals[f"total_{f_index}"] - sum(per_key.values())
        counts[field.name] = per_key
    return counts


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column to the first key of FIELD_ENCRYPTION_KEYS, "
        "in batches, each in its own transaction. Resumable: run it again after an "
        "interruption. With --check, print how many values each key id still holds."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Rows per transaction (default %(default)s).",
        )
        parser.add_argument(
            "--pause",
            type=float,
            default=0.0,
            help="Seconds to wait between batches, to spare a busy database.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only count values per key id for each encrypted column; change nothing.",
        )

    def handle(self, *args, batch_size, pause, check, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if pause < 0:
            raise CommandError("--pause cannot be negative.")
        tables = encrypted_tables()
        if check:
            self._print_counts(tables)
            return
        key_id = crypto.field_keyring().primary_id
        progress_stream = options.get("stderr") or sys.stderr
        left = 0
        for model, fields in tables:
            with tqdm(
                total=stale_rows(model=model, fields=fields, key_id=key_id).count(),
                desc=model._meta.label,
                unit="row",
                file=progress_stream,
            ) as progress:
                try:
                    done = rotate_table(
                        model=model,
                        fields=fields,
                        batch_size=batch_size,
                        pause=pause,
                        progress=progress,
                    )
                except crypto.DecryptionError as exc:
                    raise CommandError(
                        f"{exc} That batch was rolled back; earlier batches are kept."
                    ) from None
            remaining = stale_rows(model=model, fields=fields, key_id=key_id).count()
            left += remaining
            self.stdout.write(
                f"{model._meta.label}: {done} rows re-encrypted to key {key_id!r}, "
                f"{remaining} left."
            )
        if left:
            raise CommandError(
                f"{left} rows still hold values under other keys: they were locked by "
                "the application or written by a process still using the old keyring. "
                "Run the command again."
            )

    def _print_counts(self, tables):
        for model, fields in tables:
            for field_name, per_key in key_counts(model=model, fields=fields).items():
                counts = " ".join(f"{key_id}={count}" for key_id, count in per_key.items())
                self.stdout.write(f"{model._meta.label}.{field_name}: {counts}")
