"""Patients, their contact points and appointments. Everything that identifies a
person is encrypted; lookups go through blind indexes."""

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from contactcenter.blind_index import BlindIndexField
from contactcenter.fields import (
    EncryptedCharField,
    EncryptedDateField,
    EncryptedJSONField,
)
from contactcenter.models import Team


def validate_time_zone(value):
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not a known IANA time zone.") from exc


class Channel(models.TextChoices):
    SMS = "sms"
    EMAIL = "email"
    VOICE = "voice"
    PORTAL = "portal"


# The care flags a patient can carry (boolean fields of Patient, in this order).
PATIENT_FLAGS = ("needs_interpreter", "low_literacy", "hearing_impaired", "vip")


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "female"
        MALE = "male"
        OTHER = "other"
        UNKNOWN = "unknown"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    mrn = EncryptedCharField(max_length=64)
    mrn_index = BlindIndexField(unique=True)
    given_name = EncryptedCharField(max_length=100)
    family_name = EncryptedCharField(max_length=100)
    birth_date = EncryptedDateField(null=True, blank=True)
    sex = EncryptedCharField(max_length=16, blank=True, default="")
    address = EncryptedJSONField(null=True, blank=True)
    preferred_channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.SMS)

    class LanguageSource(models.TextChoices):
        NONE = "", "not given (the default)"
        RECORD = "record", "given by staff or an integration"
        DETECTED = "detected", "detected from the patient's messages"

    preferred_language = models.CharField(max_length=16, default="en")
    # Where preferred_language came from: a patient with none given takes the
    # language their messages are written in (understanding/, through
    # patients.services.patient_language_detected).
    # db_default: rows written by hand-written SQL (bulk seeding) get it too.
    preferred_language_source = models.CharField(
        max_length=8, choices=LanguageSource.choices, blank=True, default="", db_default=""
    )
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone])
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="patients")
    primary_coordinator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="coordinated_patients",
    )
    needs_interpreter = models.BooleanField(default=False)
    low_literacy = models.BooleanField(default=False)
    hearing_impaired = models.BooleanField(default=False)
    vip = models.BooleanField(default=False)
    active = models.BooleanField(default=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_duplicates"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="patient_created_idx"),
            models.Index(fields=["team", "-created_at", "-id"], name="patient_team_created_idx"),
        ]
        permissions = [("merge_patient", "Can merge duplicate patients")]

    def __str__(self):
        return f"Patient {self.pk}"

    @property
    def display_name(self):
        return self.name_for_display(self.given_name, self.family_name)

    @staticmethod
    def name_for_display(given_name, family_name):
        return f"{given_name or ''} {family_name or ''}".strip()

    @property
    def flags(self):
        return [name for name in PATIENT_FLAGS if getattr(self, name)]


class PatientGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Patient, on_delete=models.CASCADE)


class PatientUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Patient, on_delete=models.CASCADE)


class ContactPoint(models.Model):
    class Kind(models.TextChoices):
        PHONE = "phone"
        EMAIL = "email"

    class ConsentSource(models.TextChoices):
        KEYWORD = "keyword"
        STAFF = "staff"
        API = "api"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="contact_points")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = EncryptedCharField(max_length=254)
    value_index = BlindIndexField()
    verified = models.BooleanField(default=False)
    preferred = models.BooleanField(default=False)
    sms_opted_out = models.BooleanField(default=False)
    sms_consent_changed_at = models.DateTimeField(null=True, blank=True)
    sms_consent_source = models.CharField(
        max_length=8, choices=ConsentSource.choices, blank=True, default=""
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "value_index"], name="contactpoint_unique_per_patient"
            )
        ]

    def __str__(self):
        return f"{self.kind} of {self.patient_id}"


class ConsentChange(models.Model):
    """One change of a contact point's consent to messages (an SMS opt-out or
    opt-in): its history, written by patients.services with the contact point's
    new state. FHIR serves it as the versions of the contact point's Consent."""

    contact_point = models.ForeignKey(
        ContactPoint, on_delete=models.CASCADE, related_name="consent_changes"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    opted_out = models.BooleanField()
    source = models.CharField(
        max_length=8, choices=ContactPoint.ConsentSource.choices, blank=True, default=""
    )
    changed_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(
                fields=["contact_point", "changed_at", "id"], name="consent_change_history_idx"
            )
        ]

    def __str__(self):
        return f"{self.channel} consent change of {self.contact_point_id}"


class Appointment(models.Model):
    class Status(models.TextChoices):
        BOOKED = "booked"
        CONFIRMED = "confirmed"
        CANCELLED = "cancelled"
        NOSHOW = "noshow"
        FULFILLED = "fulfilled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="appointments")
    starts_at = models.DateTimeField()
    duration_minutes = models.PositiveSmallIntegerField(default=30)
    # Who the patient sees and where tie the patient to their care (a cardiologist,
    # an oncology suite): encrypted like every other PHI column.
    provider_name = EncryptedCharField(max_length=200, blank=True, default="")
    location = EncryptedCharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BOOKED)
    source = models.CharField(max_length=64, blank=True, default="")
    external_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["patient", "starts_at"], name="appointment_patient_idx"),
            models.Index(fields=["starts_at"], name="appointment_starts_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="appointment_unique_external_id",
            )
        ]

    def __str__(self):
        return f"Appointment {self.pk}"
