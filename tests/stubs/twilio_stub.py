"""A local stand-in for Twilio's REST Messages and Calls APIs, served over real HTTP
for tests.

How it is wired
---------------
Production code sends SMS with the official client, unchanged:
``twilio.rest.Client(sid, token, http_client=...).messages.create(to=..., from_=..., body=...)``.
The only seam is the ``http_client``: the SMS adapter's ``twilio_client()`` reads the
Django setting ``TWILIO_API_BASE_URL`` (empty, meaning the real Twilio, in production)
and, when it is set, passes production's ``BaseUrlHttpClient`` (a
``twilio.http.http_client.TwilioHttpClient`` subclass, the twilio package's hook for
custom HTTP clients) that sends the requests meant for Twilio to that base URL instead,
keeping path, query, form body and basic auth. It redirects every ``*.twilio.com``
host, so a ``TWILIO_EDGE`` or ``TWILIO_REGION`` in the environment (which makes the
client call ``api.<edge>.<region>.twilio.com``) cannot send a test's request to the
real Twilio. This module uses that same class, so the stub's own tests exercise it.

In tests, the ``twilio_stub`` fixture (tests/stubs/fixtures.py) starts a ``TwilioStub``
and ``twilio_stub_settings`` points ``TWILIO_API_BASE_URL``, ``TWILIO_ACCOUNT_SID`` and
``TWILIO_AUTH_TOKEN`` at it. ``make_twilio_client(stub)`` gives a ready client for tests
that do not go through Django settings.

What the stub does
------------------
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with a form body (To, From or
MessagingServiceSid, Body and/or MediaUrl, StatusCallback, ...) answers 201 with a
message resource shaped like Twilio's (sid ``SM`` + 32 hex, status ``queued``). Basic
auth must be the stub's account sid and auth token (401, code 20003, otherwise); missing
fields get Twilio's 400 codes (21604 To, 21603 From, 21602 Body). Every request, good or
bad, is recorded. Tests script the next answers in order: ``respond_next(status=500)``,
``respond_next(status=400, code=21211, message=...)``, ``delay_next(seconds)``, and
``respond_next(..., hold=event)`` to answer only once the test sets a ``threading.Event``
(an order of events a test must force, not a time); when the
script is empty the stub answers like a healthy Twilio. A request refused for its auth
or its path (401, 404) does not use up a scripted answer.

``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (To, From, and Url or Twiml;
StatusCallback) answers 201 with a call resource (sid ``CA`` + 32 hex, status ``queued``),
kept in ``created_calls``; missing fields get 21201 To, 21213 From, 21205 Url. The same
auth, recording and script apply.

``GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.mp3`` answers the
bytes a test stored with ``add_recording(sid, audio)`` as ``audio/mpeg`` (404 for
another sid), with the same auth; it uses no scripted answer.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from twilio.rest import Client

from channels_app.adapters.twilio_sms import BaseUrlHttpClient

DEFAULT_ACCOUNT_SID = "AC" + "5" * 32
DEFAULT_AUTH_TOKEN = "stub-auth-token-0123456789abcdef"
API_VERSION = "2010-04-01"

_RESOURCE_PATH = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<sid>[^/]+)/(?P<resource>Messages|Calls)\.json$"
)
_RECORDING_PATH = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<sid>[^/]+)/Recordings/(?P<recording>RE[0-9a-f]+)\.mp3$"
)
_STANDARD_ERRORS = {
    401: (20003, "Authenticate"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "An internal server error has occurred"),
    503: (20503, "Service Unavailable"),
}
# GSM 03.38: a body that fits it is sent in 7-bit units (160 per SMS, 153 when split);
# anything else goes as UCS-2 (70, or 67 when split).
_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]
    auth: tuple[str, str] | None

    def field(self, name: str) -> str | None:
        """The first value of a form field, or None."""
        values = self.form.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class _Scripted:
    status: int
    code: int | None
    message: str | None
    delay: float
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None


class TwilioStub:
    """The server and its script. Start it with `start()` or as a context manager."""

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        host: str = "127.0.0.1",
    ):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._host = host
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._created: list[dict] = []
        self._calls: list[dict] = []
        self._script: deque[_Scripted] = deque()
        self._recordings: dict[str, bytes] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Life cycle ------------------------------------------------------------------------

    def start(self) -> TwilioStub:
        handler = type("_BoundHandler", (_Handler,), {"stub": self})
        self._server = _Server((self._host, 0), handler)
        # A short poll keeps shutdown (once per test) from costing half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="twilio-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        # Wakes handlers sleeping on a scripted delay, so shutdown never waits for them.
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TwilioStub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # What tests read -------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def created_messages(self) -> list[dict]:
        """The message resources answered with 201, in order (copies)."""
        with self._lock:
            return [dict(message) for message in self._created]

    @property
    def created_calls(self) -> list[dict]:
        """The call resources answered with 201, in order (copies)."""
        with self._lock:
            return [dict(call) for call in self._calls]

    def send_status_callback(self, message: dict, status: str) -> int:
        """Do what Twilio does when a message's status changes: POST the status,
        signed with the auth token, to the StatusCallback URL the send named.
        `message` is one of `created_messages`; returns the HTTP status."""
        import requests
        from twilio.request_validator import RequestValidator

        with self._lock:
            sent = next(
                r
                for r in self._requests
                if r.field("Body") == message["body"] and r.field("To") == message["to"]
            )
        url = sent.field("StatusCallback")
        params = {
            "MessageSid": message["sid"],
            "MessageStatus": status,
            "AccountSid": self.account_sid,
            "To": message["to"],
            "From": message["from"] or "",
        }
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        response = requests.post(
            url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        return response.status_code

    # What tests script -----------------------------------------------------------------

    def respond_next(
        self,
        status: int = 201,
        *,
        code: int | None = None,
        message: str | None = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        """Queue the answer to the next request. A 2xx status creates the message as
        usual; any other status answers Twilio's error JSON {code, message, more_info,
        status}, with Twilio's standard code and message unless given. With `hold`,
        the answer waits until the event is set (or the stub stops)."""
        with self._lock:
            self._script.append(_Scripted(status, code, message, delay, dict(headers or {}), hold))

    def delay_next(self, seconds: float) -> None:
        """Queue a normal success that is answered only after `seconds`."""
        self.respond_next(delay=seconds)

    # Request handling (called from server threads) -------------------------------------

    def add_recording(self, recording_sid: str, audio: bytes) -> str:
        """Serve these bytes as the recording's MP3; returns its Twilio URL."""
        with self._lock:
            self._recordings[recording_sid] = audio
        return (
            f"https://api.twilio.com/{API_VERSION}/Accounts/{self.account_sid}/Recordings/"
            f"{recording_sid}"
        )

    def _recording(self, request: RecordedRequest) -> tuple[int, bytes] | None:
        """(status, audio) for a recording's GET, or None for any other request."""
        route = _RECORDING_PATH.match(request.path)
        if request.method != "GET" or not route:
            return None
        if not self._authorised(request.auth) or route["sid"] != self.account_sid:
            return 401, b""
        with self._lock:
            audio = self._recordings.get(route["recording"])
        return (200, audio) if audio is not None else (404, b"")

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_scripted(self) -> _Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _authorised(self, auth: tuple[str, str] | None) -> bool:
        if auth is None:
            return False
        sid_ok = hmac.compare_digest(auth[0].encode(), self.account_sid.encode())
        token_ok = hmac.compare_digest(auth[1].encode(), self.auth_token.encode())
        return sid_ok and token_ok

    def _answer(self, request: RecordedRequest) -> tuple[int, dict, dict[str, str], float]:
        """(status, JSON body, extra headers, delay) for one request."""
        route = _RESOURCE_PATH.match(request.path)
        if not self._authorised(request.auth):
            return (*_error(401), {"WWW-Authenticate": 'Basic realm="Twilio API"'}, 0.0)
        if request.method != "POST" or not route or route["sid"] != self.account_sid:
            return (*_error(404), {}, 0.0)
        scripted = self._next_scripted()
        if scripted and scripted.hold is not None:
            self._hold(scripted.hold)
        delay = scripted.delay if scripted else 0.0
        headers = scripted.headers if scripted else {}
        if scripted and not 200 <= scripted.status < 300:
            return (*_error(scripted.status, scripted.code, scripted.message), headers, delay)
        if route["resource"] == "Calls":
            problem = _call_validation_error(request)
            if problem:
                return (*_error(400, *problem), headers, delay)
            resource = self._call_resource(request)
            with self._lock:
                self._calls.append(resource)
            return (scripted.status if scripted else 201), resource, headers, delay
        problem = _validation_error(request)
        if problem:
            return (*_error(400, *problem), headers, delay)
        resource = self._message_resource(request)
        with self._lock:
            self._created.append(resource)
        return (scripted.status if scripted else 201), resource, headers, delay

    def _call_resource(self, request: RecordedRequest) -> dict:
        sid = "CA" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}"
        return {
            "account_sid": self.account_sid,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "from": request.field("From"),
            "from_formatted": request.field("From"),
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {"recordings": f"{uri}/Recordings.json"},
            "to": request.field("To"),
            "to_formatted": request.field("To"),
            "uri": f"{uri}.json",
        }

    def _message_resource(self, request: RecordedRequest) -> dict:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        body = request.field("Body") or ""
        media = request.form.get("MediaUrl", [])
        service = request.field("MessagingServiceSid")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": request.field("From"),
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": str(sms_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": request.field("To"),
            "uri": f"{uri}.json",
        }

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _hold(self, event: threading.Event) -> None:
        # Checks for shutdown between short waits: a test that fails before it sets
        # the event must not leave its handler thread behind.
        while not event.wait(0.1) and not self._stopping.is_set():
            pass


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections of a concurrent test, which then
    # wait a full second for the SYN retransmit.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    stub: TwilioStub
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle each keep-alive answer waits
    # for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            form=parse_qs(raw_body.decode("utf-8", errors="replace"), keep_blank_values=True),
            headers={name: value for name, value in self.headers.items()},
            auth=_basic_auth(self.headers.get("Authorization")),
        )
        self.stub._record(request)
        recording = self.stub._recording(request)
        if recording is not None:
            self._send_audio(*recording)
            return
        status, body, headers, delay = self.stub._answer(request)
        if delay:
            self.stub._wait(delay)
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first (a timeout test); nothing is left to answer.
            self.close_connection = True

    def _send_audio(self, status: int, audio: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(len(audio)))
            self.end_headers()
            self.wfile.write(audio)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:
        """Quiet: the recorded requests are the log."""


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def _error(status: int, code: int | None = None, message: str | None = None) -> tuple[int, dict]:
    default_code, default_message = _STANDARD_ERRORS.get(status, (status, f"HTTP {status}"))
    code = default_code if code is None else code
    return status, {
        "code": code,
        "message": default_message if message is None else message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _validation_error(request: RecordedRequest) -> tuple[int, str] | None:
    if not request.field("To"):
        return 21604, "A 'To' phone number is required."
    if not request.field("From") and not request.field("MessagingServiceSid"):
        return 21603, "A 'From' phone number is required."
    body = request.field("Body") or ""
    if not body and not request.form.get("MediaUrl") and not request.field("ContentSid"):
        return 21602, "Message body is required."
    if len(body) > 1600:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    return None


def _call_validation_error(request: RecordedRequest) -> tuple[int, str] | None:
    if not request.field("To"):
        return 21201, "No 'To' number is specified."
    if not request.field("From"):
        return 21213, "No 'From' number is specified."
    if (
        not request.field("Url")
        and not request.field("Twiml")
        and not request.field("ApplicationSid")
    ):
        return 21205, "Url parameter is required."
    return None


def sms_segments(body: str) -> int:
    """How many SMS segments Twilio bills for a body (GSM-7 or UCS-2)."""
    if set(body) <= _GSM7_BASIC | _GSM7_EXTENDED:
        units = len(body) + sum(ch in _GSM7_EXTENDED for ch in body)
        single, part = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


def make_twilio_client(
    stub: TwilioStub,
    *,
    account_sid: str | None = None,
    auth_token: str | None = None,
    timeout: float = 5.0,
) -> Client:
    """The official client, sending to `stub`; credentials default to the stub's own."""
    return Client(
        account_sid or stub.account_sid,
        auth_token or stub.auth_token,
        http_client=BaseUrlHttpClient(stub.base_url, timeout=timeout),
    )
