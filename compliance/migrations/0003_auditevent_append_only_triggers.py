from django.db import migrations
from django.db.utils import NotSupportedError

CHAIN_COLUMNS = ("chain_position", "prev_hash", "hash", "sealed_at")
# Frozen with this migration: a column added later needs a migration that
# recreates the SQLite trigger (PostgreSQL compares whole rows and needs none).
CONTENT_COLUMNS = (
    "id",
    "recorded_at",
    "actor_user_id",
    "actor_username",
    "actor_role",
    "api_client_id",
    "api_client_name",
    "action",
    "resource_type",
    "resource_id",
    "patient_ids",
    "outcome",
    "http_status",
    "purpose_of_use",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
)

# The one UPDATE allowed is the sealer's: it fills the four chain columns of a row
# that has none and leaves every other column as it was. TRUNCATE is refused while
# it would destroy rows, unless the session opted in with
# `SET compliance.allow_truncate = on` (test suites flush tables with TRUNCATE);
# whoever can set that owns the table and could drop the trigger anyway, so it is a
# guard against accidents such as `manage.py flush`, and the hash chain is what
# exposes deliberate tampering.
POSTGRESQL_FORWARD = """
CREATE FUNCTION compliance_auditevent_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND OLD.chain_position IS NULL
        AND OLD.prev_hash IS NULL
        AND OLD.hash IS NULL
        AND OLD.sealed_at IS NULL
        AND NEW.chain_position IS NOT NULL
        AND NEW.prev_hash IS NOT NULL
        AND NEW.hash IS NOT NULL
        AND NEW.sealed_at IS NOT NULL
        AND (to_jsonb(NEW) - ARRAY['chain_position', 'prev_hash', 'hash', 'sealed_at'])
            = (to_jsonb(OLD) - ARRAY['chain_position', 'prev_hash', 'hash', 'sealed_at'])
    THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'TRUNCATE' AND (
        current_setting('compliance.allow_truncate', true) = 'on'
        OR NOT EXISTS (SELECT 1 FROM compliance_auditevent)
    ) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'compliance_auditevent is append-only: % rejected', TG_OP
        USING HINT = 'Audit events are written once and sealed once by compliance.chain.';
END;
$$;

CREATE TRIGGER compliance_auditevent_append_only_row
    BEFORE UPDATE OR DELETE ON compliance_auditevent
    FOR EACH ROW EXECUTE FUNCTION compliance_auditevent_append_only();

CREATE TRIGGER compliance_auditevent_append_only_truncate
    BEFORE TRUNCATE ON compliance_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION compliance_auditevent_append_only();
"""

POSTGRESQL_REVERSE = """
DROP TRIGGER IF EXISTS compliance_auditevent_append_only_truncate ON compliance_auditevent;
DROP TRIGGER IF EXISTS compliance_auditevent_append_only_row ON compliance_auditevent;
DROP FUNCTION IF EXISTS compliance_auditevent_append_only();
"""

_SQLITE_SEALING_UPDATE = " AND ".join(
    [f"OLD.{column} IS NULL" for column in CHAIN_COLUMNS]
    + [f"NEW.{column} IS NOT NULL" for column in CHAIN_COLUMNS]
    + [f"NEW.{column} IS OLD.{column}" for column in CONTENT_COLUMNS]
)

SQLITE_FORWARD = [
    f"""
CREATE TRIGGER compliance_auditevent_no_update
BEFORE UPDATE ON compliance_auditevent
FOR EACH ROW WHEN NOT ({_SQLITE_SEALING_UPDATE})
BEGIN
    SELECT RAISE(ABORT, 'compliance_auditevent is append-only: UPDATE rejected');
END
""",
    """
CREATE TRIGGER compliance_auditevent_no_delete
BEFORE DELETE ON compliance_auditevent
FOR EACH ROW
BEGIN
    SELECT RAISE(ABORT, 'compliance_auditevent is append-only: DELETE rejected');
END
""",
]

SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS compliance_auditevent_no_delete",
    "DROP TRIGGER IF EXISTS compliance_auditevent_no_update",
]


def install_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement, params=None)
    else:
        raise NotSupportedError(f"No append-only triggers for the {vendor} database backend.")


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_REVERSE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0002_auditevent_patient_ids_gin"),
    ]

    operations = [
        migrations.RunPython(install_triggers, drop_triggers, elidable=False),
    ]
