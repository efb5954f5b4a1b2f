"""Factories for the test suite. Staff and teams go through the same services the
management commands use, so tests exercise the real set-up path."""

import base64
import secrets

import factory
from django_otp.oath import TOTP

from contactcenter import roles
from contactcenter.services import api_client_create, staff_create, team_create

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class TeamFactory(factory.Factory):
    class Meta:
        model = dict

    name = factory.Sequence(lambda n: f"Team {n}")
    is_clinical = False

    @classmethod
    def _create(cls, model_class, **kwargs):
        return team_create(**kwargs)


def make_staff(username=None, *, role=roles.AGENT, teams=(), password=DEFAULT_PASSWORD, totp=False):
    """A staff user; with totp=True it has a confirmed device and `user.totp_secret`
    holds the base32 secret for computing codes."""
    username = username or f"user-{secrets.token_hex(4)}"
    secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=") if totp else None
    user = staff_create(
        username=username, role=role, teams=teams, password=password, totp_secret_base32=secret
    )
    user.totp_secret = secret
    return user


def current_totp(user):
    secret = user.totp_secret + "=" * (-len(user.totp_secret) % 8)
    return f"{TOTP(base64.b32decode(secret)).token():06d}"


def make_api_key(*, scopes, name=None, team=None):
    """Returns (raw key, ApiClient)."""
    issued = api_client_create(
        name=name or f"client-{secrets.token_hex(4)}", scopes=scopes, team=team
    )
    return issued.key, issued.client


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def token_for(user):
    from contactcenter.services import token_issue

    return bearer(token_issue(user=user).token)


def make_patient(*, team, phones=("+14155550100",), emails=(), mrn=None, **fields):
    from patients.services import ContactInput, patient_create

    defaults = {"given_name": "Ada", "family_name": "Lovelace", "time_zone": "America/New_York"}
    defaults.update(fields)
    return patient_create(
        team=team,
        mrn=mrn or f"MRN-{secrets.token_hex(5)}",
        phones=[ContactInput(value=p) for p in phones],
        emails=[ContactInput(value=e) for e in emails],
        **defaults,
    )


def backend_pid():
    """The PostgreSQL backend serving Django's default connection now."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate_backend(pid):
    """End a backend from a connection of its own, as a server restart or a
    failover ends the connections it held."""
    import psycopg
    from django.db import connection

    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
