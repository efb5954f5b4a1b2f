import re
import time
import uuid

import structlog
from django.http import JsonResponse
from django.utils.functional import SimpleLazyObject, empty

from contactcenter.errors import error_body, is_api_path

logger = structlog.stdlib.get_logger("contactcenter.request")

# A caller-supplied id is echoed and logged, so it must not carry log injection.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# URL parameters that are credentials (a survey link's token lets whoever holds it
# answer that survey): a request whose URL carries one is logged by its route.
SECRET_URL_KWARGS = frozenset({"token"})
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def _loggable_path(request):
    match = getattr(request, "resolver_match", None)
    if match is not None and SECRET_URL_KWARGS & match.kwargs.keys():
        # "survey/<str:token>/" is logged as "/survey/<token>/".
        return "/" + _CONVERTER.sub(r"<\1>", match.route)
    return request.path


def _known_user_id(request):
    """The user's id when the request already loaded it. Loading it here would cost
    a session and a user query on pages that never needed one, and raise again
    when the database is down (its 503 would then lose this line and the header)."""
    user = getattr(request, "user", None)
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None
    return getattr(user, "pk", None)


class RequestIdMiddleware:
    """Give every request an id (from X-Request-ID when valid), bind it to every
    log line, echo it in the response, and log one line per request without bodies
    or query strings (those may carry PHI such as ?phone=)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        request.request_id = supplied if _VALID_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
        started = time.perf_counter()
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        logger.info(
            "request",
            method=request.method,
            path=_loggable_path(request),
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            user_id=_known_user_id(request),
        )
        structlog.contextvars.clear_contextvars()
        return response


class JsonErrorMiddleware:
    """Every 4xx and 5xx under /api/ and /webhooks/ leaves in the one error shape,
    whoever produced it: Django's 404 and 500 handlers, the CSRF view, or DRF."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api_path(request.path)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            converted = JsonResponse(
                error_body(request, status=response.status_code), status=response.status_code
            )
            for header in ("WWW-Authenticate", "Retry-After", "Allow"):
                if header in response:
                    converted[header] = response[header]
            return converted
        return response


SIGNED_IN_AT = "signed_in_at"
RENEWED_AT = "renewed_at"


class SessionAbsoluteExpiryMiddleware:
    """Signed-in sessions expire like staff tokens: idle after SESSION_COOKIE_AGE
    (SESSION_IDLE_SECONDS), renewed by activity at most every SESSION_RENEW_SECONDS
    so a busy page does not write its session on every request, and in any case
    TOKEN_ABSOLUTE_SECONDS after sign-in. A session that does not know when it
    signed in is ended too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings
        from django.contrib.auth import logout

        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            now = time.time()
            signed_in_at = request.session.get(SIGNED_IN_AT)
            if signed_in_at is None or now - signed_in_at > settings.TOKEN_ABSOLUTE_SECONDS:
                logout(request)
                request.session_expired = True
            elif now - request.session.get(RENEWED_AT, 0) > settings.SESSION_RENEW_SECONDS:
                request.session[RENEWED_AT] = now
        return self.get_response(request)


def stamp_sign_in(sender, request, user, **kwargs):
    """Receiver of user_logged_in: the session remembers when it signed in."""
    if request is not None and hasattr(request, "session"):
        request.session[SIGNED_IN_AT] = request.session[RENEWED_AT] = time.time()
