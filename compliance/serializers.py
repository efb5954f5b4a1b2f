from django.utils import timezone
from rest_framework import serializers

from compliance.exports import ACCESS_REPORT_COLUMNS, AUDIT_EVENT_COLUMNS
from compliance.models import AnomalyFinding, AuditEvent, BreakGlassGrant, Disclosure


class AuditEventSerializer(serializers.ModelSerializer):
    patient_ids = serializers.ListField(child=serializers.UUIDField(), read_only=True)

    class Meta:
        model = AuditEvent
        fields = list(AUDIT_EVENT_COLUMNS)
        read_only_fields = fields


class AccessReportRowSerializer(serializers.ModelSerializer):
    """One access to the patient's record: who, when, what, why, outcome."""

    class Meta:
        model = AuditEvent
        # The same columns as the report's CSV.
        fields = list(ACCESS_REPORT_COLUMNS)
        read_only_fields = fields


class AccessReportQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="Default: six years ago.")
    until = serializers.DateTimeField(required=False, help_text="Default: now.")
    format = serializers.ChoiceField(choices=["json", "csv"], required=False, default="json")

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        return attrs


class ChainVerificationSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    complete = serializers.BooleanField(
        help_text="False when the time budget ran out: the chain verifies up to head_position."
    )
    count = serializers.IntegerField()
    head_hash = serializers.CharField()
    head_position = serializers.IntegerField(allow_null=True)
    broken_id = serializers.IntegerField(allow_null=True)
    broken_position = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    detail = serializers.CharField(allow_blank=True)


class BreakGlassRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        min_length=BreakGlassGrant.REASON_MIN_LENGTH,
        max_length=2000,
        help_text="Why the emergency access is needed (at least 20 characters).",
    )


class BreakGlassGrantSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    reviewed_by_username = serializers.CharField(
        source="reviewed_by.username", read_only=True, default=None, allow_null=True
    )
    active = serializers.SerializerMethodField()
    review_outcome = serializers.ChoiceField(
        choices=BreakGlassGrant.ReviewOutcome.choices,
        allow_blank=True,
        read_only=True,
        help_text="Empty until the grant is reviewed.",
    )

    class Meta:
        model = BreakGlassGrant
        fields = [
            "id",
            "user",
            "username",
            "patient_id",
            "reason",
            "granted_at",
            "expires_at",
            "active",
            "reviewed_by",
            "reviewed_by_username",
            "reviewed_at",
            "review_outcome",
            "review_comment",
        ]
        read_only_fields = fields

    def get_active(self, grant) -> bool:
        return grant.is_active()


class BreakGlassReviewSerializer(serializers.Serializer):
    review_outcome = serializers.ChoiceField(choices=BreakGlassGrant.ReviewOutcome.choices)
    review_comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=2000
    )

    def validate(self, attrs):
        if (
            attrs["review_outcome"] != BreakGlassGrant.ReviewOutcome.APPROPRIATE
            and not attrs["review_comment"].strip()
        ):
            raise serializers.ValidationError(
                {"review_comment": ["Say what was wrong or what follows."]}
            )
        return attrs


class DisclosureSerializer(serializers.ModelSerializer):
    created_by_username = serializers.CharField(
        source="created_by.username", read_only=True, default=None, allow_null=True
    )
    api_client_name = serializers.CharField(
        source="api_client.name", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = Disclosure
        fields = [
            "id",
            "patient_id",
            "disclosed_at",
            "recipient_name",
            "recipient_address",
            "description",
            "purpose",
            "created_by",
            "created_by_username",
            "api_client_name",
            "created_at",
        ]
        read_only_fields = ["id", "patient_id", "created_by", "created_at"]

    def validate_disclosed_at(self, value):
        if value > timezone.now():
            raise serializers.ValidationError("A disclosure cannot be in the future.")
        return value


class AnomalyFindingSerializer(serializers.ModelSerializer):
    class Meta:
        model = AnomalyFinding
        fields = [
            "day",
            "kind",
            "user_id",
            "username",
            "count",
            "baseline",
            "details",
            "created_at",
        ]
        read_only_fields = fields


class AnomalyQuerySerializer(serializers.Serializer):
    day = serializers.DateField(
        required=False, help_text="A day in the practice's time zone; default yesterday."
    )


class AnomalyReportSerializer(serializers.Serializer):
    day = serializers.DateField()
    findings = AnomalyFindingSerializer(many=True)
