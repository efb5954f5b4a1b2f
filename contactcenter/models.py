"""Shared primitives: teams, staff profiles, staff tokens and integration API keys."""

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from contactcenter.fields import EncryptedTextField


class Team(models.Model):
    """A care team. Membership is membership of the team's group, which is also
    what object permissions on patients and conversations are granted to."""

    name = models.CharField(max_length=100, unique=True)
    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="team")
    is_clinical = models.BooleanField(
        default=False, help_text="Receives clinical escalations (triage nurses)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class StaffProfile(models.Model):
    class Availability(models.TextChoices):
        AVAILABLE = "available"
        BUSY = "busy"
        AWAY = "away"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_profile"
    )
    availability = models.CharField(
        max_length=12, choices=Availability.choices, default=Availability.AWAY
    )
    capacity = models.PositiveSmallIntegerField(
        default=30, help_text="Most open conversations routing assigns to this person."
    )
    languages = models.JSONField(
        default=list,
        blank=True,
        help_text='Languages this person answers patients in, as codes: ["en", "es"]. '
        "Routing prefers a teammate who speaks the conversation's language.",
    )

    def __str__(self):
        return f"{self.user} ({self.availability})"


class AuthToken(models.Model):
    """A staff bearer token. Only its SHA-256 is stored; the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="auth_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    # The role at login, so audit rows and role checks need no groups query per
    # request; a role change takes effect at the next login.
    role = models.CharField(max_length=20, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField()
    expires_at = models.DateTimeField(help_text="Absolute expiry, however active the token.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self):
        return f"token {self.pk} of {self.user}"


class ApiClient(models.Model):
    """An integration (portal, EHR, scheduler) with a hashed, scoped, revocable key.

    The key is `cck_<prefix>_<secret>`: the prefix finds the row, the secret is
    compared against its SHA-256 (the secret is 256 random bits, so a slow hash
    would add latency to every request without adding safety).
    """

    class Scope(models.TextChoices):
        PATIENTS_READ = "patients:read"
        PATIENTS_WRITE = "patients:write"
        APPOINTMENTS_WRITE = "appointments:write"
        PORTAL_WRITE = "portal:write"
        TIMELINE_READ = "timeline:read"
        DISCLOSURES_WRITE = "disclosures:write"
        # The FHIR interface (fhir/scopes.py maps every scope onto SMART scopes).
        COMMUNICATIONS_READ = "communications:read"
        AUDIT_READ = "audit:read"

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="Patients and conversations this client creates belong to this team.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(prefix=""), name="apiclient_prefix_not_empty")
        ]

    def __str__(self):
        return self.name

    @property
    def is_active(self):
        return self.revoked_at is None

    def has_scope(self, scope):
        return scope in self.scopes


class IdempotentRequest(models.Model):
    """A POST that created something, under the caller's `Idempotency-Key`: the
    same key from the same caller within IDEMPOTENCY_SECONDS answers with the
    stored result instead of creating again (contactcenter/idempotency.py).

    The row is inserted, unfinished, before the view runs and in the request's
    transaction, so a concurrent retry waits on the unique key and then finds
    the result; a request that fails rolls its row back with everything else.
    The stored answer can name a patient, so it is encrypted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    principal = models.CharField(max_length=40, help_text="user:<id> or client:<id>")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(
        max_length=64, help_text="HMAC of the method, path and body the key was first used with."
    )
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = EncryptedTextField(blank=True, default="")
    patient_ids = models.JSONField(
        default=list,
        blank=True,
        help_text="Patients the first answer named, for the replay's audit row.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["principal", "key"], name="idempotent_request_unique")
        ]

    def __str__(self):
        return f"{self.principal} {self.key}"
