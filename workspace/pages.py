"""What every workspace page shares: signed-in staff only (an expired session on
a fragment says so where the page can show it, and the page keeps its draft),
the role check, and the 404 page that leaves a `denied` audit row."""

from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from contactcenter import roles
from workspace.audit import page_audit

CARE_ROLES = (roles.AGENT, roles.SUPERVISOR, roles.CLINICIAN)


def _signin_url(request):
    back = request.headers.get("HX-Current-URL") if request.htmx else request.get_full_path()
    return f"{reverse('workspace:signin')}?{urlencode({'next': back or '/'})}"


def staff_page(*allowed_roles):
    """Decorator: the view runs for signed-in staff of these roles (any role when
    none is named). A fragment asked for after the session ended answers 401
    with a notice for the page's status area instead of a sign-in page inside
    the list."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                if request.htmx:
                    response = render(
                        request,
                        "workspace/_session_ended.html",
                        {"signin_url": _signin_url(request)},
                        status=401,
                    )
                    response["HX-Retarget"] = "#notices"
                    response["HX-Reswap"] = "innerHTML"
                    return response
                return redirect(_signin_url(request))
            if allowed_roles and not roles.has_role(user, *allowed_roles):
                return render(
                    request,
                    "workspace/forbidden.html",
                    {"role": roles.role_of(user)},
                    status=403,
                )
            # Times on the pages are the practice's, as the staff read them.
            with timezone.override(settings.PRACTICE_TIME_ZONE):
                return view(request, *args, **kwargs)

        return wrapper

    return decorate


def not_found(request, *, resource_type, resource_id, patient_ids=()):
    """The same 404 for "no such record" and "not yours", with the refused look
    recorded against the patient it was about."""
    page_audit(
        request,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_ids=patient_ids,
        outcome="denied",
        http_status=404,
        action="read",
    )
    return render(request, "workspace/not_found.html", status=404)
