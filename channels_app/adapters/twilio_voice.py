"""Outbound calls through Twilio's REST API (the official client, as for SMS):
a callback dials the patient and bridges the agent's phone."""

from twilio.base.exceptions import TwilioException, TwilioRestException

from channels_app.adapters.base import AdapterError
from channels_app.adapters.twilio_sms import PERMANENT_TWILIO_CODES, twilio_client

# Twilio's codes for a number that cannot be called (invalid, not allowed, blocked).
PERMANENT_CALL_CODES = PERMANENT_TWILIO_CODES | {13223, 13224, 13225, 13227, 21215, 21216}


def place_callback_call(callback):
    """Start the call to the patient; returns its CallSid. The TwiML travels with
    the request, so nothing of ours has to be reachable when the patient answers."""
    from channels_app.services import callback_status_url, callback_twiml

    try:
        call = twilio_client().calls.create(
            to=callback.phone,
            from_=callback.account.address,
            twiml=callback_twiml(callback),
            status_callback=callback_status_url(callback),
            status_callback_method="POST",
        )
    except TwilioRestException as exc:
        permanent = exc.code in PERMANENT_CALL_CODES or 400 <= (exc.status or 0) < 500
        if exc.status == 429:
            permanent = False
        raise AdapterError(f"twilio {exc.status} code {exc.code}", permanent=permanent) from None
    except TwilioException as exc:
        raise AdapterError(f"twilio {exc.__class__.__name__}", permanent=False) from None
    except OSError as exc:
        raise AdapterError(f"network {exc.__class__.__name__}", permanent=False) from None
    return call.sid
