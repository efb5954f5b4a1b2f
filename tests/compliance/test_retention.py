"""Retention: what is past its term is deleted or shredded, in batches, with an
audit row; what is within its term is not touched; dry-run changes nothing."""

import dataclasses
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from channels_app.models import (
    Attachment,
    CallDetail,
    Conversation,
    EmailDetail,
    Interaction,
    RawEvent,
)
from compliance import retention
from compliance.checks import check_retention_kinds
from compliance.models import AuditEvent, RetentionCheckpoint
from compliance.services import retention_purge
from compliance.tasks import nightly_retention_purge

pytestmark = pytest.mark.django_db


def _stored_on(model, pks, **dates):
    model.objects.filter(pk__in=pks).update(**dates)


def make_message(team, *, age_days, body, kind=Interaction.Kind.MESSAGE):
    stored = timezone.now() - timedelta(days=age_days)
    conversation = Conversation.objects.create(
        channel="email",
        team=team,
        subject=f"Subject: {body}",
        last_preview=body[:160],
        last_interaction_at=stored,
    )
    interaction = Interaction.objects.create(
        conversation=conversation,
        channel="email",
        kind=kind,
        direction="inbound",
        body=body,
        occurred_at=stored,
    )
    _stored_on(Interaction, [interaction.pk], created_at=stored)
    return interaction


def make_call(team, *, age_days, transcript):
    interaction = make_message(
        team, age_days=age_days, body=transcript, kind=Interaction.Kind.VOICEMAIL
    )
    CallDetail.objects.create(
        interaction=interaction,
        recording_url="https://api.twilio.com/recordings/RE123",
        recording_sid="RE123",
        transcript=transcript,
    )
    return interaction


def make_raw_event(*, age_days):
    event = RawEvent.objects.create(source="twilio_sms", payload={"Body": "hello"})
    _stored_on(RawEvent, [event.pk], received_at=timezone.now() - timedelta(days=age_days))
    return event


@pytest.fixture
def data(north):
    old_message = make_message(north, age_days=2600, body="Old chest pain message")
    EmailDetail.objects.create(
        interaction=old_message, message_id="<old@example.org>", quoted_text="Old quote"
    )
    Attachment.objects.create(
        interaction=old_message,
        filename="old-lab-result.pdf",
        content_type="application/pdf",
        size=3,
        content="QUJD",
    )
    return {
        "old_message": old_message,
        "new_message": make_message(north, age_days=2000, body="Recent message"),
        "old_call": make_call(north, age_days=400, transcript="Old voicemail"),
        "new_call": make_call(north, age_days=300, transcript="Recent voicemail"),
        "old_event": make_raw_event(age_days=91),
        "new_event": make_raw_event(age_days=89),
    }


def snapshot():
    """Every stored value the purge may change, as the table holds it."""
    with connection.cursor() as cursor:
        tables = {}
        for table in (
            "channels_app_interaction",
            "channels_app_calldetail",
            "channels_app_emaildetail",
            "channels_app_attachment",
            "channels_app_conversation",
            "channels_app_rawevent",
        ):
            cursor.execute(f"SELECT * FROM {table} ORDER BY 1")  # noqa: S608
            tables[table] = cursor.fetchall()
    return tables


def counts_of(result):
    return {count.kind: count.count for count in result}


def test_dry_run_counts_what_the_real_run_purges_and_changes_nothing(data):
    before = snapshot()
    audit_rows = AuditEvent.objects.count()

    dry = counts_of(retention_purge(dry_run=True))

    assert snapshot() == before
    assert AuditEvent.objects.count() == audit_rows
    assert not RetentionCheckpoint.objects.exists()

    real = counts_of(retention_purge())

    assert dry == real == {"messages": 1, "raw_events": 1, "recordings": 1}


def test_the_purge_deletes_raw_events_and_shreds_recordings_and_message_bodies(data):
    retention_purge()

    assert not RawEvent.objects.filter(pk=data["old_event"].pk).exists()
    old_message = Interaction.objects.get(pk=data["old_message"].pk)
    assert old_message.body == ""
    assert old_message.occurred_at == data["old_message"].occurred_at
    assert EmailDetail.objects.get(pk=old_message.pk).quoted_text == ""
    attachment = Attachment.objects.get(interaction=old_message)
    assert (attachment.filename, attachment.content, attachment.size) == ("", None, 3)
    conversation = Conversation.objects.get(pk=old_message.conversation_id)
    assert (conversation.subject, conversation.last_preview) == ("", "")
    old_call = CallDetail.objects.get(pk=data["old_call"].pk)
    assert (old_call.recording_url, old_call.transcript, old_call.recording_sid) == ("", "", "")


def test_the_purge_leaves_everything_within_retention_untouched(data):
    keep = snapshot()
    kept_rows = {
        table: [row for row in rows if str(row[0]) in _kept_ids(data)]
        for table, rows in keep.items()
    }

    retention_purge()

    after = snapshot()
    for table, rows in kept_rows.items():
        assert [row for row in after[table] if str(row[0]) in _kept_ids(data)] == rows, table
    new_message = Interaction.objects.get(pk=data["new_message"].pk)
    assert new_message.body == "Recent message"
    assert CallDetail.objects.get(pk=data["new_call"].pk).transcript == "Recent voicemail"
    assert RawEvent.objects.filter(pk=data["new_event"].pk).exists()


def _kept_ids(data):
    kept = [data["new_message"], data["new_call"], data["new_event"]]
    ids = {str(obj.pk) for obj in kept}
    ids |= {str(obj.conversation_id) for obj in kept if hasattr(obj, "conversation_id")}
    return ids


def test_the_purge_leaves_one_audit_row_with_the_counts(data):
    retention_purge()

    event = AuditEvent.objects.get(resource_type="retention_purge")
    assert (event.action, event.outcome) == ("delete", "success")
    assert event.details["counts"] == {"messages": 1, "raw_events": 1, "recordings": 1}
    assert event.details["retention_days"] == settings.RETENTION_DAYS
    assert event.patient_ids == []


def test_a_second_run_does_not_shred_again(data):
    retention_purge()

    assert counts_of(retention_purge(dry_run=True)) == {
        "messages": 0,
        "raw_events": 0,
        "recordings": 0,
    }
    assert counts_of(retention_purge()) == {"messages": 0, "raw_events": 0, "recordings": 0}


def test_a_purge_cut_short_resumes_where_it_stopped(north, monkeypatch):
    events = [make_raw_event(age_days=100) for _ in range(5)]
    entry = retention._REGISTRY["raw_events"]
    calls = []

    def failing_after_two_batches(pks, *, cutoff):
        calls.append(list(pks))
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return entry.purge(pks, cutoff=cutoff)

    monkeypatch.setitem(
        retention._REGISTRY,
        "raw_events",
        dataclasses.replace(entry, purge=failing_after_two_batches),
    )
    with pytest.raises(RuntimeError):
        retention_purge(batch_size=1)
    monkeypatch.setitem(retention._REGISTRY, "raw_events", entry)

    assert RawEvent.objects.filter(pk__in=[e.pk for e in events]).count() == 3
    assert counts_of(retention_purge(dry_run=True))["raw_events"] == 3
    assert counts_of(retention_purge(batch_size=2))["raw_events"] == 3
    assert not RawEvent.objects.filter(pk__in=[e.pk for e in events]).exists()


def test_purge_command_dry_run_prints_the_counts_and_changes_nothing(data):
    before = snapshot()
    out = StringIO()

    call_command("purge_expired_data", "--dry-run", stdout=out)

    assert "messages: would purge 1" in out.getvalue()
    assert "raw_events: would purge 1" in out.getvalue()
    assert "recordings: would purge 1" in out.getvalue()
    assert snapshot() == before


def test_the_nightly_task_purges(data):
    assert nightly_retention_purge.apply().get() == {
        "messages": 1,
        "raw_events": 1,
        "recordings": 1,
    }


def test_a_retention_for_a_kind_nobody_registered_is_refused(data, settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "mesages": 3000}

    with pytest.raises(ImproperlyConfigured, match="mesages"):
        retention_purge(dry_run=True)


def test_the_system_check_names_a_misspelled_retention_kind(settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "recordngs": 30}

    errors = check_retention_kinds(None)

    assert [error.id for error in errors] == ["compliance.E001"]
    assert "recordngs" in errors[0].msg


def test_audit_rows_cannot_be_registered_for_purging():
    with pytest.raises(ImproperlyConfigured, match="never purged"):
        retention.register_retention(
            "audit",
            queryset_factory=AuditEvent.objects.all,
            date_field="recorded_at",
            default_days=2555,
            purge=retention.delete_rows(AuditEvent),
        )


def _load_settings(retention_days):
    env = {
        **os.environ,
        "RETENTION_DAYS": retention_days,
        "CONTACTCENTER_READ_DEV_ENV": "false",
    }
    return subprocess.run(
        [sys.executable, "-c", "import config.settings.base"],
        env=env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=False,
    )


def test_start_up_refuses_a_messages_retention_below_six_years():
    refused = _load_settings("messages=2000,recordings=30")
    accepted = _load_settings("messages=2192,recordings=30")

    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr
    assert "six-year policy floor" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr


def test_start_up_refuses_a_retention_that_is_not_a_number():
    refused = _load_settings("raw_events=ninety")

    assert "ImproperlyConfigured" in refused.stderr
    assert "raw_events" in refused.stderr
