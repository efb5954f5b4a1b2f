import hashlib
import hmac
import json
import time

import requests

from channels_app.adapters import register
from channels_app.adapters.base import AdapterError, ChannelAdapter, DeliveryResult
from channels_app.models import ChannelAccount
from patients.models import Channel

SIGNATURE_HEADER = "X-Contactcenter-Signature"


def portal_signature(*, secret, timestamp, body):
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


@register(Channel.PORTAL, provider="webhook")
class PortalAdapter(ChannelAdapter):
    """Staff replies go back to the portal system through its webhook, signed like
    our inbound email webhook (HMAC-SHA256 over "<t>.<body>")."""

    def send(self, outbound):
        interaction = outbound.interaction
        conversation = interaction.conversation
        account = (
            conversation.account
            or ChannelAccount.objects.filter(kind=Channel.PORTAL, active=True).first()
        )
        if account is None or not account.address or not account.secret:
            raise AdapterError("no portal endpoint is configured", permanent=True)
        body = json.dumps(
            {
                "message_id": str(interaction.pk),
                "patient_id": str(conversation.patient_id) if conversation.patient_id else None,
                "thread_id": conversation.thread_key or str(conversation.pk),
                "body": interaction.body,
                "sent_at": interaction.occurred_at.isoformat(),
            }
        ).encode()
        timestamp = int(time.time())
        try:
            response = requests.post(
                account.address,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: portal_signature(
                        secret=account.secret, timestamp=timestamp, body=body
                    ),
                    "Idempotency-Key": str(outbound.pk),
                },
                timeout=10,
            )
        except requests.RequestException as exc:
            raise AdapterError(f"portal {exc.__class__.__name__}", permanent=False) from None
        if response.status_code >= 400:
            permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
            raise AdapterError(f"portal http {response.status_code}", permanent=permanent)
        return DeliveryResult(provider_id=str(interaction.pk), provider_status="delivered")
