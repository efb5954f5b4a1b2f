"""The FHIR interface reacts to what channels_app reports: a new interaction is
a new Communication for rest-hook subscribers."""

from django.dispatch import receiver

from channels_app.signals import interaction_received, staff_replied
from fhir.services import subscriptions_notify


@receiver(interaction_received, dispatch_uid="fhir.notify_inbound")
@receiver(staff_replied, dispatch_uid="fhir.notify_reply")
def notify_subscribers(sender, *, interaction, **kwargs):
    subscriptions_notify(interaction=interaction)
