"""Signals patients sends upward (reminders, channels_app receive them)."""

from django.dispatch import Signal

# kwargs: appointment, change ("created", "moved", "status", "updated")
appointment_changed = Signal()
# kwargs: survivor, duplicate; sent inside the merge's transaction
patients_merged = Signal()
