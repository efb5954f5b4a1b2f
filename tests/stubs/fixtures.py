"""Fixtures for the stubs; tests/conftest.py imports the Twilio ones to make them
suite-wide, test modules import the others where they use them."""

import logging
import socket
import threading
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

import pytest
from aiosmtpd.controller import Controller

from tests.stubs.imap_stub import ImapStub
from tests.stubs.twilio_stub import TwilioStub


@pytest.fixture
def twilio_stub():
    """A fresh Twilio Messages API stub on a free loopback port, stopped after the test."""
    with TwilioStub() as stub:
        yield stub


@pytest.fixture
def twilio_stub_settings(twilio_stub, settings):
    """Django settings pointing production's Twilio client at the stub."""
    settings.TWILIO_API_BASE_URL = twilio_stub.base_url
    settings.TWILIO_ACCOUNT_SID = twilio_stub.account_sid
    settings.TWILIO_AUTH_TOKEN = twilio_stub.auth_token
    return twilio_stub


@pytest.fixture
def imap_stub():
    """A fresh IMAP4rev1 server on a free loopback port (plain TCP); tests add
    users and messages. Stopped after the test."""
    with ImapStub() as stub:
        yield stub


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    def message(self):
        return BytesParser(policy=policy.default).parsebytes(self.data)


class SmtpSink:
    """An aiosmtpd handler that keeps every message it accepts and refuses the
    recipients it was told to, as a mail server does for an unknown mailbox (550)
    or while greylisting (450)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._refused: dict[str, list] = {}
        self._refusals: list[str] = []
        self.host = ""
        self.port = 0

    def refuse(self, address, *, reply="550 5.1.1 Mailbox unavailable", times=None):
        """Answer RCPT TO for `address` with `reply`: always, or the next `times`
        attempts only (a greylisting server refuses the first with a 4xx)."""
        with self._lock:
            self._refused[address.lower()] = [reply, times]

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    @property
    def refusals(self) -> list[str]:
        """Every recipient refused, once per attempt."""
        with self._lock:
            return list(self._refusals)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            refusal = self._refused.get(address.lower())
            if refusal is not None and refusal[1] is not None:
                refusal[1] -= 1
                if refusal[1] < 0:
                    refusal = None
            if refusal is not None:
                self._refusals.append(address)
        if refusal is not None:
            return refusal[0]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        with self._lock:
            self._messages.append(mail)
        return "250 Message accepted for delivery"


def _free_port():
    # aiosmtpd's Controller connects to its port to check that it started, so it
    # cannot be given port 0 and must be handed a free one.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server():
    """A local SMTP server (aiosmtpd) on a free loopback port, stopped after the test.
    Its own protocol log (which names the recipients) is kept quiet: it stands in for
    the world outside, not for our logs."""
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port())
    server_log = logging.getLogger("mail.log")
    previous_level = server_log.level
    server_log.setLevel(logging.WARNING)
    controller.start()
    sink.host, sink.port = controller.hostname, controller.port
    try:
        yield sink
    finally:
        controller.stop()
        server_log.setLevel(previous_level)


@pytest.fixture
def smtp_settings(smtp_server, settings):
    """Django's SMTP backend pointed at the local server, without TLS or login."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_server.host
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 10
    return smtp_server
