"""Reads of patients. Every PHI queryset starts from patients_visible_to()."""

import functools

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Prefetch

from compliance.access import records_visible_to, visible_sql_for
from contactcenter import sql
from contactcenter.blind_index import email_index, mrn_index, phone_index
from patients.models import Appointment, ContactPoint, Patient, PatientGroupObjectPermission

VIEW_PATIENT = "view_patient"


def patients_visible_to(user, *, queryset=None):
    """Patients the user may see, by the one access rule (compliance.access): the
    user's teams' patients and those of an unexpired break-glass grant; for an
    integration, its scope of the practice."""
    return records_visible_to(
        user,
        queryset=Patient.objects.all() if queryset is None else queryset,
        perm_model=PatientGroupObjectPermission,
        codename=VIEW_PATIENT,
        patient_field="pk",
    )


def patient_visible_with_team(user, *, patient_id):
    """`patients_visible_to(user).select_related("team").filter(pk=patient_id)
    .first()` as a fixed statement, the rule compiled once per kind of principal
    (patient_visible_sql): a portal message asks it on every request, where
    compiling the QuerySet cost more than running it. None when the patient is not
    there or not the user's to see."""
    try:
        pk = Patient._meta.pk.to_python(patient_id)
    except ValidationError:
        return None
    visible, params = patient_visible_sql(user, patient_id=pk)
    quote = connection.ops.quote_name
    found = sql.select_with_related(
        Patient,
        "team",
        f"a.{quote(Patient._meta.pk.column)} = %s AND {visible}",
        [sql.param(Patient._meta.pk, pk), *params],
        limit=1,
    )
    return found[0] if found else None


def patient_visible_sql(user, *, patient_id):
    """patients_visible_to() for one patient as a SQL condition, for the
    hand-written timeline read (channels_app.selectors). Returns (sql, params)."""
    return visible_sql_for(
        user,
        model=Patient,
        perm_model=PatientGroupObjectPermission,
        codename=VIEW_PATIENT,
        patient_field="pk",
        record_id=patient_id,
    )


class LookupValueInvalid(ValueError):
    """A lookup value that cannot be normalised (an impossible number); `field`
    names the lookup."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


def _lookup_index(field, index, raw):
    try:
        return index(raw)
    except ValueError as exc:
        raise LookupValueInvalid(field, str(exc)) from None


def patient_list(*, user, phone=None, email=None, mrn=None, team_id=None, flag=None):
    """The patient list with exact lookups through blind indexes. Raises
    LookupValueInvalid when a lookup value cannot be normalised."""
    queryset = patients_visible_to(user).filter(merged_into__isnull=True)
    if phone:
        queryset = queryset.filter(
            pk__in=ContactPoint.objects.filter(
                kind=ContactPoint.Kind.PHONE, value_index=_lookup_index("phone", phone_index, phone)
            ).values("patient_id")
        )
    if email:
        queryset = queryset.filter(
            pk__in=ContactPoint.objects.filter(
                kind=ContactPoint.Kind.EMAIL, value_index=_lookup_index("email", email_index, email)
            ).values("patient_id")
        )
    if mrn:
        queryset = queryset.filter(mrn_index=_lookup_index("mrn", mrn_index, mrn))
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


def sole_patient_by_contact(*, kind, value_index):
    """The one unmerged patient with this contact point (its blind index), with the
    team, or None when there is none or several: what `patients_by_phone` /
    `patients_by_email(...).select_related("team")[:2]` read, as a fixed statement.
    A first message from an address asks it on the webhook's request, where
    compiling that QuerySet cost more than running it."""
    where, kind_field, index_field = _contact_condition(connection.vendor)
    found = sql.select_with_related(
        Patient,
        "team",
        where,
        [sql.param(kind_field, kind), sql.param(index_field, value_index)],
        limit=2,
    )
    return found[0] if len(found) == 1 else None


@functools.lru_cache(maxsize=4)
def _contact_condition(vendor):
    """(the condition on the patient, aliased `a`; the contact point's kind and
    blind-index fields, whose values are its parameters)."""
    quote = connection.ops.quote_name
    contact = ContactPoint._meta
    kind, index, patient = (contact.get_field(name) for name in ("kind", "value_index", "patient"))
    condition = (
        # Identifiers come from the models' metadata; both values are parameters.
        f"a.{quote(Patient._meta.get_field('merged_into').column)} IS NULL "
        f"AND a.{quote(Patient._meta.pk.column)} IN ("
        f"SELECT {quote(patient.column)} FROM {quote(contact.db_table)} "
        f"WHERE {quote(kind.column)} = %s AND {quote(index.column)} = %s)"
    )
    return condition, kind, index


def appointments_visible_to(user):
    return Appointment.objects.filter(patient__in=patients_visible_to(user))


def contact_point_consents_visible_to(user):
    """Contact points of the patients the user may see, with their consent history
    (oldest first) loaded in one more query."""
    from patients.models import ConsentChange

    return ContactPoint.objects.filter(patient__in=patients_visible_to(user)).prefetch_related(
        Prefetch("consent_changes", queryset=ConsentChange.objects.order_by("changed_at", "id"))
    )
