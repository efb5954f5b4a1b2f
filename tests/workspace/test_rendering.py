"""Every kind of interaction rendered for what it is: an email with its subject,
its quoted text folded and its attachments (downloadable by staff who may see the
conversation, audited; a 404 and a denied row for anyone else), a call with its
direction, wait and duration, a voicemail with its recording (streamed from Twilio
through an audited view) and its transcript."""

import base64

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Attachment, CallDetail, ChannelAccount, EmailDetail, Interaction
from channels_app.services import inbound_record
from compliance.models import AuditEvent
from patients.models import Channel
from tests.factories import make_patient

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4 lab results for the test\n"


@pytest.fixture
def mailbox(north):
    return ChannelAccount.objects.create(
        kind=Channel.EMAIL, name="North mail", address="care@north.example", team=north
    )


@pytest.fixture
def voice_account(north):
    return ChannelAccount.objects.create(
        kind=Channel.VOICE, name="North line", address="+14155558888", team=north
    )


def receive_email(mailbox, *, sender, body, quoted="", attachments=(), subject="Lab results"):
    interaction = inbound_record(
        channel=Channel.EMAIL,
        account=mailbox,
        address=sender,
        body=body,
        provider_id="",
        occurred_at=timezone.now(),
        source="test",
        raw_payload={},
        subject=subject,
    ).interaction
    EmailDetail.objects.create(
        interaction=interaction, message_id=f"<{interaction.pk}@example.org>", quoted_text=quoted
    )
    for name, content, rejected in attachments:
        Attachment.objects.create(
            interaction=interaction,
            filename=name,
            content_type="application/pdf",
            size=len(content or b"") or 20_000_000,
            content=base64.b64encode(content).decode() if content is not None else None,
            rejected_reason=rejected,
        )
    return interaction


def receive_call(account, *, phone, kind="call", transcript="", recording_url="", **call):
    interaction = inbound_record(
        channel=Channel.VOICE,
        account=account,
        address=phone,
        body=transcript,
        provider_id="",
        occurred_at=timezone.now(),
        source="test",
        raw_payload={},
        kind=kind,
    ).interaction
    CallDetail.objects.create(
        interaction=interaction,
        transcript=transcript,
        recording_url=recording_url,
        recording_sid=recording_url.rsplit("/", 1)[-1] if recording_url else "",
        **call,
    )
    return interaction


@pytest.fixture
def email_thread(north, mailbox):
    make_patient(
        team=north, phones=(), emails=("ada@example.org",), given_name="Ada", family_name="King"
    )
    message = receive_email(
        mailbox,
        sender="ada@example.org",
        body="Here are my results, can the doctor look?",
        quoted="On Monday the practice wrote:\n> Please send your results",
        attachments=[("results.pdf", PDF, ""), ("scan.tiff", None, "larger than 10 MB")],
    )
    return message


def test_an_email_shows_its_subject_its_quoted_text_folded_and_its_attachments(
    client, agent, email_thread
):
    client.force_login(agent)
    page = client.get(f"/conversations/{email_thread.conversation_id}/").text
    assert "Subject:</span> Lab results" in page
    assert '<details class="quoted"><summary>Show the quoted earlier message</summary>' in page
    assert "&gt; Please send your results" in page
    attachment = Attachment.objects.get(content__isnull=False)
    assert f'href="/attachments/{attachment.pk}/" download>results.pdf</a>' in page
    assert "scan.tiff" in page and "not stored, larger than 10 MB" in page


def test_an_attachment_downloads_for_the_team_audited_and_is_a_404_for_others(
    client, agent, outsider, email_thread
):
    attachment = Attachment.objects.get(content__isnull=False)
    client.force_login(agent)
    response = client.get(f"/attachments/{attachment.pk}/")
    assert response.status_code == 200
    assert response.content == PDF
    assert response["Content-Disposition"] == 'attachment; filename="results.pdf"'
    assert response["Content-Type"] == "application/octet-stream"
    assert AuditEvent.objects.filter(
        resource_type="attachment",
        resource_id=str(attachment.pk),
        actor_user_id=agent.pk,
        outcome="success",
        patient_ids=[str(email_thread.patient_id)],
    ).exists()
    rejected = Attachment.objects.get(content__isnull=True)
    gone = client.get(f"/attachments/{rejected.pk}/")
    assert gone.status_code == 410 and "larger than 10 MB" in gone.text

    client.force_login(outsider)
    refused = client.get(f"/attachments/{attachment.pk}/")
    assert refused.status_code == 404
    assert PDF not in refused.content
    assert AuditEvent.objects.filter(
        resource_type="attachment",
        actor_user_id=outsider.pk,
        outcome="denied",
        patient_ids=[str(email_thread.patient_id)],
    ).exists()


def test_calls_show_direction_wait_and_duration(client, agent, north, voice_account):
    make_patient(team=north, phones=("+14155550150",), given_name="Cal", family_name="Ler")
    call = receive_call(
        voice_account,
        phone="+14155550150",
        queue_result="answered",
        queue_wait_seconds=65,
        duration_seconds=240,
    )
    client.force_login(agent)
    page = client.get(f"/conversations/{call.conversation_id}/").text
    assert "Incoming call · answered · waited 1 min 5 s · lasted 4 min" in page


def test_a_voicemail_plays_through_the_audited_proxy_and_shows_its_transcript(
    client, agent, outsider, north, voice_account, twilio_stub_settings
):
    make_patient(team=north, phones=("+14155550151",), given_name="Vo", family_name="Ice")
    audio = b"ID3\x03fake mp3 frames"
    url = twilio_stub_settings.add_recording("RE" + "a" * 32, audio)
    voicemail = receive_call(
        voice_account,
        phone="+14155550151",
        kind="voicemail",
        transcript="Hi, it's Vo, please call me back about my test.",
        recording_url=url,
        queue_result="voicemail",
        duration_seconds=31,
    )
    client.force_login(agent)
    page = client.get(f"/conversations/{voicemail.conversation_id}/").text
    assert "Voicemail left by the patient · lasted 31 s" in page
    src = f"/calls/{voicemail.pk}/recording/"
    player = f'<audio class="recording" controls preload="none" src="{src}"'
    assert player in page
    assert "please call me back about my test." in page
    assert url not in page

    response = client.get(f"/calls/{voicemail.pk}/recording/")
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert b"".join(response.streaming_content) == audio
    assert AuditEvent.objects.filter(
        resource_type="recording",
        resource_id=str(voicemail.pk),
        actor_user_id=agent.pk,
        outcome="success",
        patient_ids=[str(voicemail.patient_id)],
    ).exists()

    client.force_login(outsider)
    refused = client.get(f"/calls/{voicemail.pk}/recording/")
    assert refused.status_code == 404
    assert AuditEvent.objects.filter(
        resource_type="recording", actor_user_id=outsider.pk, outcome="denied"
    ).exists()


def test_a_recording_twilio_will_not_give_says_so(
    client, agent, north, voice_account, twilio_stub_settings
):
    make_patient(team=north, phones=("+14155550152",))
    voicemail = receive_call(
        voice_account,
        phone="+14155550152",
        kind="voicemail",
        recording_url=f"https://api.twilio.com/2010-04-01/Accounts/{twilio_stub_settings.account_sid}"
        f"/Recordings/RE{'b' * 32}",
    )
    client.force_login(agent)
    response = client.get(f"/calls/{voicemail.pk}/recording/")
    assert response.status_code == 502
    assert "Twilio answered 404" in response.text


def _count(client, path):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


def test_thread_queries_do_not_grow_with_emails_attachments_or_calls(
    client, agent, email_thread, mailbox, voice_account, north
):
    conversation_id = email_thread.conversation_id
    paths = (f"/conversations/{conversation_id}/", f"/conversations/{conversation_id}/thread/")
    client.force_login(agent)
    client.get(paths[0])
    few = [_count(client, p) for p in paths]
    for n in range(5):
        receive_email(
            mailbox,
            sender="ada@example.org",
            body=f"And another {n}",
            quoted="> earlier",
            attachments=[(f"file{n}.pdf", PDF, ""), (f"more{n}.pdf", PDF, "")],
        )
    assert Interaction.objects.filter(conversation_id=conversation_id).count() == 6
    many = [_count(client, p) for p in paths]
    assert few == many
