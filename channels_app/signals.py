"""Signals channels_app sends upward (escalation, reminders, reporting, the
workspace receive)."""

from django.dispatch import Signal

# kwargs: interaction (inbound, stored and committed; sent by the inbound worker)
interaction_received = Signal()
# kwargs: interaction (a staff reply, committed; sent by outbound_create)
staff_replied = Signal()
# kwargs: interaction (any new interaction: inbound, staff or automated reply, call,
# voicemail, note, event). Sent by every path that stores one, INSIDE the
# transaction that stores it (channels_app.services._interaction_added), so a
# receiver's writes commit or roll back with the interaction: nothing is missed
# and nothing is recorded for an interaction that never was. `received` is True
# for a message or call a provider delivered (inbound_record): the inbound task
# sends interaction_received for it after the commit, and marks it processed only
# once every receiver ran, so work that need not hold up the provider's webhook
# can wait for that signal instead.
interaction_added = Signal()

# Changes of a conversation's state, each sent once after its transaction commits
# by the one service that makes it (channels_app/services.py). kwargs:
# conversation, actor (the staff user, or None for a change the system made).
conversation_resolved = Signal()
conversation_reopened = Signal()
conversation_pending = Signal()
conversation_snoozed = Signal()
conversation_moved = Signal()
conversation_assigned = Signal()
conversation_priority_changed = Signal()
conversation_labels_changed = Signal()

# The kinds of change, as the live events (channels_app/live.py) and audit rows
# name them.
RESOLVED = "resolved"
REOPENED = "reopened"
PENDING = "pending"
SNOOZED = "snoozed"
MOVED = "moved"
ASSIGNED = "assigned"
PRIORITY = "priority"
LABELS = "labels"
# Live events without a signal of their own: a conversation opened, a message or
# call added to it, its patient matched.
OPENED = "opened"
INTERACTION_ADDED = "interaction_added"
PATIENT_MATCHED = "patient_matched"

CONVERSATION_CHANGE_SIGNALS = {
    RESOLVED: conversation_resolved,
    REOPENED: conversation_reopened,
    PENDING: conversation_pending,
    SNOOZED: conversation_snoozed,
    MOVED: conversation_moved,
    ASSIGNED: conversation_assigned,
    PRIORITY: conversation_priority_changed,
    LABELS: conversation_labels_changed,
}
