"""Lag-tolerant reads on a streaming replica: a primary and a replica of this test
alone (initdb, pg_basebackup -R, on loopback ports; never the shared server), and
the app pointed at both through DATABASE_URL and DATABASE_REPLICA_URL."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.processes import PrivatePostgres, postgres_bin

pytestmark = pytest.mark.django_db

PROBE = Path(__file__).with_name("replica_probe.py")


def _probe(primary, replica):
    env = {
        **os.environ,
        "DATABASE_URL": primary.url("cc"),
        "DATABASE_REPLICA_URL": replica.url("cc"),
        "PYTHONPATH": str(settings.BASE_DIR),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, str(PROBE), uuid.uuid4().hex[:8]],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def primary_and_replica():
    primary = PrivatePostgres().init().start()
    replica = PrivatePostgres()
    try:
        primary.restore_from_test_database("cc")
        replica._run(
            postgres_bin("pg_basebackup"),
            "--host=127.0.0.1",
            f"--port={primary.port}",
            "--username=postgres",
            f"--pgdata={replica.data}",
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        replica.start()
        yield primary, replica
    finally:
        replica.destroy()
        primary.destroy()


def test_lag_tolerant_reads_go_to_the_replica_and_to_the_primary_when_it_is_down(
    primary_and_replica,
):
    primary, replica = primary_and_replica
    with replica.connect("cc") as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True

    up = _probe(primary, replica)

    assert up["outside"] == "default"
    assert up["inside"] == {"alias": "replica", "in_recovery": True}
    assert up["kpis"]["status"] == 200
    assert up["kpis"]["replica_selects"] > 0
    assert "reporting_" in up["kpis"]["replica_tables"]
    assert up["audit_search"]["status"] == 200
    assert "compliance_auditevent" in up["audit_search"]["replica_tables"]
    # The audited read's own row is written to the primary.
    assert up["audit_search"]["audit_rows_written_on_primary"] == 1

    replica.stop(mode="immediate")
    down = _probe(primary, replica)

    assert down["inside"] == {"alias": "default", "in_recovery": False}
    assert down["kpis"] == {
        "status": 200,
        "replica_selects": 0,
        "replica_tables": [],
        "audit_rows_written_on_primary": 0,
    }
    assert down["audit_search"]["status"] == 200
    assert down["audit_search"]["replica_selects"] == 0
    assert down["audit_search"]["audit_rows_written_on_primary"] == 1
