"""Twilio Voice: the call flow in TwiML (greeting, one menu by key or speech in
English or Spanish, a team queue with its expected wait and the callback offer,
voicemail after hours), and the callbacks that complete a call's Interaction
(CallSid is its provider id): queue result, status, recording, transcription.
Answered, abandoned and called-back calls stay distinguishable for the KPIs.
Every step is one webhook whose request Twilio signs; the call's state between
steps lives on its CallDetail, found by CallSid."""

import math
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.voice_response import VoiceResponse

from channels_app import accounts, inbound_queue, selectors, services, tasks
from channels_app import voice_prompts as prompts
from channels_app.models import Callback, CallDetail, Interaction, VoiceMenuChoice
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


def _voicemail(response, language, message):
    _say(response, language, message)
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
    # Only the call's row: FOR UPDATE with a join locks the joined interaction too,
    # and the worker processing that interaction locks its conversation first and
    # then writes the interaction, so holding both here can deadlock with it.
    return (
        CallDetail.objects.select_for_update(of=("self",))
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


def _say(node, language, sentence):
    node.say(sentence, language=prompts.TWILIO_LANGUAGE[language])


def _greeting(account, language):
    custom = account.greeting if language == "en" else account.greeting_es
    return custom or prompts.text(language, "greeting", practice=settings.PRACTICE_NAME)


def _menu(response, call, choices, *, attempt):
    """The one menu: its choices by key or by speech, 0 for a person, 9 for the
    other language. No input or no match hears it once more, then reaches a person."""
    language = call.language
    hints = [choice.label_en if language == "en" else choice.label_es for choice in choices]
    hints += prompts.words(language, "person_words") + prompts.words(language, "language_words")
    gather = response.gather(
        input="dtmf speech",
        num_digits=1,
        timeout=5,
        speech_timeout="auto",
        language=prompts.TWILIO_LANGUAGE[language],
        hints=", ".join(hints),
        action=_url("menu") + f"?attempt={attempt}",
        method="POST",
    )
    sentences = [
        prompts.text(
            language,
            "choice",
            label=choice.label_en if language == "en" else choice.label_es,
            key=choice.key,
        )
        for choice in choices
    ]
    sentences += [prompts.text(language, "person"), prompts.text(language, "or_say")]
    _say(gather, language, " ".join(sentences))
    other = prompts.other_language(language)
    _say(gather, other, prompts.text(other, "switch_language"))
    # Without input Twilio goes on to the next verb: the same menu action, empty.
    response.redirect(_url("menu") + f"?attempt={attempt}", method="POST")
    return response


def _enqueue(response, team):
    response.enqueue(
        str(team.pk),
        action=_url("queue"),
        method="POST",
        wait_url=_url("wait"),
        wait_url_method="POST",
    )
    return response


def _minutes_until(moment):
    return max(1, math.ceil((moment - timezone.now()).total_seconds() / 60))


def _record_call(account, params, *, is_open):
    with transaction.atomic():
        ingested = services.inbound_record(
            channel=Channel.VOICE,
            account=account,
            address=params.get("From", ""),
            body="",
            provider_id=params["CallSid"],
            occurred_at=timezone.now(),
            source="twilio_voice",
            raw_payload={key: params.getlist(key) for key in params},
            kind=Interaction.Kind.CALL,
            metadata={"direction": params.get("Direction", "inbound")},
        )
        patient = ingested.interaction.conversation.patient
        call, _created = CallDetail.objects.get_or_create(
            interaction=ingested.interaction,
            defaults={
                "status": params.get("CallStatus", "ringing"),
                "queue_result": CallDetail.QueueResult.IN_PROGRESS
                if is_open
                else CallDetail.QueueResult.VOICEMAIL,
                # A known caller hears the language on their record.
                "language": prompts.language_of(patient.preferred_language) if patient else "en",
            },
        )
    return call, ingested.interaction.conversation


@_guarded
def answer(request):
    params = request.POST
    call_sid, to = params.get("CallSid", ""), params.get("To", "")
    try:
        account = accounts.account_for(kind=Channel.VOICE, address=normalise_phone(to))
    except ValueError:
        account = None
    response = VoiceResponse()
    if account is None or not call_sid:
        _say(response, "en", prompts.text("en", "not_in_service"))
        response.hangup()
        return _xml(response)
    is_open = _is_open(account)
    call, conversation = _record_call(account, params, is_open=is_open)
    language = call.language
    if not is_open:
        # The emergency sentence comes first; a caller of unknown language hears it in both.
        _say(response, language, prompts.text(language, "emergency"))
        if conversation.patient_id is None:
            _say(response, "es", prompts.text("es", "emergency"))
        _say(response, language, _greeting(account, language))
        return _xml(_voicemail(response, language, prompts.text(language, "closed")))
    waiting = selectors.callback_waiting_for(
        account=account, phone_index=conversation.contact_index
    )
    if waiting is not None and waiting.call_id != call.pk:
        CallDetail.objects.filter(pk=call.pk).update(queue_result=CallDetail.QueueResult.CALLBACK)
        position = selectors.queue_position(team_id=waiting.team_id, queued_at=waiting.queued_at)
        _say(response, language, _greeting(account, language))
        _say(
            response,
            language,
            prompts.text(
                language,
                "callback_pending",
                position=position,
                minutes=_minutes_until(waiting.due_at),
            ),
        )
        response.hangup()
        return _xml(response)
    _say(
        response,
        language,
        f"{_greeting(account, language)} {prompts.text(language, 'emergency')}",
    )
    choices = selectors.voice_menu_for(account=account)
    if not choices:
        services.call_enqueue(call=call, team=account.team, menu_key=None)
        return _xml(_enqueue(response, account.team))
    return _xml(_menu(response, call, choices, attempt=1))


def _spoken_choice(speech, language, choices):
    """The menu entry a caller said: "person", "language", a choice, or None."""
    spoken = " ".join(speech.lower().replace(",", " ").replace(".", " ").split())
    if not spoken:
        return None

    def said(word):
        return f" {word.lower()} " in f" {spoken} "

    if any(said(word) for word in prompts.words(language, "person_words")):
        return "person"
    if any(said(word) for word in prompts.words(language, "language_words")):
        return "language"
    for choice in choices:
        label = choice.label_en if language == "en" else choice.label_es
        extra = choice.speech_en if language == "en" else choice.speech_es
        words = [label, *(word.strip() for word in extra.split(",") if word.strip())]
        if any(said(word) for word in words):
            return choice
    return None


def _call_of(call_sid):
    return (
        CallDetail.objects.select_related("interaction__conversation__account__team")
        .filter(interaction__channel=Channel.VOICE, interaction__provider_id=call_sid)
        .first()
    )


@_guarded
def menu(request):
    params = request.POST
    response = VoiceResponse()
    call = _call_of(params.get("CallSid", ""))
    if call is None:
        response.hangup()
        return _xml(response)
    account = call.interaction.conversation.account
    choices = selectors.voice_menu_for(account=account)
    digits = params.get("Digits", "").strip()
    picked = None
    if digits == prompts.PERSON_KEY:
        picked = "person"
    elif digits == prompts.LANGUAGE_KEY:
        picked = "language"
    elif digits:
        picked = next((choice for choice in choices if str(choice.key) == digits), None)
    else:
        picked = _spoken_choice(params.get("SpeechResult", ""), call.language, choices)
    if picked == "language":
        call = services.call_set_language(call=call, language=prompts.other_language(call.language))
        _say(response, call.language, _greeting(account, call.language))
        return _xml(_menu(response, call, choices, attempt=1))
    attempt = request.GET.get("attempt", "1")
    if picked is None and attempt == "1" and choices:
        _say(response, call.language, prompts.text(call.language, "not_understood"))
        return _xml(_menu(response, call, choices, attempt=2))
    if isinstance(picked, VoiceMenuChoice):
        team, key, why = picked.team, picked.key, f"Caller chose {picked.label_en}"
    else:
        # 0, or a second try that was not understood: a person, at the line's team.
        team, key, why = account.team, 0, "Caller asked for a person"
    services.call_enqueue(call=call, team=team, menu_key=key, why=why)
    return _xml(_enqueue(response, team))


@_guarded
def wait(request):
    """Twilio's waitUrl, asked again each time its TwiML ends: the caller's place
    and expected wait, then the callback offer (press 1)."""
    params = request.POST
    response = VoiceResponse()
    call = _call_of(params.get("CallSid", ""))
    if call is None or call.queue_team_id is None:
        response.pause(length=20)
        return _xml(response)
    language = call.language
    position = selectors.queue_position(team_id=call.queue_team_id, queued_at=call.queued_at)
    sentences = [prompts.text(language, "position", position=position)]
    expected = selectors.queue_expected_wait_seconds(team_id=call.queue_team_id)
    if expected is not None:
        minutes = max(1, math.ceil(expected / 60))
        sentences.append(
            prompts.text(language, "wait_one")
            if minutes == 1
            else prompts.text(language, "wait_many", minutes=minutes)
        )
    sentences.append(prompts.text(language, "offer"))
    services.call_callback_offered(call=call)
    gather = response.gather(
        input="dtmf", num_digits=1, timeout=10, action=_url("hold"), method="POST"
    )
    _say(gather, language, " ".join(sentences))
    response.pause(length=20)
    return _xml(response)


@_guarded
def hold(request):
    """A key pressed while waiting: 1 is a callback that keeps the caller's place;
    the caller leaves the queue and hears the promise from the queue's action."""
    params = request.POST
    response = VoiceResponse()
    call = _call_of(params.get("CallSid", ""))
    if (
        call is None
        or call.queue_team_id is None
        or params.get("Digits", "").strip() != prompts.CALLBACK_KEY
    ):
        response.redirect(_url("wait"), method="POST")
        return _xml(response)
    services.callback_request(call=call)
    response.leave()
    return _xml(response)


@_guarded
def queue_result(request):
    params = request.POST
    result = params.get("QueueResult", "")
    response = VoiceResponse()
    callback = None
    with transaction.atomic():
        call = _call(params.get("CallSid", ""))
        if call is not None:
            callback = Callback.objects.filter(call=call).first()
            if callback is None and result == "leave":
                # Pressed 1 while a callback this number asked for on another call
                # was already waiting: that one keeps its place.
                conversation = call.interaction.conversation
                callback = selectors.callback_waiting_for(
                    account=conversation.account_id, phone_index=conversation.contact_index
                )
            queue_time = params.get("QueueTime", "")
            call.queue_wait_seconds = int(queue_time) if queue_time.isdigit() else 0
            if callback is not None:
                call.queue_result = CallDetail.QueueResult.CALLBACK
            else:
                call.queue_result = _QUEUE_RESULTS.get(result, CallDetail.QueueResult.VOICEMAIL)
            if call.queue_result == CallDetail.QueueResult.ANSWERED and call.answered_at is None:
                call.answered_at = timezone.now()
            call.save()
            if (
                call.queue_result == CallDetail.QueueResult.ABANDONED
                and call.queue_wait_seconds >= settings.KPI_SHORT_ABANDON_SECONDS
            ):
                enqueue_on_commit(tasks.outbound_missed_call_text, str(call.pk))
    language = call.language if call is not None else "en"
    if callback is not None:
        _say(
            response,
            language,
            prompts.text(language, "callback_confirmed", minutes=_minutes_until(callback.due_at)),
        )
        response.hangup()
        return _xml(response)
    if result in ("queue-full", "leave", "redirected", "system-error", "error"):
        return _xml(_voicemail(response, language, prompts.text(language, "busy")))
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
        inbound_queue.hand_over_on_commit(interaction.pk)
    return HttpResponse(status=204)


@_guarded
def callback_status(request):
    """The final status of a callback's call to the patient."""
    try:
        callback_id = uuid.UUID(request.GET.get("callback", ""))
    except ValueError:
        return HttpResponse(status=204)  # not one of ours; Twilio needs no error
    services.callback_apply_status(
        callback_id=callback_id, call_status=request.POST.get("CallStatus", "").lower()
    )
    return HttpResponse(status=204)
