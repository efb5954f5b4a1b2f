from django.core.management.base import BaseCommand, CommandError

from compliance.services import retention_purge


class Command(BaseCommand):
    help = (
        "Purge what is past its retention (RETENTION_DAYS per kind: delete, or shred "
        "the encrypted columns of rows that must stay), in batches, and leave one "
        "audit row with the counts. Audit rows are never purged."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be purged and change nothing.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Rows per transaction (default 1000)."
        )

    def handle(self, *args, dry_run, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        counts = retention_purge(dry_run=dry_run, batch_size=batch_size)
        verb = "would purge" if dry_run else "purged"
        for count in counts:
            self.stdout.write(
                f"{count.kind}: {verb} {count.count} "
                f"(kept {count.days} days; stored before {count.cutoff.isoformat()})"
            )
