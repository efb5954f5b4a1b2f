"""Who calls the FHIR interface: an integration, with a SMART backend token
(ccf_...) or its API key (cck_...). Either way request.user is the API client's
principal, so every selector and audit row treats it as the REST API does, and
`request.user.fhir_grant` holds what it may do here."""

from rest_framework import authentication, exceptions

from contactcenter.auth import ApiClientPrincipal, BearerAuthentication
from fhir import scopes, services


class FhirAuthentication(BearerAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() == self.keyword.lower() and raw.startswith(services.TOKEN_PREFIX):
            try:
                token = services.access_token_authenticate(raw_token=raw)
            except services.TokenRejected as rejected:
                request._request.auth_failure_reason = rejected.reason
                raise exceptions.AuthenticationFailed(
                    "The access token is invalid or expired.", code="invalid_token"
                ) from None
            principal = ApiClientPrincipal(token.api_client)
            principal.fhir_grant = token.grant
            return principal, token
        result = super().authenticate(request)
        if result is None:
            return None
        user, _credential = result
        if not getattr(user, "is_api_client", False):
            raise exceptions.PermissionDenied(
                "The FHIR interface serves registered systems: use a SMART backend token "
                "or an API key."
            )
        user.fhir_grant = scopes.grant_of_client(user.client)
        return result
