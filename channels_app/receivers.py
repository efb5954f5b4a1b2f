from django.dispatch import receiver

from channels_app.services import conversations_move_patient
from patients.signals import patients_merged


@receiver(patients_merged)
def move_conversations_to_survivor(sender, *, survivor, duplicate, **kwargs):
    conversations_move_patient(survivor=survivor, duplicate=duplicate)
