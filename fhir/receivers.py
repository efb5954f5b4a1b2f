"""The FHIR interface reacts to what channels_app reports: a new interaction is
a new Communication for rest-hook subscribers.

`interaction_added` is sent by every path that stores an interaction (webhooks,
the REST API's and the workspace's replies, automated answers, escalation
auto-replies, reminders, calls), inside that path's transaction: the delivery rows
are written with the interaction, and their tasks are queued when it commits."""

from django.dispatch import receiver

from channels_app.signals import interaction_added
from fhir.services import subscriptions_notify


@receiver(interaction_added, dispatch_uid="fhir.notify_subscribers")
def notify_subscribers(sender, *, interaction, **kwargs):
    subscriptions_notify(interaction=interaction)
