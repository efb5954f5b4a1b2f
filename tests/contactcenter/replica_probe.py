"""Run by test_replica.py in a subprocess, with DATABASE_URL on the test's own
primary and DATABASE_REPLICA_URL on its streaming replica: asks the KPI report and
the audit search through the API, as a supervisor and a compliance officer, and
prints as JSON which database served their reads and where their writes went."""

import json
import os
import sys
import time

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
django.setup()

from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402

from compliance.models import AuditEvent  # noqa: E402
from contactcenter import replica, roles  # noqa: E402
from contactcenter.replica import read_alias, replica_reads  # noqa: E402
from tests.factories import TeamFactory, make_staff, token_for  # noqa: E402

tag = sys.argv[1]
team = TeamFactory(name=f"Replica probe {tag}")
supervisor = make_staff(f"replica-super-{tag}", role=roles.SUPERVISOR, teams=[team])
officer = make_staff(f"replica-officer-{tag}", role=roles.COMPLIANCE, teams=[])


def replica_has(username):
    try:
        with connections["replica"].cursor() as cursor:
            cursor.execute("SELECT 1 FROM auth_user WHERE username = %s", [username])
            return cursor.fetchone() is not None
    except Exception:
        return None  # the replica does not answer: nothing to wait for


# Streaming replication is asynchronous: wait (a few seconds at most) for the
# replica to have the probe's users, as a lag-tolerant reader would.
deadline = time.monotonic() + 10
while time.monotonic() < deadline and replica_has(officer.username) is False:
    time.sleep(0.05)
connections["replica"].close()
replica._down_until["at"] = 0.0

for alias in ("default", "replica"):
    connections[alias].force_debug_cursor = True


def selects(alias):
    return [
        q["sql"]
        for q in connections[alias].queries_log
        if q["sql"].lstrip().upper().startswith("SELECT")
    ]


result = {"outside": read_alias()}
with replica_reads():
    alias = read_alias()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        result["inside"] = {"alias": alias, "in_recovery": cursor.fetchone()[0]}

client = Client()
for name, path, user in (
    ("kpis", "/api/v1/reports/kpis/", supervisor),
    ("audit_search", "/api/v1/audit-events/?action=login", officer),
):
    audit_before = AuditEvent.objects.using("default").count()
    response = client.get(path, **token_for(user))
    # Django empties each connection's query log when a request starts.
    served = selects("replica")
    result[name] = {
        "status": response.status_code,
        "replica_selects": len(served),
        "replica_tables": sorted(
            table
            for table in ("compliance_auditevent", "reporting_", "channels_app_conversation")
            if any(table in sql for sql in served)
        ),
        "audit_rows_written_on_primary": AuditEvent.objects.using("default").count() - audit_before,
    }
print(json.dumps(result))
