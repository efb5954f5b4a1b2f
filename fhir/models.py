"""SMART Backend Services registrations and the short-lived tokens they obtain.

A registration hangs off an existing API client: the client's team bounds what it
sees and its scopes bound what it may do (fhir/scopes.py), whether it calls with
its API key or with a token obtained by a signed assertion."""

from django.db import models

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
