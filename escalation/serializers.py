from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contactcenter.models import StaffProfile
from escalation.models import EscalationRule
from escalation.rules import CLINICAL, PRIORITIES


class EscalationRuleSerializer(serializers.ModelSerializer):
    """Conditions and actions are checked by the model (EscalationRule.clean), so the
    API and the admin refuse the same rules with the same messages."""

    conditions = serializers.JSONField()
    actions = serializers.JSONField(required=False, default=dict)

    class Meta:
        model = EscalationRule
        fields = [
            "id",
            "name",
            "order",
            "active",
            "conditions",
            "actions",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # The model decides uniqueness and validity, in full_clean().
        validators = []
        extra_kwargs = {"name": {"validators": []}}


def _username(user):
    return user.get_username() if user is not None else None


class EscalationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    conversation = serializers.UUIDField(source="conversation_id")
    patient = serializers.UUIDField(source="patient_id", allow_null=True)
    rule = serializers.IntegerField(source="rule_id", allow_null=True)
    rule_name = serializers.SerializerMethodField()
    interaction = serializers.UUIDField(source="interaction_id", allow_null=True)
    reason = serializers.CharField()
    matched = serializers.JSONField()
    from_team = serializers.IntegerField(source="from_team_id", allow_null=True)
    to_team = serializers.IntegerField(source="to_team_id")
    from_user = serializers.SerializerMethodField()
    to_user = serializers.SerializerMethodField()
    priority = serializers.CharField(source="conversation.get_priority_display")
    context_summary = serializers.JSONField()
    breach_due_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    acknowledged_by = serializers.SerializerMethodField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)

    def get_rule_name(self, escalation) -> str | None:
        return escalation.rule.name if escalation.rule_id else None

    def get_from_user(self, escalation) -> str | None:
        return _username(escalation.from_user)

    def get_to_user(self, escalation) -> str | None:
        return _username(escalation.to_user)

    def get_acknowledged_by(self, escalation) -> str | None:
        return _username(escalation.acknowledged_by)


@extend_schema_field(OpenApiTypes.STR)
class TeamTargetField(serializers.Field):
    """A team id, or "clinical" for the clinical team."""

    def to_internal_value(self, data):
        if data == CLINICAL:
            return data
        if isinstance(data, bool):
            self.fail("invalid")
        try:
            return int(data)
        except (TypeError, ValueError):
            self.fail("invalid")

    def to_representation(self, value):
        return value

    default_error_messages = {"invalid": 'A team id or "clinical".'}


class ManualEscalationSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000)
    to_team = TeamTargetField(required=False)
    priority = serializers.ChoiceField(choices=list(PRIORITIES), required=False)


class AvailabilitySerializer(serializers.Serializer):
    availability = serializers.ChoiceField(choices=StaffProfile.Availability.choices)
    capacity = serializers.IntegerField(read_only=True)
