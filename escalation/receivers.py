from django.db import transaction
from django.dispatch import receiver

from channels_app.signals import interaction_received, staff_replied
from escalation import services, tasks
from patients.signals import patients_merged


@receiver(interaction_received)
def queue_inbound_processing(sender, *, interaction, **kwargs):
    # Not enqueue_on_commit, which logs a failed publish and carries on: the inbound
    # worker sends this signal outside a transaction, so the publish runs at once and a
    # broker error fails that task before it marks the interaction processed, leaving
    # it to the channels sweeper instead of losing the escalation.
    interaction_id = str(interaction.pk)
    transaction.on_commit(
        lambda: tasks.process_inbound.apply_async(args=[interaction_id], retry=False)
    )


@receiver(staff_replied)
def clear_response_due(sender, *, interaction, **kwargs):
    services.conversation_response_recorded(
        conversation_id=interaction.conversation_id, replied_at=interaction.occurred_at
    )


@receiver(patients_merged)
def move_escalations_to_survivor(sender, *, survivor, duplicate, **kwargs):
    services.escalations_move_patient(survivor=survivor, duplicate=duplicate)
