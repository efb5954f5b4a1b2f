"""Anchoring the audit trail outside the database: each row's MAC (made by the
application with a key the database never holds) and the sealer's signed
checkpoints. The two attacks the hash chain alone lets through are named: a row
inserted directly in SQL with the current time, and a cut tail."""

import base64
import json
import socket
import uuid

import pytest
from django.db import connection

from compliance import chain
from compliance.anchoring import Checkpoint, FileSink, checkpoint_sink
from compliance.models import AuditEvent
from compliance.services import audit_record
from compliance.tasks import seal_audit_chain
from tests.compliance.test_audit_chain import _broken, _tamper, _verify_command

pytestmark = pytest.mark.django_db

COLUMNS = (
    "recorded_at, actor_username, actor_role, api_client_name, action, resource_type, "
    "resource_id, patient_ids, outcome, purpose_of_use, user_agent, request_id, details"
)


def _record(n):
    return [
        audit_record(action="read", resource_type="patient", resource_id=str(i), patient_ids=[])
        for i in range(n)
    ]


def _insert_in_sql(*, mac=None):
    """What someone with write access to the database could add: a plausible row
    with the current time. The append-only triggers allow INSERT."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO compliance_auditevent ({COLUMNS}, mac) VALUES (now(), 'dr.who', "  # noqa: S608
            "'agent', '', 'read', 'patient', %s, '[]', 'success', 'TREAT', '', '', '{}', %s) "
            "RETURNING id",
            [str(uuid.uuid4()), mac],
        )
        return cursor.fetchone()[0]


def test_each_row_carries_a_mac_of_the_application_key_and_verifies():
    [event] = _record(1)
    seal_audit_chain()

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.mac.startswith("audit1:")
    assert "OK: 1 events" in _verify_command()


def test_a_row_inserted_in_sql_with_the_current_time_is_named_as_forged():
    _record(2)
    forged = _insert_in_sql()
    _record(1)
    seal_audit_chain()  # the sealer seals it like any other row

    message = _broken()

    assert f"event id {forged}" in message
    assert "forged" in message and "no valid MAC" in message


def test_a_row_inserted_in_sql_with_a_made_up_mac_is_named_as_forged():
    _record(1)
    forged = _insert_in_sql(mac="audit1:" + "ab" * 32)
    chain.seal_pending()

    assert f"event id {forged}" in _broken()


def test_a_genuine_row_copied_in_sql_is_named_as_copied():
    [original] = _record(1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO compliance_auditevent ({COLUMNS}, mac) "  # noqa: S608
            f"SELECT {COLUMNS}, mac FROM compliance_auditevent WHERE id = %s RETURNING id",
            [original.pk],
        )
        copy = cursor.fetchone()[0]
    chain.seal_pending()

    message = _broken()

    assert f"event id {copy}" in message and "copied" in message


def test_the_sealer_appends_a_signed_checkpoint_of_the_head(audit_checkpoints):
    _record(3)
    seal_audit_chain()
    seal_audit_chain()  # nothing new sealed: no new checkpoint

    lines = audit_checkpoints.read_text().splitlines()
    assert len(lines) == 1
    checkpoint = Checkpoint.from_line(lines[0])
    head = AuditEvent.objects.order_by("-chain_position").first()
    assert (checkpoint.sequence, checkpoint.head_hash) == (3, head.hash)
    assert checkpoint.signature_valid()
    assert "matches the checkpoint of position 3" in _verify_command()


def test_a_cut_tail_is_named_as_truncated_against_the_latest_checkpoint():
    _record(5)
    seal_audit_chain()
    # Whoever can switch the triggers off removes the last two events; what is
    # left is a valid chain of three.
    _tamper("DELETE FROM compliance_auditevent WHERE chain_position > %s", [3])

    message = _broken()

    assert "truncated" in message
    assert "positions 4 to 5 are missing" in message


def test_a_checkpoint_with_a_forged_signature_is_refused(audit_checkpoints):
    _record(2)
    seal_audit_chain()
    genuine = Checkpoint.from_line(audit_checkpoints.read_text().splitlines()[-1])
    forged = Checkpoint(
        sequence=1, head_hash=genuine.head_hash, at=genuine.at, key_id="audit1", signature="0" * 64
    )
    FileSink(audit_checkpoints).publish(forged)

    assert "no valid signature" in _broken()


def test_mac_keys_rotate_like_the_field_keys(settings):
    [old] = _record(1)
    new_key = base64.b64encode(b"n" * 32).decode()
    settings.AUDIT_MAC_KEYS = f"audit2:{new_key},{settings.AUDIT_MAC_KEYS}"

    [new] = _record(1)
    seal_audit_chain()

    assert AuditEvent.objects.get(pk=old.pk).mac.startswith("audit1:")
    assert AuditEvent.objects.get(pk=new.pk).mac.startswith("audit2:")
    assert "OK: 2 events" in _verify_command()

    settings.AUDIT_MAC_KEYS = f"audit2:{new_key}"  # the key of the older rows removed
    assert "forged" in _broken()


def test_rows_written_before_row_macs_existed_are_counted_not_refused():
    legacy = _insert_in_sql(mac=None)
    _record(2)
    chain.seal_pending()

    output = _verify_command()

    assert "OK: 3 events" in output and "the first 1 predate row MACs" in output
    assert AuditEvent.objects.get(pk=legacy).chain_position == 1


def test_checkpoints_go_to_syslog_when_configured(settings):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(5)
        settings.AUDIT_CHECKPOINT_SINK = f"syslog://127.0.0.1:{collector.getsockname()[1]}"
        _record(1)

        seal_audit_chain()
        datagram = collector.recv(4096).decode()

    assert "contactcenter-audit-checkpoint" in datagram
    published = json.loads(datagram[datagram.index("{") :].rstrip("\x00"))
    assert published["sequence"] == 1
    assert checkpoint_sink().latest() is None  # syslog cannot be read back
