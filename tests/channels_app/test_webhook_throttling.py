"""Webhook requests whose signature fails are limited per source address; validly
signed provider traffic is never counted (issue 16)."""

from channels_app.models import Interaction
from tests.channels_app.conftest import sms_params, twilio_signed

SMS = "/webhooks/twilio/sms/"


def test_failed_signatures_from_one_address_are_answered_429(client, sms_account, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "webhook_bad_signature": "3/minute"}
    params = sms_params("hello")
    forged = twilio_signed(SMS, params, token="not-the-token")

    answers = [client.post(SMS, params, REMOTE_ADDR="203.0.113.9", **forged) for _ in range(4)]

    assert [a.status_code for a in answers[:3]] == [403, 403, 403]
    assert answers[3].status_code == 429
    assert answers[3].json()["error"]["code"] == "throttled"
    assert int(answers[3]["Retry-After"]) >= 1
    assert not Interaction.objects.exists()


def test_a_burst_of_signed_replies_is_never_throttled(client, sms_account, settings):
    """A reminder wave answered at once: every signed reply is stored, however far
    past the limit that failed signatures from the same address would have."""
    settings.THROTTLE_RATES = {
        **settings.THROTTLE_RATES,
        "webhook_bad_signature": "1/minute",
        "staff_token": "1/minute",
        "api_key": "1/minute",
    }
    answers = []
    for n in range(40):
        params = sms_params("C", sid=f"SM{n:032d}", sender=f"+1415555{n:04d}")
        answers.append(
            client.post(SMS, params, REMOTE_ADDR="203.0.113.10", **twilio_signed(SMS, params))
        )

    assert {a.status_code for a in answers} == {200}
    assert Interaction.objects.count() == 40
