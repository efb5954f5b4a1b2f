"""Signal receivers: reminders react to what patients and channels_app report."""

from django.dispatch import receiver

from channels_app.signals import interaction_received
from patients.signals import appointment_changed
from reminders.services import reminder_reply_handle, reminders_plan


@receiver(appointment_changed, dispatch_uid="reminders.plan_on_appointment_change")
def plan_on_appointment_change(sender, *, appointment, change, **kwargs):
    reminders_plan(appointment=appointment)


@receiver(interaction_received, dispatch_uid="reminders.take_reminder_reply")
def take_reminder_reply(sender, *, interaction, **kwargs):
    reminder_reply_handle(interaction=interaction)
