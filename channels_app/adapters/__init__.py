"""Outbound adapters, one per channel and provider, behind one interface.

SMS, voice and the portal have a provider chosen in settings (SMS_PROVIDER,
VOICE_PROVIDER: Twilio; PORTAL_PROVIDER: the portal's webhook; or the local one that
`make run` uses); email has one adapter, whose transport is Django's email backend
(EMAIL_URL)."""

from django.conf import settings

from channels_app.adapters.base import AdapterError, ChannelAdapter, DeliveryResult
from patients.models import Channel

_REGISTRY = {}


def register(kind, provider=None):
    def decorator(cls):
        _REGISTRY[(kind, provider)] = cls
        return cls

    return decorator


def provider_for(kind):
    """The configured provider of a channel, or None for channels without a choice."""
    return {
        Channel.SMS: settings.SMS_PROVIDER,
        Channel.VOICE: settings.VOICE_PROVIDER,
        Channel.PORTAL: settings.PORTAL_PROVIDER,
    }.get(kind)


def adapter_for(kind):
    # Imported here so every adapter module registers itself before the lookup.
    from channels_app.adapters import email, local, portal, twilio_sms  # noqa: F401

    provider = provider_for(kind)
    try:
        return _REGISTRY[(kind, provider)]()
    except KeyError:
        named = f"{kind!r} with provider {provider!r}" if provider else repr(kind)
        raise AdapterError(f"No outbound adapter for channel {named}.", permanent=True) from None


__all__ = [
    "AdapterError",
    "ChannelAdapter",
    "DeliveryResult",
    "adapter_for",
    "provider_for",
    "register",
]
