"""Reads of patients. Every PHI queryset starts from patients_visible_to()."""

from django.db.models import Exists, OuterRef, Prefetch
from django.utils import timezone

from compliance.models import BreakGlassGrant
from contactcenter.access import visible_to
from contactcenter.blind_index import email_index, mrn_index, phone_index
from contactcenter.sql import param as sql_param
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


def patient_visible_sql(user, *, patient_id):
    """The rule of patients_visible_to() as a SQL condition on one patient, for the
    hand-written timeline read (channels_app.selectors). Returns (sql, params);
    table names come from the models, values are params."""
    patient = sql_param(Patient._meta.pk, patient_id)
    if getattr(user, "is_api_client", False):
        team_id = user.client.team_id
        if not team_id:
            return "1 = 1", []
        return (
            f"EXISTS (SELECT 1 FROM {Patient._meta.db_table} vp "
            "WHERE vp.id = %s AND vp.team_id = %s)",
            [patient, team_id],
        )
    if user is None or not user.is_authenticated or not user.is_active:
        return "1 = 0", []
    grants = PatientGroupObjectPermission._meta.db_table
    memberships = user.groups.through._meta.db_table
    # The permission id by sub-select, run once per statement (see access.visible_to).
    permission = (
        "SELECT ap.id FROM auth_permission ap "
        "JOIN django_content_type ct ON ct.id = ap.content_type_id "
        f"WHERE ct.app_label = '{Patient._meta.app_label}' "
        f"AND ct.model = '{Patient._meta.model_name}' AND ap.codename = '{VIEW_PATIENT}'"
    )
    sql = (
        f"(EXISTS (SELECT 1 FROM {grants} vg WHERE vg.content_object_id = %s "
        f"AND vg.permission_id = ({permission}) "
        f"AND vg.group_id IN (SELECT ug.group_id FROM {memberships} ug WHERE ug.user_id = %s))"
        f" OR EXISTS (SELECT 1 FROM {BreakGlassGrant._meta.db_table} vb "
        "WHERE vb.user_id = %s AND vb.patient_id = %s AND vb.expires_at > %s))"
    )
    now = sql_param(BreakGlassGrant._meta.get_field("expires_at"), timezone.now())
    return sql, [patient, user.pk, user.pk, patient, now]


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
