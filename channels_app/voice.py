"""Twilio Voice: answer with TwiML (greeting, queue, voicemail), and complete the
call's Interaction (CallSid is its provider id) from the status, queue, recording
and transcription callbacks. Answered and abandoned-in-queue calls stay
distinguishable for the KPIs."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.voice_response import VoiceResponse

from channels_app import services, tasks
from channels_app.models import CallDetail, ChannelAccount, Interaction
from channels_app.webhooks import _deny, _twilio_signature_ok
from contactcenter.blind_index import normalise_phone
from contactcenter.business_hours import calendar_from_config
from contactcenter.queueing import enqueue_on_commit
from patients.models import Channel

VOICEMAIL_MAX_SECONDS = 120
# Twilio's <Enqueue> action reports how the caller left the queue.
_QUEUE_RESULTS = {
    "bridged": CallDetail.QueueResult.ANSWERED,
    "bridging-in-process": CallDetail.QueueResult.ANSWERED,
    "hangup": CallDetail.QueueResult.ABANDONED,
}
_UNANSWERED_CALL_STATUSES = {"busy", "no-answer", "canceled", "failed"}


def _url(name):
    return f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/voice/{name}/"


def _xml(response):
    return HttpResponse(str(response), content_type="text/xml")


def _is_open(account):
    if not account.open_hours:
        return True
    try:
        return calendar_from_config(account.open_hours).is_open(timezone.now())
    except ValueError:
        return True  # a broken calendar must not send every caller to voicemail


def _voicemail(response, message):
    response.say(message)
    response.record(
        max_length=VOICEMAIL_MAX_SECONDS,
        transcribe=True,
        transcribe_callback=_url("transcription"),
        recording_status_callback=_url("recording"),
        play_beep=True,
    )
    response.hangup()
    return response


def _call(call_sid):
    return (
        CallDetail.objects.select_for_update()
        .select_related("interaction")
        .filter(interaction__channel=Channel.VOICE, interaction__provider_id=call_sid)
        .first()
    )


def _guarded(view):
    def wrapper(request):
        if not _twilio_signature_ok(request):
            return _deny(request, webhook=f"twilio_voice_{view.__name__}", reason="bad_signature")
        return view(request)

    wrapper.__name__ = view.__name__
    return csrf_exempt(require_POST(wrapper))


@_guarded
def answer(request):
    params = request.POST
    call_sid, caller, to = params.get("CallSid", ""), params.get("From", ""), params.get("To", "")
    try:
        account = ChannelAccount.objects.filter(
            kind=Channel.VOICE, address=normalise_phone(to), active=True
        ).first()
    except ValueError:
        account = None
    response = VoiceResponse()
    if account is None or not call_sid:
        response.say("This number is not in service.")
        response.hangup()
        return _xml(response)
    is_open = _is_open(account)
    with transaction.atomic():
        ingested = services.inbound_record(
            channel=Channel.VOICE,
            account=account,
            address=caller,
            body="",
            provider_id=call_sid,
            occurred_at=timezone.now(),
            source="twilio_voice",
            raw_payload={key: params.getlist(key) for key in params},
            kind=Interaction.Kind.CALL,
            metadata={"direction": params.get("Direction", "inbound")},
        )
        CallDetail.objects.get_or_create(
            interaction=ingested.interaction,
            defaults={
                "status": params.get("CallStatus", "ringing"),
                "queue_result": CallDetail.QueueResult.IN_PROGRESS
                if is_open
                else CallDetail.QueueResult.VOICEMAIL,
            },
        )
    greeting = account.greeting or f"Thank you for calling {settings.PRACTICE_NAME}."
    if not is_open:
        return _xml(_voicemail(response, f"{greeting} We are closed. Please leave a message."))
    response.say(greeting + " If this is an emergency, hang up and dial 911.")
    response.enqueue(str(account.team_id), action=_url("queue"), method="POST")
    return _xml(response)


@_guarded
def queue_result(request):
    params = request.POST
    result = params.get("QueueResult", "")
    response = VoiceResponse()
    with transaction.atomic():
        call = _call(params.get("CallSid", ""))
        if call is not None:
            call.queue_wait_seconds = int(params.get("QueueTime") or 0)
            call.queue_result = _QUEUE_RESULTS.get(result, CallDetail.QueueResult.VOICEMAIL)
            if call.queue_result == CallDetail.QueueResult.ANSWERED and call.answered_at is None:
                call.answered_at = timezone.now()
            call.save()
    if result in ("queue-full", "leave", "redirected", "system-error", "error"):
        return _xml(_voicemail(response, "Everyone is busy. Please leave a message."))
    return _xml(response)


@_guarded
def status(request):
    params = request.POST
    with transaction.atomic():
        call = _call(params.get("CallSid", ""))
        if call is None:
            return HttpResponse(status=204)
        call.status = params.get("CallStatus", call.status)[:20]
        if params.get("CallDuration", "").isdigit():
            call.duration_seconds = int(params["CallDuration"])
        if call.status in ("completed", *_UNANSWERED_CALL_STATUSES) and call.ended_at is None:
            call.ended_at = timezone.now()
            if (
                call.duration_seconds is not None
                and call.answered_at is None
                and (call.queue_result == CallDetail.QueueResult.ANSWERED)
            ):
                call.answered_at = call.ended_at - timedelta(seconds=call.duration_seconds)
        if (
            call.status in _UNANSWERED_CALL_STATUSES
            and call.queue_result == CallDetail.QueueResult.IN_PROGRESS
        ):
            call.queue_result = CallDetail.QueueResult.MISSED
        call.save()
    return HttpResponse(status=204)


@_guarded
def recording(request):
    params = request.POST
    with transaction.atomic():
        call = _call(params.get("CallSid", ""))
        if call is not None and params.get("RecordingUrl"):
            call.recording_url = params["RecordingUrl"][:500]
            call.recording_sid = params.get("RecordingSid", "")[:64]
            call.queue_result = CallDetail.QueueResult.VOICEMAIL
            call.save()
            Interaction.objects.filter(pk=call.interaction_id).update(
                kind=Interaction.Kind.VOICEMAIL
            )
    return HttpResponse(status=204)


@_guarded
def transcription(request):
    params = request.POST
    text = params.get("TranscriptionText", "")
    with transaction.atomic():
        call = _call(params.get("CallSid", ""))
        if call is None or params.get("TranscriptionStatus", "completed") != "completed":
            return HttpResponse(status=204)
        call.transcript = text
        call.save()
        interaction = call.interaction
        interaction.body = text
        interaction.kind = Interaction.Kind.VOICEMAIL
        # The transcript is new inbound text: process it like a message.
        interaction.processed_at = None
        interaction.save(update_fields=["body", "kind", "processed_at"])
        enqueue_on_commit(tasks.inbound_process, str(interaction.pk))
    return HttpResponse(status=204)
