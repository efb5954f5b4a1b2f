"""The FHIR interface reacts to what channels_app reports: a new interaction is
a new Communication for rest-hook subscribers.

`interaction_added` is sent by every path that stores an interaction (the REST
API's and the workspace's replies, automated answers, escalation auto-replies,
reminders, notes, events), inside that path's transaction: the delivery rows are
written with the interaction, and their tasks are queued when it commits. A
message or call a provider delivered (`received`) is notified by the inbound task
instead (`interaction_received`), off the webhook's request: the task marks the
message processed only after its receivers ran, so a crash leaves it to the
sweeper, and a repeat finds the delivery rows already written (one per
subscription and interaction)."""

from django.dispatch import receiver

from channels_app.signals import interaction_added, interaction_received
from fhir.services import subscriptions_notify


@receiver(interaction_added, dispatch_uid="fhir.notify_subscribers")
def notify_subscribers(sender, *, interaction, received=False, **kwargs):
    if not received:
        subscriptions_notify(interaction=interaction)


@receiver(interaction_received, dispatch_uid="fhir.notify_subscribers_of_received")
def notify_subscribers_of_received(sender, *, interaction, **kwargs):
    subscriptions_notify(interaction=interaction)
