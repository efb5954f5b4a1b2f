"""Audit rows for workspace pages and fragments, written by the same service as
the API's (compliance.services.audit_record): one row per request that shows
PHI, naming every patient on it; a refused look is a `denied` row naming the
patient it was about."""

from compliance.services import audit_record


def page_audit(
    request,
    *,
    resource_type,
    resource_id="",
    patient_ids=(),
    outcome="success",
    http_status=200,
    action=None,
    purpose_of_use="TREAT",
    **details,
):
    audit_record(
        action=action or ("read" if request.method in ("GET", "HEAD") else "update"),
        resource_type=resource_type,
        resource_id=str(resource_id),
        patient_ids=[p for p in patient_ids if p],
        outcome=outcome,
        http_status=http_status,
        purpose_of_use=purpose_of_use,
        actor=request.user,
        request=request,
        details={"method": request.method, "path": request.path, "via": "workspace", **details},
    )
