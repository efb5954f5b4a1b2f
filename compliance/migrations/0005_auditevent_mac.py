import importlib

from django.db import migrations, models

# The SQLite trigger lists the columns a sealing UPDATE must leave alone (PostgreSQL
# compares whole rows and needs nothing): the row MAC joins them.
_triggers = importlib.import_module("compliance.migrations.0003_auditevent_append_only_triggers")
CONTENT_COLUMNS = (*_triggers.CONTENT_COLUMNS, "mac")


def _sqlite_no_update_trigger(content_columns):
    sealing_update = " AND ".join(
        [f"OLD.{column} IS NULL" for column in _triggers.CHAIN_COLUMNS]
        + [f"NEW.{column} IS NOT NULL" for column in _triggers.CHAIN_COLUMNS]
        + [f"NEW.{column} IS OLD.{column}" for column in content_columns]
    )
    return f"""
CREATE TRIGGER compliance_auditevent_no_update
BEFORE UPDATE ON compliance_auditevent
FOR EACH ROW WHEN NOT ({sealing_update})
BEGIN
    SELECT RAISE(ABORT, 'compliance_auditevent is append-only: UPDATE rejected');
END
"""


def _replace_sqlite_trigger(content_columns):
    def replace(apps, schema_editor):
        if schema_editor.connection.vendor != "sqlite":
            return
        schema_editor.execute("DROP TRIGGER IF EXISTS compliance_auditevent_no_update", params=None)
        schema_editor.execute(_sqlite_no_update_trigger(content_columns), params=None)

    return replace


class Migration(migrations.Migration):

    dependencies = [
        ("compliance", "0004_workbench"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="mac",
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
        migrations.RunPython(
            _replace_sqlite_trigger(CONTENT_COLUMNS),
            _replace_sqlite_trigger(_triggers.CONTENT_COLUMNS),
        ),
    ]
