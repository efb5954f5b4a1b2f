from django.dispatch import receiver

from channels_app.signals import interaction_received, staff_replied
from escalation import services, tasks
from patients.signals import patients_merged


@receiver(interaction_received)
def process_inbound_after_receivers(sender, *, interaction, **kwargs):
    # Returned, not run: the inbound task calls it with the interaction after every
    # receiver (reminders' and surveys' replies first, as when this queued a task of
    # its own), in that task, and before it marks the interaction processed (so a
    # failure that cannot even queue the escalation task leaves it to the channels
    # sweeper).
    return tasks.process_inbound_here


@receiver(staff_replied)
def clear_response_due(sender, *, interaction, **kwargs):
    services.conversation_response_recorded(
        conversation_id=interaction.conversation_id, replied_at=interaction.occurred_at
    )


@receiver(patients_merged)
def move_escalations_to_survivor(sender, *, survivor, duplicate, **kwargs):
    services.escalations_move_patient(survivor=survivor, duplicate=duplicate)
