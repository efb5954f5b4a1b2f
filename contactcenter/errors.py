"""One JSON error shape for the API and webhooks:
{"error": {"code": ..., "message": ..., "details": ..., "request_id": ...}}.
"""

import sys
from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

API_PREFIXES = ("/api/", "/webhooks/")
# What a client is told to wait when the database or broker is out of reach: a
# failover or a restart takes tens of seconds.
SERVICE_RETRY_AFTER_SECONDS = 30

_DEFAULT_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
    503: "service_unavailable",
}


def is_api_path(path):
    return path.startswith(API_PREFIXES)


def error_body(request, *, status, code=None, message=None, details=None):
    try:
        default_message = HTTPStatus(status).phrase
    except ValueError:
        default_message = "Error"
    return {
        "error": {
            "code": code or _DEFAULT_CODES.get(status, "error"),
            "message": message or default_message,
            "details": details if details is not None else {},
            "request_id": getattr(request, "request_id", None),
        }
    }


class ApiError(exceptions.APIException):
    """An error a service raises with its own stable code and HTTP status."""

    def __init__(self, message, *, code, status_code=status.HTTP_400_BAD_REQUEST, details=None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details or {}


class Conflict(ApiError):
    def __init__(self, message, *, code="conflict", details=None):
        super().__init__(message, code=code, status_code=status.HTTP_409_CONFLICT, details=details)


def _code_of(exc):
    if isinstance(exc, ApiError):
        return exc.error_code
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else _DEFAULT_CODES.get(exc.status_code, "error")


def api_exception_handler(exc, context):
    # The same conversions DRF's own handler makes, so the message and code below
    # read from a DRF exception.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unhandled: Django's 500 path, then JsonErrorMiddleware
    request = context.get("request")
    if isinstance(exc, ApiError):
        message, details = str(exc.detail), exc.details
    elif isinstance(exc, exceptions.ValidationError):
        message, details = "Some fields are invalid.", exc.detail
        if isinstance(details, list):
            details = {"non_field_errors": details}
    else:
        message, details = str(exc.detail), {}
    code = _code_of(exc)
    response.data = error_body(
        request, status=response.status_code, code=code, message=message, details=details
    )
    view = context.get("view")
    if response.status_code in (401, 403) and not getattr(view, "audits_itself", False):
        _signal_denial(request, status=response.status_code, code=code)
    return response


def _signal_denial(request, *, status, code):
    """Refused credentials and missing scopes leave an audit row (compliance
    receives the signal). Views that audit themselves record it in their row."""
    from contactcenter.auth import api_client_of, staff_user_of
    from contactcenter.signals import security_event

    django_request = getattr(request, "_request", request)
    reason = getattr(django_request, "auth_failure_reason", None) or code
    security_event.send(
        sender=api_exception_handler,
        action="denied",
        outcome="denied",
        request=request,
        actor=staff_user_of(request),
        api_client=api_client_of(request),
        http_status=status,
        details={"reason": reason, "method": request.method, "path": request.path},
    )


def error_response(request, *, status, code, message, details=None):
    """For plain Django views (webhooks) that answer in the same shape."""
    body = error_body(request, status=status, code=code, message=message, details=details)
    return JsonResponse(body, status=status)


def database_unavailable(exc):
    """True for the errors of a database that cannot be reached or cannot serve
    now (connection refused or lost, shutting down, a timeout): the client's
    request was not stored and may be sent again."""
    return isinstance(exc, OperationalError | InterfaceError)


def service_unavailable_response(request, *, message, details=None):
    response = error_response(
        request, status=503, code="service_unavailable", message=message, details=details
    )
    response["Retry-After"] = str(SERVICE_RETRY_AFTER_SECONDS)
    return response


def server_error(request):
    """handler500: Django calls it for any exception no view or middleware handled,
    wherever it was raised (a view, DRF, a middleware's response phase), with the
    exception still being handled. A lost database is the client's 503, on every
    path, so a provider or portal sends again what was not stored."""
    if database_unavailable(sys.exc_info()[1]):
        return service_unavailable_response(
            request, message="The database is unavailable. Try again later."
        )
    if is_api_path(request.path):
        return JsonResponse(error_body(request, status=500), status=500)
    return defaults.server_error(request)
