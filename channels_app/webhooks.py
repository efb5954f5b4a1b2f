"""Provider webhooks. Each is authenticated by signature, stores the raw event and
its interaction in the request's transaction before answering, and answers a
repeated delivery with 200 and nothing new."""

import hashlib
import hmac
import math
import time

import structlog
from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from channels_app import accounts, email_ingest, services
from channels_app.email_parsing import MAX_MESSAGE_BYTES
from channels_app.voice_prompts import CALLBACK_TEXT_KEYWORDS, text
from contactcenter.blind_index import normalise_phone
from contactcenter.errors import error_response
from contactcenter.signals import security_event
from contactcenter.throttling import address_throttled
from patients.models import Channel, ContactPoint
from patients.services import sms_opt_in, sms_opt_out

logger = structlog.stdlib.get_logger(__name__)

OPT_OUT_KEYWORDS = {
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPT OUT",
    "OPTOUT",
}
OPT_IN_KEYWORDS = {"START", "UNSTOP", "YES"}
HELP_KEYWORDS = {"HELP", "INFO"}
EMAIL_SIGNATURE_HEADER = "X-Contactcenter-Signature"


def _deny(request, *, webhook, reason):
    """403 for a request whose signature fails, or 429 once its address has failed
    too often (only failed signatures are counted: provider traffic never is)."""
    throttled = address_throttled(request, "webhook_bad_signature")
    security_event.send(
        sender=__name__,
        action="denied",
        outcome="denied",
        request=request,
        actor=None,
        api_client=None,
        http_status=403,
        details={"reason": reason, "webhook": webhook},
    )
    if throttled is not None:
        return throttled
    return error_response(
        request, status=403, code="invalid_signature", message="The request signature is invalid."
    )


def _twilio_signature_ok(request):
    """Twilio signs the public URL it called plus every POST parameter; behind a
    proxy the URL is rebuilt from PUBLIC_BASE_URL, not from the Host header."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not settings.TWILIO_AUTH_TOKEN:
        return False
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    params = {key: request.POST.getlist(key) for key in request.POST}
    flat = {key: values[0] if len(values) == 1 else values for key, values in params.items()}
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, flat, signature)


def _twiml(response=None):
    return HttpResponse(str(response or MessagingResponse()), content_type="text/xml")


def _keyword(body):
    return " ".join(body.upper().split())


def _sms_account(to_number):
    try:
        address = normalise_phone(to_number)
    except ValueError:
        return None
    return accounts.account_for(kind=Channel.SMS, address=address)


@csrf_exempt
@require_POST
def twilio_sms(request):
    if not _twilio_signature_ok(request):
        return _deny(request, webhook="twilio_sms", reason="bad_signature")
    params = request.POST
    message_sid = params.get("MessageSid", "")
    sender, to, body = params.get("From", ""), params.get("To", ""), params.get("Body", "")
    if not message_sid or not sender:
        return error_response(
            request, status=400, code="invalid", message="MessageSid and From are required."
        )
    raw = {key: params.getlist(key) for key in params}
    account = _sms_account(to)
    if account is None:
        # Kept (encrypted) for an admin to route, so a misconfigured number loses nothing.
        services.raw_event_record(
            source="twilio_sms_unrouted", provider_id=message_sid, payload=raw
        )
        logger.warning("sms_to_unknown_number", message_sid=message_sid)
        return _twiml()
    media = [params.get(f"MediaUrl{i}", "") for i in range(int(params.get("NumMedia", 0) or 0))]
    keyword = _keyword(body)
    with transaction.atomic():
        ingested = services.inbound_record(
            channel=Channel.SMS,
            account=account,
            address=sender,
            body=body,
            provider_id=message_sid,
            occurred_at=timezone.now(),
            source="twilio_sms",
            raw_payload=raw,
            metadata={
                "num_media": len(media),
                "keyword": keyword
                if keyword
                in (OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS | CALLBACK_TEXT_KEYWORDS)
                else "",
            },
        )
        if not ingested.created:
            return _twiml()
        if keyword in OPT_OUT_KEYWORDS:
            sms_opt_out(phone=sender, source=ContactPoint.ConsentSource.KEYWORD, request=request)
        elif keyword in OPT_IN_KEYWORDS:
            sms_opt_in(phone=sender, source=ContactPoint.ConsentSource.KEYWORD, request=request)
        elif keyword in CALLBACK_TEXT_KEYWORDS:
            callback = services.callback_request_by_text(interaction=ingested.interaction)
            if callback is not None:
                confirmation = text(
                    callback.language,
                    "callback_text_confirmed",
                    practice=settings.PRACTICE_NAME,
                    minutes=max(
                        1, math.ceil((callback.due_at - timezone.now()).total_seconds() / 60)
                    ),
                )
                response = MessagingResponse()
                response.message(confirmation)
                services.outbound_answered_inline(
                    conversation=ingested.interaction.conversation, body=confirmation
                )
                return _twiml(response)
    if keyword in HELP_KEYWORDS:
        help_text = account.help_text or (
            f"{settings.PRACTICE_NAME}: reply STOP to opt out. For emergencies call 911."
        )
        response = MessagingResponse()
        response.message(help_text)
        services.outbound_answered_inline(
            conversation=ingested.interaction.conversation, body=help_text
        )
        return _twiml(response)
    return _twiml()


@csrf_exempt
@require_POST
def twilio_sms_status(request):
    if not _twilio_signature_ok(request):
        return _deny(request, webhook="twilio_sms_status", reason="bad_signature")
    services.outbound_apply_status(
        outbound_id=request.GET.get("outbound") or None,
        provider_id=request.POST.get("MessageSid", ""),
        provider_status=request.POST.get("MessageStatus", "").lower(),
        error_code=request.POST.get("ErrorCode", ""),
    )
    return HttpResponse(status=204)


def _email_signature_check(request, body):
    """(problem, signature): problem is empty when the signature is valid and fresh."""
    header = request.headers.get(EMAIL_SIGNATURE_HEADER, "")
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = parts.get("t", ""), parts.get("v1", "")
    if not settings.EMAIL_WEBHOOK_SECRET or not timestamp.isdigit() or not signature:
        return "bad_signature", signature
    if abs(time.time() - int(timestamp)) > services.WEBHOOK_SIGNATURE_TOLERANCE_SECONDS:
        return "stale_timestamp", signature
    expected = hmac.new(
        settings.EMAIL_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "bad_signature", signature
    return "", signature


@csrf_exempt
@require_POST
def email_inbound(request):
    # Read the stream directly: request.body refuses anything above
    # DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), and mail with attachments is larger.
    body = request.read(MAX_MESSAGE_BYTES + 1)
    if len(body) > MAX_MESSAGE_BYTES:
        return error_response(
            request,
            status=413,
            code="payload_too_large",
            message=f"A message may be at most {MAX_MESSAGE_BYTES // (1024 * 1024)} MB.",
        )
    problem, signature = _email_signature_check(request, body)
    if problem:
        return _deny(request, webhook="email_inbound", reason=problem)
    with transaction.atomic():
        # A valid signature is accepted once (a captured request replayed within
        # the tolerance window is refused). The database decides, in the message's
        # transaction: no cache involved, and a failed request leaves it unused.
        if not services.webhook_signature_use(signature=signature):
            outcome = None
        else:
            outcome = email_ingest.ingest_raw_email(raw=body, source="email_webhook")
    if outcome is None:
        return _deny(request, webhook="email_inbound", reason="replayed")
    if outcome.error:
        return error_response(
            request,
            status=422,
            code="unparseable_email",
            message=outcome.error,
            details={"raw_event_id": str(outcome.raw_event_id)},
        )
    return HttpResponse(status=200 if not outcome.created else 201)
