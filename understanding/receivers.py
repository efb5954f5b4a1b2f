from django.dispatch import receiver

from escalation.signals import inbound_analysing, inbound_processed
from understanding import services


@receiver(inbound_analysing)
def analyse_inbound(sender, *, interaction, **kwargs):
    services.interaction_analyse(interaction=interaction)


@receiver(inbound_processed)
def follow_up_inbound(sender, *, interaction_id, conversation_id, escalated, **kwargs):
    services.interaction_follow_up(
        interaction_id=interaction_id, conversation_id=conversation_id, escalated=escalated
    )
