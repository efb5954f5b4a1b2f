from django.core.management.base import BaseCommand, CommandError

from contactcenter.services import team_create


class Command(BaseCommand):
    help = "Create a care team (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--clinical", action="store_true", help="Receives clinical escalations."
        )

    def handle(self, *args, name, clinical, **options):
        try:
            team = team_create(name=name, is_clinical=clinical)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Team {team.name!r} (id {team.pk}).")
