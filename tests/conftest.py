import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client

from contactcenter.celery import app as celery_app


@pytest.fixture
def celery_worker_real(transactional_db):
    """A real Celery worker, in this process, consuming every queue from the real
    Redis broker (with this xdist worker's key prefix). Tests using it commit for
    real (transactional_db), since the worker reads through its own connection."""
    celery_app.conf.task_queues  # noqa: B018 - forces queue declaration
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=10,
        queues=["inbound", "outbound", "reminders", "escalations", "default"],
    ) as worker:
        yield worker


@pytest.fixture
def north(db):
    """Two care teams, for the "member, teammate, outsider" access tests."""
    from tests.factories import TeamFactory

    return TeamFactory(name="North")


@pytest.fixture
def south(db):
    from tests.factories import TeamFactory

    return TeamFactory(name="South")


@pytest.fixture
def api_client_raw():
    """A client that returns 500 responses instead of raising the exception."""
    return Client(raise_request_exception=False)


from tests.stubs.fixtures import (  # noqa: E402, F401
    imap_stub,
    smtp_server,
    smtp_settings,
    twilio_stub,
    twilio_stub_settings,
)
