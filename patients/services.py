"""Writes for patients, contact points, consent and appointments."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.services import audit_record
from contactcenter.access import grant_team_access, revoke_team_access
from contactcenter.blind_index import (
    email_index,
    mrn_index,
    normalise_email,
    normalise_phone,
    phone_index,
)
from patients.models import (
    PATIENT_FLAGS,
    Appointment,
    Channel,
    ConsentChange,
    ContactPoint,
    Patient,
)
from patients.selectors import VIEW_PATIENT
from patients.signals import appointment_changed, patients_merged

PLAIN_FIELDS = (
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "address",
    "preferred_channel",
    "preferred_language",
    "time_zone",
    "primary_coordinator",
    "active",
    *PATIENT_FLAGS,
)


class DuplicateMrn(Exception):
    def __init__(self, existing_id):
        super().__init__("A patient with this MRN exists.")
        self.existing_id = existing_id


class MergeRefused(Exception):
    def __init__(self, message, *, code):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ContactInput:
    """A contact value already validated; the service normalises it again so no
    caller can store an unnormalised index."""

    value: str
    preferred: bool = False
    verified: bool = False


def _normalise(kind, value):
    return normalise_phone(value) if kind == ContactPoint.Kind.PHONE else normalise_email(value)


def _index(kind, normalised):
    return phone_index(normalised) if kind == ContactPoint.Kind.PHONE else email_index(normalised)


def _existing_mrn_owner(mrn, *, exclude=None):
    queryset = Patient.objects.filter(mrn_index=mrn_index(mrn))
    if exclude is not None:
        queryset = queryset.exclude(pk=exclude.pk)
    return queryset.values_list("pk", flat=True).first()


@transaction.atomic
def patient_create(
    *, team, mrn, given_name, family_name, time_zone, phones=(), emails=(), **fields
):
    """Create a patient with its contact points in one transaction and grant the
    team access. Raises DuplicateMrn when the MRN is taken."""
    owner = _existing_mrn_owner(mrn)
    if owner is not None:
        raise DuplicateMrn(owner)
    unknown = set(fields) - set(PLAIN_FIELDS)
    if unknown:
        raise TypeError(f"Unknown patient fields: {sorted(unknown)}")
    if "preferred_language" in fields:
        fields["preferred_language_source"] = Patient.LanguageSource.RECORD
    patient = Patient(
        team=team,
        mrn=mrn,
        mrn_index=mrn_index(mrn),
        given_name=given_name,
        family_name=family_name,
        time_zone=time_zone,
        **fields,
    )
    try:
        with transaction.atomic():
            patient.save()
    except IntegrityError as exc:
        # Two creates of the same MRN raced; the loser reports the winner.
        raise DuplicateMrn(_existing_mrn_owner(mrn)) from exc
    _sync_contact_points(patient=patient, kind=ContactPoint.Kind.PHONE, items=phones)
    _sync_contact_points(patient=patient, kind=ContactPoint.Kind.EMAIL, items=emails)
    grant_team_access(obj=patient, team=team, perm=VIEW_PATIENT)
    return patient


@transaction.atomic
def patient_update(*, patient, mrn=None, team=None, phones=None, emails=None, **changes):
    """Apply changes; phones or emails, when given, replace that kind's set
    (keeping the consent state of numbers that stay)."""
    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    unknown = set(changes) - set(PLAIN_FIELDS)
    if unknown:
        raise TypeError(f"Unknown patient fields: {sorted(unknown)}")
    if mrn is not None:
        owner = _existing_mrn_owner(mrn, exclude=patient)
        if owner is not None:
            raise DuplicateMrn(owner)
        patient.mrn, patient.mrn_index = mrn, mrn_index(mrn)
    for name, value in changes.items():
        setattr(patient, name, value)
    if "preferred_language" in changes:
        patient.preferred_language_source = Patient.LanguageSource.RECORD
    old_team = patient.team
    if team is not None and team.pk != patient.team_id:
        patient.team = team
    patient.save()
    if patient.team_id != old_team.pk:
        revoke_team_access(obj=patient, team=old_team, perm=VIEW_PATIENT)
        grant_team_access(obj=patient, team=patient.team, perm=VIEW_PATIENT)
    if phones is not None:
        _sync_contact_points(patient=patient, kind=ContactPoint.Kind.PHONE, items=phones)
    if emails is not None:
        _sync_contact_points(patient=patient, kind=ContactPoint.Kind.EMAIL, items=emails)
    return patient


def _sync_contact_points(*, patient, kind, items):
    wanted = {}
    for item in items:
        normalised = _normalise(kind, item.value)
        wanted[_index(kind, normalised)] = (normalised, item)
    existing = {cp.value_index: cp for cp in patient.contact_points.filter(kind=kind)}
    stale = [cp.pk for index, cp in existing.items() if index not in wanted]
    if stale:
        ContactPoint.objects.filter(pk__in=stale).delete()
    for index, (normalised, item) in wanted.items():
        current = existing.get(index)
        if current is None:
            ContactPoint.objects.create(
                patient=patient,
                kind=kind,
                value=normalised,
                value_index=index,
                preferred=item.preferred,
                verified=item.verified,
            )
        elif (current.preferred, current.verified) != (item.preferred, item.verified):
            current.preferred, current.verified = item.preferred, item.verified
            current.save(update_fields=["preferred", "verified"])


@transaction.atomic
def patient_merge(*, survivor, duplicate, actor=None, request=None):
    """Move everything of the duplicate to the survivor and mark it merged, in one
    transaction; receivers of patients_merged (conversations, interactions) run
    inside it, so any failure leaves both records as they were."""
    if survivor.pk == duplicate.pk:
        raise MergeRefused("A patient cannot be merged into itself.", code="merge_same_patient")
    locked = {
        p.pk: p
        for p in Patient.objects.select_for_update().filter(pk__in=[survivor.pk, duplicate.pk])
    }
    survivor, duplicate = locked[survivor.pk], locked[duplicate.pk]
    if survivor.merged_into_id or duplicate.merged_into_id:
        raise MergeRefused("One of the patients is already merged.", code="already_merged")
    survivor_points = {cp.value_index: cp for cp in survivor.contact_points.all()}
    for point in duplicate.contact_points.all():
        kept = survivor_points.get(point.value_index)
        if kept is None:
            ContactPoint.objects.filter(pk=point.pk).update(patient=survivor)
            continue
        if point.sms_opted_out and not kept.sms_opted_out:
            # Consent is kept conservatively: an opt-out on either record survives.
            ContactPoint.objects.filter(pk=kept.pk).update(
                sms_opted_out=True,
                sms_consent_changed_at=point.sms_consent_changed_at,
                sms_consent_source=point.sms_consent_source,
            )
            ConsentChange.objects.create(
                contact_point=kept,
                channel=Channel.SMS,
                opted_out=True,
                source=point.sms_consent_source,
                changed_at=point.sms_consent_changed_at or timezone.now(),
            )
        point.delete()
    moved_appointments = Appointment.objects.filter(patient=duplicate).update(patient=survivor)
    patients_merged.send(sender=Patient, survivor=survivor, duplicate=duplicate)
    duplicate.merged_into = survivor
    duplicate.active = False
    duplicate.save(update_fields=["merged_into", "active", "updated_at"])
    audit_record(
        action="update",
        resource_type="patient_merge",
        resource_id=str(survivor.pk),
        patient_ids=[survivor.pk, duplicate.pk],
        actor=actor,
        request=request,
        details={
            "survivor": str(survivor.pk),
            "duplicate": str(duplicate.pk),
            "appointments_moved": moved_appointments,
        },
    )
    return survivor


def patient_language_detected(*, patient_id, language):
    """A language detected in the patient's messages becomes their preferred
    language when none was given (never set by staff, an integration or an earlier
    detection), audited as a change the system made. Returns whether it was
    written; a patient whose language was given keeps it."""
    written = Patient.objects.filter(
        pk=patient_id, preferred_language_source=Patient.LanguageSource.NONE
    ).update(
        preferred_language=language,
        preferred_language_source=Patient.LanguageSource.DETECTED,
        updated_at=timezone.now(),
    )
    if written:
        audit_record(
            action="update",
            resource_type="patient",
            resource_id=str(patient_id),
            patient_ids=[patient_id],
            details={"change": "preferred_language_detected", "language": language},
        )
    return bool(written)


# --- Consent -------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentDecision:
    allowed: bool
    reason: str = ""
    address: str = ""


def consent_check(*, patient, channel, address=None):
    """Every sender calls this before an SMS or email goes out. `address` is the
    number or email the message would go to; without it the patient's preferred
    (else first) contact point of that kind is used."""
    if patient is None:
        return ConsentDecision(True, address=address or "")
    if patient.merged_into_id or not patient.active:
        return ConsentDecision(False, "patient_inactive")
    if channel not in (Channel.SMS, Channel.EMAIL, Channel.VOICE):
        return ConsentDecision(True, address=address or "")
    kind = ContactPoint.Kind.EMAIL if channel == Channel.EMAIL else ContactPoint.Kind.PHONE
    points = [cp for cp in patient.contact_points.all() if cp.kind == kind]
    if address:
        try:
            index = _index(kind, _normalise(kind, address))
        except ValueError:
            return ConsentDecision(False, "invalid_address")
        points = [cp for cp in points if cp.value_index == index]
        if not points:
            # A number not on the record (a new conversation) still honours a
            # STOP recorded against it on any patient.
            if (
                channel == Channel.SMS
                and ContactPoint.objects.filter(value_index=index, sms_opted_out=True).exists()
            ):
                return ConsentDecision(False, "opted_out")
            return ConsentDecision(True, address=address)
    if not points:
        return ConsentDecision(False, "no_contact_point")
    point = next((cp for cp in points if cp.preferred), points[0])
    if channel == Channel.SMS and point.sms_opted_out:
        return ConsentDecision(False, "opted_out")
    return ConsentDecision(True, address=point.value)


def _set_sms_consent(*, phone, opted_out, source, actor=None, api_client=None, request=None):
    index = phone_index(phone)
    points = list(
        ContactPoint.objects.select_for_update().filter(
            kind=ContactPoint.Kind.PHONE, value_index=index
        )
    )
    changed = [cp for cp in points if cp.sms_opted_out != opted_out]
    if changed:
        now = timezone.now()
        ContactPoint.objects.filter(pk__in=[cp.pk for cp in changed]).update(
            sms_opted_out=opted_out,
            sms_consent_changed_at=now,
            sms_consent_source=source,
        )
        ConsentChange.objects.bulk_create(
            ConsentChange(
                contact_point=cp,
                channel=Channel.SMS,
                opted_out=opted_out,
                source=source,
                changed_at=now,
            )
            for cp in changed
        )
    audit_record(
        action="update",
        resource_type="sms_consent",
        patient_ids=sorted({cp.patient_id for cp in points}),
        actor=actor,
        api_client=api_client,
        request=request,
        details={
            "change": "sms_opt_out" if opted_out else "sms_opt_in",
            "source": source,
            "contact_points_changed": len(changed),
        },
    )
    return len(changed)


@transaction.atomic
def sms_opt_out(*, phone, source, actor=None, api_client=None, request=None):
    """Mark the number opted out on every patient that has it (a family line)."""
    return _set_sms_consent(
        phone=phone,
        opted_out=True,
        source=source,
        actor=actor,
        api_client=api_client,
        request=request,
    )


@transaction.atomic
def sms_opt_in(*, phone, source, actor=None, api_client=None, request=None):
    return _set_sms_consent(
        phone=phone,
        opted_out=False,
        source=source,
        actor=actor,
        api_client=api_client,
        request=request,
    )


# --- Appointments ----------------------------------------------------------------

APPOINTMENT_FIELDS = ("starts_at", "duration_minutes", "provider_name", "location", "status")


def _change_kind(before, appointment):
    if before is None:
        return "created"
    if before["starts_at"] != appointment.starts_at:
        return "moved"
    if before["status"] != appointment.status:
        return "status"
    return "updated"


def _notify(appointment, change):
    appointment_changed.send(sender=Appointment, appointment=appointment, change=change)


@transaction.atomic
def appointment_create(*, patient, starts_at, **fields):
    appointment = Appointment.objects.create(patient=patient, starts_at=starts_at, **fields)
    _notify(appointment, "created")
    return appointment


@transaction.atomic
def appointment_update(*, appointment, **changes):
    appointment = Appointment.objects.select_for_update().get(pk=appointment.pk)
    before = {"starts_at": appointment.starts_at, "status": appointment.status}
    for name, value in changes.items():
        if name not in APPOINTMENT_FIELDS:
            raise TypeError(f"Unknown appointment field: {name}")
        setattr(appointment, name, value)
    appointment.save()
    _notify(appointment, _change_kind(before, appointment))
    return appointment


def appointment_upsert_external(*, source, external_id, patient, **fields):
    """Idempotent upsert for schedulers: the same (source, external_id) always
    names one appointment, also when two deliveries race. Returns (appointment,
    created)."""
    for _attempt in range(2):
        try:
            with transaction.atomic():
                existing = (
                    Appointment.objects.select_for_update()
                    .filter(source=source, external_id=external_id)
                    .first()
                )
                if existing is None:
                    appointment = Appointment.objects.create(
                        patient=patient, source=source, external_id=external_id, **fields
                    )
                    _notify(appointment, "created")
                    return appointment, True
                if existing.patient_id != patient.pk:
                    raise ValueError("This external id belongs to another patient.")
                before = {"starts_at": existing.starts_at, "status": existing.status}
                changed = False
                for name, value in fields.items():
                    if getattr(existing, name) != value:
                        setattr(existing, name, value)
                        changed = True
                if changed:
                    existing.save()
                    _notify(existing, _change_kind(before, existing))
                return existing, False
        except IntegrityError:
            continue  # a concurrent insert won; the second pass updates it
    raise RuntimeError("Could not upsert the appointment after a concurrent insert.")
