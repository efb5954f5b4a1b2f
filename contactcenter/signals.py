"""Signals this layer sends upward. compliance receives them and writes audit rows,
so the primitives here never import the audit trail above them."""

from django.dispatch import Signal

# kwargs: action, outcome, request, actor, api_client, http_status, details
security_event = Signal()
