import base64
import datetime
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models.signals import post_save, pre_save

from tests.fieldtestapp.models import Secret

KEY_A = base64.b64encode(b"key A: thirty-two bytes long....").decode()
KEY_B = base64.b64encode(b"key B: thirty-two bytes long....").decode()
ONLY_A = f"A:{KEY_A}"
B_THEN_A = f"B:{KEY_B},A:{KEY_A}"
ONLY_B = f"B:{KEY_B}"
COLUMNS = ("text", "char", "date", "data", "data_nullable")
# SQLite has no row locks, and the killed subprocess needs a server database.
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL row locks and sessions"
)


def _rows(count):
    return [
        Secret(
            text=f"note for patient {n}",
            char=f"MRN-{n:06d}",
            date=datetime.date(1950, 1, 1) + datetime.timedelta(days=n),
            data={"n": n, "tags": ["a", None]},
            data_nullable=None if n % 3 == 0 else [n],
            label=str(n),
        )
        for n in range(count)
    ]


def _assert_rows_read_back(count):
    rows = Secret.objects.all()
    assert len(rows) == count
    for row in rows:
        n = int(row.label)
        assert row.text == f"note for patient {n}"
        assert row.char == f"MRN-{n:06d}"
        assert row.date == datetime.date(1950, 1, 1) + datetime.timedelta(days=n)
        assert row.data == {"n": n, "tags": ["a", None]}
        assert row.data_nullable == (None if n % 3 == 0 else [n])


def _db_pk(pk):
    return Secret._meta.pk.get_db_prep_value(pk, connection)


def _count_under(key_id, column="text"):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM fieldtestapp_secret WHERE {column} LIKE %s",  # noqa: S608
            [f"v1:{key_id}:%"],
        )
        return cursor.fetchone()[0]


def _check_output():
    out = io.StringIO()
    call_command("rotate_encryption_keys", "--check", stdout=out)
    return {
        line.split(": ", 1)[0]: dict(pair.split("=") for pair in line.split(": ", 1)[1].split())
        for line in out.getvalue().splitlines()
    }


def _rotate(*args):
    out = io.StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_rotation_moves_every_value_to_the_first_key_without_save_side_effects(settings):
    settings.FIELD_ENCRYPTION_KEYS = ONLY_A
    Secret.objects.bulk_create(_rows(120))
    settings.FIELD_ENCRYPTION_KEYS = B_THEN_A
    saves = []

    def record(**kwargs):
        saves.append(kwargs)

    pre_save.connect(record, sender=Secret)
    post_save.connect(record, sender=Secret)
    try:
        output = _rotate("--batch-size", "50")
    finally:
        pre_save.disconnect(record, sender=Secret)
        post_save.disconnect(record, sender=Secret)

    assert "fieldtestapp.Secret: 120 rows re-encrypted to key 'B', 0 left." in output
    assert saves == []
    for column in COLUMNS:
        assert _count_under("A", column) == 0
    assert _count_under("B", "data_nullable") == 80
    settings.FIELD_ENCRYPTION_KEYS = ONLY_B
    _assert_rows_read_back(120)


@pytest.mark.django_db
def test_check_counts_values_per_key_id_for_each_model_and_field(settings):
    settings.FIELD_ENCRYPTION_KEYS = ONLY_A
    Secret.objects.bulk_create(_rows(6))
    settings.FIELD_ENCRYPTION_KEYS = B_THEN_A
    Secret.objects.bulk_create(_rows(2))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE fieldtestapp_secret SET char = 'v1:C:AAAA' "
            "WHERE id = (SELECT id FROM fieldtestapp_secret ORDER BY id LIMIT 1)"
        )

    counts = _check_output()

    assert counts["fieldtestapp.Secret.text"] == {"B": "2", "A": "6", "other": "0"}
    assert counts["fieldtestapp.Secret.text_nullable"] == {"B": "0", "A": "0", "other": "0"}
    assert sum(int(n) for n in counts["fieldtestapp.Secret.char"].values()) == 8
    assert counts["fieldtestapp.Secret.char"]["other"] == "1"
    assert counts["fieldtestapp.Secret.data_nullable"] == {"B": "1", "A": "4", "other": "0"}
    assert _count_under("A") == 6


@pytest.mark.django_db
def test_rotation_stops_on_a_value_it_cannot_decrypt_naming_model_field_and_pk(settings):
    settings.FIELD_ENCRYPTION_KEYS = ONLY_A
    Secret.objects.bulk_create(_rows(3))
    first, broken, last = Secret.objects.order_by("pk")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE fieldtestapp_secret SET text = "
            "(SELECT text FROM fieldtestapp_secret WHERE id = %s) WHERE id = %s",
            [_db_pk(first.pk), _db_pk(broken.pk)],
        )
    settings.FIELD_ENCRYPTION_KEYS = B_THEN_A

    with pytest.raises(CommandError) as caught:
        _rotate("--batch-size", "1")

    message = str(caught.value)
    assert f"fieldtestapp.secret.text of pk {broken.pk}" in message
    assert "rolled back" in message
    assert "note for patient" not in message
    assert (
        Secret.objects.filter(pk=first.pk).values_list("text", flat=True).get().startswith("v1:B:")
    )
    for row in (broken, last):
        stored = Secret.objects.filter(pk=row.pk).values_list("char", flat=True).get()
        assert stored.startswith("v1:A:")


@pytest.mark.django_db
def test_batch_size_must_be_positive():
    with pytest.raises(CommandError, match="--batch-size"):
        _rotate("--batch-size", "0")


@postgresql_only
def test_rows_locked_by_the_application_are_skipped_and_reported_for_a_rerun(
    transactional_db, settings
):
    settings.FIELD_ENCRYPTION_KEYS = ONLY_A
    Secret.objects.bulk_create(_rows(3))
    locked = Secret.objects.order_by("pk")[1]
    settings.FIELD_ENCRYPTION_KEYS = B_THEN_A
    holding, release = threading.Event(), threading.Event()

    def hold_row_lock():
        try:
            with transaction.atomic():
                Secret.objects.select_for_update().get(pk=locked.pk)
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_row_lock)
    holder.start()
    assert holding.wait(10)
    try:
        started = time.monotonic()
        with pytest.raises(CommandError, match="1 rows still hold values under other keys"):
            _rotate("--batch-size", "1")
        assert time.monotonic() - started < 10
    finally:
        release.set()
        holder.join()

    stored = Secret.objects.filter(pk=locked.pk).values_list("text", flat=True).get()
    assert stored.startswith("v1:A:")
    assert _count_under("B") == 2
    _rotate()
    assert _count_under("B") == 3


def _database_url():
    db = connection.settings_dict
    return (
        f"postgres://{quote(db['USER'])}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{quote(db['NAME'])}"
    )


def _wait_for_row_locks_to_be_released(timeout):
    # A killed client's transaction ends (and its row locks go) once PostgreSQL
    # notices the closed socket; until then a rerun would skip those rows.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = 'fieldtestapp_secret'::regclass "
                "AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the killed command still holds locks on fieldtestapp_secret")


# A thousand rows in batches of a hundred: enough batches for the kill to land
# between two of them with some done and some left. bench/ is the place for volume.
ROTATION_ROWS = 1_000
ROTATION_BATCH = 100
ROTATED_BEFORE_KILL = 200


@postgresql_only
def test_rotation_killed_midway_resumes_where_it_stopped(transactional_db, settings, tmp_path):
    settings.FIELD_ENCRYPTION_KEYS = ONLY_A
    Secret.objects.bulk_create(_rows(ROTATION_ROWS), batch_size=2_000)
    settings.FIELD_ENCRYPTION_KEYS = B_THEN_A
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "FIELD_ENCRYPTION_KEYS": B_THEN_A,
    }
    command = [
        sys.executable,
        "manage.py",
        "rotate_encryption_keys",
        "--batch-size",
        str(ROTATION_BATCH),
    ]
    progress = tmp_path / "progress.txt"

    with progress.open("w") as stderr:
        killed = subprocess.Popen(
            [*command, "--pause", "0.25"],
            env=env,
            cwd=django_settings.BASE_DIR,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while _count_under("B") < ROTATED_BEFORE_KILL:
                assert killed.poll() is None, progress.read_text()
                assert time.monotonic() < deadline, progress.read_text()
                time.sleep(0.02)
        finally:
            killed.kill()
            killed.wait(10)
    _wait_for_row_locks_to_be_released(timeout=10)

    assert killed.returncode == -signal.SIGKILL
    rotated = _count_under("B")
    assert ROTATED_BEFORE_KILL <= rotated < ROTATION_ROWS
    assert rotated % ROTATION_BATCH == 0
    assert _count_under("A") == ROTATION_ROWS - rotated
    assert "fieldtestapp.Secret" in progress.read_text()

    rerun = subprocess.run(
        command, env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True, timeout=120
    )

    assert rerun.returncode == 0, rerun.stderr
    done = re.search(
        r"fieldtestapp\.Secret: (\d+) rows re-encrypted to key 'B', 0 left\.", rerun.stdout
    )
    assert done is not None, rerun.stdout
    assert int(done.group(1)) == ROTATION_ROWS - rotated
    counts = _check_output()
    for column in COLUMNS:
        assert counts[f"fieldtestapp.Secret.{column}"]["A"] == "0"
        assert counts[f"fieldtestapp.Secret.{column}"]["other"] == "0"
    assert counts["fieldtestapp.Secret.text"]["B"] == str(ROTATION_ROWS)
    settings.FIELD_ENCRYPTION_KEYS = ONLY_B
    _assert_rows_read_back(ROTATION_ROWS)
