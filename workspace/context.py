from django.conf import settings
from django.utils.functional import SimpleLazyObject

from contactcenter import roles
from contactcenter.models import StaffProfile


def _availability(user):
    if not user.is_authenticated:
        return ""
    profile = StaffProfile.objects.filter(user=user).values_list("availability", flat=True).first()
    return profile or StaffProfile.Availability.AWAY


def _outbox_link(user):
    from workspace.outbox import local_providers_on
    from workspace.pages import CARE_ROLES

    return local_providers_on() and roles.has_role(user, *CARE_ROLES)


def workspace(request):
    """The top bar's practice name, the signed-in person's availability and which
    of the supervisor's links they get (read only when a template shows them)."""
    user = getattr(request, "user", None)
    signed_in = bool(user and user.is_authenticated)
    return {
        # The supervisor's links (board, KPIs, rules) by the roles their views allow.
        "nav_supervisor": SimpleLazyObject(
            lambda: signed_in and roles.has_role(user, roles.SUPERVISOR)
        ),
        "nav_reports": SimpleLazyObject(
            lambda: signed_in and roles.has_role(user, roles.SUPERVISOR, roles.ADMIN)
        ),
        # The local outbox page, when the local providers of `make run` are on.
        "nav_outbox": SimpleLazyObject(lambda: signed_in and _outbox_link(user)),
        "practice_name": settings.PRACTICE_NAME,
        "availability": SimpleLazyObject(lambda: _availability(user)) if user else "",
        "availability_choices": StaffProfile.Availability.choices,
        # Which tools the top bar offers (read only when a template asks).
        "staff_role": SimpleLazyObject(lambda: roles.role_of(user)) if user else "",
    }
