"""Writes of the FHIR interface: SMART backend tokens. Patients, appointments and
everything else are written by the services of the apps that own them."""

import functools
import hashlib
import json
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from compliance.services import audit_record
from contactcenter import sql
from contactcenter.process_copy import ProcessCopy
from fhir import registry, scopes
from fhir.models import AccessToken, SmartClient, Subscription, UsedAssertion

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


# --- Bulk export ($export) --------------------------------------------------------------

# Types a bulk export can hold, in the order written, with the read scope each needs.
EXPORT_TYPES = ("Patient", "Appointment", "CommunicationRequest", "Communication")
# Patients per keyset step: the unit of memory, and of the audit row naming them.
EXPORT_BATCH = 500


class ExportRefused(ValueError):
    """The client's scopes do not allow reading a type it asked for."""


class UnknownExportType(ValueError):
    pass


def export_job_start(*, client, grant, team_id, types, since, request_url, request=None):
    """Record a bulk export for the worker. `types` (None for every type the
    grant may read) are checked against the grant; raises ExportRefused."""
    allowed = [t for t in EXPORT_TYPES if grant.allows(t, "r")]
    wanted = list(types) if types else allowed
    unknown = [t for t in wanted if t not in EXPORT_TYPES]
    if unknown:
        raise UnknownExportType(
            f"_type {', '.join(unknown)} is not exported here ({', '.join(EXPORT_TYPES)})."
        )
    refused = [t for t in wanted if t not in allowed]
    if refused:
        raise ExportRefused(f"This client's scopes do not allow reading {', '.join(refused)}.")
    if not wanted:
        raise ExportRefused("This client's scopes allow no exported type.")
    from contactcenter.queueing import enqueue_on_commit
    from fhir.models import ExportJob
    from fhir.tasks import bulk_export_run

    with transaction.atomic():
        job = ExportJob.objects.create(
            api_client=client,
            team_id=team_id,
            types=[t for t in EXPORT_TYPES if t in wanted],
            since=since,
            request_url=request_url[:1000],
            expires_at=timezone.now() + timedelta(hours=settings.FHIR_EXPORT_HOURS),
        )
        audit_record(
            action="export",
            resource_type="fhir_export",
            resource_id=str(job.pk),
            api_client=client,
            request=request,
            purpose_of_use="TREAT",
            details={"types": job.types, "team_id": team_id},
        )
        enqueue_on_commit(bulk_export_run, str(job.pk))
    return job


def export_file_path(job, resource_type):
    return Path(settings.FHIR_EXPORT_DIR) / str(job.pk) / f"{resource_type}.ndjson"


def export_job_run(*, job_id):
    """Write the export's files: patients by keyset in batches of EXPORT_BATCH,
    each resource dumped and written as one line, so memory holds one batch
    whatever the export's size. Claimed by a conditional update: a redelivered
    task does not run an export twice."""
    from fhir.models import ExportJob

    claimed = ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.ACCEPTED).update(
        status=ExportJob.Status.RUNNING
    )
    if not claimed:
        return None
    job = ExportJob.objects.select_related("api_client").get(pk=job_id)
    try:
        counts = _write_export(job)
    except Exception as exc:
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.FAILED, error=type(exc).__name__, completed_at=timezone.now()
        )
        raise
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.Status.COMPLETED,
        output=[
            {"type": t, "file": export_file_path(job, t).name, "count": counts[t]}
            for t in job.types
            if counts[t]
        ],
        completed_at=timezone.now(),
        progress="",
    )
    return counts


def _write_export(job):
    from channels_app import selectors as channel_selectors
    from contactcenter.auth import ApiClientPrincipal
    from fhir import mapping
    from fhir.models import ExportJob
    from patients import selectors as patient_selectors
    from reminders import selectors as reminder_selectors

    client = job.api_client
    principal = ApiClientPrincipal(client)
    grant = scopes.grant_of_client(client)
    if client.revoked_at is not None or not all(grant.allows(t, "r") for t in job.types):
        raise PermissionError("The client lost a scope this export needs.")
    directory = export_file_path(job, "x").parent
    directory.mkdir(parents=True, exist_ok=True)
    files = {t: export_file_path(job, t).open("w", encoding="utf-8") for t in job.types}
    counts = dict.fromkeys(job.types, 0)

    def write(resource_type, resource):
        files[resource_type].write(json.dumps(resource, separators=(",", ":")))
        files[resource_type].write("\n")
        counts[resource_type] += 1

    patients = patient_selectors.patients_visible_to(principal)
    if job.team_id is not None:
        patients = patients.filter(team_id=job.team_id)
    try:
        cursor = None
        while True:
            batch_query = patients.order_by("created_at", "id").prefetch_related("contact_points")
            if cursor is not None:
                batch_query = batch_query.filter(_after_keyset(cursor, created_field="created_at"))
            batch = list(batch_query[:EXPORT_BATCH])
            if not batch:
                break
            cursor = (batch[-1].created_at, batch[-1].pk)
            ids = [p.pk for p in batch]
            since = job.since
            if "Patient" in files:
                for patient in batch:
                    if since is None or patient.updated_at >= since:
                        write("Patient", mapping.patient_resource(patient))
            appointments = patient_selectors.appointments_visible_to(principal).filter(
                patient_id__in=ids
            )
            if since is not None:
                appointments = appointments.filter(updated_at__gte=since)
            if "Appointment" in files:
                for appointment in appointments.order_by("patient_id", "starts_at", "id"):
                    write("Appointment", mapping.appointment_resource(appointment))
            if "CommunicationRequest" in files:
                reminders = reminder_selectors.reminders_of_appointments(
                    appointments=patient_selectors.appointments_visible_to(principal).filter(
                        patient_id__in=ids
                    )
                ).select_related("appointment")
                if since is not None:
                    reminders = reminders.filter(updated_at__gte=since)
                for reminder in reminders.order_by("appointment_id", "created_at", "id"):
                    write(
                        "CommunicationRequest",
                        mapping.reminder_resource(
                            reminder, patient_id=reminder.appointment.patient_id
                        ),
                    )
            if "Communication" in files:
                for conversation in channel_selectors.conversations_of_patients(patient_ids=ids):
                    if since is None or conversation.updated_at >= since:
                        write(
                            "Communication",
                            mapping.conversation_resource(conversation, content=grant.content),
                        )
                for interaction in channel_selectors.interactions_of_patients(patient_ids=ids):
                    if since is not None and interaction.created_at < since:
                        continue
                    row = channel_selectors.interaction_row(interaction)
                    write(
                        "Communication",
                        mapping.communication_resource(
                            row, patient_id=row["patient_id"], content=grant.content
                        ),
                    )
            audit_record(
                action="export",
                resource_type="fhir_export",
                resource_id=str(job.pk),
                patient_ids=ids,
                api_client=client,
                details={"batch_patients": len(ids)},
            )
            ExportJob.objects.filter(pk=job.pk).update(
                progress=f"{sum(counts.values())} resources written"
            )
    finally:
        for handle in files.values():
            handle.close()
    return counts


def _after_keyset(cursor, *, created_field):
    """Rows after (created_at, id) in ascending keyset order."""
    from django.db.models import Q

    stamp, row_id = cursor
    return Q(**{f"{created_field}__gt": stamp}) | Q(**{created_field: stamp, "pk__gt": row_id})


def expired_exports_purge(*, now=None):
    """Delete expired exports and their files."""
    from fhir.models import ExportJob

    now = now or timezone.now()
    expired = list(ExportJob.objects.filter(expires_at__lt=now))
    for job in expired:
        shutil.rmtree(export_file_path(job, "x").parent, ignore_errors=True)
    ExportJob.objects.filter(pk__in=[job.pk for job in expired]).delete()
    return len(expired)


def exports_never_started(*, grace_seconds=300):
    """Exports still waiting for the worker well after they were accepted."""
    from fhir.models import ExportJob

    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    return list(
        ExportJob.objects.filter(
            status=ExportJob.Status.ACCEPTED, created_at__lt=cutoff
        ).values_list("pk", flat=True)
    )


# --- Subscriptions (R4 rest-hook) --------------------------------------------------------


def deliveries_never_started(*, grace_seconds=300):
    """Deliveries recorded well before now that no attempt reached (the broker
    was down when their transaction committed): queued again by beat."""
    from fhir.models import SubscriptionDelivery

    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    return list(
        SubscriptionDelivery.objects.filter(
            state=SubscriptionDelivery.State.PENDING, attempts=0, created_at__lt=cutoff
        ).values_list("pk", flat=True)
    )


SUBSCRIPTION_CRITERIA = "Communication"
SUBSCRIPTION_SIGNATURE_HEADER = "X-Contactcenter-Signature"
DELIVERY_MAX_ATTEMPTS = 6


class SubscriptionRefused(ValueError):
    pass


def subscription_create(*, client, principal, criteria, endpoint, with_payload):
    """A rest-hook subscription to new Communications of the client's patients, or
    of one (criteria `Communication?patient=Patient/{id}`). Returns it with its
    signing secret (shown to the client once, in the create response)."""
    from patients.selectors import patients_visible_to

    resource_type, _, query = criteria.partition("?")
    if resource_type != SUBSCRIPTION_CRITERIA:
        raise SubscriptionRefused(
            "Subscriptions are to new Communications: criteria Communication."
        )
    patient_id = None
    if query:
        name, _, value = query.partition("=")
        if name != "patient" or not value.startswith("Patient/"):
            raise SubscriptionRefused("The criteria may name one patient: ?patient=Patient/{id}.")
        try:
            patient_id = uuid.UUID(value.split("/", 1)[1])
        except ValueError:
            raise SubscriptionRefused("The criteria's patient is not an id here.") from None
        if not patients_visible_to(principal).filter(pk=patient_id).exists():
            raise SubscriptionRefused("No such patient among those this client may see.")
    if not endpoint.startswith(("https://", "http://")):
        raise SubscriptionRefused("The endpoint is an http(s) URL.")
    return Subscription.objects.create(
        api_client=client,
        criteria=criteria,
        patient_id=patient_id,
        endpoint=endpoint,
        with_payload=with_payload,
        secret=secrets.token_urlsafe(32),
    )


def subscriptions_notify(*, interaction):
    """Record a delivery for every active subscription that may see this new
    interaction's patient, and queue it for the worker."""
    from contactcenter.auth import ApiClientPrincipal
    from contactcenter.queueing import enqueue_on_commit
    from fhir.models import SubscriptionDelivery
    from fhir.tasks import subscription_deliver
    from patients.selectors import patients_visible_to

    if interaction.patient_id is None or interaction.direction == interaction.Direction.INTERNAL:
        # Notes and timeline events are the staff's, not messages with the patient.
        return 0
    if not _any_subscription_for(interaction.patient_id):
        return 0
    matching = (
        Subscription.objects.filter(status=Subscription.Status.ACTIVE)
        .filter(models.Q(patient_id__isnull=True) | models.Q(patient_id=interaction.patient_id))
        .select_related("api_client")
    )
    queued = 0
    for subscription in matching:
        client = subscription.api_client
        if client.revoked_at is not None:
            continue
        if not scopes.grant_of_client(client).allows("Communication", "r"):
            continue
        principal = ApiClientPrincipal(client)
        if not patients_visible_to(principal).filter(pk=interaction.patient_id).exists():
            continue
        delivery, created = SubscriptionDelivery.objects.get_or_create(
            subscription=subscription, interaction_id=interaction.pk
        )
        if created:
            enqueue_on_commit(subscription_deliver, delivery.pk)
            queued += 1
    return queued


# Asked for every message stored, where nearly always no subscription names the
# patient: the active subscriptions' patients are kept in each process instead
# (contactcenter.process_copy; a new subscription reaches every process within a
# second). Past SUBSCRIBED_PATIENTS_KEPT patient-level subscriptions the set is not
# kept and each message asks the database, as before.
SUBSCRIBED_PATIENTS_KEPT = 10_000
_MANY = object()


def _subscribed_patients():
    """(whether a subscription covers every patient its client may see, the
    patients subscriptions name, or _MANY)."""
    patient_ids = set(
        Subscription.objects.filter(status=Subscription.Status.ACTIVE)
        .order_by()
        .values_list("patient_id", flat=True)
        # One more than kept, and NULL (a subscription to every patient).
        .distinct()[: SUBSCRIBED_PATIENTS_KEPT + 2]
    )
    everyone = None in patient_ids
    patient_ids.discard(None)
    if len(patient_ids) > SUBSCRIBED_PATIENTS_KEPT:
        return everyone, _MANY
    return everyone, frozenset(patient_ids)


_subscribed = ProcessCopy("fhir_subscribed_patients", _subscribed_patients).watch(Subscription)


def _any_subscription_for(patient_id):
    """Whether an active subscription names this patient or all of a client's. A
    subscription turned off or in error by a queryset update may still count here
    for up to a copy's maximum age: subscriptions_notify reads the active ones again."""
    everyone, patient_ids = _subscribed.get()
    if everyone:
        return True
    if patient_ids is not _MANY:
        return patient_id in patient_ids
    statement, (status, patient) = _any_subscription_statement()
    return sql.exists(
        statement,
        [sql.param(status, Subscription.Status.ACTIVE), sql.param(patient, patient_id)],
    )


@functools.cache
def _any_subscription_statement():
    quote = connection.ops.quote_name
    status = Subscription._meta.get_field("status")
    patient = Subscription._meta.get_field("patient_id")
    statement = (
        f"SELECT 1 FROM {quote(Subscription._meta.db_table)} "  # noqa: S608
        f"WHERE {quote(status.column)} = %s "
        f"AND ({quote(patient.column)} IS NULL OR {quote(patient.column)} = %s)"
    )
    return statement, (status, patient)


class DeliveryFailed(Exception):
    def __init__(self, message, *, permanent):
        super().__init__(message)
        self.permanent = permanent


def subscription_deliver(*, delivery_id):
    """POST one signed notification. Raises DeliveryFailed (permanent or not);
    the task retries the others with backoff until DELIVERY_MAX_ATTEMPTS."""
    import requests

    from channels_app.adapters.portal import portal_signature
    from channels_app.models import Interaction
    from channels_app.selectors import interaction_row
    from fhir import mapping
    from fhir.models import SubscriptionDelivery

    delivery = (
        SubscriptionDelivery.objects.select_related("subscription__api_client")
        .filter(pk=delivery_id, state=SubscriptionDelivery.State.PENDING)
        .first()
    )
    if delivery is None:
        return None
    subscription = delivery.subscription
    SubscriptionDelivery.objects.filter(pk=delivery.pk).update(attempts=models.F("attempts") + 1)
    body = b""
    if subscription.with_payload:
        interaction = Interaction.objects.select_related("author", "outbound").get(
            pk=delivery.interaction_id
        )
        row = interaction_row(interaction)
        grant = scopes.grant_of_client(subscription.api_client)
        resource = mapping.communication_resource(
            row, patient_id=row["patient_id"], content=grant.content
        )
        body = json.dumps(resource, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/fhir+json",
        SUBSCRIPTION_SIGNATURE_HEADER: portal_signature(
            secret=subscription.secret, timestamp=timestamp, body=body
        ),
        "X-Subscription-Id": str(subscription.pk),
        "Idempotency-Key": str(delivery.pk),
    }
    try:
        response = requests.post(subscription.endpoint, data=body, headers=headers, timeout=10)
    except requests.RequestException as exc:
        _delivery_failed(delivery, error=exc.__class__.__name__, status_code=None)
        raise DeliveryFailed(exc.__class__.__name__, permanent=False) from None
    if response.status_code >= 300:
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        _delivery_failed(
            delivery, error=f"HTTP {response.status_code}", status_code=response.status_code
        )
        raise DeliveryFailed(f"HTTP {response.status_code}", permanent=permanent)
    SubscriptionDelivery.objects.filter(pk=delivery.pk).update(
        state=SubscriptionDelivery.State.DELIVERED,
        last_status_code=response.status_code,
        last_error="",
        delivered_at=timezone.now(),
    )
    return response.status_code


def _delivery_failed(delivery, *, error, status_code):
    from fhir.models import SubscriptionDelivery

    SubscriptionDelivery.objects.filter(pk=delivery.pk).update(
        last_error=error[:200], last_status_code=status_code
    )


def subscription_delivery_give_up(*, delivery_id, reason):
    """The last attempt failed: the delivery is failed for good, and the
    subscription is marked in error (FHIR's status), visibly."""
    from fhir.models import SubscriptionDelivery

    delivery = SubscriptionDelivery.objects.select_related("subscription").get(pk=delivery_id)
    # One commit: nobody sees the delivery failed and its subscription still active.
    with transaction.atomic():
        SubscriptionDelivery.objects.filter(pk=delivery.pk).update(
            state=SubscriptionDelivery.State.FAILED
        )
        Subscription.objects.filter(pk=delivery.subscription_id).update(
            status=Subscription.Status.ERROR, reason=reason[:200]
        )
