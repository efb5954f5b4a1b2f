import secrets

from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from contactcenter import roles
from contactcenter.models import Team
from contactcenter.services import staff_create


class Command(BaseCommand):
    help = "Create or update a staff user with a role, teams, a password and a TOTP device."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=roles.ROLES)
        parser.add_argument("--team", action="append", default=[], help="Team name; repeatable.")
        parser.add_argument("--password")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--totp-secret",
            help="Base32 TOTP secret. Without it, a new secret is generated and printed once.",
        )
        parser.add_argument("--no-totp", action="store_true", help="Create no TOTP device.")

    def handle(self, *args, username, role, team, password, email, totp_secret, no_totp, **opts):
        teams = []
        for name in team:
            found = Team.objects.filter(name=name).first()
            if found is None:
                raise CommandError(f"No team named {name!r}; create it with createteam first.")
            teams.append(found)
        generated = None
        if not no_totp and not totp_secret:
            generated = totp_secret = _random_base32()
        try:
            user = staff_create(
                username=username,
                role=role,
                teams=teams,
                password=password,
                email=email,
                totp_secret_base32=None if no_totp else totp_secret,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Staff user {user.username!r} ({role}), teams: {', '.join(team) or '-'}."
        )
        if generated:
            device = TOTPDevice.objects.get(user=user)
            self.stdout.write("TOTP secret (shown once; add it to an authenticator app):")
            self.stdout.write(f"  {generated}")
            self.stdout.write(f"  {device.config_url}")


def _random_base32():
    import base64

    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
