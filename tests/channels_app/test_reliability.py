"""The reliability model with real processes: a Redis outage during a webhook, a
worker SIGKILLed mid-send, and two workers given the same delivery. Workers are
`celery worker` subprocesses on a private Redis (tests/channels_app/isolated.py);
the provider is the loopback Twilio stub. What must hold: the request succeeds,
nothing is lost, nothing is sent twice."""

import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app import inbound_queue
from channels_app.models import Interaction, OutboundMessage
from channels_app.services import conversation_open, outbound_claim, outbound_create
from channels_app.tasks import outbound_send, sweep_channels
from config.celery import app as celery_app
from escalation.models import EscalationRun
from patients.models import Channel
from tests.channels_app import isolated
from tests.channels_app.conftest import sms_params
from tests.channels_app.isolated import VISIBILITY_TIMEOUT_SECONDS, wait_for

# The fixtures of isolated.py this module uses (they start processes, so they are
# not suite-wide).
private_redis = isolated.private_redis
private_broker = isolated.private_broker
start_worker = isolated.start_worker

pytestmark = pytest.mark.django_db(transaction=True)

SMS = "/webhooks/twilio/sms/"
# Inbound messages stored before a worker is killed while draining them.
BACKLOG = 150
STATUS = "/webhooks/twilio/sms/status/"
SEND = "channels_app.tasks.outbound_send"
PATIENT_NUMBER = "+14155550100"


@pytest.fixture
def conversation(sms_account, front_desk):
    return conversation_open(
        channel=Channel.SMS, team=front_desk, account=sms_account, contact_address=PATIENT_NUMBER
    )


def _state(outbound):
    outbound.refresh_from_db()
    return outbound.state


def _sent(outbound):
    """Sent, with the provider's sid on the delivery and on its interaction. The
    worker writes the two in separate statements, so a reader waits for both."""
    return (
        _state(outbound) == OutboundMessage.State.SENT
        and outbound.provider_id != ""
        and Interaction.objects.filter(
            pk=outbound.interaction_id, provider_id=outbound.provider_id
        ).exists()
    )


def _age(queryset, field, seconds):
    """Move a timestamp into the past, as if the row had waited that long."""
    queryset.update(**{field: timezone.now() - timedelta(seconds=seconds)})


def _wait_past_visibility_timeout(broker):
    """Sleep until every unacknowledged message is older than the visibility
    timeout, so a worker starting now restores it (kombu restores at start-up,
    then only every few minutes)."""
    [(_tag, delivered_at)] = broker.unacked()
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT_SECONDS + 0.5 - time.time()))


def test_inbound_sms_while_redis_is_down_is_stored_and_processed_after_the_sweep(
    private_broker, start_worker, post_twilio, sms_account, settings
):
    private_broker.stop()

    started = time.monotonic()
    response = post_twilio(SMS, sms_params("Is the clinic open?", sid="SM" + uuid.uuid4().hex))
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    # The publish failed fast instead of holding the webhook (Twilio gives up at 15 s).
    assert elapsed < 3, f"the webhook waited {elapsed:.1f} s on the dead broker"
    # The log line is not asserted: in a parallel run another test's logging set-up
    # can swallow it. The webhook's speed above and the sweep below are the proof.
    assert celery_app.conf.broker_url == private_broker.url
    interaction = Interaction.objects.get()
    assert interaction.processed_at is None
    assert interaction.raw_events.count() == 1

    private_broker.start()
    worker = start_worker("inbound")
    _age(Interaction.objects.all(), "created_at", settings.SWEEPER_GRACE_SECONDS + 1)
    sweep_channels()

    wait_for(
        lambda: Interaction.objects.filter(pk=interaction.pk, processed_at__isnull=False).exists(),
        timeout=15,
        what="the worker to process the swept interaction",
    )
    # The sweep handed it over: a drain task took it off the list, no task of its own.
    assert set(worker.tasks_run()) == {"channels_app.tasks.inbound_drain"}


def test_a_worker_killed_with_inbound_messages_in_hand_leaves_them_to_the_sweeper(
    private_broker, start_worker, post_twilio, sms_account, settings
):
    # Stored while no worker runs: their ids wait on the list (channels_app.inbound_queue).
    for n in range(BACKLOG):
        sid = "SM" + uuid.uuid4().hex
        assert post_twilio(SMS, sms_params(f"Question {n}", sid=sid)).status_code == 200
    inbound = Interaction.objects.filter(direction=Interaction.Direction.INBOUND)
    # Not waited for: ready, it may have drained them all.
    doomed = start_worker("doomed", ready=False)
    wait_for(
        lambda: inbound.filter(processed_at__isnull=False).exists(),
        timeout=20,
        interval=0.01,
        what="the worker to be draining",
    )
    doomed.kill()
    left = inbound.filter(processed_at__isnull=True).count()
    assert left > 0, "the worker finished before it was killed: the test proves nothing"

    # As if the dead drainer's slot had expired and the sweeper's grace had passed.
    private_broker.client().delete(
        *(inbound_queue.slot_key(n) for n in range(1, settings.INBOUND_DRAINERS + 1))
    )
    _age(inbound, "created_at", settings.SWEEPER_GRACE_SECONDS + 1)
    sweep_channels()
    start_worker("successor")

    wait_for(
        lambda: not inbound.filter(processed_at__isnull=True).exists(),
        timeout=30,
        what="the swept messages to be processed",
    )
    # None lost, none processed twice: one escalation run per message.
    runs = EscalationRun.objects.filter(interaction__in=inbound, stage="text")
    assert runs.count() == inbound.count() == BACKLOG
    assert runs.values("interaction").distinct().count() == BACKLOG


def test_worker_killed_while_the_provider_accepts_settles_by_callback_and_never_resends(
    private_broker, start_worker, twilio_stub_settings, conversation, agent, post_twilio
):
    stub = twilio_stub_settings
    # The provider accepts the message but holds its answer: the worker dies before
    # it learns the message sid, so only the status callback can tell.
    stub.delay_next(10)
    doomed = start_worker("doomed")

    outbound = outbound_create(
        conversation=conversation, body="See you at 9", author=agent
    ).outbound
    [message] = wait_for(lambda: stub.created_messages, timeout=15, what="the send to reach Twilio")
    doomed.kill()

    assert _state(outbound) == OutboundMessage.State.SENDING
    assert outbound.provider_id == ""
    callback = post_twilio(
        f"{STATUS}?outbound={outbound.pk}",
        {"MessageSid": message["sid"], "MessageStatus": "sent", "AccountSid": stub.account_sid},
    )
    assert callback.status_code == 204
    assert _state(outbound) == OutboundMessage.State.SENT
    assert outbound.provider_id == message["sid"]

    # The dead worker's task was never acknowledged: Redis hands it to the next
    # worker once the visibility timeout has passed. It must find nothing to send.
    _wait_past_visibility_timeout(private_broker)
    successor = start_worker("successor")
    wait_for(private_broker.drained, timeout=15, what="the redelivered task to be acknowledged")
    assert successor.tasks_run() == {SEND: 1}
    # Old enough for every window of the sweeper: a settled delivery is still left alone.
    _age(OutboundMessage.objects.filter(pk=outbound.pk), "updated_at", 3600)
    sweep_channels()
    assert private_broker.drained()

    # No duplicate, no loss: one request reached the provider, one message exists,
    # and the record says sent with the provider's sid after a single attempt.
    assert len(stub.requests) == 1
    assert len(stub.created_messages) == 1
    assert _state(outbound) == OutboundMessage.State.SENT
    assert (outbound.provider_id, outbound.attempts) == (message["sid"], 1)


def test_worker_lost_after_claiming_before_the_provider_is_requeued_by_the_sweeper(
    private_broker, start_worker, twilio_stub_settings, conversation, agent, settings
):
    stub = twilio_stub_settings
    outbound = outbound_create(
        conversation=conversation, body="Bring your card", author=agent
    ).outbound
    # What a worker does before it calls the provider, then dies without a trace.
    assert outbound_claim(outbound_id=outbound.pk) is not None
    _age(
        OutboundMessage.objects.filter(pk=outbound.pk),
        "updated_at",
        settings.OUTBOUND_SENDING_STALE_SECONDS + 1,
    )

    # The task published at commit reaches a live worker, which must not send a
    # delivery that is claimed ("sending") by someone else.
    worker = start_worker("survivor")
    wait_for(private_broker.drained, timeout=15, what="the first task to be consumed")
    assert worker.tasks_run() == {SEND: 1}
    assert stub.requests == []
    assert _state(outbound) == OutboundMessage.State.SENDING

    sweep_channels()

    wait_for(lambda: _sent(outbound), timeout=15, what="the requeued delivery to be sent")
    # No duplicate, no loss: exactly one message at the provider, recorded as sent
    # with its sid, after the lost attempt and the one that went out.
    assert len(stub.requests) == 1
    [message] = stub.created_messages
    assert message["to"] == PATIENT_NUMBER
    assert (outbound.provider_id, outbound.attempts) == (message["sid"], 2)
    assert Interaction.objects.get(pk=outbound.interaction_id).provider_id == message["sid"]


def test_two_workers_given_the_same_delivery_send_it_once(
    private_broker, start_worker, twilio_stub_settings, conversation, agent
):
    stub = twilio_stub_settings
    # The provider is slow, so the second worker tries while the first is mid-send.
    stub.delay_next(1.5)
    workers = [start_worker("twin", ready=False) for _ in range(2)]
    for worker in workers:
        worker.wait_ready()

    outbound = outbound_create(conversation=conversation, body="Twice?", author=agent).outbound
    outbound_send.apply_async(args=[str(outbound.pk)])

    wait_for(
        lambda: _sent(outbound) and private_broker.drained(),
        timeout=15,
        what="the delivery to be sent and both tasks acknowledged",
    )
    # Each worker took one of the two tasks; the conditional claim let one send.
    assert [worker.tasks_run() for worker in workers] == [{SEND: 1}, {SEND: 1}]
    assert len(stub.requests) == 1
    assert len(stub.created_messages) == 1
    assert outbound.attempts == 1


def _sessions():
    """(pid, backend_start) of the other sessions on this test database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return set(cursor.fetchall())


def test_a_worker_keeps_its_database_connection_between_tasks(
    private_broker, start_worker, post_twilio, sms_account
):
    # Celery's Django fixup closes every connection before and after each task unless
    # CELERY_DB_REUSE_MAX is set: a new PostgreSQL session per message. With it, the
    # worker follows CONN_MAX_AGE as a web process does (tests' workers set 0).
    before = _sessions()
    worker = start_worker("inbound", DATABASE_CONN_MAX_AGE="60")
    sids = ["SM" + uuid.uuid4().hex for _ in range(4)]
    post_twilio(SMS, sms_params("Is the clinic open?", sid=sids[0]))
    wait_for(
        lambda: Interaction.objects.filter(processed_at__isnull=False).count() == 1,
        timeout=15,
        what="the first message to be processed",
    )
    workers_session = _sessions() - before
    assert len(workers_session) == 1, workers_session

    for sid in sids[1:]:
        post_twilio(SMS, sms_params("And on Saturday?", sid=sid))
    wait_for(
        lambda: Interaction.objects.filter(processed_at__isnull=False).count() == len(sids),
        timeout=15,
        what="every message to be processed",
    )

    # The same session (pid and start time) served the three later messages.
    assert workers_session <= _sessions()
    assert set(worker.tasks_run()) == {"channels_app.tasks.inbound_drain"}


def test_a_task_right_after_another_sends_no_probe_and_an_idle_connection_is_probed(monkeypatch):
    # CONN_HEALTH_CHECKS sends a SELECT 1 before a task's first statement: a round trip
    # on every message of a burst. A connection that ended a task within the last
    # second is taken as it is; one idle for longer is probed as a request's is, and
    # one the server dropped meanwhile is replaced before the task uses it.
    from django.db import connection

    from config import celery as celery_config
    from contactcenter.connections import RECENTLY_USED_SECONDS
    from tests.factories import backend_pid, terminate_backend

    connection.ensure_connection()
    monkeypatch.setattr(connection, "close_at", None)  # the tests' CONN_MAX_AGE is 0
    assert connection.health_check_enabled

    first = backend_pid()
    celery_config.database_after_task(now=100.0)
    celery_config.database_before_task(now=100.0 + RECENTLY_USED_SECONDS / 2)
    assert connection.health_check_done is True
    assert backend_pid() == first

    celery_config.database_after_task(now=200.0)
    terminate_backend(first)
    celery_config.database_before_task(now=200.0 + RECENTLY_USED_SECONDS * 2)
    assert connection.health_check_done is False
    # The probe finds the connection gone and a new one serves the task.
    assert backend_pid() != first
