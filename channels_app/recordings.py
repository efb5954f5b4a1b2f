"""A call's recording, fetched from Twilio for staff who may hear it: Twilio keeps
the audio behind the account's credentials, so the browser never gets a Twilio
URL; the workspace streams it through its own audited view."""

from urllib.parse import urlsplit

import requests
from django.conf import settings

from channels_app.adapters.twilio_sms import is_loopback

CHUNK_BYTES = 64 * 1024


class RecordingUnavailable(Exception):
    """No recording, or Twilio did not give it: the message says which."""


def _is_twilio(url):
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and (host == "twilio.com" or host.endswith(".twilio.com"))


def recording_open(call):
    """(content type, iterator of the audio's bytes) of a call's recording as MP3.
    Only a Twilio URL is fetched (the webhook stored it), with the account's
    credentials, through TWILIO_API_BASE_URL when set (a regional edge, or the
    loopback stub in tests). Raises RecordingUnavailable."""
    from channels_app.adapters.twilio_sms import BaseUrlHttpClient

    url = call.recording_url
    if not url:
        raise RecordingUnavailable("This call has no recording.")
    if not _is_twilio(url):
        raise RecordingUnavailable("The recording is not at Twilio; it cannot be played here.")
    if not settings.TWILIO_ACCOUNT_SID or not settings.TWILIO_AUTH_TOKEN:
        raise RecordingUnavailable("Twilio is not configured, so the recording cannot be fetched.")
    target = url if url.endswith((".mp3", ".wav")) else f"{url}.mp3"
    session = requests.Session()
    if settings.TWILIO_API_BASE_URL:
        target = BaseUrlHttpClient(settings.TWILIO_API_BASE_URL).rewrite(target)
        session.trust_env = not is_loopback(urlsplit(target).hostname)
    try:
        response = session.get(
            target,
            auth=(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN),
            stream=True,
            timeout=10,
        )
    except requests.RequestException as exc:
        raise RecordingUnavailable(f"Twilio could not be reached: {type(exc).__name__}.") from None
    if response.status_code != 200:
        response.close()
        raise RecordingUnavailable(f"Twilio answered {response.status_code} for the recording.")
    content_type = response.headers.get("Content-Type", "audio/mpeg").split(";")[0]
    if not content_type.startswith("audio/"):
        response.close()
        raise RecordingUnavailable("Twilio did not answer with audio.")

    def chunks():
        try:
            yield from response.iter_content(CHUNK_BYTES)
        finally:
            response.close()

    return content_type, chunks()
