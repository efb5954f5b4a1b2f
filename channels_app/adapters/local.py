"""Local SMS, voice and portal providers for `make run`: they check what the real
one would check (a practice number to send from and a valid destination for Twilio;
a patient for the portal), keep what would have been sent in the local outbox
instead of sending it, and report it delivered the way a provider's status callback
does. Production refuses them (contactcenter/checks.py)."""

import uuid

from channels_app.adapters import register
from channels_app.adapters.base import AdapterError, ChannelAdapter, DeliveryResult
from contactcenter.blind_index import normalise_phone
from patients.models import Channel

LOCAL = "local"


def _practice_number(outbound):
    account = outbound.interaction.conversation.account
    if account is None:
        raise AdapterError("The conversation has no practice number to send from.", permanent=True)
    return account.address


def _destination(outbound):
    try:
        return normalise_phone(outbound.to_address)
    except ValueError:
        # Twilio's code for a "To" number it cannot use; no retry helps.
        raise AdapterError("local provider: invalid destination (21211)", permanent=True) from None


class _LocalPhoneAdapter(ChannelAdapter):
    channel = ""
    id_prefix = ""

    def send(self, outbound):
        from channels_app.services import local_outbox_record

        record = local_outbox_record(
            channel=self.channel,
            provider_id=f"{self.id_prefix}{uuid.uuid4().hex}",
            outbound=outbound,
            from_address=_practice_number(outbound),
            to_address=_destination(outbound),
            body=outbound.interaction.body,
        )
        return DeliveryResult(provider_id=record.provider_id, provider_status="queued")


@register(Channel.SMS, provider=LOCAL)
class LocalSmsAdapter(_LocalPhoneAdapter):
    """A text message, with a Twilio-shaped message id (SM...)."""

    channel = Channel.SMS
    id_prefix = "SM"


@register(Channel.VOICE, provider=LOCAL)
class LocalVoiceAdapter(_LocalPhoneAdapter):
    """A call that would read the message to the patient, with a call id (CA...)."""

    channel = Channel.VOICE
    id_prefix = "CA"


@register(Channel.PORTAL, provider=LOCAL)
class LocalPortalAdapter(ChannelAdapter):
    """A staff reply the portal would show the patient, with the portal message id
    the webhook provider uses (our interaction id)."""

    def send(self, outbound):
        from channels_app.services import local_outbox_record

        interaction = outbound.interaction
        conversation = interaction.conversation
        if conversation.patient_id is None:
            raise AdapterError("A portal reply needs the conversation's patient.", permanent=True)
        record = local_outbox_record(
            channel=Channel.PORTAL,
            provider_id=f"portal-{interaction.pk}",
            outbound=outbound,
            from_address=conversation.account.address if conversation.account else "",
            to_address=f"patient {conversation.patient_id}",
            subject=conversation.subject,
            body=interaction.body,
        )
        return DeliveryResult(provider_id=record.provider_id, provider_status="queued")
