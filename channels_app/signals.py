"""Signals channels_app sends upward (escalation, reminders, reporting receive)."""

from django.dispatch import Signal

# kwargs: interaction (inbound, stored and committed; sent by the inbound worker)
interaction_received = Signal()
# kwargs: conversation, actor
conversation_resolved = Signal()
# kwargs: interaction (a staff reply, committed; sent by outbound_create)
staff_replied = Signal()
