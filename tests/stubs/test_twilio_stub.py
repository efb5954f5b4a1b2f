"""The Twilio stub, exercised through the official `twilio.rest.Client`."""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from tests.stubs.twilio_stub import (
    BaseUrlHttpClient,
    TwilioStub,
    make_twilio_client,
    sms_segments,
)

TO = "+15558675310"
FROM = "+15005550006"


def send(stub, **kwargs):
    kwargs.setdefault("to", TO)
    kwargs.setdefault("from_", FROM)
    kwargs.setdefault("body", "Reminder: your appointment is tomorrow at 9:00 AM.")
    return make_twilio_client(stub).messages.create(**kwargs)


def test_message_created_through_the_official_client_arrives_with_its_form_fields_and_auth(
    twilio_stub,
):
    message = send(
        twilio_stub,
        status_callback="https://cc.example/webhooks/twilio/sms/status/",
        media_url=["https://cc.example/m/1.jpg", "https://cc.example/m/2.jpg"],
    )

    [request] = twilio_stub.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{twilio_stub.account_sid}/Messages.json"
    assert request.auth == (twilio_stub.account_sid, twilio_stub.auth_token)
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.field("To") == TO
    assert request.field("From") == FROM
    assert request.field("Body") == "Reminder: your appointment is tomorrow at 9:00 AM."
    assert request.field("StatusCallback") == "https://cc.example/webhooks/twilio/sms/status/"
    assert request.form["MediaUrl"] == ["https://cc.example/m/1.jpg", "https://cc.example/m/2.jpg"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert (message.to, message.from_) == (TO, FROM)
    assert message.num_media == "2"
    assert message.date_created is not None
    assert twilio_stub.created_messages[0]["sid"] == message.sid


def test_scripted_500_surfaces_as_twilio_rest_exception_with_status_500(twilio_stub):
    twilio_stub.respond_next(status=500)

    with pytest.raises(TwilioRestException) as caught:
        send(twilio_stub)

    assert caught.value.status == 500
    assert caught.value.code == 20500
    assert twilio_stub.created_messages == []


def test_scripted_400_with_code_21211_surfaces_with_that_code_and_message(twilio_stub):
    twilio_stub.respond_next(
        status=400, code=21211, message="The 'To' number is not a valid phone number."
    )

    with pytest.raises(TwilioRestException) as caught:
        send(twilio_stub, to="+1555")

    assert caught.value.status == 400
    assert caught.value.code == 21211
    assert "The 'To' number is not a valid phone number." in caught.value.msg


def test_script_is_answered_in_order_then_the_stub_falls_back_to_success(twilio_stub):
    twilio_stub.respond_next(status=503)
    twilio_stub.respond_next(status=429)

    statuses = []
    for _ in range(3):
        try:
            statuses.append(send(twilio_stub).status)
        except TwilioRestException as exc:
            statuses.append(exc.status)

    assert statuses == [503, 429, "queued"]
    assert len(twilio_stub.requests) == 3


def test_scripted_headers_are_sent_with_the_answer(twilio_stub):
    twilio_stub.respond_next(status=429, headers={"Retry-After": "7"})

    response = requests.post(
        f"{twilio_stub.base_url}/2010-04-01/Accounts/{twilio_stub.account_sid}/Messages.json",
        data={"To": TO, "From": FROM, "Body": "hi"},
        auth=(twilio_stub.account_sid, twilio_stub.auth_token),
        timeout=5,
    )

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["code"] == 20429


def test_wrong_auth_token_is_refused_with_401_and_code_20003(twilio_stub):
    client = make_twilio_client(twilio_stub, auth_token="not-the-token")

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=TO, from_=FROM, body="hi")

    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert twilio_stub.requests[0].auth == (twilio_stub.account_sid, "not-the-token")


def test_other_account_in_the_path_is_not_found(twilio_stub):
    client = make_twilio_client(twilio_stub)

    with pytest.raises(TwilioRestException) as caught:
        client.api.v2010.accounts("AC" + "9" * 32).messages.create(to=TO, from_=FROM, body="x")

    assert (caught.value.status, caught.value.code) == (404, 20404)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": ""}, 21604),
        ({"from_": None}, 21603),
        ({"body": None}, 21602),
        ({"body": "x" * 1601}, 21617),
    ],
)
def test_incomplete_message_is_refused_with_twilios_400_code(twilio_stub, fields, code):
    with pytest.raises(TwilioRestException) as caught:
        send(twilio_stub, **fields)

    assert (caught.value.status, caught.value.code) == (400, code)


def test_messaging_service_without_from_is_accepted(twilio_stub):
    message = send(twilio_stub, from_=None, messaging_service_sid="MG" + "1" * 32)

    assert message.status == "accepted"
    assert message.messaging_service_sid == "MG" + "1" * 32


def test_delay_next_holds_the_answer_but_still_succeeds(twilio_stub):
    twilio_stub.delay_next(0.3)

    started = time.monotonic()
    message = send(twilio_stub)

    assert time.monotonic() - started >= 0.3
    assert message.status == "queued"


def test_delay_longer_than_the_client_timeout_raises_a_timeout_and_stop_does_not_wait():
    with TwilioStub() as stub:
        stub.delay_next(30)
        client = make_twilio_client(stub, timeout=0.3)
        with pytest.raises(requests.exceptions.Timeout):
            client.messages.create(to=TO, from_=FROM, body="hi")
        started = time.monotonic()

    assert time.monotonic() - started < 5
    assert len(stub.requests) == 1


def test_concurrent_sends_are_all_recorded_with_distinct_sids(twilio_stub):
    with ThreadPoolExecutor(max_workers=8) as pool:
        sids = list(pool.map(lambda n: send(twilio_stub, body=f"message {n}").sid, range(24)))

    assert len(set(sids)) == 24
    assert sorted(r.field("Body") for r in twilio_stub.requests) == sorted(
        f"message {n}" for n in range(24)
    )


def test_base_url_client_redirects_every_twilio_host_and_leaves_others_alone():
    client = BaseUrlHttpClient("http://127.0.0.1:8080/twilio")

    assert client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?a=1") == (
        "http://127.0.0.1:8080/twilio/2010-04-01/Accounts/AC1/Messages.json?a=1"
    )
    assert client.rewrite("https://api.dublin.ie1.twilio.com/2010-04-01/x.json") == (
        "http://127.0.0.1:8080/twilio/2010-04-01/x.json"
    )
    assert client.rewrite("https://eviltwilio.com/x") == "https://eviltwilio.com/x"
    assert client.rewrite("https://example.com/x") == "https://example.com/x"


def test_base_url_client_refuses_a_relative_base_url():
    with pytest.raises(ValueError, match="absolute"):
        BaseUrlHttpClient("127.0.0.1:8080")


def test_stub_settings_fixture_points_django_settings_at_the_stub(twilio_stub_settings):
    from django.conf import settings

    configured = (
        settings.TWILIO_API_BASE_URL,
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
    )
    stub = twilio_stub_settings
    assert configured == (stub.base_url, stub.account_sid, stub.auth_token)


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("é" * 160, 1),
        ("{" * 80, 1),
        ("{" * 81, 2),
        ("ç" * 70, 1),
        ("😊" * 35, 1),
        ("😊" * 36, 2),
    ],
)
def test_segment_count_follows_gsm7_and_ucs2_limits(body, segments):
    assert sms_segments(body) == segments


def test_created_message_reports_its_segment_count(twilio_stub):
    assert send(twilio_stub, body="a" * 200).num_segments == "2"


def test_call_created_through_the_official_client_is_recorded_with_its_twiml(twilio_stub):
    client = make_twilio_client(twilio_stub)

    call = client.calls.create(
        to="+14155550100",
        from_="+15005550006",
        twiml="<Response><Dial>+14155550199</Dial></Response>",
        status_callback="https://example.org/status/",
    )

    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert call.status == "queued"
    [created] = twilio_stub.created_calls
    assert created["sid"] == call.sid
    [request] = twilio_stub.requests
    assert request.path.endswith("/Calls.json")
    assert request.field("Twiml") == "<Response><Dial>+14155550199</Dial></Response>"
    assert request.field("StatusCallback") == "https://example.org/status/"
    assert twilio_stub.created_messages == []


def test_a_call_without_twiml_or_url_is_refused_with_twilios_code(twilio_stub):
    client = make_twilio_client(twilio_stub)

    with pytest.raises(TwilioRestException) as raised:
        client.calls.create(to="+14155550100", from_="+15005550006", url="")

    assert (raised.value.status, raised.value.code) == (400, 21205)
    assert twilio_stub.created_calls == []
