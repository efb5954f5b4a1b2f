from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryResult:
    provider_id: str
    provider_status: str = ""


class AdapterError(Exception):
    """A failed send. `permanent` errors (an invalid number, an opted-out
    recipient) are never retried; the others are, with backoff. The message is
    stored on the delivery record, so it must carry codes, never PHI."""

    def __init__(self, message, *, permanent):
        super().__init__(message)
        self.permanent = permanent


class ChannelAdapter:
    def send(self, outbound) -> DeliveryResult:
        raise NotImplementedError
