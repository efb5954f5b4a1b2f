from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from compliance.anchoring import FileSink, checkpoint_sink
from compliance.chain import DEFAULT_GRACE, seal_pending, verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit trail: each event's MAC, the hash chain, and the chain against "
        "the latest checkpoint published outside the database. Prints the event count "
        "and head hash, or names the first broken event (id, position, reason) and "
        "exits with status 1."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--seal-first",
            action="store_true",
            help="Seal pending events before verifying (otherwise nothing is written).",
        )
        parser.add_argument(
            "--limit", type=int, help="Verify only the first N events of the chain."
        )
        parser.add_argument(
            "--time-budget",
            type=float,
            dest="time_budget_seconds",
            help="Stop after about this many seconds; the rest is not verified.",
        )
        parser.add_argument(
            "--grace-minutes",
            type=float,
            default=DEFAULT_GRACE.total_seconds() / 60,
            help="How long after its timestamp an event may join the chain before it "
            "counts as inserted after the fact (default %(default)s).",
        )

        parser.add_argument(
            "--checkpoints",
            help="A file of published checkpoints to verify against (default: the "
            "AUDIT_CHECKPOINT_SINK file; give a collector's copy for a syslog sink).",
        )

    def handle(self, *args, **options):
        if options["seal_first"]:
            self.stdout.write(f"Sealed {seal_pending()} pending events.")
        sink = FileSink(options["checkpoints"]) if options["checkpoints"] else checkpoint_sink()
        checkpoint = sink.latest()
        result = verify_chain(
            limit=options["limit"],
            time_budget_seconds=options["time_budget_seconds"],
            grace=timedelta(minutes=options["grace_minutes"]),
            checkpoint=checkpoint,
        )
        if not result.ok:
            position = "unsealed" if result.broken_position is None else result.broken_position
            event = "chain" if result.broken_id is None else f"event id {result.broken_id}"
            raise CommandError(
                f"BROKEN: {event}, position {position}: "
                f"{result.reason} ({result.detail}). "
                f"{result.count} events before it verify.",
                returncode=1,
            )
        line = f"OK: {result.count} events, head {result.head_hash}"
        if checkpoint is None:
            line += "; no checkpoint to compare the head with"
        elif result.complete:
            line += f"; matches the checkpoint of position {checkpoint.sequence} ({checkpoint.at})"
        if result.unsigned:
            line += f"; the first {result.unsigned} predate row MACs"
        if not result.complete:
            line += f" (stopped at position {result.head_position}; later events not verified)"
        self.stdout.write(line)
