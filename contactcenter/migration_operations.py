"""Migration operations for columns that become encrypted fields.

Turning a plaintext column into an Encrypted*Field changes its type to text;
`EncryptPlaintextColumns` then encrypts the values already stored, row by row, with
the same key, format and associated data as the field uses (contactcenter.crypto).
It reads and writes through SQL, not the model: the field would try to decrypt a
plaintext. A value that already decrypts for its row is left alone, so the
operation can run again after an interruption; backwards it restores plaintext.
"""

from django.db import migrations

from contactcenter import crypto

BATCH_SIZE = 1000


def _rows(cursor, *, quote, table, pk_column, columns):
    """Every row as (pk, values), in primary-key order, a batch at a time."""
    selected = ", ".join(quote(column) for column in columns)
    last = None
    while True:
        where, params = ("", []) if last is None else (f" WHERE {quote(pk_column)} > %s", [last])
        cursor.execute(
            f"SELECT {quote(pk_column)}, {selected} FROM {quote(table)}{where} "  # noqa: S608 - identifiers from model metadata
            f"ORDER BY {quote(pk_column)} LIMIT {BATCH_SIZE}",
            params,
        )
        batch = cursor.fetchall()
        if not batch:
            return
        yield from batch
        last = batch[-1][0]


class EncryptPlaintextColumns(migrations.RunPython):
    def __init__(self, app_label, model_name, field_names):
        self.app_label = app_label
        self.model_name = model_name.lower()
        self.field_names = tuple(field_names)
        super().__init__(self._encrypt, self._decrypt, elidable=False)

    def _apply(self, apps, schema_editor, *, convert):
        model = apps.get_model(self.app_label, self.model_name)
        opts = model._meta
        fields = [opts.get_field(name) for name in self.field_names]
        connection = schema_editor.connection
        quote = connection.ops.quote_name
        with connection.cursor() as reader, connection.cursor() as writer:
            for pk_value, *values in _rows(
                reader,
                quote=quote,
                table=opts.db_table,
                pk_column=opts.pk.column,
                columns=[field.column for field in fields],
            ):
                pk = str(opts.pk.to_python(pk_value))
                changes = {}
                for field, value in zip(fields, values, strict=True):
                    if value is None:
                        continue
                    context = crypto.FieldContext(
                        app_label=self.app_label,
                        model_name=self.model_name,
                        field_name=field.name,
                        pk=pk,
                    )
                    converted = convert(value, context)
                    if converted is not None:
                        changes[field.column] = converted
                if changes:
                    assignments = ", ".join(f"{quote(column)} = %s" for column in changes)
                    writer.execute(
                        f"UPDATE {quote(opts.db_table)} SET {assignments} "  # noqa: S608 - identifiers from model metadata
                        f"WHERE {quote(opts.pk.column)} = %s",
                        [*changes.values(), pk_value],
                    )

    @staticmethod
    def _encrypted_form(value, context):
        try:
            crypto.decrypt(value, context=context)
        except crypto.DecryptionError:
            return crypto.encrypt(value, context=context)
        return None  # already encrypted for this row

    @staticmethod
    def _plaintext_form(value, context):
        try:
            return crypto.decrypt(value, context=context)
        except crypto.DecryptionError:
            return None  # already plaintext

    def _encrypt(self, apps, schema_editor):
        self._apply(apps, schema_editor, convert=self._encrypted_form)

    def _decrypt(self, apps, schema_editor):
        self._apply(apps, schema_editor, convert=self._plaintext_form)

    def describe(self):
        return f"Encrypt the stored values of {self.model_name}.{', '.join(self.field_names)}"

    def deconstruct(self):
        return (
            self.__class__.__name__,
            [self.app_label, self.model_name, list(self.field_names)],
            {},
        )
