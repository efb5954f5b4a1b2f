import getpass
import os
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from channels_app import services
from channels_app.imap import imap_check
from contactcenter.models import Team
from patients.models import Channel


class Command(BaseCommand):
    help = (
        "Add a practice SMS number, voice number (E.164), mailbox (optionally read over "
        "IMAP) or portal endpoint, under the same rules as the API. The secret (IMAP "
        "password, portal webhook secret) is read from --secret-env's variable or "
        "asked for, never from the command line, and never printed."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=Channel.values)
        parser.add_argument("address", help="E.164 number, mailbox address or portal URL.")
        parser.add_argument("--name", required=True)
        parser.add_argument("--team", required=True, help="The team that owns new conversations.")
        parser.add_argument(
            "--secret-env",
            help="The environment variable holding the secret (IMAP password or portal secret).",
        )
        parser.add_argument("--imap-host", default="")
        parser.add_argument("--imap-port", type=int, default=993)
        parser.add_argument("--imap-username", default="")
        parser.add_argument("--imap-folder", default="INBOX")
        parser.add_argument(
            "--imap-no-ssl", action="store_true", help="Plain IMAP, for a trusted network only."
        )
        parser.add_argument(
            "--check-imap", action="store_true", help="Log in to the mailbox once it is saved."
        )
        parser.add_argument("--help-text", default="", help="The answer to an SMS HELP.")
        parser.add_argument("--greeting", default="", help="What a caller hears first.")

    def handle(self, *args, kind, address, team, **options):
        team_obj = Team.objects.filter(name=team).first()
        if team_obj is None:
            raise CommandError(f"No team named {team!r}.")
        secret = ""
        if options["secret_env"]:
            secret = os.environ.get(options["secret_env"], "")
            if not secret:
                raise CommandError(f"The variable {options['secret_env']} is empty or unset.")
        elif (kind == Channel.PORTAL or options["imap_host"]) and sys.stdin.isatty():
            secret = getpass.getpass("Secret (IMAP password or portal webhook secret): ")
        values = {
            "kind": kind,
            "name": options["name"],
            "address": address,
            "team": team_obj,
            "secret": secret,
            "help_text": options["help_text"],
            "greeting": options["greeting"],
        }
        if options["imap_host"]:
            values.update(
                imap_host=options["imap_host"],
                imap_port=options["imap_port"],
                imap_username=options["imap_username"],
                imap_folder=options["imap_folder"],
                imap_use_ssl=not options["imap_no_ssl"],
            )
        try:
            account = services.channel_account_create(values=values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
            )
            raise CommandError(problems) from None
        self.stdout.write(f"Channel account {account.pk}: {kind} {account.address} ({team}).")
        if options["check_imap"]:
            reachable, error = imap_check(account=account)
            if not reachable:
                raise CommandError(f"Saved, but the mailbox cannot be read: {error}")
            self.stdout.write("The IMAP server accepted the login and the folder opened.")
