"""`manage.py simulate_inbound` against PostgreSQL and Redis: a live server, a real
worker, and requests signed as the providers sign them (the project's own signature
checks accept them, so a wrong signature here would fail these tests)."""

import io

import pytest
from django.core.management import CommandError, call_command

from channels_app.models import (
    CallDetail,
    ChannelAccount,
    Conversation,
    Interaction,
    LocalOutboxMessage,
    OutboundMessage,
)
from channels_app.simulation import InboundSimulator, SimulationError
from contactcenter.models import ApiClient, Team
from escalation.models import Escalation
from patients.models import Appointment, Channel
from understanding.models import RefillRequest


@pytest.fixture
def demo_practice(live_server, settings, shipped_defaults):
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SMS_PROVIDER = "local"
    settings.EMAIL_BACKEND = "channels_app.local_outbox.EmailBackend"
    call_command("load_demo", stdout=io.StringIO())
    return live_server.url


def _simulate(*args):
    out = io.StringIO()
    call_command("simulate_inbound", *args, stdout=out)
    return out.getvalue()


def test_the_scenario_plays_against_postgresql(demo_practice, celery_worker_real):
    # The worker's steps are waited for; a loaded machine needs more than the default.
    printed = _simulate("--scenario", "--timeout", "120")

    assert "The day is played." in printed
    assert Appointment.objects.filter(status=Appointment.Status.CONFIRMED).count() == 1
    escalation = Escalation.objects.get(to_team__is_clinical=True, rule__name="Clinical emergency")
    assert escalation.conversation.priority == Conversation.Priority.URGENT
    assert escalation.auto_reply.outbound.state == OutboundMessage.State.DELIVERED
    assert Conversation.objects.filter(channel=Channel.EMAIL, patient__isnull=False).count() == 1
    voicemail = Interaction.objects.get(channel=Channel.VOICE)
    assert voicemail.kind == Interaction.Kind.VOICEMAIL and voicemail.conversation.patient is None
    # Delivered locally: the reminder, the emergency rule's auto-reply, and the refill
    # intake's first question to the demo data's "Is my prescription ready" text.
    delivered = LocalOutboxMessage.objects.filter(reported_at__isnull=False)
    assert delivered.count() == 3
    assert RefillRequest.objects.get().conversation.channel == Channel.SMS
    # Ids and outcomes only: no message text on the terminal.
    assert "chest pain" not in printed and "insurance" not in printed


def test_one_sms_from_a_demo_patient(demo_practice):
    printed = _simulate("sms", "--from", "DEMO-1002", "--body", "Running late")

    [interaction] = [i for i in Interaction.objects.all() if i.body == "Running late"]
    assert interaction.patient.given_name == "James"
    assert interaction.conversation.account.address == "+15005550006"
    assert f"interaction {interaction.pk}" in printed


def test_one_email_from_any_address(demo_practice):
    _simulate("email", "--from", "new.person@example.net", "--subject", "Hello", "--body", "Hi")

    interaction = Interaction.objects.get(channel=Channel.EMAIL)
    assert interaction.conversation.patient is None
    assert interaction.conversation.subject == "Hello"
    assert interaction.email.message_id.endswith("@example.net")


def test_a_portal_message_with_the_key_the_command_issues(demo_practice):
    _simulate("portal", "--from", "DEMO-1003", "--body", "My results?")
    _simulate("portal", "--from", "DEMO-1003", "--body", "Any news?")

    assert Interaction.objects.filter(channel=Channel.PORTAL).count() == 2
    # One client, its key replaced each run.
    assert ApiClient.objects.filter(scopes=["portal:write"]).count() == 1


@pytest.mark.parametrize(
    ("outcome", "queue_result", "status"),
    [
        ("ringing", CallDetail.QueueResult.IN_PROGRESS, "ringing"),
        ("queued", CallDetail.QueueResult.IN_PROGRESS, "in-progress"),
        ("answered", CallDetail.QueueResult.ANSWERED, "completed"),
        ("abandoned", CallDetail.QueueResult.ABANDONED, "completed"),
        ("voicemail", CallDetail.QueueResult.VOICEMAIL, "completed"),
    ],
)
def test_a_call_goes_as_far_as_its_outcome(demo_practice, outcome, queue_result, status):
    _simulate("call", "--from", "+14155550177", "--outcome", outcome, "--body", "Call me")

    call = CallDetail.objects.select_related("interaction").get()
    assert (call.queue_result, call.status) == (queue_result, status)
    assert (call.transcript == "Call me") == (outcome == "voicemail")
    assert bool(call.recording_url) == (outcome == "voicemail")


def test_a_caller_at_a_menu_presses_the_key_given(demo_practice):
    from channels_app.models import VoiceMenuChoice

    line = ChannelAccount.objects.get(kind=Channel.VOICE)
    billing = Team.objects.get(name="South Clinic")
    VoiceMenuChoice.objects.create(
        account=line, key=1, team=billing, label_en="billing", label_es="facturas"
    )

    _simulate("call", "--from", "+14155550177", "--outcome", "queued", "--key", "1")

    assert CallDetail.objects.get().queue_team == billing


def test_a_refused_request_is_a_clear_error(demo_practice):
    simulator = InboundSimulator()
    # Signed for another URL than the one the project checks signatures against.
    simulator.public_base_url = "http://elsewhere.test"

    with pytest.raises(SimulationError, match="403 from /webhooks/twilio/sms/"):
        simulator.sms(sender="+14155550177", to="+15005550006", body="hi")


def test_a_kind_or_the_scenario_is_required(demo_practice):
    with pytest.raises(CommandError, match="--scenario"):
        _simulate()
    with pytest.raises(CommandError, match="--from"):
        _simulate("sms")
