import datetime

from django.core.exceptions import ObjectDoesNotExist
from rest_framework import serializers

from channels_app.models import ChannelAccount, Conversation, DeliveryAttempt
from channels_app.selectors import INBOX_COLUMNS
from contactcenter.blind_index import normalise_phone
from contactcenter.models import Team


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
    """DRF's DateTimeField output (ISO 8601 in UTC, written "Z"), without building
    a DRF field for every value of a page."""
    if not value:
        return None
    text = value.astimezone(datetime.UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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
    patient_name = serializers.CharField(
        allow_null=True, help_text="Only for patients the caller may see."
    )
    contact = serializers.CharField(help_text="The contact address, masked.")
    assignee = serializers.IntegerField(source="assignee_id", allow_null=True)
    assignee_name = serializers.CharField(allow_null=True)
    team = serializers.IntegerField(source="team_id")
    labels = serializers.ListField(child=serializers.CharField())
    escalated = serializers.BooleanField()
    last_interaction_at = serializers.DateTimeField()
    last_direction = serializers.CharField()
    preview = serializers.CharField(source="last_preview")
    unread = serializers.BooleanField(help_text="Activity since the caller last read it.")
    sla_due_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, conversation):
        """The detail view's conversation, as the inbox row it would be."""
        visible = conversation.patient_id in self.context.get("visible_patient_ids", set())
        row = {
            **{name: getattr(conversation, name) for name in INBOX_COLUMNS},
            "patient_name": conversation.patient.display_name if visible else None,
            "assignee_username": (
                conversation.assignee.get_username() if conversation.assignee_id else None
            ),
            "unread": bool(getattr(conversation, "unread", False)),
        }
        return {**inbox_row(row), **self.extra_representation(conversation)}

    def extra_representation(self, conversation):
        return {}


_PRIORITY_LABELS = dict(Conversation.Priority.choices)


def inbox_row(row):
    """An inbox row as the API answers it, from the dict of decrypted values that
    channels_app.selectors.inbox_page returns. Built directly: a page is fifty of
    these and DRF's field-by-field machinery costs more than the rows themselves;
    InboxRowSerializer's declared fields describe the same row in the schema."""
    due = [d for d in (row["first_response_due_at"], row["next_response_due_at"]) if d is not None]
    return {
        "id": str(row["id"]),
        "channel": row["channel"],
        "status": row["status"],
        "priority": _PRIORITY_LABELS[row["priority"]],
        "patient": str(row["patient_id"]) if row["patient_id"] else None,
        "patient_name": row["patient_name"],
        "contact": mask_address(row["contact_address"]),
        "assignee": row["assignee_id"],
        "assignee_name": row["assignee_username"],
        "team": row["team_id"],
        "labels": list(row["labels"]),
        "escalated": row["escalated"],
        "last_interaction_at": _iso(row["last_interaction_at"]),
        "last_direction": row["last_direction"],
        "preview": row["last_preview"],
        "unread": row["unread"],
        "sla_due_at": min(due).isoformat() if due else None,
    }


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
    author = serializers.CharField(read_only=True, allow_null=True)
    body = serializers.CharField(read_only=True)
    occurred_at = serializers.DateTimeField(read_only=True)
    delivery_status = serializers.CharField(read_only=True, allow_null=True)
    delivery_error = serializers.CharField(read_only=True, allow_null=True)
    sentiment = serializers.FloatField(read_only=True, allow_null=True)

    def to_representation(self, interaction):
        try:
            outbound = interaction.outbound
        except ObjectDoesNotExist:
            outbound = None
        return message(
            {
                "id": interaction.pk,
                "conversation_id": interaction.conversation_id,
                "channel": interaction.channel,
                "kind": interaction.kind,
                "direction": interaction.direction,
                "author": interaction.author.get_username() if interaction.author_id else None,
                "body": interaction.body,
                "occurred_at": interaction.occurred_at,
                "sentiment": interaction.sentiment,
                "delivery_status": outbound.state if outbound else None,
                "delivery_error": (outbound.last_error or None) if outbound else None,
            }
        )


def message(row):
    """A timeline or conversation message as the API answers it, from the dict
    that channels_app.selectors returns (built directly, like inbox_row)."""
    return {
        "id": str(row["id"]),
        "conversation": str(row["conversation_id"]),
        "channel": row["channel"],
        "kind": row["kind"],
        "direction": row["direction"],
        "author": row["author"],
        "body": row["body"],
        "occurred_at": _iso(row["occurred_at"]),
        "delivery_status": row["delivery_status"],
        "delivery_error": row["delivery_error"],
        "sentiment": row["sentiment"],
    }


class DeliveryAttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField(read_only=True)
    attempted_at = serializers.DateTimeField(read_only=True)
    latency_ms = serializers.IntegerField(read_only=True)
    outcome = serializers.ChoiceField(choices=DeliveryAttempt.Outcome.choices, read_only=True)
    provider_status = serializers.CharField(read_only=True)
    error = serializers.CharField(read_only=True)


def delivery_attempt(attempt):
    return {
        "number": attempt.number,
        "attempted_at": _iso(attempt.attempted_at),
        "latency_ms": attempt.latency_ms,
        "outcome": attempt.outcome,
        "provider_status": attempt.provider_status,
        "error": attempt.error,
    }


class ConversationMessageSerializer(MessageSerializer):
    """A message of the conversation's own list: with every try at delivering it,
    oldest first, so staff can see why one failed (empty for what is not sent)."""

    delivery_attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    def to_representation(self, interaction):
        try:
            attempts = list(interaction.outbound.delivery_attempts.order_by("number"))
        except ObjectDoesNotExist:
            attempts = []
        return {
            **super().to_representation(interaction),
            "delivery_attempts": [delivery_attempt(attempt) for attempt in attempts],
        }


class ReplySerializer(serializers.Serializer):
    body = serializers.CharField(max_length=1600, required=False, allow_blank=False)
    internal = serializers.BooleanField(default=False)
    canned_response = serializers.IntegerField(required=False)
    last_seen_interaction = serializers.UUIDField(
        required=False,
        help_text="The newest interaction the author had on screen. When the patient wrote "
        "after it, the reply is refused with 409 `stale_reply` (details.latest_interaction "
        "names the newest inbound message) and nothing is sent. Ignored for notes.",
    )

    def validate(self, attrs):
        if not attrs.get("body") and not attrs.get("canned_response"):
            raise serializers.ValidationError({"body": ["Write a body or pick a canned response."]})
        return attrs


class InboxCountsSerializer(serializers.Serializer):
    """Each count is exact up to 999; above it the count is 1000 and the tab is
    listed in `capped` (show "999+")."""

    mine = serializers.IntegerField()
    unassigned = serializers.IntegerField()
    my_teams = serializers.IntegerField()
    escalated = serializers.IntegerField()
    capped = serializers.ListField(
        child=serializers.CharField(),
        help_text="Tabs with more than 999 conversations: their count reads 1000, shown 999+.",
    )


# --- The phone line: callbacks, team queues, the caller's context -------------------


class CallbackDialSerializer(serializers.Serializer):
    agent_number = serializers.CharField(
        max_length=32,
        help_text="The phone the agent answers on (E.164 or a national number); "
        "Twilio rings it once the patient picks up.",
    )

    def validate_agent_number(self, value):
        try:
            return normalise_phone(value)
        except ValueError:
            raise serializers.ValidationError("Not a phone number.") from None


class CallbackSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    conversation = serializers.UUIDField(source="conversation_id")
    team = serializers.IntegerField(source="team_id")
    status = serializers.CharField()
    language = serializers.CharField()
    queued_at = serializers.DateTimeField(help_text="Its place in the queue: when the call joined.")
    requested_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField(help_text="The end of the window promised to the caller.")
    dialled_at = serializers.DateTimeField(allow_null=True)
    dial_attempts = serializers.IntegerField()
    provider_status = serializers.CharField()
    last_error = serializers.CharField()


class QueueEntrySerializer(serializers.Serializer):
    position = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["call", "callback"])
    id = serializers.UUIDField(help_text="The call's interaction id or the callback's id.")
    conversation = serializers.UUIDField(source="conversation_id")
    queued_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField(allow_null=True, help_text="A callback's promised window.")


class CallerPatientSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    given_name = serializers.CharField()
    family_name = serializers.CharField()
    birth_date = serializers.DateField(allow_null=True)
    preferred_language = serializers.CharField()
    team = serializers.IntegerField(source="team_id")
    needs_interpreter = serializers.BooleanField()
    hearing_impaired = serializers.BooleanField()
    vip = serializers.BooleanField()


class CallerConversationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    channel = serializers.CharField()
    status = serializers.CharField()
    priority = serializers.IntegerField()
    team = serializers.IntegerField(source="team_id")
    last_interaction_at = serializers.DateTimeField()


class CallerAppointmentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    starts_at = serializers.DateTimeField()
    status = serializers.CharField()


class CallerContextSerializer(serializers.Serializer):
    patient = CallerPatientSerializer(allow_null=True)
    open_conversations = CallerConversationSerializer(many=True)
    upcoming_appointments = CallerAppointmentSerializer(many=True)


class ChannelAccountSerializer(serializers.ModelSerializer):
    """A practice number, mailbox or portal endpoint. The secret is write-only: it
    is stored encrypted and never returned (`has_secret` says whether one is set)."""

    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all())
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        style={"input_type": "password"},
        help_text="IMAP password or portal webhook secret. Write-only: never returned. "
        "Leave it out (or empty) to keep the current one.",
    )
    has_secret = serializers.SerializerMethodField()
    address = serializers.CharField(
        max_length=254,
        help_text="SMS and voice: the practice's number in E.164 form (+14155550100); "
        "email: the mailbox address; portal: the URL staff replies are posted to.",
    )

    class Meta:
        model = ChannelAccount
        fields = [
            "id",
            "kind",
            "name",
            "address",
            "team",
            "secret",
            "has_secret",
            "active",
            "help_text",
            "greeting",
            "greeting_es",
            "open_hours",
            "imap_host",
            "imap_port",
            "imap_username",
            "imap_use_ssl",
            "imap_folder",
        ]
        read_only_fields = ["id"]
        # The service checks uniqueness with the normalised address, per field.
        validators = []

    def get_has_secret(self, account) -> bool:
        return bool(account.secret)


class ImapCheckSerializer(serializers.Serializer):
    reachable = serializers.BooleanField()
    error = serializers.CharField(help_text="Why the mailbox cannot be read; empty when it can.")
