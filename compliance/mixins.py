"""The DRF mixin that audits every request to a view touching PHI: one row per
request, successes in the action's transaction, denials and errors too."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from compliance.services import audit_write
from contactcenter.auth import api_client_of, staff_user_of

_ACTIONS = {
    "GET": "read",
    "HEAD": "read",
    "POST": "create",
    "PUT": "update",
    "PATCH": "update",
    "DELETE": "delete",
}
_DENIED_STATUSES = {401, 403, 404}
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class AuditedViewMixin:
    """Views set `audit_resource_type` and `audit_patient_field` (the attribute of
    the model that holds the patient id: "pk" for patients, "patient_id" for the
    rest). Objects from get_object() and every row of a list page are recorded
    automatically; views call self.audit(...) for anything else (a create).

    A 4xx or 5xx answer rolls the request's writes back before its row is written,
    so a failed request leaves no half-written data but still leaves its audit row.
    """

    audits_itself = True
    audit_resource_type = ""
    audit_patient_field = "pk"
    audit_purpose_of_use = "TREAT"
    audit_action = None

    def audit(self, *, patient_ids=(), resource_id=None, **details):
        self._audit_patient_ids.extend(str(p) for p in patient_ids if p)
        if resource_id is not None:
            self._audit_resource_id = str(resource_id)
        self._audit_details.update(details)

    def dispatch(self, request, *args, **kwargs):
        self._audit_patient_ids = []
        self._audit_details = {}
        lookup = getattr(self, "lookup_url_kwarg", None) or "pk"
        self._audit_resource_id = str(kwargs.get(lookup, ""))
        if request.method in _SAFE_METHODS:
            # A read writes nothing but its audit row: no transaction to wrap it
            # in, so the row is one INSERT in autocommit.
            try:
                response = super().dispatch(request, *args, **kwargs)
            except Exception:
                self._write_audit(500)
                raise
            self._write_audit(response.status_code)
            return response
        try:
            with transaction.atomic():
                response = super().dispatch(request, *args, **kwargs)
                if response.status_code < 400:
                    self._write_audit(response.status_code)
                else:
                    transaction.set_rollback(True)
        except Exception:
            self._write_audit(500)
            raise
        if response.status_code >= 400:
            self._write_audit(response.status_code)
        return response

    def get_object(self):
        obj = super().get_object()
        self.audit(patient_ids=[self._patient_id_of(obj)], resource_id=obj.pk)
        return obj

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None:
            self.audit(patient_ids=[self._patient_id_of(obj) for obj in page])
        return page

    def _patient_id_of(self, obj):
        return getattr(obj, self.audit_patient_field, None)

    def _denied_patient_ids(self):
        """A refused lookup of an existing record names its patient, so the
        compliance officer sees attempts on real patients."""
        if not self._audit_resource_id or not hasattr(self, "queryset"):
            return []
        model = self.queryset.model
        try:
            return [
                str(pid)
                for pid in model._default_manager.filter(pk=self._audit_resource_id).values_list(
                    self.audit_patient_field, flat=True
                )
                if pid
            ]
        except (ValidationError, ValueError):
            return []

    def _write_audit(self, http_status):
        request = self.request
        method = request.method
        if http_status in _DENIED_STATUSES:
            outcome = "denied"
            patient_ids = self._audit_patient_ids or self._denied_patient_ids()
        elif http_status >= 400:
            outcome, patient_ids = "error", self._audit_patient_ids
        else:
            outcome, patient_ids = "success", self._audit_patient_ids
        details = {"method": method, "path": request.path, **self._audit_details}
        reason = getattr(getattr(request, "_request", request), "auth_failure_reason", None)
        if reason:
            details["reason"] = reason
        audit_write(
            # A successful read's row is a transaction of its own (see dispatch): the
            # practice may have it committed without waiting for the flush. Denials
            # and errors, the rows an investigation starts from, always wait.
            durable=not (
                settings.AUDIT_READ_ASYNC_COMMIT
                and method in _SAFE_METHODS
                and outcome == "success"
            ),
            action=self.audit_action or _ACTIONS.get(method, "execute"),
            resource_type=self.audit_resource_type,
            resource_id=self._audit_resource_id,
            patient_ids=patient_ids,
            outcome=outcome,
            http_status=http_status,
            purpose_of_use=self.audit_purpose_of_use,
            actor=staff_user_of(request),
            api_client=api_client_of(request),
            request=request,
            details=details,
        )
