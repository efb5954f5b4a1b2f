from datetime import date

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from contactcenter.blind_index import normalise_email, normalise_phone
from contactcenter.models import Team
from patients.models import (
    PATIENT_FLAGS,
    Appointment,
    Channel,
    ContactPoint,
    Patient,
    validate_time_zone,
)
from patients.services import ContactInput


class PhoneSerializer(serializers.Serializer):
    value = serializers.CharField(max_length=40)
    preferred = serializers.BooleanField(default=False)
    verified = serializers.BooleanField(default=False)
    sms_opted_out = serializers.BooleanField(read_only=True)

    def validate_value(self, value):
        try:
            return normalise_phone(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class EmailSerializer(PhoneSerializer):
    value = serializers.CharField(max_length=254)

    def validate_value(self, value):
        try:
            return normalise_email(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class AddressSerializer(serializers.Serializer):
    line1 = serializers.CharField(max_length=200, allow_blank=True, required=False)
    line2 = serializers.CharField(max_length=200, allow_blank=True, required=False)
    city = serializers.CharField(max_length=100, allow_blank=True, required=False)
    state = serializers.CharField(max_length=100, allow_blank=True, required=False)
    postal_code = serializers.CharField(max_length=20, allow_blank=True, required=False)
    country = serializers.CharField(max_length=2, allow_blank=True, required=False)


def _contacts(patient, kind):
    return [
        {
            "value": cp.value,
            "preferred": cp.preferred,
            "verified": cp.verified,
            "sms_opted_out": cp.sms_opted_out,
        }
        for cp in patient.contact_points.all()
        if cp.kind == kind
    ]


class PatientSerializer(serializers.Serializer):
    """The patient with its phones and emails nested. Contact lists replace the
    stored set when sent; omitted, they stay as they are."""

    id = serializers.UUIDField(read_only=True)
    mrn = serializers.CharField(max_length=64)
    given_name = serializers.CharField(max_length=100)
    family_name = serializers.CharField(max_length=100)
    birth_date = serializers.DateField(required=False, allow_null=True)
    sex = serializers.ChoiceField(choices=Patient.Sex.choices, required=False, allow_blank=True)
    address = AddressSerializer(required=False, allow_null=True)
    phones = PhoneSerializer(many=True, required=False)
    emails = EmailSerializer(many=True, required=False)
    preferred_channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    preferred_language = serializers.RegexField(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", required=False)
    time_zone = serializers.CharField(max_length=64)
    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)
    primary_coordinator = serializers.PrimaryKeyRelatedField(
        queryset=get_user_model().objects.filter(is_active=True), required=False, allow_null=True
    )
    needs_interpreter = serializers.BooleanField(required=False)
    low_literacy = serializers.BooleanField(required=False)
    hearing_impaired = serializers.BooleanField(required=False)
    vip = serializers.BooleanField(required=False)
    active = serializers.BooleanField(required=False)
    merged_into = serializers.UUIDField(source="merged_into_id", read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, patient):
        data = super().to_representation(patient)
        data["phones"] = _contacts(patient, ContactPoint.Kind.PHONE)
        data["emails"] = _contacts(patient, ContactPoint.Kind.EMAIL)
        return data

    def validate_birth_date(self, value):
        if value and value > date.today():
            raise serializers.ValidationError("A birth date cannot be in the future.")
        if value and value.year < 1880:
            raise serializers.ValidationError("This birth date is not plausible.")
        return value

    def validate_time_zone(self, value):
        try:
            validate_time_zone(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(f"{value!r} is not a known IANA time zone.") from exc
        return value

    def validate_mrn(self, value):
        value = value.strip()
        if not value:
            raise serializers.ValidationError("The MRN cannot be blank.")
        return value

    def _validate_contacts(self, items, name):
        values = [item["value"] for item in items]
        if len(values) != len(set(values)):
            raise serializers.ValidationError({name: "The same value is listed twice."})
        if sum(1 for item in items if item.get("preferred")) > 1:
            raise serializers.ValidationError({name: "Only one can be preferred."})

    def validate(self, attrs):
        for name in ("phones", "emails"):
            if name in attrs:
                self._validate_contacts(attrs[name], name)
        return attrs

    def service_kwargs(self):
        """The validated data in the services' terms."""
        data = dict(self.validated_data)
        for name in ("phones", "emails"):
            if name in data:
                data[name] = [
                    ContactInput(
                        value=i["value"],
                        preferred=i.get("preferred", False),
                        verified=i.get("verified", False),
                    )
                    for i in data[name]
                ]
        if "address" in data and data["address"] is not None:
            data["address"] = dict(data["address"])
        return data


PATIENT_FLAG_CHOICES = [(flag, flag) for flag in PATIENT_FLAGS]


class MergeSerializer(serializers.Serializer):
    survivor = serializers.UUIDField()
    duplicate = serializers.UUIDField()


class AppointmentSerializer(serializers.ModelSerializer):
    patient = serializers.UUIDField(source="patient_id", read_only=True)

    class Meta:
        model = Appointment
        fields = [
            "id",
            "patient",
            "starts_at",
            "duration_minutes",
            "provider_name",
            "location",
            "status",
            "source",
            "external_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "patient", "created_at", "updated_at"]

    def validate_duration_minutes(self, value):
        if not 5 <= value <= 24 * 60:
            raise serializers.ValidationError("A duration is between 5 minutes and 24 hours.")
        return value


class AppointmentUpsertSerializer(AppointmentSerializer):
    patient_id = serializers.UUIDField(write_only=True)

    class Meta(AppointmentSerializer.Meta):
        fields = [*AppointmentSerializer.Meta.fields, "patient_id"]
        read_only_fields = [*AppointmentSerializer.Meta.read_only_fields, "source", "external_id"]
