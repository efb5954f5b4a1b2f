"""Export recent inbound messages with the model's decision, redacted, for a person
to review and label (new training examples, or a check of the model on the
practice's own messages).

    manage.py export_intent_samples --output samples.tsv [--days 30] [--limit 500]

Each line: intent, confidence, language, action, and the message with phone numbers,
e-mail addresses, dates, MRNs, SSNs and card numbers replaced by placeholders. Names
and street addresses are not patterns and stay: treat the file as internal. The export
is one audit event naming every patient whose message it holds."""

import csv
import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from compliance.models import AuditEvent
from compliance.services import audit_record
from understanding.models import IntentDecision
from understanding.redaction import redact


class Command(BaseCommand):
    help = "Export recent inbound messages with their intent, redacted, as TSV."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, help="file to write, or - for stdout")
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--limit", type=int, default=500)

    def handle(self, *args, output, days, limit, **options):
        if days < 1 or limit < 1:
            raise CommandError("--days and --limit must be at least 1")
        since = timezone.now() - timedelta(days=days)
        decisions = list(
            IntentDecision.objects.filter(created_at__gte=since)
            .select_related("interaction")
            .order_by("-created_at", "-id")[:limit]
        )
        handle = sys.stdout if output == "-" else open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115
        try:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["intent", "confidence", "language", "action", "text"])
            for decision in decisions:
                text = " ".join(redact(decision.interaction.body).split())
                writer.writerow(
                    [decision.intent, decision.confidence, decision.language, decision.action, text]
                )
        finally:
            if handle is not sys.stdout:
                handle.close()
        patient_ids = sorted(
            {str(d.interaction.patient_id) for d in decisions if d.interaction.patient_id}
        )
        audit_record(
            action=AuditEvent.Action.EXECUTE,
            resource_type="intent_samples",
            patient_ids=patient_ids,
            purpose_of_use=AuditEvent.PurposeOfUse.HOPERAT,
            details={"rows": len(decisions), "days": days},
        )
        self.stderr.write(f"exported {len(decisions)} redacted messages")
