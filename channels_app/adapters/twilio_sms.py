import ipaddress
import threading
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from channels_app.adapters import register
from channels_app.adapters.base import AdapterError, ChannelAdapter, DeliveryResult
from patients.models import Channel

# Twilio error codes that no retry can fix: invalid or unreachable numbers,
# recipients who replied STOP, and account-level refusals.
PERMANENT_TWILIO_CODES = {21211, 21214, 21408, 21610, 21612, 21614, 30003, 30004, 30005, 30006}


class BaseUrlHttpClient(TwilioHttpClient):
    """Sends the official client's requests meant for any *.twilio.com host to
    TWILIO_API_BASE_URL (scheme, host, port and an optional path prefix): a regional
    edge in production, a loopback stub in tests. Every Twilio host is redirected, so
    a TWILIO_EDGE or TWILIO_REGION in the environment (which makes the client call
    api.<edge>.<region>.twilio.com) cannot send a test's request to the real Twilio."""

    def __init__(self, base_url, **kwargs):
        super().__init__(**kwargs)
        target = urlsplit(base_url)
        if not target.scheme or not target.netloc:
            raise ValueError(f"base_url must be absolute, like http://127.0.0.1:8080: {base_url!r}")
        self.base_url = base_url
        self._target = target
        if self.session is not None and is_loopback(target.hostname):
            # A developer's HTTP(S)_PROXY must not capture requests to a local stub;
            # any other target keeps the environment's proxy settings.
            self.session.trust_env = False

    def request(self, method, url, *args, **kwargs):
        return super().request(method, self.rewrite(url), *args, **kwargs)

    def rewrite(self, url):
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        return urlunsplit(
            (
                self._target.scheme,
                self._target.netloc,
                self._target.path.rstrip("/") + parts.path,
                parts.query,
                parts.fragment,
            )
        )


def is_loopback(hostname):
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname or "").is_loopback
    except ValueError:
        return False


_clients = threading.local()


def twilio_client():
    """The official client, one per thread and configuration: its HTTP session
    keeps the connection to Twilio open between sends (a new TLS handshake per
    message was most of a reminder's send time)."""
    if not settings.TWILIO_ACCOUNT_SID or not settings.TWILIO_AUTH_TOKEN:
        raise AdapterError("Twilio is not configured (TWILIO_ACCOUNT_SID).", permanent=True)
    key = (settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_API_BASE_URL)
    cached = getattr(_clients, "by_config", None)
    if cached is None or cached[0] != key:
        if settings.TWILIO_API_BASE_URL:
            http_client = BaseUrlHttpClient(settings.TWILIO_API_BASE_URL, timeout=10)
        else:
            http_client = TwilioHttpClient(timeout=10)
        client = Client(key[0], key[1], http_client=http_client)
        _clients.by_config = cached = (key, client)
    return cached[1]


def status_callback_url(outbound):
    return f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/sms/status/?outbound={outbound.pk}"


@register(Channel.SMS, provider="twilio")
class TwilioSmsAdapter(ChannelAdapter):
    def send(self, outbound):
        conversation = outbound.interaction.conversation
        if conversation.account is None:
            raise AdapterError(
                "The conversation has no practice number to send from.", permanent=True
            )
        try:
            message = twilio_client().messages.create(
                to=outbound.to_address,
                from_=conversation.account.address,
                body=outbound.interaction.body,
                status_callback=status_callback_url(outbound),
            )
        except TwilioRestException as exc:
            permanent = exc.code in PERMANENT_TWILIO_CODES or 400 <= (exc.status or 0) < 500
            if exc.status == 429:
                permanent = False
            raise AdapterError(
                f"twilio {exc.status} code {exc.code}", permanent=permanent
            ) from None
        except TwilioException as exc:
            raise AdapterError(f"twilio {exc.__class__.__name__}", permanent=False) from None
        except OSError as exc:
            raise AdapterError(f"network {exc.__class__.__name__}", permanent=False) from None
        return DeliveryResult(provider_id=message.sid, provider_status=message.status or "")
