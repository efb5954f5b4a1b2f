"""Writes of the FHIR interface: SMART backend tokens. Patients, appointments and
everything else are written by the services of the apps that own them."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.services import audit_record
from contactcenter import sql
from fhir import registry, scopes
from fhir.models import AccessToken, SmartClient, UsedAssertion

TOKEN_PREFIX = "ccf_"  # noqa: S105 - a public prefix, not a secret
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGORITHMS = ("RS384", "ES384")
# SMART Backend Services: an assertion expires at most five minutes after it is made.
ASSERTION_MAX_LIFETIME = timedelta(minutes=5)


class TokenRequestRefused(Exception):
    """An OAuth error (RFC 6749 section 5.2): `error` is its code."""

    def __init__(self, error, description, *, client=None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.client = client


class TokenRejected(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    expires_in: int
    grant: scopes.Grant


def _sha256(value):
    return hashlib.sha256(value.encode()).hexdigest()


def _registration_of(assertion):
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRequestRefused("invalid_client", "The client assertion is not a JWT.") from None
    client_id = claims.get("iss")
    if not isinstance(client_id, str) or claims.get("sub") != client_id:
        raise TokenRequestRefused(
            "invalid_client", "The assertion's iss and sub must both be the client_id."
        )
    registration = (
        SmartClient.objects.select_related("api_client")
        .filter(api_client__prefix=client_id)
        .first()
    )
    if registration is None or registration.api_client.revoked_at is not None:
        raise TokenRequestRefused("invalid_client", "Unknown or revoked client.")
    return registration


def _verified_claims(assertion, *, registration, audiences):
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise TokenRequestRefused("invalid_client", "The client assertion is not a JWT.") from None
    if header.get("alg") not in SIGNING_ALGORITHMS:
        raise TokenRequestRefused(
            "invalid_client", f"Sign the assertion with {' or '.join(SIGNING_ALGORITHMS)}."
        )
    try:
        key_set = jwt.PyJWKSet.from_dict(registration.jwks)
    except jwt.PyJWTError:
        raise TokenRequestRefused(
            "invalid_client", "The client's registered JWK Set holds no usable key."
        ) from None
    kid = header.get("kid")
    candidates = [key for key in key_set.keys if kid is None or key.key_id == kid]
    for candidate in candidates:
        try:
            return jwt.decode(
                assertion,
                key=candidate,
                algorithms=[header["alg"]],
                audience=list(audiences),
                issuer=registration.client_id,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise TokenRequestRefused(
                "invalid_client", f"The client assertion is not valid: {exc}."
            ) from None
    raise TokenRequestRefused(
        "invalid_client", "No registered key of this client verifies the assertion's signature."
    )


def access_token_issue(*, form, audiences, request=None):
    """SMART Backend Services' token request: a client_credentials grant
    authenticated by a JWT the client signed with a key it registered. Returns
    an IssuedAccessToken or raises TokenRequestRefused; both are audited."""
    client = None
    try:
        if form.get("grant_type") != "client_credentials":
            raise TokenRequestRefused("unsupported_grant_type", "Use client_credentials.")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenRequestRefused(
                "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}."
            )
        assertion = form.get("client_assertion") or ""
        registration = _registration_of(assertion)
        client = registration.api_client
        claims = _verified_claims(assertion, registration=registration, audiences=audiences)
        expires = datetime.fromtimestamp(claims["exp"], tz=UTC)
        now = timezone.now()
        if expires - now > ASSERTION_MAX_LIFETIME:
            raise TokenRequestRefused(
                "invalid_client", "The assertion must expire within five minutes."
            )
        try:
            requested = scopes.parse_requested(
                form.get("scope") or "", known_types=list(registry.RESOURCES)
            )
        except scopes.InvalidScope as exc:
            raise TokenRequestRefused("invalid_scope", str(exc)) from None
        grant = scopes.narrow(scopes.grant_of_client(client), requested)
        if not grant.permissions:
            raise TokenRequestRefused(
                "invalid_scope", "This client is not allowed any of the requested scopes."
            )
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        lifetime = settings.FHIR_TOKEN_SECONDS
        with transaction.atomic():
            try:
                with transaction.atomic():
                    UsedAssertion.objects.create(
                        api_client=client, jti=str(claims["jti"])[:255], expires_at=expires
                    )
            except IntegrityError:
                raise TokenRequestRefused(
                    "invalid_client", "This assertion was used before (its jti is spent)."
                ) from None
            AccessToken.objects.create(
                token_hash=_sha256(raw),
                api_client=client,
                scopes=grant.scope_strings(),
                issued_at=now,
                expires_at=now + timedelta(seconds=lifetime),
            )
            _audit_token_request(client=client, request=request, outcome="success")
        return IssuedAccessToken(token=raw, expires_in=lifetime, grant=grant)
    except TokenRequestRefused as refused:
        refused.client = client
        _audit_token_request(client=client, request=request, outcome="denied", reason=refused.error)
        raise


def _audit_token_request(*, client, request, outcome, reason=None):
    details = {"grant_type": "client_credentials"}
    if reason:
        details["reason"] = reason
    audit_record(
        action="login" if outcome == "success" else "login_failed",
        resource_type="fhir_token",
        outcome=outcome,
        http_status=200 if outcome == "success" else 400,
        purpose_of_use="HSYSADMIN",
        api_client=client,
        request=request,
        details=details,
    )


@dataclass(frozen=True)
class AuthenticatedToken:
    api_client: object
    grant: scopes.Grant


def access_token_authenticate(*, raw_token):
    """The client and grant of a live token. The grant is what the token was
    issued for, narrowed to what the client's scopes allow now: removing a scope
    from a client takes effect on its tokens at once."""
    record = sql.get_with_related(AccessToken, "api_client", token_hash=_sha256(raw_token))
    if record is None:
        raise TokenRejected("unknown_token")
    if timezone.now() >= record.expires_at:
        raise TokenRejected("token_expired")
    client = record.api_client
    if client.revoked_at is not None:
        raise TokenRejected("api_key_revoked")
    requested = scopes.parse_requested(" ".join(record.scopes), known_types=[])
    return AuthenticatedToken(
        api_client=client, grant=scopes.narrow(scopes.grant_of_client(client), requested)
    )


def expired_tokens_purge(*, now=None):
    """Drop expired tokens and spent assertions (a beat task runs it)."""
    now = now or timezone.now()
    tokens, _ = AccessToken.objects.filter(expires_at__lt=now).delete()
    assertions, _ = UsedAssertion.objects.filter(expires_at__lt=now).delete()
    return tokens + assertions
