"""Signals escalation sends upward (understanding receives them)."""

from django.dispatch import Signal

# kwargs: interaction (inbound, with text), sent in the worker inside the rules'
# transaction, before the rules run and before the conversation is locked, so what a
# receiver learns (the language) is there for routing. Sent robustly: a failing
# receiver never stops escalation; a receiver that writes does so in a savepoint
# (transaction.atomic), so its failure leaves the rules' transaction usable.
inbound_analysing = Signal()
# kwargs: interaction (as inbound_analysing had it), conversation (locked, as the
# rules left it), escalated (a rule matched this message); sent in the worker inside
# the rules' transaction after the rules ran, robustly, so a receiver that writes does
# so in a savepoint like inbound_analysing's, and its work commits with the rules'.
inbound_processed = Signal()
