"""The inbox rows and thread messages built in Python (workspace.templatetags:
inbox_row, thread_message) and the reads the pages skip: every value escaped, the
row's link, badges and selection; each kind of message; an escalation shown on
its row and in the thread while open (read only for flagged conversations) and
gone once acknowledged; another team's patient not named in the thread."""

import datetime as dt
import uuid

import pytest
from django.template import Context
from django.utils import timezone

from channels_app.models import Attachment, CallDetail
from channels_app.selectors import InteractionDetails
from escalation import services as escalation_services
from escalation.models import Escalation
from workspace.templatetags.workspace import inbox_row, thread_message

pytestmark = pytest.mark.django_db


def _row(**changes):
    row = {
        "id": "6f1c1d0e-0000-4000-8000-000000000001",
        "channel": "sms",
        "status": "open",
        "priority": "normal",
        "patient_name": "Ada Lovelace",
        "contact": "+1 *** *** 0001",
        "assignee": None,
        "assignee_name": None,
        "labels": [],
        "escalated": False,
        "escalation_reason": None,
        "last_interaction": timezone.now() - dt.timedelta(minutes=5),
        "last_direction": "inbound",
        "preview": "Can I get a refill?",
        "unread": False,
        "sla_remaining": None,
    }
    return row | changes


def test_an_inbox_row_escapes_every_value_and_shows_its_badges(agent):
    html = inbox_row(
        Context({"query": "tab=mine&sort=sla_due", "selected": _row()["id"], "user": agent}),
        _row(
            patient_name="<b>Ann</b> O'Neil",
            preview='Hi <script>alert("x")</script>',
            escalated=True,
            escalation_reason="<i>chest pain</i> " + "x" * 80,
            priority="urgent",
            sla_remaining=-3700,
            assignee=agent.pk,
            assignee_name="agent.north",
            status="pending",
            labels=["a&b"],
            unread=True,
            last_direction="outbound",
        ),
    )
    href = "/conversations/6f1c1d0e-0000-4000-8000-000000000001/?tab=mine&amp;sort=sla_due"
    assert f'href="{href}"' in html and f'hx-get="{href}"' in html
    assert 'class="row is-unread is-selected priority-urgent is-escalated"' in html
    assert 'aria-current="true"' in html
    assert "&lt;b&gt;Ann&lt;/b&gt; O&#x27;Neil" in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "Escalated: &lt;i&gt;chest pain&lt;/i&gt; xxx" in html and "x" * 70 not in html
    assert "Reply overdue 1 h 1 min" in html
    assert "Assigned to you" in html
    assert '<span class="badge">Pending</span>' in html
    assert '<span class="badge badge-label">a&amp;b</span>' in html
    assert "You: </span>" in html
    assert "5 min ago" in html


def test_an_inbox_row_of_an_unknown_sender_nobody_has(agent):
    html = inbox_row(Context({"user": agent}), _row(patient_name=None, contact=None, preview=""))
    assert 'href="/conversations/6f1c1d0e-0000-4000-8000-000000000001/"' in html
    assert "aria-current" not in html and "is-selected" not in html
    assert "Unknown sender" in html and "(no text)" in html
    assert '<span class="badge badge-open">Unassigned</span>' in html
    assert "Escalated" not in html and "Reply" not in html


def _message(**changes):
    message = {
        "id": uuid.UUID("6f1c1d0e-0000-4000-8000-0000000000aa"),
        "kind": "message",
        "channel": "sms",
        "direction": "outbound",
        "body": "Line one <b>\nline two",
        "author": "agent.north",
        "occurred_at": timezone.now() - dt.timedelta(hours=2),
        "delivery_status": "failed",
        "delivery_error": "Twilio error code 30007",
        "details": None,
    }
    return message | changes


def test_a_message_escapes_its_text_and_says_why_delivery_failed():
    message = _message()
    html = thread_message(Context({"highlight": str(message["id"])}), message)
    assert 'class="msg msg-outbound kind-message is-new"' in html
    assert "Line one &lt;b&gt;<br>line two" in html
    assert "Failed: the carrier filtered it as spam (Twilio 30007)" in html
    assert "2 h ago" in html


def test_calls_voicemails_emails_notes_and_events_each_read_for_what_they_are():
    call = _message(
        kind="call",
        channel="voice",
        direction="inbound",
        body="",
        details=InteractionDetails(
            call=CallDetail(queue_result="answered", queue_wait_seconds=65, duration_seconds=240)
        ),
    )
    html = thread_message(Context(), call)
    assert "Incoming call · answered · waited 1 min 5 s · lasted 4 min" in html
    assert "delivery" not in html
    voicemail = _message(
        kind="voicemail",
        channel="voice",
        direction="inbound",
        details=InteractionDetails(
            call=CallDetail(
                queue_result="voicemail", recording_url="https://rec", transcript="Call <me>"
            )
        ),
    )
    html = thread_message(Context(), voicemail)
    recording = f"/calls/{voicemail['id']}/recording/"
    assert f'<audio class="recording" controls preload="none" src="{recording}">' in html
    assert "Voicemail left by the patient" in html and "<p>Call &lt;me&gt;</p>" in html
    kept, refused = uuid.uuid4(), uuid.uuid4()
    email = _message(
        channel="email",
        direction="inbound",
        details=InteractionDetails(
            quoted_text="> earlier",
            attachments=[
                Attachment(id=kept, filename="lab.pdf", content_type="application/pdf", size=2048),
                Attachment(id=refused, filename="", size=30_000_000, rejected_reason="too large"),
            ],
        ),
    )
    html = thread_message(Context(), email)
    assert "<blockquote>&gt; earlier</blockquote>" in html
    assert f'<a href="/attachments/{kept}/" download>lab.pdf</a>' in html
    assert "Unnamed file (28.6\xa0MB): not stored, too large" in html
    assert "Patient</span>" in html and "delivery" not in html
    note = thread_message(Context(), _message(kind="note", direction="internal", body=""))
    assert "Note by agent.north" in note and "Internal, never sent" in note
    assert "(no text)" in note
    event = thread_message(Context(), _message(kind="event", body="Assigned to <x>"))
    assert event.startswith('<li class="msg msg-event" id="m-6f1c1d0e')
    assert "Assigned to &lt;x&gt; · <time" in event


def test_an_open_escalation_shows_on_its_row_and_thread_until_acknowledged(
    client, agent, make_sms_conversation
):
    quiet = make_sms_conversation(1)
    flagged = make_sms_conversation(2)
    escalation_services.escalation_manual_create(
        conversation=flagged, actor=agent, reason="Chest pain since this morning"
    )
    client.force_login(agent)
    rows = client.get("/inbox/rows/").text
    assert rows.count("Escalated: Chest pain since this morning") == 1
    for conversation, shown in ((flagged, True), (quiet, False)):
        thread = client.get(f"/conversations/{conversation.pk}/thread/").text
        assert ("Chest pain since this morning" in thread) is shown
        assert ('value="acknowledge"' in thread) is shown
    escalation_services.escalation_acknowledge(
        escalation=Escalation.objects.get(conversation=flagged), actor=agent
    )
    assert "Escalated" not in client.get("/inbox/rows/").text
    thread = client.get(f"/conversations/{flagged.pk}/thread/").text
    assert 'value="acknowledge"' not in thread


def test_the_thread_names_only_a_patient_the_caller_may_see(client, agent, north, south):
    """A patient of the agent's team is named from the conversation's own read;
    another team's only with a break-glass grant (the whole rule)."""
    from channels_app.services import conversation_open
    from compliance.services import break_glass_grant
    from tests.factories import make_patient

    elsewhere = make_patient(team=south, given_name="Remote", family_name="Patient")
    mine = make_patient(team=north, given_name="Near", family_name="Patient")
    client.force_login(agent)
    threads = {}
    for n, patient in enumerate((elsewhere, mine)):
        conversation = conversation_open(
            channel="sms", team=north, patient=patient, contact_address=f"+1415555017{n}"
        )
        threads[patient] = f"/conversations/{conversation.pk}/thread/"
    heading = '<h2 id="thread-heading">{}</h2>'
    assert heading.format("Near Patient") in client.get(threads[mine]).text
    thread = client.get(threads[elsewhere]).text
    assert heading.format("Patient") in thread and "Remote" not in thread
    page = client.get(threads[elsewhere].removesuffix("thread/")).text
    assert "Remote" not in page and "belongs to another team" in page
    break_glass_grant(
        user=agent, patient_id=elsewhere.pk, reason="Patient collapsed in the waiting room now."
    )
    assert heading.format("Remote Patient") in client.get(threads[elsewhere]).text
    page = client.get(threads[elsewhere].removesuffix("thread/")).text
    assert "Remote Patient" in page and "belongs to another team" not in page
