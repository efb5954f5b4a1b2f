from django.conf import settings
from django.utils.functional import SimpleLazyObject

from contactcenter import roles
from contactcenter.models import StaffProfile


def _availability(user):
    if not user.is_authenticated:
        return ""
    profile = StaffProfile.objects.filter(user=user).values_list("availability", flat=True).first()
    return profile or StaffProfile.Availability.AWAY


def workspace(request):
    """The top bar's practice name and the signed-in person's availability (read
    only when a template shows it)."""
    user = getattr(request, "user", None)
    return {
        "practice_name": settings.PRACTICE_NAME,
        "availability": SimpleLazyObject(lambda: _availability(user)) if user else "",
        "availability_choices": StaffProfile.Availability.choices,
        # Which tools the top bar offers (read only when a template asks).
        "staff_role": SimpleLazyObject(lambda: roles.role_of(user)) if user else "",
    }
