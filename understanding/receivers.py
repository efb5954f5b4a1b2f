from django.dispatch import receiver

from escalation.signals import inbound_analysing, inbound_processed
from understanding import services


@receiver(inbound_analysing)
def analyse_inbound(sender, *, interaction, conversation, **kwargs):
    # Writes nothing: the follow-up stores the decision with its action.
    services.interaction_analyse(interaction=interaction, conversation=conversation)


@receiver(inbound_processed)
def follow_up_inbound(sender, *, interaction, conversation, escalated, **kwargs):
    services.interaction_follow_up(
        interaction=interaction, conversation=conversation, escalated=escalated
    )
