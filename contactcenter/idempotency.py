"""`Idempotency-Key` for every POST that creates something, the same way on every
view: the first successful result is stored and replayed for 24 hours to the same
caller (staff user or API key) sending the same key; the same key with another
method, path or body is a 422. A result that was not a success is not stored, so a
retry after an error runs again.

An API view opts in with IdempotentCreateMixin; the OpenAPI schema documents the
header and the 422 on each such operation (contactcenter/schema.py). A view that is
not DRF's (the staff workspace's reply form) uses the same rows through
idempotency_claim() and idempotency_complete()."""

import hashlib
import hmac
import json
import re
from datetime import timedelta
from urllib.parse import urlencode

from django.db import IntegrityError, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework import status
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from contactcenter import crypto
from contactcenter.auth import api_client_of, staff_user_of
from contactcenter.errors import ApiError
from contactcenter.models import IdempotentRequest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEEP_FOR = timedelta(hours=24)
_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")


class IdempotencyKeyInvalid(ApiError):
    def __init__(self):
        super().__init__(
            f"{HEADER} must be 1 to 255 visible ASCII characters.",
            code="invalid_idempotency_key",
            details={HEADER: ["1 to 255 visible ASCII characters."]},
        )


class IdempotencyKeyReused(ApiError):
    def __init__(self):
        super().__init__(
            f"This {HEADER} was used with another request in the last 24 hours; "
            "use a new key for a new request.",
            code="idempotency_key_reused",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )


def _principal(request):
    client = api_client_of(request)
    if client is not None:
        return f"client:{client.pk}"
    user = staff_user_of(request)
    return staff_principal(user) if user is not None else None


def staff_principal(user):
    """The principal a staff user's keys are kept under (the API's and the
    workspace's alike)."""
    return f"user:{user.pk}"


def request_fingerprint(request):
    """HMAC of the method, path and body (a form read as multipart: its fields).
    Keyed, so the stored value says nothing about a body that carried PHI."""
    try:
        body = request.body
    except RawPostDataException:
        body = urlencode(sorted(request.POST.lists()), doseq=True).encode()
    message = b"\n".join([request.method.encode(), request.path.encode(), body])
    return hmac.new(crypto.blind_index_key(), message, hashlib.sha256).hexdigest()


def key_is_valid(key):
    return bool(key) and _KEY_PATTERN.fullmatch(key) is not None


def idempotency_claim(*, principal, key, fingerprint):
    """In the caller's transaction: claim `key` for this request. Returns
    (row, None) on first use (complete it with idempotency_complete once the
    request succeeded; a rollback forgets it), or (None, previous row) when the
    key was used before with the same request, to be answered from. A concurrent
    first use makes this wait on the unique key until it commits. Raises
    IdempotencyKeyReused for the same key on another request."""
    IdempotentRequest.objects.filter(
        principal=principal, key=key, created_at__lt=timezone.now() - KEEP_FOR
    ).delete()
    try:
        with transaction.atomic():
            return (
                IdempotentRequest.objects.create(
                    principal=principal, key=key, fingerprint=fingerprint
                ),
                None,
            )
    except IntegrityError:
        # Used before (a concurrent first use has committed by now: the insert
        # waited for it).
        pass
    previous = IdempotentRequest.objects.get(principal=principal, key=key)
    if not hmac.compare_digest(previous.fingerprint, fingerprint):
        raise IdempotencyKeyReused()
    return None, previous


def idempotency_complete(row, *, status_code, body, patient_ids=()):
    """Store a successful answer under its claimed key (`body`: JSON-able)."""
    row.status_code = status_code
    row.response_body = json.dumps(body, cls=JSONEncoder)
    row.patient_ids = [str(p) for p in patient_ids if p]
    row.save(update_fields=["status_code", "response_body", "patient_ids"])


class IdempotentCreateMixin:
    """For views whose POST creates something. Runs inside the view's transaction
    (AuditedViewMixin's, or its own), after authentication."""

    def dispatch(self, request, *args, **kwargs):
        if request.method != "POST" or HEADER not in request.headers:
            return super().dispatch(request, *args, **kwargs)
        with transaction.atomic():
            response = super().dispatch(request, *args, **kwargs)
            if response.status_code >= 400:
                transaction.set_rollback(True)
        return response

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self._idempotent_request = None
        if request.method != "POST" or HEADER not in request.headers:
            return
        key = request.headers[HEADER].strip()
        principal = _principal(request)
        if not key_is_valid(key):
            raise IdempotencyKeyInvalid()
        if principal is None:
            return
        self._idempotent_request, previous = idempotency_claim(
            principal=principal, key=key, fingerprint=request_fingerprint(request)
        )
        if previous is None:
            return
        self._replayed = previous
        # DRF looks the handler up after initial(): answer with the stored result.
        self.post = self._replay

    def _replay(self, request, *args, **kwargs):
        previous = self._replayed
        self.audit_replayed(previous)
        response = Response(json.loads(previous.response_body), status=previous.status_code)
        response[REPLAYED_HEADER] = "true"
        return response

    def audit_replayed(self, previous):
        """A replay shows the same patients again: audited like the first answer."""
        if hasattr(self, "audit"):
            self.audit(patient_ids=previous.patient_ids, idempotent_replay=True)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        stored = getattr(self, "_idempotent_request", None)
        if stored is not None and 200 <= response.status_code < 300:
            idempotency_complete(
                stored,
                status_code=response.status_code,
                body=response.data,
                patient_ids=list(getattr(self, "_audit_patient_ids", [])),
            )
        return response


def idempotent_requests_purge(*, now=None):
    """Forget keys older than 24 hours; returns how many."""
    cutoff = (now or timezone.now()) - KEEP_FOR
    deleted, _ = IdempotentRequest.objects.filter(created_at__lt=cutoff).delete()
    return deleted
