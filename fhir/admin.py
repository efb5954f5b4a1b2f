import jwt
from django import forms
from django.contrib import admin

from contactcenter.admin_site import RoleRestrictedAdmin
from fhir.models import SmartClient, Subscription, SubscriptionDelivery
from fhir.services import SIGNING_ALGORITHMS


class SmartClientForm(forms.ModelForm):
    class Meta:
        model = SmartClient
        fields = ["api_client", "jwks"]

    def clean_jwks(self):
        jwks = self.cleaned_data["jwks"]
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not keys or not all(isinstance(key, dict) for key in keys):
            raise forms.ValidationError('A JWK Set is {"keys": [ ... ]} with at least one key.')
        for key in keys:
            if key.get("kty") not in ("RSA", "EC"):
                raise forms.ValidationError("Register RSA or EC keys.")
            if PRIVATE_MEMBERS & key.keys():
                raise forms.ValidationError("Register public keys only (no private members).")
            if key.get("alg") and key["alg"] not in SIGNING_ALGORITHMS:
                raise forms.ValidationError(f"Keys sign with {' or '.join(SIGNING_ALGORITHMS)}.")
        try:
            jwt.PyJWKSet.from_dict(jwks)
        except jwt.PyJWTError as exc:
            raise forms.ValidationError(f"Not a usable JWK Set: {exc}") from None
        return jwks


# The members of a JWK that belong to the private key.
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


@admin.register(SmartClient)
class SmartClientAdmin(RoleRestrictedAdmin):
    """An API client's SMART Backend Services registration: its public keys. The
    client_id to put in assertions is the API client's prefix."""

    form = SmartClientForm
    list_display = ["api_client", "client_id", "updated_at"]
    search_fields = ["api_client__name", "api_client__prefix"]
    autocomplete_fields = ["api_client"]

    @admin.display(description="client_id")
    def client_id(self, registration):
        return registration.client_id


class DeliveryInline(admin.TabularInline):
    model = SubscriptionDelivery
    fields = ["created_at", "interaction_id", "state", "attempts", "last_status_code", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(RoleRestrictedAdmin):
    """Rest-hook subscriptions and their delivery log (read-only: clients manage
    their subscriptions over FHIR)."""

    list_display = ["pk", "api_client", "criteria", "status", "created_at"]
    list_filter = ["status"]
    fields = ["api_client", "criteria", "endpoint", "with_payload", "status", "reason"]
    readonly_fields = fields
    inlines = [DeliveryInline]

    def has_add_permission(self, request):
        return False
