"""`Idempotency-Key` for every POST that creates something, the same way on every
view: the first successful result is stored and replayed for 24 hours to the same
caller (staff user or API key) sending the same key; the same key with another
method, path or body is a 422. A result that was not a success is not stored, so a
retry after an error runs again.

A view opts in with IdempotentCreateMixin; the OpenAPI schema documents the header
and the 422 on each such operation (contactcenter/schema.py)."""

import hashlib
import hmac
import json
import re
from datetime import timedelta

from django.db import IntegrityError, transaction
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
    return f"user:{user.pk}" if user is not None else None


def _fingerprint(request):
    # Keyed, so the stored value says nothing about a body that carried PHI.
    message = b"\n".join([request.method.encode(), request.path.encode(), request.body])
    return hmac.new(crypto.blind_index_key(), message, hashlib.sha256).hexdigest()


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
        if not _KEY_PATTERN.fullmatch(key):
            raise IdempotencyKeyInvalid()
        if principal is None:
            return
        fingerprint = _fingerprint(request)
        IdempotentRequest.objects.filter(
            principal=principal, key=key, created_at__lt=timezone.now() - KEEP_FOR
        ).delete()
        try:
            with transaction.atomic():
                self._idempotent_request = IdempotentRequest.objects.create(
                    principal=principal, key=key, fingerprint=fingerprint
                )
            return
        except IntegrityError:
            # Used before (a concurrent first use has committed by now: the insert
            # waited for it).
            pass
        previous = IdempotentRequest.objects.get(principal=principal, key=key)
        if not hmac.compare_digest(previous.fingerprint, fingerprint):
            raise IdempotencyKeyReused()
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
            stored.status_code = response.status_code
            stored.response_body = json.dumps(response.data, cls=JSONEncoder)
            stored.patient_ids = list(getattr(self, "_audit_patient_ids", []))
            stored.save(update_fields=["status_code", "response_body", "patient_ids"])
        return response


def idempotent_requests_purge(*, now=None):
    """Forget keys older than 24 hours; returns how many."""
    cutoff = (now or timezone.now()) - KEEP_FOR
    deleted, _ = IdempotentRequest.objects.filter(created_at__lt=cutoff).delete()
    return deleted
