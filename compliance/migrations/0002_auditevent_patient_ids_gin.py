from django.db import migrations

# jsonb_path_ops answers `patient_ids @> '["<uuid>"]'` (Django's __contains) from a
# smaller index than the default opclass. Django's GinIndex would emit PostgreSQL-only
# SQL on SQLite too, hence raw SQL guarded by vendor; SQLite has no equivalent index.
CREATE = (
    "CREATE INDEX audit_patient_ids_gin ON compliance_auditevent "
    "USING gin (patient_ids jsonb_path_ops)"
)
DROP = "DROP INDEX IF EXISTS audit_patient_ids_gin"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
