import time
import uuid

import pytest
from django.core.cache import cache
from django.db import transaction

from contactcenter.tasks import PROBE_KEY, record_probe


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _ran(token):
    return cache.get(PROBE_KEY.format(token=token)) == "done"


def test_liveness(client):
    response = client.get("/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_task_queued_on_commit_runs_and_rolled_back_one_never_does(celery_worker_real):
    committed, rolled_back, sentinel = (uuid.uuid4().hex for _ in range(3))

    with transaction.atomic():
        record_probe.delay_on_commit(committed)
    with pytest.raises(RuntimeError), transaction.atomic():
        record_probe.delay_on_commit(rolled_back)
        raise RuntimeError("roll back")
    # Queued after the rolled-back one: once it has run, the other would have too.
    record_probe.delay_on_commit(sentinel)

    assert _wait_for(lambda: _ran(committed))
    assert _wait_for(lambda: _ran(sentinel))
    assert not _ran(rolled_back)


def test_readiness_ok_with_database_broker_and_worker(client, celery_worker_real):
    response = client.get("/health/ready/")

    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "worker": "ok"}


@pytest.mark.django_db
def test_readiness_names_the_worker_when_none_answers(client):
    response = client.get("/health/ready/")

    assert response.status_code == 503
    assert response["Retry-After"]
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.json()["error"]["details"]["failed"] == ["worker"]


@pytest.mark.django_db
def test_readiness_names_the_broker_when_it_is_down(client, settings):
    from config.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/health/ready/")
    finally:
        app.conf.broker_url = original

    assert response.status_code == 503
    assert response.json()["error"]["details"]["failed"] == ["broker"]
