"""Inbound messages handed to the worker in batches (channels_app.inbound_queue), on
the real Redis broker of this test run: the drainer slots, the take that gives its
slot back, and the drain task's loop on real messages."""

import os
import subprocess
import sys

import pytest
from celery.signals import before_task_publish
from django.conf import settings

from channels_app import inbound_queue, tasks
from channels_app.models import Interaction
from escalation.models import EscalationRun
from tests.channels_app.isolated import publishing_to
from tests.escalation.conftest import blank_configuration, receive  # noqa: F401 - a fixture

DRAIN = "channels_app.tasks.inbound_drain"
INBOUND = "channels_app.tasks.inbound_process"


@pytest.fixture
def published():
    """(task name, arguments) of every task published during the test; the ones
    left on this run's queue are removed after it."""
    names = []

    def record(sender=None, body=None, **kwargs):
        names.append((sender, body[0] if body else None))

    before_task_publish.connect(record, weak=False)
    yield names
    before_task_publish.disconnect(record)
    if inbound_queue.uses_list():
        inbound_queue.client().connection.delete(settings.TEST_RUN_PREFIX + "inbound")


def pending():
    return [
        i.decode()
        for i in inbound_queue.client().connection.lrange(inbound_queue.list_key(), 0, -1)
    ]


def test_each_push_starts_a_drainer_until_every_slot_is_taken(published, settings):
    settings.INBOUND_DRAINERS = 3

    for n in range(5):
        inbound_queue.hand_over([f"id-{n}"])

    assert published == [(DRAIN, [1]), (DRAIN, [2]), (DRAIN, [3])]
    assert pending() == [f"id-{n}" for n in range(5)]


def test_a_take_renews_its_slot_and_an_empty_one_gives_it_back(published, settings):
    settings.INBOUND_DRAINERS = 1
    inbound_queue.hand_over([f"id-{n}" for n in range(inbound_queue.BATCH + 3)])
    redis = inbound_queue.client().connection
    redis.expire(inbound_queue.slot_key(1), 5)

    first = inbound_queue.take(1)
    assert first == [f"id-{n}" for n in range(inbound_queue.BATCH)]
    assert redis.ttl(inbound_queue.slot_key(1)) > 5
    # The only slot is held: a message now is left to the running drainer.
    inbound_queue.hand_over(["later"])
    assert published == [(DRAIN, [1])]

    assert inbound_queue.take(1) == [
        f"id-{n}" for n in range(inbound_queue.BATCH, inbound_queue.BATCH + 3)
    ] + ["later"]
    assert inbound_queue.take(1) == []
    assert not redis.exists(inbound_queue.slot_key(1))
    # The slot was given back with the list empty: the next message starts a drainer.
    inbound_queue.hand_over(["next"])
    assert published == [(DRAIN, [1]), (DRAIN, [1])]


@pytest.mark.usefixtures("blank_configuration")
def test_a_drain_processes_every_message_on_the_list_and_skips_a_failing_one(
    published, front_desk, caplog, monkeypatch
):
    # A process's first message loads the models; on a busy machine that alone can
    # pass the drain's two seconds, and a successor would take what is left.
    monkeypatch.setattr(inbound_queue, "DRAIN_SECONDS", 60)
    messages = [
        receive(front_desk, f"Can I move my appointment to {day}?", address=f"+1415555011{n}")
        for n, day in enumerate(["Monday", "Tuesday", "Wednesday"])
    ]
    # Not an id at all: its processing fails, and the batch goes on.
    inbound_queue.hand_over([messages[0].pk, "not-a-uuid", *(m.pk for m in messages[1:])])

    tasks.inbound_drain.run(1)

    assert (
        Interaction.objects.filter(
            pk__in=[m.pk for m in messages], processed_at__isnull=False
        ).count()
        == 3
    )
    assert EscalationRun.objects.filter(interaction__in=messages).count() == 3
    assert pending() == []
    assert not inbound_queue.client().connection.exists(inbound_queue.slot_key(1))
    failed = [r for r in caplog.records if "inbound_processing_failed_in_drain" in r.getMessage()]
    assert len(failed) == 1
    assert "not-a-uuid" in failed[0].getMessage()
    # The drain finished within its time: it queued no successor.
    assert [name for name, _args in published] == [DRAIN]


@pytest.mark.usefixtures("blank_configuration")
def test_a_drain_past_its_time_queues_its_successor_on_the_same_slot(
    published, front_desk, monkeypatch
):
    message = receive(front_desk, "Is the clinic open on Saturday?")
    inbound_queue.hand_over([message.pk])
    monkeypatch.setattr(inbound_queue, "DRAIN_SECONDS", 0)

    tasks.inbound_drain.run(2)

    # Nothing was taken: the successor, on slot 2, will.
    assert pending() == [str(message.pk)]
    assert published[-1] == (DRAIN, [2])
    assert Interaction.objects.get(pk=message.pk).processed_at is None


def test_on_another_broker_each_message_is_a_task_of_its_own(published):
    with publishing_to("memory://"):
        assert not inbound_queue.uses_list()
        inbound_queue.hand_over(["a", "b"])

    assert published == [(INBOUND, ["a"]), (INBOUND, ["b"])]


def test_redis_unreachable_hands_nothing_over_and_raises_nothing(published):
    with publishing_to("redis://127.0.0.1:1/0"):
        inbound_queue.hand_over(["a"])

    assert published == []


def test_no_drainer_at_all_is_refused_at_start():
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "INBOUND_DRAINERS": "0",
        },
        capture_output=True,
        text=True,
        check=False,
    )

    assert started.returncode != 0
    assert "INBOUND_DRAINERS must be at least 1." in started.stderr
