"""A web request right after another on the same connection sends no health-check
probe (CONN_HEALTH_CHECKS' SELECT 1); one after an idle second does, and a
connection the server dropped meanwhile is replaced before the request uses it."""

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection

from contactcenter import connections as recent
from contactcenter.connections import RECENTLY_USED_SECONDS
from tests.factories import backend_pid, terminate_backend

pytestmark = pytest.mark.django_db(transaction=True)


def request_boundary(*, ended, started):
    """What the request signals do between two requests, in their order: Django's
    close_old_connections, then ours, at the given monotonic times."""
    close_old_connections()
    recent.remember_use(now=ended)
    close_old_connections()
    recent.trust_recently_used(now=started)


def test_a_request_right_after_another_is_not_probed_and_an_idle_one_is(monkeypatch):
    connection.ensure_connection()
    monkeypatch.setattr(connection, "close_at", None)  # the tests' CONN_MAX_AGE is 0
    assert connection.health_check_enabled
    first = backend_pid()

    request_boundary(ended=100.0, started=100.0 + RECENTLY_USED_SECONDS / 2)
    assert connection.health_check_done is True
    assert backend_pid() == first

    terminate_backend(first)
    request_boundary(ended=200.0, started=200.0 + RECENTLY_USED_SECONDS * 2)
    assert connection.health_check_done is False
    # The probe finds the connection gone and a new one serves the request.
    assert backend_pid() != first


def test_the_request_receivers_are_connected():
    # After django.db's close_old_connections in production, connected at its import;
    # Django's test client reconnects that one around each request, after ours.
    # Either order is safe: ours only skips a probe Django asked for, and only for a
    # connection still open.
    for signal, ours in (
        (request_started, recent._request_started),
        (request_finished, recent._request_finished),
    ):
        assert ours in [ref() for _key, ref, *_rest in signal.receivers]
