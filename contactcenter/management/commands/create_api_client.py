from django.core.management.base import BaseCommand, CommandError

from contactcenter.models import ApiClient, Team
from contactcenter.services import api_client_create


class Command(BaseCommand):
    help = "Create an integration API client and print its key once."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--scopes",
            required=True,
            help=f"Comma-separated: {', '.join(ApiClient.Scope.values)}",
        )
        parser.add_argument("--team", help="Bind the client to one team's records.")

    def handle(self, *args, name, scopes, team, **options):
        team_obj = None
        if team:
            team_obj = Team.objects.filter(name=team).first()
            if team_obj is None:
                raise CommandError(f"No team named {team!r}.")
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"An API client named {name!r} exists; revoke it or pick a name.")
        try:
            issued = api_client_create(
                name=name,
                scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                team=team_obj,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"API client {name!r} with scopes {', '.join(issued.client.scopes)}.")
        self.stdout.write("Key (shown once; store it in the integration's secret store):")
        self.stdout.write(f"  {issued.key}")
