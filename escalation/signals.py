"""Signals escalation sends upward (understanding receives them)."""

from django.dispatch import Signal

# kwargs: interaction (inbound, with text), sent in the worker inside the rules'
# transaction, before the rules run and before the conversation is locked, so what a
# receiver learns (the language) is there for routing. Sent robustly: a failing
# receiver never stops escalation; a receiver that writes does so in a savepoint
# (transaction.atomic), so its failure leaves the rules' transaction usable.
inbound_analysing = Signal()
# kwargs: interaction_id, conversation_id, escalated (a rule matched this message),
# sent after the processing transaction committed.
inbound_processed = Signal()
