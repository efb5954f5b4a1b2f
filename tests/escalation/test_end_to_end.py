"""The whole path with a real Celery worker on Redis: a signed Twilio webhook stores
the SMS, the inbound task (escalation's processing runs in it) scores, matches,
routes and queues the answer, and the outbound task sends it through the official
Twilio client to a loopback stub of Twilio's API. No staff action anywhere."""

import time

import pytest
from celery.signals import task_postrun

from channels_app import inbound_queue
from channels_app.models import Conversation, Interaction, OutboundMessage
from escalation import tasks
from escalation.models import Escalation, EscalationRun, Notification
from tests.channels_app.conftest import sms_params
from tests.factories import make_patient

pytestmark = pytest.mark.usefixtures("blank_configuration")

SMS = "/webhooks/twilio/sms/"
PATIENT_PHONE = "+14155550100"


def wait_for(condition, *, timeout=20.0, what="the worker"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def snapshot(conversation_id, stub):
    conversation = Conversation.objects.get(pk=conversation_id)
    return {
        "interactions": Interaction.objects.count(),
        "escalations": Escalation.objects.count(),
        "notifications": Notification.objects.count(),
        "outbound": OutboundMessage.objects.count(),
        "sent_to_twilio": len(stub.requests),
        "conversation": (
            conversation.team_id,
            conversation.assignee_id,
            conversation.priority,
            conversation.sla_due_at,
            conversation.updated_at,
        ),
    }


def test_chest_pain_sms_ends_urgent_in_clinical_with_one_reply_and_one_escalation(
    celery_worker_real,
    twilio_stub_settings,
    post_twilio,
    sms_account,
    front_desk,
    defaults,
    clinical,
    nurse,
    clinical_supervisor,
):
    make_patient(team=front_desk, given_name="Ada", phones=[PATIENT_PHONE])
    params = sms_params("I have chest pain since this morning", sender=PATIENT_PHONE)

    assert post_twilio(SMS, params).status_code == 200

    reply = wait_for(
        lambda: OutboundMessage.objects.filter(state=OutboundMessage.State.SENT).first(),
        what="the auto-reply to be sent",
    )
    [escalation] = Escalation.objects.all()
    conversation = Conversation.objects.get()
    assert conversation.get_priority_display() == "urgent"
    assert conversation.team == clinical
    assert conversation.assignee == nurse
    assert conversation.escalated
    assert 'matched "chest pain"' in escalation.reason
    assert escalation.to_team == clinical
    [request] = twilio_stub_settings.requests
    assert request.field("To") == PATIENT_PHONE
    assert "call 911" in request.field("Body") and "988" in request.field("Body")
    assert reply.interaction.conversation_id == conversation.pk
    inbound = Interaction.objects.get(direction="inbound")
    assert inbound.sentiment == conversation.sentiment_latest < 0
    assert Notification.objects.get().user == clinical_supervisor
    wait_for(
        lambda: Interaction.objects.filter(pk=inbound.pk, processed_at__isnull=False).exists(),
        what="the inbound worker to mark the message processed",
    )
    before = snapshot(conversation.pk, twilio_stub_settings)

    # The same message again, every way it can come back: a repeated webhook
    # delivery, the message handed over again (as the sweeper hands it over; its
    # drain runs the escalation's processing itself), and the escalation task again
    # (as the drain queues it when that processing failed there).
    ran = []
    both = {"channels_app.tasks.inbound_drain", "escalation.tasks.process_inbound"}

    def record(sender=None, **kwargs):
        ran.append(sender.name)

    task_postrun.connect(record, weak=False)
    try:
        assert post_twilio(SMS, params).status_code == 200
        Interaction.objects.filter(pk=inbound.pk).update(processed_at=None)
        inbound_queue.hand_over([inbound.pk])
        tasks.process_inbound.delay(str(inbound.pk))
        wait_for(
            lambda: both <= set(ran),
            what="the repeated inbound and escalation tasks to run",
        )
    finally:
        task_postrun.disconnect(record)

    assert Interaction.objects.filter(pk=inbound.pk, processed_at__isnull=False).exists()
    assert snapshot(conversation.pk, twilio_stub_settings) == before
    assert EscalationRun.objects.filter(interaction=inbound).count() == 1
