"""Writes for teams, staff, staff tokens and API keys."""

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from contactcenter import roles, sql
from contactcenter.models import ApiClient, AuthToken, StaffProfile, Team

User = get_user_model()

STAFF_TOKEN_PREFIX = "ccs_"  # noqa: S105 - a public prefix, not a secret
API_KEY_PREFIX = "cck_"
# Sliding expiry is written at most this often, so a busy client does not turn
# every read into a write.
LAST_USED_WRITE_INTERVAL = timedelta(seconds=60)


def _sha256(value):
    return hashlib.sha256(value.encode()).hexdigest()


def team_create(*, name, is_clinical=False):
    name = name.strip()
    if not name:
        raise ValueError("A team needs a name.")
    with transaction.atomic():
        group, _ = Group.objects.get_or_create(name=f"team:{name}")
        team, _ = Team.objects.get_or_create(
            name=name, defaults={"group": group, "is_clinical": is_clinical}
        )
    return team


def team_add_member(*, team, user):
    user.groups.add(team.group)


def team_remove_member(*, team, user):
    user.groups.remove(team.group)


def teams_of(user):
    return Team.objects.filter(group__user=user)


def staff_create(*, username, role, teams=(), password=None, totp_secret_base32=None, email=""):
    """Create (or update) a staff user with one role, team memberships, and an
    optional confirmed TOTP device from a base32 secret (as authenticator apps
    show it)."""
    if role not in roles.ROLES:
        raise ValueError(f"Unknown role {role!r}; choose one of {', '.join(roles.ROLES)}.")
    totp_key_hex = _totp_hex_key(totp_secret_base32) if totp_secret_base32 else None
    with transaction.atomic():
        # Every staff member may sign in to the admin; what they see there is
        # decided by role and team, like in the API.
        user, _ = User.objects.get_or_create(
            username=username, defaults={"email": email, "is_staff": True}
        )
        if password:
            user.set_password(password)
        elif not user.has_usable_password():
            user.set_unusable_password()
        user.save()
        role_groups = Group.objects.filter(name__in=roles.ROLES)
        user.groups.remove(*role_groups)
        role_group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(role_group)
        for team in teams:
            team_add_member(team=team, user=user)
        StaffProfile.objects.get_or_create(user=user)
        if totp_key_hex:
            TOTPDevice.objects.filter(user=user).delete()
            TOTPDevice.objects.create(user=user, name="default", key=totp_key_hex, confirmed=True)
    user._role_cache = None
    return user


def _totp_hex_key(secret_base32):
    cleaned = secret_base32.replace(" ", "").upper()
    padded = cleaned + "=" * (-len(cleaned) % 8)
    try:
        raw = base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("The TOTP secret is not valid base32.") from exc
    if len(raw) < 10:
        raise ValueError("The TOTP secret must be at least 80 bits (16 base32 characters).")
    return raw.hex()


def totp_confirmed_device(user):
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    record: AuthToken


def token_issue(*, user, source_ip=None):
    now = timezone.now()
    raw = STAFF_TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = AuthToken.objects.create(
        user=user,
        role=roles.role_of(user),
        key_hash=_sha256(raw),
        last_used_at=now,
        expires_at=now + timedelta(seconds=settings.TOKEN_ABSOLUTE_SECONDS),
        source_ip=source_ip,
    )
    return IssuedToken(token=raw, expires_at=record.expires_at, record=record)


class TokenRejected(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def token_authenticate(*, raw_token):
    """Return the live AuthToken for a raw staff token, sliding its idle expiry,
    or raise TokenRejected with a reason code (unknown, revoked, expired, idle)."""
    record = sql.get_with_related(AuthToken, "user", key_hash=_sha256(raw_token))
    if record is None:
        raise TokenRejected("unknown_token")
    now = timezone.now()
    if record.revoked_at is not None:
        raise TokenRejected("token_revoked")
    if now >= record.expires_at:
        raise TokenRejected("token_expired")
    if now - record.last_used_at > timedelta(seconds=settings.TOKEN_IDLE_SECONDS):
        raise TokenRejected("token_idle_expired")
    if not record.user.is_active:
        raise TokenRejected("user_inactive")
    record.user._role_cache = record.role
    if now - record.last_used_at > LAST_USED_WRITE_INTERVAL:
        AuthToken.objects.filter(pk=record.pk).update(last_used_at=now)
        record.last_used_at = now
    return record


def token_revoke(*, token):
    AuthToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


@dataclass(frozen=True)
class IssuedApiKey:
    key: str
    client: ApiClient


def api_client_create(*, name, scopes, created_by=None, team=None):
    valid = set(ApiClient.Scope.values)
    unknown = sorted(set(scopes) - valid)
    if unknown:
        raise ValueError(
            f"Unknown scopes: {', '.join(unknown)}. Valid: {', '.join(sorted(valid))}."
        )
    if not scopes:
        raise ValueError("An API client needs at least one scope.")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    client = ApiClient.objects.create(
        name=name,
        prefix=prefix,
        secret_hash=_sha256(secret),
        scopes=sorted(set(scopes)),
        created_by=created_by,
        team=team,
    )
    return IssuedApiKey(key=f"{API_KEY_PREFIX}{prefix}_{secret}", client=client)


def api_client_rotate_key(*, client):
    """A new key for an existing client; the previous key stops working at once."""
    secret = secrets.token_urlsafe(32)
    ApiClient.objects.filter(pk=client.pk).update(secret_hash=_sha256(secret))
    client.secret_hash = _sha256(secret)
    return IssuedApiKey(key=f"{API_KEY_PREFIX}{client.prefix}_{secret}", client=client)


def api_client_authenticate(*, raw_key):
    """Return the ApiClient for a raw key or raise TokenRejected."""
    body = raw_key[len(API_KEY_PREFIX) :]
    prefix, _, secret = body.partition("_")
    # A fixed statement (prefix is unique): every integration request reads it, and
    # compiling the QuerySet cost more than running it.
    found = sql.get_all(ApiClient, prefix=prefix) if prefix and secret else []
    client = found[0] if found else None
    if client is None or not hmac.compare_digest(client.secret_hash, _sha256(secret)):
        raise TokenRejected("unknown_api_key")
    if client.revoked_at is not None:
        raise TokenRejected("api_key_revoked")
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_WRITE_INTERVAL:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
    return client


def api_client_revoke(*, client):
    ApiClient.objects.filter(pk=client.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    client.refresh_from_db(fields=["revoked_at"])
