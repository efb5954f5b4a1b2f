"""Signals escalation sends upward (understanding receives them)."""

from django.dispatch import Signal

# kwargs: interaction (inbound, with text), conversation (locked); sent in the worker
# inside the rules' transaction, before the rules run, robustly (a failing receiver
# never stops escalation). A receiver sets the language it detects on `conversation`
# (the rules and routing read it; the rules' save stores it) and writes nothing: a
# statement that failed here would abort the rules' transaction. Its writes go in
# inbound_processed.
inbound_analysing = Signal()
# kwargs: interaction and conversation (as inbound_analysing had them, the
# conversation as the rules left it), escalated (a rule matched this message); sent in
# the worker inside the rules' transaction after the rules ran, robustly. A receiver
# writes in a savepoint (transaction.atomic), so its failure leaves the rules'
# transaction usable, and its work commits with the rules'.
inbound_processed = Signal()
