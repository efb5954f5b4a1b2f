import threading
import uuid

import pytest
from django.db import connection

from channels_app.models import Conversation, Interaction, OutboundMessage, RawEvent
from channels_app.services import outbound_apply_status, outbound_create
from compliance.models import AuditEvent
from patients.models import ContactPoint
from tests.channels_app.conftest import PRACTICE_NUMBER, sms_params, twilio_signed
from tests.factories import make_patient

pytestmark = pytest.mark.django_db

SMS = "/webhooks/twilio/sms/"
STATUS = "/webhooks/twilio/sms/status/"


def new_sid():
    return "SM" + uuid.uuid4().hex


def test_signed_inbound_sms_is_stored_and_matched_to_the_one_patient(
    post_twilio, sms_account, front_desk
):
    patient = make_patient(team=front_desk, phones=["(415) 555-0100"])

    response = post_twilio(SMS, sms_params("Can I move my appointment?"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    interaction = Interaction.objects.get()
    assert interaction.body == "Can I move my appointment?"
    assert interaction.patient_id == patient.pk
    assert interaction.conversation.patient_id == patient.pk
    assert interaction.conversation.account_id == sms_account.pk
    assert RawEvent.objects.filter(interaction=interaction, source="twilio_sms").exists()


@pytest.mark.parametrize(
    "tamper",
    ["changed_param", "changed_url", "wrong_token", "missing"],
)
def test_bad_signature_is_403_in_error_shape_with_an_audit_row(client, sms_account, tamper):
    params = sms_params("hello")
    if tamper == "wrong_token":
        headers = twilio_signed(SMS, params, token="not-the-token")
    elif tamper == "changed_url":
        headers = twilio_signed(SMS, params, base_url="https://evil.example")
    elif tamper == "missing":
        headers = {}
    else:
        headers = twilio_signed(SMS, params)
        params = {**params, "Body": "hello, changed"}

    response = client.post(SMS, params, **headers)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    assert not Interaction.objects.exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.outcome) == ("denied", "denied")
    assert event.details == {"reason": "bad_signature", "webhook": "twilio_sms"}


def test_shared_family_number_leaves_the_conversation_unmatched(
    post_twilio, sms_account, front_desk
):
    make_patient(team=front_desk, phones=["+14155550100"])
    make_patient(team=front_desk, phones=["+14155550100"])

    post_twilio(SMS, sms_params("Who am I?"))

    conversation = Conversation.objects.get()
    assert conversation.patient_id is None
    assert conversation.team_id == sms_account.team_id


def test_next_message_joins_the_open_conversation_and_a_resolved_one_is_not_reused(
    post_twilio, sms_account
):
    post_twilio(SMS, sms_params("first", sid=new_sid()))
    post_twilio(SMS, sms_params("second", sid=new_sid()))
    Conversation.objects.update(status=Conversation.Status.RESOLVED)
    post_twilio(SMS, sms_params("third", sid=new_sid()))

    assert Conversation.objects.count() == 2
    first, second = Conversation.objects.order_by("created_at")
    assert first.interactions.count() == 2
    assert second.interactions.count() == 1


def test_the_same_message_delivered_twice_is_stored_once(post_twilio, sms_account):
    params = sms_params("only once", sid=new_sid())

    responses = [post_twilio(SMS, params) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert Interaction.objects.count() == 1
    assert RawEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_deliveries_from_eight_threads_yield_one_interaction(sms_account):
    from django.test import Client

    params = sms_params("racing", sid=new_sid())
    headers = twilio_signed(SMS, params)
    statuses, errors = [], []
    barrier = threading.Barrier(8)

    def deliver(times):
        try:
            barrier.wait()
            client = Client()
            for _ in range(times):
                statuses.append(client.post(SMS, params, **headers).status_code)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(3 if i < 4 else 2,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(statuses) == 20
    assert set(statuses) == {200}
    assert Interaction.objects.count() == 1
    assert Conversation.objects.count() == 1


@pytest.mark.parametrize("keyword", ["STOP", "stop", " Opt  Out ", "Unsubscribe", "CANCEL"])
def test_opt_out_keyword_opts_out_every_patient_on_the_number(
    post_twilio, sms_account, front_desk, keyword
):
    make_patient(team=front_desk, phones=["+14155550100"])
    make_patient(team=front_desk, phones=["415 555 0100"])

    post_twilio(SMS, sms_params(keyword, sid=new_sid()))

    assert ContactPoint.objects.filter(sms_opted_out=True).count() == 2
    assert AuditEvent.objects.filter(resource_type="sms_consent").exists()


def test_a_sentence_containing_stop_is_not_an_opt_out(post_twilio, sms_account, front_desk):
    make_patient(team=front_desk, phones=["+14155550100"])

    post_twilio(SMS, sms_params("please stop calling me at work", sid=new_sid()))

    assert not ContactPoint.objects.filter(sms_opted_out=True).exists()


def test_stop_then_staff_reply_fails_as_opted_out_and_start_re_enables(
    post_twilio, sms_account, front_desk, agent
):
    make_patient(team=front_desk, phones=["+14155550100"])
    post_twilio(SMS, sms_params("STOP", sid=new_sid()))
    conversation = Conversation.objects.get()

    refused = outbound_create(conversation=conversation, body="Your results are in", author=agent)
    post_twilio(SMS, sms_params("START", sid=new_sid()))
    allowed = outbound_create(conversation=conversation, body="Your results are in", author=agent)

    assert refused.outbound.state == OutboundMessage.State.FAILED
    assert refused.outbound.last_error == "opted out"
    assert allowed.outbound.state == OutboundMessage.State.QUEUED


def test_help_answers_with_the_practice_help_text(post_twilio, sms_account):
    response = post_twilio(SMS, sms_params("help", sid=new_sid()))

    assert "Demo Practice: call 555-0100" in response.content.decode()
    reply = Interaction.objects.get(direction="outbound")
    assert reply.outbound.state == OutboundMessage.State.SENT


def test_message_to_an_unknown_practice_number_is_kept_unrouted(post_twilio, sms_account):
    response = post_twilio(SMS, sms_params("hello", to="+15005550001"))

    assert response.status_code == 200
    assert not Interaction.objects.exists()
    assert RawEvent.objects.get().source == "twilio_sms_unrouted"


def _status(post_twilio, outbound, status, sid="SMabc"):
    return post_twilio(
        f"{STATUS}?outbound={outbound.pk}",
        {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC0"},
    )


def test_status_callbacks_only_move_the_delivery_forward(post_twilio, sms_account, agent):
    post_twilio(SMS, sms_params("hi", sid=new_sid()))
    interaction = outbound_create(
        conversation=Conversation.objects.get(), body="Hello", author=agent
    )
    outbound = interaction.outbound

    states = []
    for status in ("sent", "delivered", "sent", "queued", "failed"):
        assert _status(post_twilio, outbound, status).status_code == 204
        outbound.refresh_from_db()
        states.append(outbound.state)

    assert states == ["sent", "delivered", "delivered", "delivered", "delivered"]
    assert outbound.provider_id == "SMabc"


def test_status_callback_with_a_bad_signature_is_refused(client, sms_account):
    response = client.post(
        STATUS, {"MessageSid": "SM1", "MessageStatus": "delivered"}, HTTP_X_TWILIO_SIGNATURE="bogus"
    )

    assert response.status_code == 403


def test_undelivered_is_final(sms_account, agent, post_twilio):
    post_twilio(SMS, sms_params("hi", sid=new_sid()))
    outbound = outbound_create(
        conversation=Conversation.objects.get(), body="Hello", author=agent
    ).outbound

    outbound_apply_status(outbound_id=outbound.pk, provider_id="SM1", provider_status="undelivered")
    outbound_apply_status(outbound_id=outbound.pk, provider_id="SM1", provider_status="delivered")

    outbound.refresh_from_db()
    assert outbound.state == OutboundMessage.State.UNDELIVERABLE


def test_practice_number_is_matched_in_any_format(post_twilio, sms_account):
    post_twilio(SMS, sms_params("hi", to="15005550006"))

    assert Interaction.objects.get().conversation.account_id == sms_account.pk
    assert sms_account.address == PRACTICE_NUMBER
