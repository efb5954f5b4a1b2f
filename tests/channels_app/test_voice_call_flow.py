"""The phone line's call flow, driven as Twilio drives it: every webhook request is
signed with the twilio package's RequestValidator, and the TwiML of each step is
parsed as XML. One menu level (English or Spanish, by key or speech), 0 for a
person, a team queue per choice with its expected wait, a callback that keeps the
caller's place, the agent's call back through the Twilio stub's Calls endpoint,
and the missed-call text."""

import time
import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app import selectors, services, tasks
from channels_app.models import (
    Callback,
    CallDetail,
    ChannelAccount,
    Conversation,
    Interaction,
    OutboundMessage,
    VoiceMenuChoice,
)
from contactcenter import roles
from escalation.models import Escalation
from escalation.services import sla_breaches_sweep
from patients.models import Appointment, Channel, ContactPoint
from patients.services import sms_opt_out
from tests.channels_app.conftest import twilio_signed
from tests.factories import TeamFactory, make_patient, make_staff, token_for

pytestmark = pytest.mark.django_db

VOICE = "/webhooks/twilio/voice/"
MENU = "/webhooks/twilio/voice/menu/"
WAIT = "/webhooks/twilio/voice/wait/"
HOLD = "/webhooks/twilio/voice/hold/"
QUEUE = "/webhooks/twilio/voice/queue/"
STATUS = "/webhooks/twilio/voice/status/"
CALLBACK_STATUS = "/webhooks/twilio/voice/callback/status/"
PRACTICE_NUMBER = "+15005550006"
AGENT_PHONE = "+14155550199"


@pytest.fixture
def teams(front_desk):
    return {
        "appointments": TeamFactory(name="Appointments"),
        "prescriptions": TeamFactory(name="Prescriptions"),
        "billing": TeamFactory(name="Billing"),
        "front_desk": front_desk,
    }


@pytest.fixture
def line(teams):
    """A voice number whose menu has the four choices, configured as data."""
    account = ChannelAccount.objects.create(
        kind=Channel.VOICE,
        name="Main line",
        address=PRACTICE_NUMBER,
        team=teams["front_desk"],
        greeting="Thank you for calling Demo Practice.",
        greeting_es="Gracias por llamar a Demo Practice.",
    )
    for key, name, label_en, label_es, speech_en, speech_es in [
        (1, "appointments", "appointments", "citas", "appointment, schedule", "cita"),
        (2, "prescriptions", "prescriptions", "recetas", "prescription, refill", "receta"),
        (3, "billing", "billing", "facturación", "bill, payment", "factura, pago"),
        (4, "front_desk", "anything else", "todo lo demás", "", ""),
    ]:
        VoiceMenuChoice.objects.create(
            account=account,
            key=key,
            team=teams[name],
            label_en=label_en,
            label_es=label_es,
            speech_en=speech_en,
            speech_es=speech_es,
        )
    return account


@pytest.fixture
def sms_line(line):
    return ChannelAccount.objects.create(
        kind=Channel.SMS, name="Main line texts", address=PRACTICE_NUMBER, team=line.team
    )


def caller_number(n):
    return f"+1415555{n:04d}"


class Caller:
    """One phone call, stepping through the webhooks as Twilio would."""

    def __init__(self, client, number):
        self.client = client
        self.number = number
        self.sid = "CA" + uuid.uuid4().hex

    def post(self, path, **params):
        params = {
            "CallSid": self.sid,
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "From": self.number,
            "To": PRACTICE_NUMBER,
            "Direction": "inbound",
            "CallStatus": "in-progress",
            **params,
        }
        return self.client.post(path, params, **twilio_signed(path, params))

    def step(self, path, **params):
        response = self.post(path, **params)
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/xml")
        return ET.fromstring(response.content)  # noqa: S314 - our own TwiML

    def call(self):
        return CallDetail.objects.select_related("interaction__conversation").get(
            interaction__provider_id=self.sid
        )

    def choose(self, key):
        self.step(VOICE)
        return self.step(MENU + "?attempt=1", Digits=str(key))


def says(node):
    return [say.text for say in node.iter("Say")]


def test_menu_greets_with_the_practice_and_offers_four_choices_by_key_or_speech(client, line):
    document = Caller(client, caller_number(1)).step(VOICE)

    first = document.find("Say")
    assert first.text == (
        "Thank you for calling Demo Practice. If this is a medical emergency, hang up and dial 911."
    )
    assert first.get("language") == "en-US"
    gather = document.find("Gather")
    assert gather.get("input") == "dtmf speech"
    assert gather.get("numDigits") == "1"
    assert gather.get("language") == "en-US"
    assert gather.get("action") == f"{settings.PUBLIC_BASE_URL}{MENU}?attempt=1"
    hints = [hint.strip() for hint in gather.get("hints").split(",")]
    assert {"appointments", "prescriptions", "billing", "anything else", "person"} <= set(hints)
    menu, switch = gather.findall("Say")
    assert menu.text == (
        "For appointments, press 1. For prescriptions, press 2. For billing, press 3. "
        "For anything else, press 4. To speak with a person, press 0 at any time. "
        "You can also say what you need."
    )
    assert (switch.text, switch.get("language")) == ("Para español, oprima 9.", "es-US")
    # No input falls through to the same menu's action: once more, then a person.
    assert document.find("Redirect").text == f"{settings.PUBLIC_BASE_URL}{MENU}?attempt=1"
    assert document.find("Enqueue") is None


def test_a_key_joins_the_queue_of_the_team_configured_for_it(client, line, teams):
    caller = Caller(client, caller_number(2))

    document = caller.choose(1)

    enqueue = document.find("Enqueue")
    assert enqueue.text == str(teams["appointments"].pk)
    assert enqueue.get("waitUrl") == f"{settings.PUBLIC_BASE_URL}{WAIT}"
    assert enqueue.get("action") == f"{settings.PUBLIC_BASE_URL}{QUEUE}"
    call = caller.call()
    assert (call.queue_team_id, call.menu_key) == (teams["appointments"].pk, 1)
    assert call.queued_at is not None
    conversation = call.interaction.conversation
    # The call is in the chosen team's inbox, and the timeline says why.
    assert conversation.team_id == teams["appointments"].pk
    assert Interaction.objects.filter(
        conversation=conversation, kind="event", metadata__change="team"
    ).exists()


def test_a_choice_moved_to_another_team_in_the_admin_routes_there_without_code(client, line, teams):
    VoiceMenuChoice.objects.filter(account=line, key=3).update(team=teams["front_desk"])

    document = Caller(client, caller_number(3)).choose(3)

    assert document.find("Enqueue").text == str(teams["front_desk"].pk)


def test_0_reaches_a_person_at_the_menu_and_after_a_misunderstanding(client, line, teams):
    at_menu = Caller(client, caller_number(4)).choose(0)
    assert at_menu.find("Enqueue").text == str(teams["front_desk"].pk)

    caller = Caller(client, caller_number(5))
    caller.step(VOICE)
    again = caller.step(MENU + "?attempt=1", SpeechResult="blue elephants")
    assert says(again)[0] == "Sorry, I did not get that."
    assert again.find("Gather").get("action").endswith("?attempt=2")
    # Only one repetition: a second miss reaches a person, never another menu.
    document = caller.step(MENU + "?attempt=2")
    assert document.find("Enqueue").text == str(teams["front_desk"].pk)
    assert caller.call().menu_key == 0


@pytest.mark.parametrize(
    ("speech", "team"),
    [
        ("I need a refill of my prescription", "prescriptions"),
        ("I have a question about my bill", "billing"),
        ("can I talk to a person please", "front_desk"),
    ],
)
def test_a_spoken_choice_joins_its_team_queue(client, line, teams, speech, team):
    caller = Caller(client, caller_number(6))
    caller.step(VOICE)

    document = caller.step(MENU + "?attempt=1", SpeechResult=speech, Confidence="0.9")

    assert document.find("Enqueue").text == str(teams[team].pk)


def test_9_switches_to_spanish_and_the_rest_of_the_call_stays_in_spanish(client, line, teams):
    caller = Caller(client, caller_number(7))
    caller.step(VOICE)

    menu = caller.step(MENU + "?attempt=1", Digits="9")

    assert says(menu)[0] == "Gracias por llamar a Demo Practice."
    gather = menu.find("Gather")
    assert gather.get("language") == "es-US"
    spanish_menu, switch = gather.findall("Say")
    assert spanish_menu.text.startswith("Para citas, oprima 1. Para recetas, oprima 2.")
    assert "Para hablar con una persona, oprima 0" in spanish_menu.text
    assert (switch.text, switch.get("language")) == ("For English, press 9.", "en-US")
    # Spanish speech picks Spanish words.
    queued = caller.step(MENU + "?attempt=1", SpeechResult="necesito una receta")
    assert queued.find("Enqueue").text == str(teams["prescriptions"].pk)
    waiting = caller.step(WAIT, QueuePosition="1", QueueTime="0")
    [offer] = waiting.find("Gather").findall("Say")
    assert offer.get("language") == "es-US"
    assert offer.text.startswith("Usted es el número 1 en la fila.")
    assert "Oprima 1 y le devolveremos la llamada" in offer.text


def test_a_known_caller_hears_the_practice_not_their_name_in_their_recorded_language(client, line):
    patient = make_patient(
        team=line.team,
        phones=[caller_number(8)],
        given_name="Rosa",
        family_name="Martinez",
        preferred_language="es",
    )

    document = Caller(client, caller_number(8)).step(VOICE)

    spoken = " ".join(says(document))
    assert patient.given_name not in spoken and patient.family_name not in spoken
    assert says(document)[0].startswith("Gracias por llamar a Demo Practice.")
    assert document.find("Gather").get("language") == "es-US"


def test_after_hours_a_spanish_speaking_patient_hears_the_emergency_sentence_first(client, line):
    today = timezone.now().date()
    line.open_hours = {
        "time_zone": "UTC",
        "weekly": {str(day): [["00:00", "00:00"]] for day in range(7)},
        "holidays": [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)],
    }
    line.save(update_fields=["open_hours"])
    make_patient(team=line.team, phones=[caller_number(9)], preferred_language="es-MX")

    document = Caller(client, caller_number(9)).step(VOICE)

    said = says(document)
    assert said[0] == "Si se trata de una emergencia médica, cuelgue y marque el 911."
    assert said[-1].startswith("En este momento estamos cerrados.")
    assert document.find("Record") is not None
    assert document.find("Gather") is None and document.find("Enqueue") is None


def _answered_call(team, *, wait_seconds, minutes_ago=5):
    conversation = services.conversation_open(channel=Channel.VOICE, team=team)
    interaction = Interaction.objects.create(
        conversation=conversation,
        channel=Channel.VOICE,
        kind=Interaction.Kind.CALL,
        direction=Interaction.Direction.INBOUND,
        provider_id="CA" + uuid.uuid4().hex,
        occurred_at=timezone.now() - timedelta(minutes=minutes_ago + 10),
    )
    return CallDetail.objects.create(
        interaction=interaction,
        queue_team=team,
        queue_result=CallDetail.QueueResult.ANSWERED,
        queue_wait_seconds=wait_seconds,
        queued_at=interaction.occurred_at,
        answered_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_the_expected_wait_comes_from_the_queues_recently_answered_calls(client, line, teams):
    _answered_call(teams["appointments"], wait_seconds=100)
    _answered_call(teams["appointments"], wait_seconds=260)
    _answered_call(teams["appointments"], wait_seconds=3000, minutes_ago=600)  # too old
    _answered_call(teams["billing"], wait_seconds=1200)  # another queue
    caller = Caller(client, caller_number(10))
    caller.choose(1)

    document = caller.step(WAIT, QueuePosition="1", QueueTime="0")

    gather = document.find("Gather")
    assert gather.get("action") == f"{settings.PUBLIC_BASE_URL}{HOLD}"
    assert gather.get("numDigits") == "1"
    [announcement] = gather.findall("Say")
    # (100 + 260) / 2 = 180 seconds: about 3 minutes.
    assert announcement.text == (
        "You are number 1 in line. The expected wait is about 3 minutes. "
        "Press 1 and we will call you back. You keep your place in line."
    )
    assert caller.call().callback_offered_at is not None


def test_without_recent_answered_calls_no_wait_is_promised(client, line):
    caller = Caller(client, caller_number(11))
    caller.choose(2)

    document = caller.step(WAIT, QueuePosition="1", QueueTime="0")

    [announcement] = document.find("Gather").findall("Say")
    assert "minute" not in announcement.text
    assert announcement.text.startswith("You are number 1 in line.")


def _take_callback(caller):
    left = caller.step(HOLD, Digits="1")
    assert left.find("Leave") is not None
    return caller.step(QUEUE, QueueResult="leave", QueueTime="40")


def test_virtual_hold_accepted_ends_the_call_with_a_promise_and_keeps_the_place(
    client, line, teams, settings
):
    settings.VOICE_CALLBACK_WINDOW_MINUTES = 30
    caller = Caller(client, caller_number(12))
    caller.choose(1)
    caller.step(WAIT, QueuePosition="1", QueueTime="0")

    goodbye = _take_callback(caller)

    assert says(goodbye) == [
        "Thank you. We will call you back at this number within 30 minutes, "
        "and you keep your place in line. Goodbye."
    ]
    assert goodbye.find("Hangup") is not None
    call = caller.call()
    assert (call.queue_result, call.queue_wait_seconds) == ("callback", 40)
    callback = Callback.objects.get(call=call)
    assert callback.status == Callback.Status.PENDING
    assert callback.team_id == teams["appointments"].pk
    assert callback.queued_at == call.queued_at  # the place the call had
    assert callback.phone == caller.number
    conversation = Conversation.objects.get(pk=callback.conversation_id)
    assert conversation.channel == Channel.VOICE
    assert conversation.team_id == teams["appointments"].pk
    assert conversation.callback_due_at == callback.due_at
    event = Interaction.objects.get(
        conversation=conversation, metadata__change="callback_requested"
    )
    assert event.metadata["position"] == 1
    assert event.body.startswith("Callback requested: number 1 in the Appointments queue")
    # A retried keypress webhook asks for nothing new.
    caller.step(HOLD, Digits="1")
    assert Callback.objects.count() == 1


def test_other_keys_while_waiting_keep_the_caller_waiting(client, line):
    caller = Caller(client, caller_number(13))
    caller.choose(1)

    document = caller.step(HOLD, Digits="5")

    assert document.find("Redirect").text == f"{settings.PUBLIC_BASE_URL}{WAIT}"
    assert not Callback.objects.exists()


def _position_heard(caller):
    document = caller.step(WAIT, QueuePosition="9", QueueTime="0")
    text = document.find("Gather").find("Say").text
    return int(text.split("number ")[1].split(" ")[0])


def test_queue_order_is_kept_across_callbacks_and_live_callers(client, line, teams):
    """Five callers for appointments, in this order; the first and the third take a
    callback. Callbacks keep their places among the callers still on the line, a
    caller answered leaves the line, and a later caller queues behind everyone."""
    callers = [Caller(client, caller_number(20 + n)) for n in range(5)]
    for caller in callers[:4]:
        caller.choose(1)
    Caller(client, caller_number(40)).choose(3)  # another team's queue does not count

    _take_callback(callers[0])
    _take_callback(callers[2])
    callers[4].choose(1)

    queue = selectors.team_queue(team_id=teams["appointments"].pk)
    expected = [
        ("callback", callers[0]),
        ("call", callers[1]),
        ("callback", callers[2]),
        ("call", callers[3]),
        ("call", callers[4]),
    ]
    assert [(entry.kind, entry.conversation_id) for entry in queue] == [
        (kind, str(caller.call().interaction.conversation_id)) for kind, caller in expected
    ]
    assert [_position_heard(caller) for caller in callers[1::2] + callers[4:]] == [2, 4, 5]

    # The second caller is answered: everyone behind moves up, the callbacks keep order.
    callers[1].step(QUEUE, QueueResult="bridged", QueueTime="60")
    assert [_position_heard(caller) for caller in (callers[3], callers[4])] == [3, 4]
    queue = selectors.team_queue(team_id=teams["appointments"].pk)
    assert [entry.kind for entry in queue] == ["callback", "callback", "call", "call"]

    # The first callback is made: the third caller's callback is now at the front.
    first = Callback.objects.get(call=callers[0].call())
    services.callback_dial_request(callback=first, agent=_agent(teams), agent_number=AGENT_PHONE)
    queue = selectors.team_queue(team_id=teams["appointments"].pk)
    assert queue[0].id == str(Callback.objects.get(call=callers[2].call()).pk)
    assert _position_heard(callers[3]) == 2


def _agent(teams, name="appt-agent"):
    return make_staff(name, role=roles.AGENT, teams=[teams["appointments"]])


def test_a_caller_with_a_callback_pending_is_told_so_and_keeps_the_earlier_place(
    client, line, teams
):
    first, second = Caller(client, caller_number(50)), Caller(client, caller_number(51))
    first.choose(1)
    second.choose(1)
    _take_callback(first)
    callback = Callback.objects.get()

    again = Caller(client, first.number)
    document = again.step(VOICE)

    said = says(document)
    assert said[0] == "Thank you for calling Demo Practice."
    assert said[1].startswith(
        "We already have your request for a call back, and you keep your place: "
        "number 1 in line. We will call you within "
    )
    assert document.find("Hangup") is not None
    assert document.find("Gather") is None and document.find("Enqueue") is None
    assert Callback.objects.get() == callback
    assert again.call().queue_result == CallDetail.QueueResult.CALLBACK
    # Not a new offered call for the KPIs: it never queued.
    assert again.call().queue_wait_seconds is None


def test_team_queue_api_lists_the_order_for_the_teams_members_only(client, line, teams):
    first, second = Caller(client, caller_number(60)), Caller(client, caller_number(61))
    first.choose(1)
    second.choose(1)
    _take_callback(first)
    url = f"/api/v1/teams/{teams['appointments'].pk}/queue/"

    rows = client.get(url, **token_for(_agent(teams))).json()
    outsider = make_staff("billing-agent", role=roles.AGENT, teams=[teams["billing"]])
    refused = client.get(url, **token_for(outsider))

    assert [(row["position"], row["kind"]) for row in rows] == [(1, "callback"), (2, "call")]
    assert rows[0]["due_at"] is not None
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"


def _pending_callback(client):
    caller = Caller(client, caller_number(70))
    caller.choose(1)
    _take_callback(caller)
    return caller, Callback.objects.get(call=caller.call())


def test_the_agent_calls_back_and_twilio_dials_the_patient_then_bridges_the_agent(
    client, line, teams, twilio_stub_settings, celery_worker_real
):
    caller, callback = _pending_callback(client)
    agent = _agent(teams)

    response = client.post(
        f"/api/v1/callbacks/{callback.pk}/call/",
        {"agent_number": AGENT_PHONE},
        content_type="application/json",
        **token_for(agent),
    )

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "dialling"
    deadline = time.monotonic() + 15
    while not Callback.objects.filter(pk=callback.pk).exclude(provider_call_sid="").exists():
        assert time.monotonic() < deadline, "the worker never dialled"
        time.sleep(0.05)
    [request] = [r for r in twilio_stub_settings.requests if r.path.endswith("/Calls.json")]
    assert (request.field("To"), request.field("From")) == (caller.number, PRACTICE_NUMBER)
    twiml = ET.fromstring(request.field("Twiml"))  # noqa: S314 - what we sent
    assert twiml.find("Say").text.startswith(f"Hello, this is {settings.PRACTICE_NAME}")
    assert twiml.find("Dial").text == AGENT_PHONE
    assert twiml.find("Dial").get("callerId") == PRACTICE_NUMBER
    assert request.field("StatusCallback").endswith(f"{CALLBACK_STATUS}?callback={callback.pk}")
    assert twilio_stub_settings.created_messages == []
    callback.refresh_from_db()
    [created] = twilio_stub_settings.created_calls
    assert callback.provider_call_sid == created["sid"]
    assert callback.dialled_at <= callback.due_at
    conversation = Conversation.objects.get(pk=callback.conversation_id)
    assert conversation.callback_due_at is None
    outbound_call = Interaction.objects.get(provider_id=created["sid"])
    assert (outbound_call.direction, outbound_call.author_id) == ("outbound", agent.pk)

    # Twilio reports the patient answered: the callback is done.
    status_path = f"{CALLBACK_STATUS}?callback={callback.pk}"
    params = {"CallSid": created["sid"], "CallStatus": "completed", "CallDuration": "95"}
    assert client.post(status_path, params, **twilio_signed(status_path, params)).status_code == 204
    callback.refresh_from_db()
    assert callback.status == Callback.Status.DONE


def test_a_callback_the_patient_does_not_answer_goes_back_to_its_place(
    client, line, teams, twilio_stub_settings
):
    _caller, callback = _pending_callback(client)
    services.callback_dial_request(callback=callback, agent=_agent(teams), agent_number=AGENT_PHONE)
    tasks.outbound_callback_dial(str(callback.pk))
    callback.refresh_from_db()
    status_path = f"{CALLBACK_STATUS}?callback={callback.pk}"
    params = {"CallSid": callback.provider_call_sid, "CallStatus": "no-answer"}

    client.post(status_path, params, **twilio_signed(status_path, params))

    callback.refresh_from_db()
    assert callback.status == Callback.Status.PENDING
    assert selectors.team_queue(team_id=teams["appointments"].pk)[0].id == str(callback.pk)


def test_twilio_refusing_the_number_puts_the_callback_back_with_the_reason(
    client, line, teams, twilio_stub_settings
):
    _caller, callback = _pending_callback(client)
    services.callback_dial_request(callback=callback, agent=_agent(teams), agent_number=AGENT_PHONE)
    twilio_stub_settings.respond_next(status=400, code=21215, message="Geo permission")

    tasks.outbound_callback_dial(str(callback.pk))

    callback.refresh_from_db()
    assert (callback.status, callback.last_error) == ("pending", "twilio 400 code 21215")
    assert callback.dialled_at is None


def test_a_callback_is_taken_by_one_agent_and_hidden_from_other_teams(client, line, teams):
    _caller, callback = _pending_callback(client)
    url = f"/api/v1/callbacks/{callback.pk}/call/"
    body = {"agent_number": AGENT_PHONE}
    outsider = make_staff("billing-agent", role=roles.AGENT, teams=[teams["billing"]])

    hidden = client.post(url, body, content_type="application/json", **token_for(outsider))
    bad = client.post(
        url,
        {"agent_number": "call me"},
        content_type="application/json",
        **token_for(_agent(teams)),
    )
    first = client.post(
        url, body, content_type="application/json", **token_for(_agent(teams, "a2"))
    )
    second = client.post(
        url, body, content_type="application/json", **token_for(_agent(teams, "a3"))
    )

    assert hidden.status_code == 404
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["agent_number"]
    assert first.status_code == 202
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "callback_not_pending"


def test_a_callback_not_made_within_its_window_escalates_once_like_an_sla_breach(client, line):
    _caller, callback = _pending_callback(client)
    later = callback.due_at + timedelta(minutes=1)

    escalated = sla_breaches_sweep(now=later)
    again = sla_breaches_sweep(now=later)

    [escalation] = Escalation.objects.filter(conversation_id=callback.conversation_id)
    assert escalated >= 1 and again == 0
    assert escalation.kind == Escalation.Kind.SLA_BREACH
    assert escalation.matched["target"] == "callback"
    assert escalation.reason.startswith("Callback not made within its promised window")


def _hang_up_after(caller, seconds):
    return caller.step(QUEUE, QueueResult="hangup", QueueTime=str(seconds))


def test_a_caller_who_gives_up_after_the_threshold_gets_a_text_through_twilio(
    client, line, sms_line, settings, twilio_stub_settings, celery_worker_real
):
    settings.KPI_SHORT_ABANDON_SECONDS = 10
    caller = Caller(client, caller_number(80))
    caller.choose(2)

    _hang_up_after(caller, 45)

    deadline = time.monotonic() + 15
    while not OutboundMessage.objects.filter(state=OutboundMessage.State.SENT).exists():
        assert time.monotonic() < deadline, "no missed-call text was sent"
        time.sleep(0.05)
    [text] = twilio_stub_settings.created_messages
    assert text["to"] == caller.number and text["from"] == PRACTICE_NUMBER
    assert "Reply CALL and we will call you back" in text["body"]
    call = caller.call()
    assert call.queue_result == CallDetail.QueueResult.ABANDONED
    assert call.missed_call_text_at is not None
    sent = OutboundMessage.objects.get(provider_id=text["sid"])
    assert sent.interaction.conversation.account_id == sms_line.pk
    assert sent.interaction.metadata == {"missed_call": str(call.pk)}


def test_the_missed_call_text_is_sent_once_and_not_after_a_short_abandon(
    client, line, sms_line, settings, django_capture_on_commit_callbacks
):
    settings.KPI_SHORT_ABANDON_SECONDS = 10
    quick, patient_caller = Caller(client, caller_number(81)), Caller(client, caller_number(82))
    quick.choose(1)
    patient_caller.choose(1)

    with django_capture_on_commit_callbacks() as short:
        _hang_up_after(quick, 4)
    with django_capture_on_commit_callbacks() as long:
        _hang_up_after(patient_caller, 30)

    def texts_queued(callbacks):
        return [
            cb.args[1]
            for cb in callbacks
            if getattr(cb, "args", (None,))[0] is tasks.outbound_missed_call_text
        ]

    assert texts_queued(short) == []
    assert texts_queued(long) == [[str(patient_caller.call().pk)]]
    call_id = str(patient_caller.call().pk)
    first = services.missed_call_text_send(call_id=call_id)
    second = services.missed_call_text_send(call_id=call_id)
    assert first is not None and second is None
    assert OutboundMessage.objects.filter(interaction__metadata__missed_call=call_id).count() == 1


def test_no_missed_call_text_without_consent(client, line, sms_line, settings):
    settings.KPI_SHORT_ABANDON_SECONDS = 10
    patient = make_patient(team=line.team, phones=[caller_number(83)])
    sms_opt_out(phone=caller_number(83), source=ContactPoint.ConsentSource.KEYWORD)
    assert ContactPoint.objects.get(patient=patient).sms_opted_out
    caller = Caller(client, caller_number(83))
    caller.choose(1)
    _hang_up_after(caller, 30)

    sent = services.missed_call_text_send(call_id=str(caller.call().pk))

    assert sent is None
    assert not OutboundMessage.objects.exists()
    event = Interaction.objects.get(metadata__change="missed_call_text_skipped")
    assert event.body == "Missed-call text not sent: opted out"


def test_replying_call_to_the_missed_call_text_queues_a_callback_in_that_conversation(
    client, line, sms_line, teams, settings
):
    settings.KPI_SHORT_ABANDON_SECONDS = 10
    caller = Caller(client, caller_number(84))
    caller.choose(3)
    _hang_up_after(caller, 30)
    text = services.missed_call_text_send(call_id=str(caller.call().pk))
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "From": caller.number,
        "To": PRACTICE_NUMBER,
        "Body": "call",
        "NumMedia": "0",
    }

    response = client.post(
        "/webhooks/twilio/sms/", params, **twilio_signed("/webhooks/twilio/sms/", params)
    )

    reply = ET.fromstring(response.content)  # noqa: S314 - our own TwiML
    assert reply.find("Message").text.startswith(
        f"{settings.PRACTICE_NAME}: thank you, we will call"
    )
    callback = Callback.objects.get()
    assert callback.conversation_id == text.conversation_id  # the text's own thread
    assert callback.team_id == teams["billing"].pk
    assert callback.account_id == line.pk  # dialled from the voice line
    # The caller who gave up took a callback after all: not an abandoned call.
    assert caller.call().queue_result == CallDetail.QueueResult.CALLBACK
    [inbound] = Interaction.objects.filter(
        conversation_id=text.conversation_id, direction="inbound"
    )
    assert inbound.body == "call"


def test_caller_context_shows_the_agent_the_patient_open_conversations_and_appointments(
    client, line, teams
):
    patient = make_patient(team=teams["appointments"], phones=[caller_number(90)])
    for days in (1, 2, 40):
        Appointment.objects.create(
            patient=patient, starts_at=timezone.now() + timedelta(days=days), external_id=f"A{days}"
        )
    Appointment.objects.create(
        patient=patient, starts_at=timezone.now() - timedelta(days=1), external_id="past"
    )
    caller = Caller(client, caller_number(90))
    caller.choose(1)
    conversation_id = caller.call().interaction.conversation_id
    agent = _agent(teams)
    headers = token_for(agent)
    url = f"/api/v1/conversations/{conversation_id}/caller/"

    client.get(url, **headers)
    with CaptureQueriesContext(connection) as queries:
        body = client.get(url, **headers).json()

    assert body["patient"]["id"] == str(patient.pk)
    assert body["patient"]["family_name"] == patient.family_name
    assert [row["id"] for row in body["open_conversations"]] == [str(conversation_id)]
    assert len(body["upcoming_appointments"]) == 3
    assert (
        body["upcoming_appointments"][0]["starts_at"]
        < body["upcoming_appointments"][1]["starts_at"]
    )
    # Fixed cost: the token, the conversation, the patient, conversations, appointments, audit.
    assert 4 <= len(queries) <= 10, [query["sql"][:60] for query in queries]
    outsider = make_staff("billing-agent", role=roles.AGENT, teams=[teams["billing"]])
    assert client.get(url, **token_for(outsider)).status_code == 404


def test_an_unknown_caller_has_no_patient_in_the_context(client, line, teams):
    caller = Caller(client, caller_number(91))
    caller.choose(1)
    url = f"/api/v1/conversations/{caller.call().interaction.conversation_id}/caller/"

    body = client.get(url, **token_for(_agent(teams))).json()

    assert body == {"patient": None, "open_conversations": [], "upcoming_appointments": []}


@pytest.mark.parametrize("path", [MENU, WAIT, HOLD, CALLBACK_STATUS])
def test_every_new_step_refuses_a_bad_signature(client, line, path):
    params = {"CallSid": "CA" + uuid.uuid4().hex, "Digits": "1"}

    response = client.post(path, params, **twilio_signed(path, params, token="not-the-token"))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"


def test_a_number_without_a_menu_queues_at_its_team_and_leaves_routing_alone(client, front_desk):
    ChannelAccount.objects.create(
        kind=Channel.VOICE, name="Plain line", address=PRACTICE_NUMBER, team=front_desk
    )
    care_team = TeamFactory(name="Care team")
    make_patient(team=care_team, phones=[caller_number(93)])
    caller = Caller(client, caller_number(93))

    document = caller.step(VOICE)

    assert document.find("Gather") is None
    assert document.find("Enqueue").text == str(front_desk.pk)
    call = caller.call()
    assert (call.queue_team_id, call.menu_key) == (front_desk.pk, None)
    # No choice was made: the conversation stays with the patient's team.
    assert call.interaction.conversation.team_id == care_team.pk


def test_the_wait_step_costs_the_same_queries_however_long_the_queue(client, line):
    def queries_of_a_wait(caller):
        with CaptureQueriesContext(connection) as captured:
            caller.step(WAIT, QueuePosition="1", QueueTime="0")
        return len(captured)

    first = Caller(client, caller_number(100))
    first.choose(1)
    alone = queries_of_a_wait(first)
    for n in range(12):
        Caller(client, caller_number(101 + n)).choose(1)
    for n in range(3):
        calling_back = Caller(client, caller_number(120 + n))
        calling_back.choose(1)
        _take_callback(calling_back)
    last = Caller(client, caller_number(130))
    last.choose(1)

    assert _position_heard(last) == 17
    # The call, the two counts of who is ahead, the recent waits, the offer heard.
    assert alone >= 5
    assert queries_of_a_wait(last) == alone


def test_two_calls_from_one_number_share_one_callback_at_the_earlier_place(client, line):
    """A second line of the same household calls while the first still waits; both
    press 1. One callback stands, at the first call's place, and both hear it."""
    first, second = Caller(client, caller_number(140)), Caller(client, caller_number(140))
    first.choose(1)
    second.choose(1)

    _take_callback(first)
    goodbye = _take_callback(second)

    callback = Callback.objects.get()
    assert callback.call.pk == first.call().pk
    assert says(goodbye)[0].startswith("Thank you. We will call you back at this number")
    assert second.call().queue_result == CallDetail.QueueResult.CALLBACK


def test_a_callback_made_is_announced_live_to_open_pages(
    client, line, teams, twilio_stub_settings, live_events, django_capture_on_commit_callbacks
):
    _caller, callback = _pending_callback(client)
    services.callback_dial_request(callback=callback, agent=_agent(teams), agent_number=AGENT_PHONE)
    live_events()  # what the requests before published

    with django_capture_on_commit_callbacks(execute=True):
        tasks.outbound_callback_dial(str(callback.pk))

    callback.refresh_from_db()
    outbound_call = Interaction.objects.get(provider_id=callback.provider_call_sid)
    team = teams["appointments"].pk
    conversation = str(callback.conversation_id)
    # The channel is shared with every other test publishing at the same time.
    mine = [event for event in live_events() if event["conversation"] == conversation]
    assert mine == [
        {
            "kind": "message",
            "conversation": conversation,
            "team": team,
            "interaction": str(outbound_call.pk),
        },
        {"kind": "conversation", "conversation": conversation, "team": team},
    ]
