from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class PortalMessageSerializer(serializers.Serializer):
    patient = serializers.UUIDField()
    subject = serializers.CharField(max_length=300, allow_blank=True, required=False, default="")
    body = serializers.CharField(max_length=20000)
    thread_id = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    message_id = serializers.CharField(
        max_length=128,
        required=False,
        allow_blank=True,
        default="",
        help_text="The portal's id of this message: a repeated delivery stores nothing new.",
    )


class PortalMessageCreatedSerializer(serializers.Serializer):
    interaction = serializers.UUIDField()
    conversation = serializers.UUIDField()
    created = serializers.BooleanField()


def _iso(value):
    """DRF's DateTimeField output: ISO 8601 with "Z" for UTC."""
    return serializers.DateTimeField().to_representation(value) if value else None


def mask_address(address):
    """`+1 *** *** 0100` for a phone, `j***@example.org` for an email: enough for
    staff to tell threads apart, not enough to read a number off a screen."""
    if not address:
        return ""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    digits = address.lstrip("+")
    if address.startswith("+1") and len(digits) == 11:
        return f"+1 *** *** {digits[-4:]}"
    return f"{address[:3]} *** {address[-4:]}"


class InboxRowSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    channel = serializers.CharField()
    status = serializers.CharField()
    priority = serializers.CharField(source="get_priority_display")
    patient = serializers.UUIDField(source="patient_id", allow_null=True)
    patient_name = serializers.SerializerMethodField()
    contact = serializers.SerializerMethodField()
    assignee = serializers.IntegerField(source="assignee_id", allow_null=True)
    assignee_name = serializers.SerializerMethodField()
    team = serializers.IntegerField(source="team_id")
    labels = serializers.ListField(child=serializers.CharField())
    escalated = serializers.BooleanField()
    last_interaction_at = serializers.DateTimeField()
    last_direction = serializers.CharField()
    preview = serializers.CharField(source="last_preview")
    unread = serializers.SerializerMethodField()
    sla_due_at = serializers.SerializerMethodField()

    def to_representation(self, conversation):
        """Built directly: the inbox renders fifty of these per page and DRF's
        field-by-field machinery costs more than the rows themselves. The
        declared fields above still describe the row in the API schema."""
        return {
            "id": str(conversation.pk),
            "channel": conversation.channel,
            "status": conversation.status,
            "priority": conversation.get_priority_display(),
            "patient": str(conversation.patient_id) if conversation.patient_id else None,
            "patient_name": self.get_patient_name(conversation),
            "contact": self.get_contact(conversation),
            "assignee": conversation.assignee_id,
            "assignee_name": self.get_assignee_name(conversation),
            "team": conversation.team_id,
            "labels": list(conversation.labels),
            "escalated": conversation.escalated,
            "last_interaction_at": _iso(conversation.last_interaction_at),
            "last_direction": conversation.last_direction,
            "preview": conversation.last_preview,
            "unread": self.get_unread(conversation),
            "sla_due_at": self.get_sla_due_at(conversation),
            **self.extra_representation(conversation),
        }

    def extra_representation(self, conversation):
        return {}

    def get_patient_name(self, conversation) -> str | None:
        visible = self.context.get("visible_patient_ids", set())
        if conversation.patient_id is None or conversation.patient_id not in visible:
            return None
        return conversation.patient.display_name

    def get_contact(self, conversation) -> str:
        return mask_address(conversation.contact_address)

    def get_assignee_name(self, conversation) -> str | None:
        return conversation.assignee.get_username() if conversation.assignee_id else None

    def get_unread(self, conversation) -> bool:
        return bool(getattr(conversation, "unread", False))

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_sla_due_at(self, conversation):
        due = [
            d
            for d in (conversation.first_response_due_at, conversation.next_response_due_at)
            if d is not None
        ]
        return min(due).isoformat() if due else None


class ConversationDetailSerializer(InboxRowSerializer):
    subject = serializers.CharField()
    snoozed_until = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    sentiment_first = serializers.FloatField(allow_null=True)
    sentiment_latest = serializers.FloatField(allow_null=True)

    def extra_representation(self, conversation):
        return {
            "subject": conversation.subject,
            "snoozed_until": _iso(conversation.snoozed_until),
            "resolved_at": _iso(conversation.resolved_at),
            "created_at": _iso(conversation.created_at),
            "sentiment_first": conversation.sentiment_first,
            "sentiment_latest": conversation.sentiment_latest,
        }


class ConversationChangeSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["open", "pending", "snoozed", "resolved"], required=False
    )
    snoozed_until = serializers.DateTimeField(required=False)
    assignee = serializers.IntegerField(required=False, allow_null=True)
    priority = serializers.ChoiceField(choices=["low", "normal", "high", "urgent"], required=False)
    labels = serializers.ListField(
        child=serializers.RegexField(r"^[a-z0-9][a-z0-9_-]{0,39}$"), required=False, max_length=20
    )
    patient = serializers.UUIDField(required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Nothing to change.")
        return attrs


class MessageSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    conversation = serializers.UUIDField(source="conversation_id", read_only=True)
    channel = serializers.CharField(read_only=True)
    kind = serializers.CharField(read_only=True)
    direction = serializers.CharField(read_only=True)
    author = serializers.SerializerMethodField()
    body = serializers.CharField(read_only=True)
    occurred_at = serializers.DateTimeField(read_only=True)
    delivery_status = serializers.SerializerMethodField()
    delivery_error = serializers.SerializerMethodField()
    sentiment = serializers.FloatField(read_only=True, allow_null=True)

    def to_representation(self, interaction):
        """Built directly, like the inbox row: a timeline page is fifty of these."""
        outbound = self._outbound(interaction)
        return {
            "id": str(interaction.pk),
            "conversation": str(interaction.conversation_id),
            "channel": interaction.channel,
            "kind": interaction.kind,
            "direction": interaction.direction,
            "author": self.get_author(interaction),
            "body": interaction.body,
            "occurred_at": _iso(interaction.occurred_at),
            "delivery_status": outbound.state if outbound else None,
            "delivery_error": (outbound.last_error or None) if outbound else None,
            "sentiment": interaction.sentiment,
        }

    def get_author(self, interaction) -> str | None:
        return interaction.author.get_username() if interaction.author_id else None

    def _outbound(self, interaction):
        try:
            return interaction.outbound
        except ObjectDoesNotExist:
            return None

    def get_delivery_status(self, interaction) -> str | None:
        outbound = self._outbound(interaction)
        return outbound.state if outbound else None

    def get_delivery_error(self, interaction) -> str | None:
        outbound = self._outbound(interaction)
        return outbound.last_error or None if outbound else None


class ReplySerializer(serializers.Serializer):
    body = serializers.CharField(max_length=1600, required=False, allow_blank=False)
    internal = serializers.BooleanField(default=False)
    canned_response = serializers.IntegerField(required=False)

    def validate(self, attrs):
        if not attrs.get("body") and not attrs.get("canned_response"):
            raise serializers.ValidationError({"body": ["Write a body or pick a canned response."]})
        return attrs


class InboxCountsSerializer(serializers.Serializer):
    mine = serializers.IntegerField()
    unassigned = serializers.IntegerField()
    my_teams = serializers.IntegerField()
    escalated = serializers.IntegerField()
