"""Twilio Voice webhooks: the TwiML answer (queue while open, voicemail while
closed) and the callbacks that complete a call's Interaction. Requests are signed
with the twilio package's RequestValidator, as Twilio signs them."""

import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from channels_app.inbound_queue import hand_over
from channels_app.models import CallDetail, ChannelAccount, Interaction, RawEvent
from compliance.models import AuditEvent
from patients.models import Channel
from tests.channels_app.conftest import twilio_signed

pytestmark = pytest.mark.django_db

VOICE = "/webhooks/twilio/voice/"
QUEUE = "/webhooks/twilio/voice/queue/"
STATUS = "/webhooks/twilio/voice/status/"
RECORDING = "/webhooks/twilio/voice/recording/"
TRANSCRIPTION = "/webhooks/twilio/voice/transcription/"
PRACTICE_NUMBER = "+15005550006"
CALLER = "+14155550123"
RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE0123456789abcdef"


@pytest.fixture
def voice_account(front_desk):
    return ChannelAccount.objects.create(
        kind=Channel.VOICE,
        name="Main line",
        address=PRACTICE_NUMBER,
        team=front_desk,
        greeting="Thank you for calling Demo Practice.",
    )


@pytest.fixture
def closed_now(voice_account):
    """Open every day, but yesterday, today and tomorrow are holidays: closed now
    whatever the time of day, also across midnight while the test runs."""
    today = timezone.now().date()
    voice_account.open_hours = {
        "time_zone": "UTC",
        "weekly": {str(day): [["00:00", "00:00"]] for day in range(7)},
        "holidays": [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)],
    }
    voice_account.save(update_fields=["open_hours"])
    return voice_account


def new_call_sid():
    return "CA" + uuid.uuid4().hex


def call_params(call_sid, *, status="ringing", **extra):
    return {
        "CallSid": call_sid,
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "From": CALLER,
        "To": PRACTICE_NUMBER,
        "CallStatus": status,
        "Direction": "inbound",
        **extra,
    }


def twiml(response):
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    return ET.fromstring(response.content)  # noqa: S314 - our own TwiML, not untrusted input


def call_of(call_sid):
    return CallDetail.objects.select_related("interaction").get(interaction__provider_id=call_sid)


def _answer(post_twilio, call_sid):
    return post_twilio(VOICE, call_params(call_sid))


def test_call_during_open_hours_is_queued_and_recorded_as_a_call_in_progress(
    post_twilio, voice_account
):
    call_sid = new_call_sid()

    document = twiml(_answer(post_twilio, call_sid))

    assert "Demo Practice" in document.find("Say").text
    enqueue = document.find("Enqueue")
    assert enqueue.get("action") == f"{settings.PUBLIC_BASE_URL}{QUEUE}"
    assert enqueue.get("method") == "POST"
    assert enqueue.text == str(voice_account.team_id)
    call = call_of(call_sid)
    interaction = call.interaction
    assert (interaction.kind, interaction.channel, interaction.direction) == (
        Interaction.Kind.CALL,
        Channel.VOICE,
        Interaction.Direction.INBOUND,
    )
    assert interaction.provider_id == call_sid
    assert interaction.conversation.account_id == voice_account.pk
    assert call.queue_result == CallDetail.QueueResult.IN_PROGRESS
    assert call.status == "ringing"


def test_bridged_call_is_answered_with_its_wait_and_a_hangup_in_queue_is_abandoned(
    post_twilio, voice_account
):
    answered_sid, abandoned_sid = new_call_sid(), new_call_sid()
    _answer(post_twilio, answered_sid)
    _answer(post_twilio, abandoned_sid)

    post_twilio(QUEUE, call_params(answered_sid, QueueResult="bridged", QueueTime="42"))
    post_twilio(QUEUE, call_params(abandoned_sid, QueueResult="hangup", QueueTime="95"))

    answered, abandoned = call_of(answered_sid), call_of(abandoned_sid)
    assert (answered.queue_result, answered.queue_wait_seconds) == ("answered", 42)
    assert answered.answered_at is not None
    # The KPIs count these apart: a caller who gave up is not an answered call.
    assert (abandoned.queue_result, abandoned.queue_wait_seconds) == ("abandoned", 95)
    assert abandoned.answered_at is None


def test_call_outside_open_hours_goes_to_voicemail_with_transcription(post_twilio, closed_now):
    call_sid = new_call_sid()

    document = twiml(_answer(post_twilio, call_sid))

    said = [say.text for say in document.findall("Say")]
    # The emergency sentence first (in Spanish too for a caller of unknown language).
    assert said[0] == "If this is a medical emergency, hang up and dial 911."
    assert "emergencia" in said[1]
    assert "Demo Practice" in said[2]
    assert "closed" in said[3]
    assert document.find("Enqueue") is None
    record = document.find("Record")
    assert record.get("transcribe") == "true"
    assert record.get("transcribeCallback") == f"{settings.PUBLIC_BASE_URL}{TRANSCRIPTION}"
    assert record.get("recordingStatusCallback") == f"{settings.PUBLIC_BASE_URL}{RECORDING}"
    assert record.get("maxLength") == "120"
    assert document.find("Hangup") is not None
    assert call_of(call_sid).queue_result == CallDetail.QueueResult.VOICEMAIL


def test_recording_callback_makes_the_call_a_voicemail_with_its_url_encrypted(
    post_twilio, closed_now
):
    call_sid = new_call_sid()
    _answer(post_twilio, call_sid)

    response = post_twilio(
        RECORDING,
        call_params(
            call_sid,
            status="completed",
            RecordingUrl=RECORDING_URL,
            RecordingSid="RE0123456789abcdef",
            RecordingStatus="completed",
        ),
    )

    assert response.status_code == 204
    call = call_of(call_sid)
    assert call.interaction.kind == Interaction.Kind.VOICEMAIL
    assert call.queue_result == CallDetail.QueueResult.VOICEMAIL
    assert (call.recording_url, call.recording_sid) == (RECORDING_URL, "RE0123456789abcdef")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT recording_url FROM channels_app_calldetail WHERE interaction_id = %s",
            [call.interaction_id],
        )
        [(stored,)] = cursor.fetchall()
    assert stored and RECORDING_URL not in stored
    assert "Recordings" not in stored


def test_transcription_sets_transcript_and_body_and_queues_the_text_for_processing(
    post_twilio, closed_now, django_capture_on_commit_callbacks
):
    call_sid = new_call_sid()
    _answer(post_twilio, call_sid)
    # The call itself was processed already; the transcript is new text to process.
    Interaction.objects.filter(provider_id=call_sid).update(processed_at=timezone.now())

    with django_capture_on_commit_callbacks() as callbacks:
        response = post_twilio(
            TRANSCRIPTION,
            call_params(
                call_sid,
                status="completed",
                TranscriptionText="Please call me back about my results.",
                TranscriptionStatus="completed",
                RecordingUrl=RECORDING_URL,
            ),
        )

    assert response.status_code == 204
    call = call_of(call_sid)
    assert call.transcript == "Please call me back about my results."
    assert call.interaction.body == "Please call me back about my results."
    assert call.interaction.kind == Interaction.Kind.VOICEMAIL
    assert call.interaction.processed_at is None
    handed_over = [cb.args for cb in callbacks if getattr(cb, "func", None) is hand_over]
    assert ([str(call.interaction_id)],) in handed_over


def test_a_failed_transcription_changes_nothing(post_twilio, closed_now):
    call_sid = new_call_sid()
    _answer(post_twilio, call_sid)

    post_twilio(
        TRANSCRIPTION,
        call_params(call_sid, TranscriptionText="", TranscriptionStatus="failed"),
    )

    call = call_of(call_sid)
    assert (call.transcript, call.interaction.body) == ("", "")
    assert call.interaction.kind == Interaction.Kind.CALL


def test_completed_status_records_duration_and_end_of_the_call(post_twilio, voice_account):
    call_sid = new_call_sid()
    _answer(post_twilio, call_sid)
    post_twilio(QUEUE, call_params(call_sid, QueueResult="bridged", QueueTime="5"))

    response = post_twilio(STATUS, call_params(call_sid, status="completed", CallDuration="187"))

    assert response.status_code == 204
    call = call_of(call_sid)
    assert (call.status, call.duration_seconds) == ("completed", 187)
    assert call.ended_at is not None
    assert call.queue_result == CallDetail.QueueResult.ANSWERED


def test_a_call_that_rings_out_unanswered_is_missed(post_twilio, voice_account):
    call_sid = new_call_sid()
    _answer(post_twilio, call_sid)

    post_twilio(STATUS, call_params(call_sid, status="no-answer", CallDuration="0"))

    call = call_of(call_sid)
    assert call.queue_result == CallDetail.QueueResult.MISSED
    assert call.ended_at is not None


def test_the_same_call_answered_twice_is_one_interaction(post_twilio, voice_account):
    call_sid = new_call_sid()

    first = _answer(post_twilio, call_sid)
    again = _answer(post_twilio, call_sid)

    # Twilio retries the answer webhook; the caller still hears the same TwiML.
    assert again.content == first.content
    assert Interaction.objects.filter(provider_id=call_sid).count() == 1
    assert CallDetail.objects.count() == 1
    assert RawEvent.objects.filter(source="twilio_voice").count() == 1


def test_a_call_to_an_unknown_number_is_told_so_and_stores_nothing(post_twilio, voice_account):
    document = twiml(post_twilio(VOICE, {**call_params(new_call_sid()), "To": "+15005550001"}))

    assert "not in service" in document.find("Say").text
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("path", [VOICE, QUEUE, STATUS, RECORDING, TRANSCRIPTION])
def test_bad_signature_is_403_with_an_audit_row(client, voice_account, path):
    params = call_params(new_call_sid())
    headers = twilio_signed(path, params, token="not-the-auth-token")

    response = client.post(path, params, **headers)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    assert not Interaction.objects.exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.outcome, event.http_status) == ("denied", "denied", 403)
    assert event.details["reason"] == "bad_signature"
    assert event.details["webhook"].startswith("twilio_voice_")
