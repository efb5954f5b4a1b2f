"""SMART Backend Services registrations and the short-lived tokens they obtain.

A registration hangs off an existing API client: the client's team bounds what it
sees and its scopes bound what it may do (fhir/scopes.py), whether it calls with
its API key or with a token obtained by a signed assertion."""

import uuid

from django.db import models

from contactcenter.fields import EncryptedCharField
from contactcenter.models import ApiClient


class SmartClient(models.Model):
    """The public keys (a JWK Set) an integration signs its token requests with."""

    api_client = models.OneToOneField(
        ApiClient, on_delete=models.CASCADE, related_name="smart", primary_key=True
    )
    jwks = models.JSONField(
        help_text='The client\'s public JWK Set: {"keys": [...]} (RS384 or ES384 keys).'
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"SMART registration of {self.api_client}"

    @property
    def client_id(self):
        """The OAuth client_id: the API client's public prefix."""
        return self.api_client.prefix


class AccessToken(models.Model):
    """A bearer token issued at the token endpoint. Only its SHA-256 is stored."""

    token_hash = models.CharField(max_length=64, unique=True)
    api_client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    scopes = models.JSONField(help_text="The SMART scopes granted, as issued.")
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="fhir_token_expiry_idx")]

    def __str__(self):
        return f"token {self.pk} of {self.api_client_id}"


class UsedAssertion(models.Model):
    """The jti of every accepted client assertion until it expires, so an
    intercepted assertion cannot be replayed."""

    api_client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_client", "jti"], name="fhir_assertion_once")
        ]
        indexes = [models.Index(fields=["expires_at"], name="fhir_assertion_expiry_idx")]

    def __str__(self):
        return f"assertion {self.jti}"


class ExportJob(models.Model):
    """A bulk export ($export) of one client: kicked off by a request, written by
    the worker as one NDJSON file per resource type, kept until expires_at."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    api_client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    team_id = models.BigIntegerField(
        null=True, blank=True, help_text="The Group (team) exported; empty for Patient/$export."
    )
    types = models.JSONField(help_text="Resource types, in the order written.")
    since = models.DateTimeField(null=True, blank=True)
    request_url = models.CharField(max_length=1000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACCEPTED)
    progress = models.CharField(max_length=100, blank=True, default="")
    output = models.JSONField(default=list, help_text="[{type, file, count}] once completed.")
    error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="fhir_export_expiry_idx")]

    def __str__(self):
        return f"export {self.pk} ({self.status})"


class Subscription(models.Model):
    """An R4 rest-hook Subscription to new Communications of a client's patients
    (all of them, or one: criteria `Communication?patient=Patient/{id}`)."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        ERROR = "error"
        OFF = "off"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    api_client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    criteria = models.CharField(max_length=200)
    patient_id = models.UUIDField(null=True, blank=True)
    endpoint = models.URLField(max_length=500)
    with_payload = models.BooleanField(default=False)
    secret = EncryptedCharField(max_length=100, help_text="Signs notifications (HMAC-SHA256).")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["status"], name="fhir_subscription_status_idx")]

    def __str__(self):
        return f"subscription {self.pk} ({self.status})"


class SubscriptionDelivery(models.Model):
    """One notification of one subscription: the delivery log."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    interaction_id = models.UUIDField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "interaction_id"], name="fhir_delivery_once"
            )
        ]
        indexes = [
            models.Index(fields=["subscription", "-created_at"], name="fhir_delivery_log_idx"),
            # Beat re-queues what the broker never got.
            models.Index(
                fields=["created_at"],
                condition=models.Q(state="pending", attempts=0),
                name="fhir_delivery_unsent_idx",
            ),
        ]

    def __str__(self):
        return f"delivery {self.pk} ({self.state})"
