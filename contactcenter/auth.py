"""Bearer authentication for staff tokens and integration API keys."""

from django.http import JsonResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from contactcenter import services


class ApiClientPrincipal:
    """Stands in for request.user when an integration calls: authenticated, with
    no staff identity, no groups and no object permissions of its own."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    is_api_client = True
    pk = None
    id = None

    def __init__(self, client):
        self.client = client
        self.username = f"api:{client.name}"

    def __str__(self):
        return self.username

    def get_username(self):
        return self.username

    def has_perm(self, perm, obj=None):
        return False


def api_client_of(request):
    user = getattr(request, "user", None)
    return user.client if getattr(user, "is_api_client", False) else None


def staff_user_of(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or getattr(user, "is_api_client", False):
        return None
    return user


class BearerAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>`: a staff token (ccs_...) or an API key (cck_...).

    A rejected credential leaves its reason on the request; the audit layer records
    it with the 401 it causes."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        try:
            if raw.startswith(services.API_KEY_PREFIX):
                client = services.api_client_authenticate(raw_key=raw)
                return ApiClientPrincipal(client), client
            token = services.token_authenticate(raw_token=raw)
            return token.user, token
        except services.TokenRejected as rejected:
            request._request.auth_failure_reason = rejected.reason
            raise exceptions.AuthenticationFailed(
                "The credential is invalid, expired or revoked.", code="invalid_token"
            ) from None

    def authenticate_header(self, request):
        return self.keyword


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "contactcenter.auth.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A staff token from POST /api/v1/auth/token/ or an API key.",
        }


def lockout_response(request, original_response=None, credentials=None):
    """django-axes answers lockouts in the API's error shape, and in plain text
    for the admin's login page."""
    # Imported here: contactcenter.errors imports rest_framework.views, which
    # imports this module through the DEFAULT_AUTHENTICATION_CLASSES setting.
    from django.http import HttpResponse

    from contactcenter.errors import error_body, is_api_path

    if not is_api_path(request.path):
        return HttpResponse(
            "Too many failed logins. Try again later.", status=429, content_type="text/plain"
        )

    body = error_body(
        request,
        status=429,
        code="locked_out",
        message="Too many failed logins. Try again later.",
    )
    return JsonResponse(body, status=429)
