"""Rate limits, counted in the cache (Redis in production) by DRF's throttles:
per API key and per staff token on the API, per source address on the survey page
and on webhook requests whose signature fails. Validly signed provider traffic is
never counted. When the cache cannot be reached the request is let through and
the failure logged: a limit is a protection, not a dependency of the API.

Rates are read from settings.THROTTLE_RATES on every check (environment
variables, see settings/base.py), as "N/second|minute|hour|day"."""

import structlog
from axes.helpers import get_client_ip_address
from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

logger = structlog.get_logger(__name__)


class _FailOpenThrottle(SimpleRateThrottle):
    def get_rate(self):
        return settings.THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            logger.warning("throttle_unavailable", scope=self.scope, error=type(exc).__name__)
            return True


class ApiKeyThrottle(_FailOpenThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        if not getattr(user, "is_api_client", False):
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.client.pk}


class StaffTokenThrottle(_FailOpenThrottle):
    scope = "staff_token"

    def get_cache_key(self, request, view):
        user = getattr(request, "user", None)
        token = getattr(request, "auth", None)
        if not getattr(user, "is_authenticated", False) or getattr(user, "is_api_client", False):
            return None
        if token is None or getattr(token, "pk", None) is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": token.pk}


class AddressThrottle(_FailOpenThrottle):
    """Per source address, for plain Django views (no DRF request)."""

    def __init__(self, scope):
        self.scope = scope
        super().__init__()

    def get_cache_key(self, request, view):
        address = get_client_ip_address(request) or "unknown"
        return self.cache_format % {"scope": self.scope, "ident": address}


def address_throttled(request, scope):
    """Count this request against its address's limit in `scope`; the 429 to answer
    when the limit is passed, else None."""
    # Imported here: DRF imports this module while contactcenter.errors imports DRF.
    from contactcenter.errors import error_response

    throttle = AddressThrottle(scope)
    if throttle.allow_request(request, None):
        return None
    wait = throttle.wait()
    response = error_response(
        request,
        status=429,
        code="throttled",
        message="Too many requests from this address; try again later.",
        details={},
    )
    response["Retry-After"] = str(max(1, round(wait or 1)))
    return response
