"""Understanding through the real path: a signed Twilio webhook stores the SMS, a
real Celery worker runs the escalation processing (rules first), then the intent
decision acts: routing by intent, automated answers (sent through the official
Twilio client to a loopback stub), AGENT hand-offs and the refill intake."""

import pytest
from django.db import connection

from channels_app.models import Conversation, Interaction, OutboundMessage
from escalation.models import Escalation
from tests.channels_app.conftest import sms_params
from tests.escalation.test_end_to_end import wait_for
from tests.understanding.conftest import HOURS_EN, HOURS_ES
from understanding.models import IntentDecision, RefillRequest, SelfServiceResolution

pytestmark = pytest.mark.usefixtures("blank_configuration")

SMS = "/webhooks/twilio/sms/"
PHONE = "+14155550100"


def text(post_twilio, body, n):
    response = post_twilio(SMS, sms_params(body, sid=f"SM{n:032d}", sender=PHONE))
    assert response.status_code == 200


def decided(n=1):
    def check():
        rows = list(IntentDecision.objects.exclude(action="").order_by("created_at"))
        return rows if len(rows) >= n else None

    return check


def events(conversation):
    return [
        event.body
        for event in Interaction.objects.filter(
            conversation=conversation, kind=Interaction.Kind.EVENT
        ).order_by("occurred_at", "id")
    ]


def test_billing_text_is_routed_to_billing_with_its_reason(
    celery_worker_real, post_twilio, sms_account, front_desk, desk_agent, routes, billing, biller
):
    text(post_twilio, "my bill is wrong, insurance was charged twice", 1)

    [decision] = wait_for(decided(), what="the intent decision")
    conversation = Conversation.objects.get()
    assert decision.intent == "billing"
    assert decision.action == IntentDecision.Action.ROUTED
    assert conversation.team == billing
    assert conversation.assignee == biller
    reason = next(body for body in events(conversation) if body.startswith("routed to Billing"))
    assert reason == (
        f"routed to Billing: intent billing, {decision.confidence:.2f}, "
        "words: bill, insurance, charged"
    )
    assert decision.explanation == ["bill", "insurance", "charged"]
    assert decision.action_reason == reason
    # The words quote the message: stored encrypted, like it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT explanation, action_reason FROM understanding_intentdecision")
        stored = " ".join(cursor.fetchone())
    assert "insurance" not in stored
    assert OutboundMessage.objects.count() == 0


def test_saturday_question_is_answered_automatically_and_agent_hands_it_to_a_person(
    celery_worker_real,
    twilio_stub_settings,
    post_twilio,
    sms_account,
    front_desk,
    desk_agent,
    answers,
):
    text(post_twilio, "what time do you open on Saturday", 1)

    reply = wait_for(
        lambda: OutboundMessage.objects.filter(state=OutboundMessage.State.SENT).first(),
        what="the automated answer to be sent",
    )
    [request] = twilio_stub_settings.requests
    assert request.field("To") == PHONE
    assert request.field("Body") == (
        f"{HOURS_EN}\nReply AGENT to reach a person, or call +1 415 555 0100."
    )
    assert reply.interaction.metadata["automated"] is True
    first = Conversation.objects.get()
    assert first.status == Conversation.Status.RESOLVED
    [resolution] = SelfServiceResolution.objects.all()
    assert resolution.came_back_at is None

    text(post_twilio, "agent", 2)

    wait_for(decided(2), what="the hand-off")
    second = Conversation.objects.exclude(pk=first.pk).get()
    assert second.assignee == desk_agent
    assert second.status == Conversation.Status.OPEN
    [handoff] = [body for body in events(second) if body.startswith("handed to")]
    assert "asked for a person" in handoff
    assert "after an automated answer" in handoff
    resolution.refresh_from_db()
    assert resolution.came_back_at is not None
    # The automated answer, then the hand-off's confirmation, and nothing else.
    wait_for(lambda: len(twilio_stub_settings.requests) == 2, what="the confirmation")
    assert twilio_stub_settings.requests[1].field("Body") == (
        "Thank you. A person from our team will answer you here shortly."
    )
    assert OutboundMessage.objects.count() == 2


def test_the_spanish_question_is_answered_in_spanish(
    celery_worker_real, twilio_stub_settings, post_twilio, sms_account, front_desk, answers
):
    text(post_twilio, "hola, a qué hora abren el sábado?", 1)

    wait_for(
        lambda: OutboundMessage.objects.filter(state=OutboundMessage.State.SENT).exists(),
        what="the automated answer",
    )
    [request] = twilio_stub_settings.requests
    assert request.field("Body") == (
        f"{HOURS_ES}\nResponda AGENTE para hablar con una persona, o llame al +1 415 555 0100."
    )
    conversation = Conversation.objects.get()
    assert conversation.language == "es"
    assert IntentDecision.objects.get().language == "es"

    # AGENTE: the hand-off is confirmed in the conversation's language.
    text(post_twilio, "AGENTE", 2)
    wait_for(lambda: len(twilio_stub_settings.requests) == 2, what="the confirmation")
    assert twilio_stub_settings.requests[1].field("Body") == (
        "Gracias. Una persona de nuestro equipo le responderá aquí en breve."
    )


def test_a_patient_without_a_language_takes_the_one_they_write_in(
    celery_worker_real, twilio_stub_settings, post_twilio, sms_account, front_desk, answers
):
    from compliance.models import AuditEvent
    from patients.models import Patient
    from tests.factories import make_patient

    given = make_patient(team=front_desk, phones=(PHONE,), mrn="MRN-ES-1")
    assert given.preferred_language_source == ""  # none given: the default "en"
    text(post_twilio, "hola, a qué hora abren el sábado?", 1)
    wait_for(decided(1), what="the decision")
    given.refresh_from_db()
    assert (given.preferred_language, given.preferred_language_source) == ("es", "detected")
    row = AuditEvent.objects.get(
        resource_type="patient", details__change="preferred_language_detected"
    )
    assert row.patient_ids == [str(given.pk)]

    # A language someone gave is kept, whatever the patient writes in.
    Patient.objects.filter(pk=given.pk).update(
        preferred_language="en", preferred_language_source="record"
    )
    Conversation.objects.update(language="")
    text(post_twilio, "hola, necesito información sobre el estacionamiento por favor", 2)
    wait_for(decided(2), what="the second decision")
    given.refresh_from_db()
    assert (given.preferred_language, given.preferred_language_source) == ("en", "record")


def test_the_emergency_auto_reply_goes_out_in_spanish(
    celery_worker_real, twilio_stub_settings, post_twilio, sms_account, front_desk, clinical
):
    from escalation.models import EscalationRule

    EscalationRule.objects.create(
        name="Emergencia",
        order=5,
        conditions={"phrases": ["dolor de pecho"]},
        actions={
            "set_priority": "urgent",
            "auto_reply_template": (
                "Hi $first_name, this is $practice_name. If this is a medical emergency, "
                "call 911 now. If you are thinking about suicide or are in crisis, call or "
                "text 988 (Suicide & Crisis Lifeline). Our clinical team has been alerted "
                "and will contact you."
            ),
        },
    )
    text(post_twilio, "tengo mucho dolor de pecho y no puedo respirar bien", 1)
    wait_for(lambda: twilio_stub_settings.requests, what="the auto-reply")
    body = twilio_stub_settings.requests[0].field("Body")
    assert body.startswith("Hola estimado/a paciente, le escribe ")
    assert "llame al 911" in body


def test_a_distressed_message_is_never_answered_automatically(
    celery_worker_real, post_twilio, sms_account, front_desk, desk_agent, answers
):
    text(
        post_twilio,
        "I feel hopeless and scared, I cannot go on like this. What time do you open on Saturday?",
        1,
    )

    [decision] = wait_for(decided(), what="the intent decision")
    assert decision.intent == "general_info"
    assert decision.action == IntentDecision.Action.HELD
    assert "distressed" in decision.action_reason
    assert OutboundMessage.objects.count() == 0
    conversation = Conversation.objects.get()
    assert conversation.status == Conversation.Status.OPEN
    assert conversation.assignee == desk_agent


def test_an_escalation_rule_keeps_priority_over_intent_handling(
    celery_worker_real, post_twilio, sms_account, front_desk, defaults, clinical, nurse, answers
):
    text(post_twilio, "I have chest pain, what time do you open?", 1)

    [decision] = wait_for(decided(), what="the intent decision")
    assert decision.action == IntentDecision.Action.HELD
    assert Escalation.objects.count() == 1
    assert Conversation.objects.get().team == clinical
    # The only message sent is the escalation rule's own auto-reply.
    [outbound] = OutboundMessage.objects.all()
    assert "self_service" not in outbound.interaction.metadata


def test_a_refill_dialog_ends_in_one_structured_request_with_the_clinical_team(
    celery_worker_real,
    twilio_stub_settings,
    post_twilio,
    sms_account,
    front_desk,
    clinical,
    nurse,
):
    text(post_twilio, "I need a refill of my blood pressure pills", 1)
    wait_for(lambda: len(twilio_stub_settings.requests) == 1, what="the first question")
    assert twilio_stub_settings.requests[0].field("Body") == (
        "Which medication do you need refilled?"
    )

    text(post_twilio, "lisinopril 10 mg", 2)
    wait_for(lambda: len(twilio_stub_settings.requests) == 2, what="the second question")
    assert twilio_stub_settings.requests[1].field("Body") == "Which pharmacy should we send it to?"

    text(post_twilio, "CVS on Main Street", 3)
    wait_for(decided(3), what="the request")
    [dialog] = RefillRequest.objects.all()
    assert dialog.state == RefillRequest.State.REQUESTED
    assert dialog.details["medication"] == "lisinopril 10 mg"
    assert dialog.details["pharmacy"] == "CVS on Main Street"
    conversation = Conversation.objects.get()
    assert conversation.team == clinical
    assert conversation.assignee == nurse
    [request] = [body for body in events(conversation) if body.startswith("Refill request")]
    assert "Medication: lisinopril 10 mg" in request
    assert "Pharmacy: CVS on Main Street" in request
    wait_for(lambda: len(twilio_stub_settings.requests) == 3, what="the acknowledgement")


def test_a_refill_dialog_answered_with_something_else_goes_to_a_person(
    celery_worker_real, post_twilio, sms_account, front_desk, desk_agent
):
    text(post_twilio, "can you refill my metformin", 1)
    wait_for(decided(1), what="the first question")

    text(post_twilio, "where is your office?", 2)

    [_first, second] = wait_for(decided(2), what="the hand-off")
    assert second.action == IntentDecision.Action.HANDED_OFF
    assert RefillRequest.objects.get().state == RefillRequest.State.HANDED_OFF
    assert Conversation.objects.get().assignee == desk_agent
