from django.dispatch import receiver

from escalation.signals import inbound_analysing, inbound_processed
from understanding import services


@receiver(inbound_analysing)
def analyse_inbound(sender, *, interaction, **kwargs):
    # Stored by the follow-up with its action, in the same transaction.
    services.interaction_analyse(interaction=interaction, store=False)


@receiver(inbound_processed)
def follow_up_inbound(sender, *, interaction, conversation, escalated, **kwargs):
    services.interaction_follow_up(
        interaction=interaction, conversation=conversation, escalated=escalated
    )
