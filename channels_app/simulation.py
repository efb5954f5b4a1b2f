"""Inbound traffic as the providers send it, for trying the project out and for its
end-to-end tests: every request goes over HTTP to the running project's real
webhook, signed the way the provider signs it (Twilio's RequestValidator, the email
webhook's HMAC, the portal's API key). A call follows the TwiML the project answers
with, as Twilio does: the queue's action URL, then the recording and transcription
callbacks of a voicemail.

Only the provider's side is played here; what the project does with each request is
the project's own code, exactly as in production."""

import hashlib
import hmac
import json
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.request_validator import RequestValidator

from channels_app.adapters.portal import SIGNATURE_HEADER

CALL_OUTCOMES = ("ringing", "queued", "answered", "abandoned", "voicemail")
TWILIO_API_VERSION = "2010-04-01"


class SimulationError(Exception):
    """The project refused a simulated request: the status and its error body."""


@dataclass(frozen=True)
class Delivered:
    """One simulated delivery: the provider's id of it and the project's answer."""

    provider_id: str
    status_code: int
    answer: str = ""


def _sid(prefix):
    return prefix + uuid.uuid4().hex


class InboundSimulator:
    """`base_url` is where the project listens; signatures are computed over the
    public URL (PUBLIC_BASE_URL), which is what the project checks them against,
    as a provider signs the URL it was given."""

    def __init__(self, *, base_url=None, portal_api_key="", timeout=15):
        self.base_url = (base_url or settings.PUBLIC_BASE_URL).rstrip("/")
        self.public_base_url = settings.PUBLIC_BASE_URL.rstrip("/")
        self.portal_api_key = portal_api_key
        self.timeout = timeout
        self.session = requests.Session()
        # A developer's HTTP(S)_PROXY must not capture requests to the local server.
        self.session.trust_env = False

    # --- transport ---------------------------------------------------------------

    def _target(self, public_url):
        """The URL to call for a public URL: same path, the project's own address."""
        public, base = urlsplit(public_url), urlsplit(self.base_url)
        return urlunsplit((base.scheme, base.netloc, public.path, public.query, ""))

    def _post(self, path_or_url, **kwargs):
        url = path_or_url
        if path_or_url.startswith("/"):
            url = self.public_base_url + path_or_url
        response = self.session.post(self._target(url), timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise SimulationError(
                f"{response.status_code} from {urlsplit(url).path}: {response.text}"
            )
        return response

    def _twilio_post(self, path_or_url, params):
        url = path_or_url if "://" in path_or_url else self.public_base_url + path_or_url
        signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
        return self._post(url, data=params, headers={"X-Twilio-Signature": signature})

    def _twilio_common(self, *, sender, to):
        return {
            "AccountSid": settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32,
            "From": sender,
            "To": to,
            "ApiVersion": TWILIO_API_VERSION,
        }

    # --- channels ------------------------------------------------------------------

    def sms(self, *, sender, to, body):
        sid = _sid("SM")
        params = {
            **self._twilio_common(sender=sender, to=to),
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
        }
        response = self._twilio_post("/webhooks/twilio/sms/", params)
        return Delivered(provider_id=sid, status_code=response.status_code, answer=response.text)

    def email(self, *, sender, sender_name="", to, subject, body):
        message = EmailMessage()
        message["From"] = formataddr((sender_name, sender)) if sender_name else sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message_id = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
        message["Message-ID"] = message_id
        message.set_content(body)
        raw = message.as_bytes()
        timestamp = int(time.time())
        digest = hmac.new(
            settings.EMAIL_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256
        ).hexdigest()
        response = self._post(
            "/webhooks/email/inbound/",
            data=raw,
            headers={
                "Content-Type": "message/rfc822",
                SIGNATURE_HEADER: f"t={timestamp},v1={digest}",
            },
        )
        return Delivered(provider_id=message_id.strip("<>"), status_code=response.status_code)

    def portal(self, *, patient_id, body, subject="", thread_id=""):
        if not self.portal_api_key:
            raise SimulationError("A portal message needs an API key with the portal:write scope.")
        message_id = _sid("portal-")
        payload = {
            "patient": str(patient_id),
            "subject": subject,
            "body": body,
            "thread_id": thread_id,
            "message_id": message_id,
        }
        response = self._post(
            "/api/v1/portal/messages/",
            data=json.dumps(payload),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.portal_api_key}",
                "Idempotency-Key": secrets.token_hex(16),
            },
        )
        return Delivered(
            provider_id=message_id, status_code=response.status_code, answer=response.text
        )

    def call(
        self, *, caller, to, outcome, transcript="", wait_seconds=25, talk_seconds=180, key="0"
    ):
        """A call to a practice number, as far as `outcome` goes: "ringing" (the call
        came in and was answered with TwiML), "queued" (in progress, waiting in the
        queue), "answered" (an agent took it from the queue), "abandoned" (the caller
        hung up while waiting) or "voicemail" (a message left, then transcribed). At a
        menu the caller presses `key` (0, a person, by default).
        Returns the call's Delivered record (its CallSid)."""
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(CALL_OUTCOMES)}")
        call_sid = _sid("CA")
        common = {
            **self._twilio_common(sender=caller, to=to),
            "CallSid": call_sid,
            "Caller": caller,
            "Called": to,
            "Direction": "inbound",
        }
        answer = self._twilio_post("/webhooks/twilio/voice/", {**common, "CallStatus": "ringing"})
        twiml = ET.fromstring(answer.text)  # noqa: S314 - the TwiML of our own server
        if outcome == "ringing":
            return Delivered(
                provider_id=call_sid, status_code=answer.status_code, answer=answer.text
            )
        menu = twiml.find("Gather")
        if menu is not None and twiml.find("Enqueue") is None:
            chosen = self._twilio_post(
                menu.get("action"), {**common, "CallStatus": "in-progress", "Digits": key}
            )
            twiml = ET.fromstring(chosen.text)  # noqa: S314 - as above
        record = twiml.find("Record")
        enqueue = twiml.find("Enqueue")
        if enqueue is not None and enqueue.get("waitUrl"):
            # Twilio asks the wait URL what the caller hears while queued.
            self._twilio_post(
                enqueue.get("waitUrl"),
                {**common, "CallStatus": "in-progress", "QueuePosition": "1", "QueueTime": "0"},
            )
        if record is None and enqueue is not None and outcome != "queued":
            queue_result = {"answered": "bridged", "abandoned": "hangup", "voicemail": "leave"}
            left = self._twilio_post(
                enqueue.get("action"),
                {
                    **common,
                    "CallStatus": "in-progress",
                    "QueueResult": queue_result[outcome],
                    "QueueTime": str(wait_seconds),
                    "QueueSid": _sid("QU"),
                },
            )
            record = ET.fromstring(left.text).find("Record")  # noqa: S314 - as above
        status = self._status_for(outcome, wait_seconds=wait_seconds, talk_seconds=talk_seconds)
        if outcome == "voicemail":
            if record is None:
                raise SimulationError("The project did not offer voicemail on this call.")
            self._leave_voicemail(common, record, transcript)
        self._twilio_post("/webhooks/twilio/voice/status/", {**common, **status})
        return Delivered(provider_id=call_sid, status_code=answer.status_code, answer=answer.text)

    @staticmethod
    def _status_for(outcome, *, wait_seconds, talk_seconds):
        if outcome == "queued":
            return {"CallStatus": "in-progress"}
        duration = wait_seconds + (talk_seconds if outcome == "answered" else 0)
        if outcome == "voicemail":
            duration += 30
        return {"CallStatus": "completed", "CallDuration": str(duration)}

    def _leave_voicemail(self, common, record, transcript):
        recording_sid = _sid("RE")
        account = common["AccountSid"]
        recording_url = (
            f"https://api.twilio.com/{TWILIO_API_VERSION}/Accounts/{account}/Recordings/"
            f"{recording_sid}"
        )
        recording = {
            **common,
            "CallStatus": "completed",
            "RecordingSid": recording_sid,
            "RecordingUrl": recording_url,
            "RecordingStatus": "completed",
            "RecordingDuration": "30",
        }
        self._twilio_post(record.get("recordingStatusCallback"), recording)
        if transcript:
            self._twilio_post(
                record.get("transcribeCallback"),
                {
                    **recording,
                    "TranscriptionSid": _sid("TR"),
                    "TranscriptionText": transcript,
                    "TranscriptionStatus": "completed",
                    "TranscriptionUrl": f"{recording_url}/Transcriptions",
                },
            )
