"""Outbound adapters, one per channel, behind one interface, picked by kind."""

from channels_app.adapters.base import AdapterError, ChannelAdapter, DeliveryResult

_REGISTRY = {}


def register(kind):
    def decorator(cls):
        _REGISTRY[kind] = cls
        return cls

    return decorator


def adapter_for(kind):
    # Imported here so every adapter module registers itself before the lookup.
    from channels_app.adapters import email, portal, twilio_sms  # noqa: F401

    try:
        return _REGISTRY[kind]()
    except KeyError:
        raise AdapterError(f"No outbound adapter for channel {kind!r}.", permanent=True) from None


__all__ = ["AdapterError", "ChannelAdapter", "DeliveryResult", "adapter_for", "register"]
