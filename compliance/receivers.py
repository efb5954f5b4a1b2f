from django.dispatch import receiver

from contactcenter.signals import security_event


@receiver(security_event)
def record_security_event(
    sender, *, action, outcome, request, actor, api_client, http_status, details, **kwargs
):
    from compliance.services import audit_record

    audit_record(
        action=action,
        resource_type="auth",
        outcome=outcome,
        http_status=http_status,
        purpose_of_use="HSYSADMIN",
        actor=actor,
        api_client=api_client,
        request=request,
        details=details,
    )
