"""Reads of patients. Every PHI queryset starts from patients_visible_to()."""

from django.db.models import Exists, OuterRef, Prefetch
from django.utils import timezone

from compliance.models import BreakGlassGrant
from contactcenter.access import visible_to
from contactcenter.blind_index import email_index, mrn_index, phone_index
from patients.models import Appointment, ContactPoint, Patient, PatientGroupObjectPermission

VIEW_PATIENT = "view_patient"


def patients_visible_to(user, *, queryset=None):
    """Patients the user may see, in one SQL query: those of the user's teams
    (guardian group permissions) and those the user holds an unexpired break-glass
    grant for; for an integration, its scope of the practice."""
    base = Patient.objects.all() if queryset is None else queryset
    visible = visible_to(
        user=user, queryset=base, perm_model=PatientGroupObjectPermission, codename=VIEW_PATIENT
    )
    if getattr(user, "is_api_client", False) or not (
        user is not None and user.is_authenticated and user.is_active
    ):
        return visible
    # Compared with the clock in every query, so access ends the second the grant
    # expires, with nothing to revoke.
    broken_glass = BreakGlassGrant.objects.filter(
        user=user, patient_id=OuterRef("pk"), expires_at__gt=timezone.now()
    )
    return visible | base.filter(Exists(broken_glass))


def patient_list(*, user, phone=None, email=None, mrn=None, team_id=None, flag=None):
    """The patient list with exact lookups through blind indexes. Raises
    ValueError when a lookup value cannot be normalised (an impossible number)."""
    queryset = patients_visible_to(user).filter(merged_into__isnull=True)
    if phone:
        queryset = queryset.filter(
            pk__in=ContactPoint.objects.filter(
                kind=ContactPoint.Kind.PHONE, value_index=phone_index(phone)
            ).values("patient_id")
        )
    if email:
        queryset = queryset.filter(
            pk__in=ContactPoint.objects.filter(
                kind=ContactPoint.Kind.EMAIL, value_index=email_index(email)
            ).values("patient_id")
        )
    if mrn:
        queryset = queryset.filter(mrn_index=mrn_index(mrn))
    if team_id:
        queryset = queryset.filter(team_id=team_id)
    if flag:
        queryset = queryset.filter(**{flag: True})
    return queryset.select_related("team").prefetch_related(
        Prefetch("contact_points", queryset=ContactPoint.objects.order_by("created_at", "id"))
    )


def patient_get_visible(*, user, patient_id):
    return (
        patients_visible_to(user)
        .select_related("team", "merged_into")
        .prefetch_related("contact_points")
        .filter(pk=patient_id)
        .first()
    )


def patients_by_phone(*, raw_phone):
    """Every patient with this number (a family line can be shared): never a pick."""
    return Patient.objects.filter(
        merged_into__isnull=True,
        pk__in=ContactPoint.objects.filter(
            kind=ContactPoint.Kind.PHONE, value_index=phone_index(raw_phone)
        ).values("patient_id"),
    )


def patients_by_email(*, raw_email):
    return Patient.objects.filter(
        merged_into__isnull=True,
        pk__in=ContactPoint.objects.filter(
            kind=ContactPoint.Kind.EMAIL, value_index=email_index(raw_email)
        ).values("patient_id"),
    )


def appointments_visible_to(user):
    return Appointment.objects.filter(patient__in=patients_visible_to(user))
