"""Conversations and interactions across every channel, their delivery records
and the raw provider events they came from."""

import secrets
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from contactcenter.blind_index import BlindIndexField
from contactcenter.fields import EncryptedCharField, EncryptedJSONField, EncryptedTextField
from contactcenter.models import Team
from patients.models import Channel, Patient


def _reply_token():
    return secrets.token_urlsafe(18)


class ChannelAccount(models.Model):
    """A practice's number, mailbox or portal endpoint. New conversations on it
    belong to its team until staff route them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=8, choices=Channel.choices)
    name = models.CharField(max_length=100)
    address = models.CharField(
        max_length=254, help_text="The practice's E.164 number, mailbox address or portal URL."
    )
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="channel_accounts")
    secret = EncryptedTextField(
        blank=True, default="", help_text="IMAP password or portal webhook secret; write-only."
    )
    help_text = models.CharField(
        max_length=320,
        blank=True,
        default="",
        help_text="The answer to an SMS HELP: who you are and how to reach a person.",
    )
    open_hours = models.JSONField(
        default=dict,
        blank=True,
        help_text='Voice opening hours: {"time_zone": ..., "weekly": {"0": [["09:00", "17:00"]]}, '
        '"holidays": [...]}. Empty means always open; closed calls go to voicemail.',
    )
    greeting = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="What a caller hears first in English; empty: thanks for calling the practice.",
    )
    greeting_es = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="The greeting in Spanish; empty: the practice's name in a standard sentence.",
    )
    active = models.BooleanField(default=True)
    imap_host = models.CharField(
        max_length=253,
        blank=True,
        default="",
        help_text="A mailbox polled over IMAP (the password is the secret); empty means "
        "email arrives through the webhook only.",
    )
    imap_port = models.PositiveIntegerField(
        default=993, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    imap_username = models.CharField(
        max_length=254, blank=True, default="", help_text="Empty means the mailbox address."
    )
    imap_use_ssl = models.BooleanField(
        default=True,
        help_text="Implicit TLS. Turn off only for a server on a trusted network: "
        "the password then travels in the clear.",
    )
    imap_folder = models.CharField(max_length=200, default="INBOX")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "address"], name="channelaccount_unique_address"
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.kind})"


class ImapCursor(models.Model):
    """How far the IMAP poller has stored one mailbox: every message up to
    `last_uid`, valid while the folder keeps this UIDVALIDITY (0 before the first
    poll). The poller holds this row locked while it reads, so two runs never poll
    one mailbox at once."""

    account = models.OneToOneField(
        ChannelAccount, primary_key=True, on_delete=models.CASCADE, related_name="imap_cursor"
    )
    uidvalidity = models.BigIntegerField(default=0)
    last_uid = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"IMAP cursor of {self.account_id} at UID {self.last_uid}"


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        PENDING = "pending"
        SNOOZED = "snoozed"
        RESOLVED = "resolved"

    class Priority(models.IntegerChoices):
        LOW = 0, "low"
        NORMAL = 1, "normal"
        HIGH = 2, "high"
        URGENT = 3, "urgent"

    ACTIVE_STATUSES = (Status.OPEN, Status.PENDING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    account = models.ForeignKey(
        ChannelAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    contact_address = EncryptedCharField(max_length=254, blank=True, default="")
    contact_index = BlindIndexField(blank=True, default="")
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="conversations"
    )
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="conversations")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_conversations",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    subject = EncryptedCharField(max_length=300, blank=True, default="")
    labels = models.JSONField(default=list, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    escalated = models.BooleanField(default=False)
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    next_response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    # The earliest open response target (first or next response), for the
    # inbox's "sort by SLA" and breach sweeps; NULL when no response is owed.
    sla_due_at = models.DateTimeField(null=True, blank=True)
    # The end of a promised callback's window while the callback is not made; the
    # SLA breach sweep escalates it like a missed response.
    callback_due_at = models.DateTimeField(null=True, blank=True)
    last_interaction_at = models.DateTimeField()
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_staff_response_at = models.DateTimeField(null=True, blank=True)
    last_direction = models.CharField(max_length=8, blank=True, default="")
    # The inbox row's preview, kept here so a page needs no join to its last message.
    last_preview = EncryptedCharField(max_length=160, blank=True, default="")
    sentiment_first = models.FloatField(null=True, blank=True)
    sentiment_latest = models.FloatField(null=True, blank=True)
    # The patient's language as last detected from their messages (or their
    # record's preferred language until a message says otherwise); replies,
    # automated answers and routing follow it.
    language = models.CharField(max_length=8, blank=True, default="")
    reply_token = models.CharField(max_length=32, unique=True, default=_reply_token)
    thread_key = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="A portal thread id, when the portal sent one.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["team", "-last_interaction_at", "-id"],
                name="conv_team_active_idx",
                condition=Q(status__in=["open", "pending"]),
            ),
            models.Index(
                fields=["team", "status", "assignee"],
                name="conv_team_status_assignee_idx",
            ),
            models.Index(
                fields=["team", "assignee", "escalated"],
                name="conv_team_active_counts_idx",
                condition=Q(status__in=["open", "pending"]),
            ),
            # The escalated tab's capped count reads at most 1,000 entries of this.
            models.Index(
                fields=["team"],
                name="conv_team_escalated_idx",
                condition=Q(status__in=["open", "pending"], escalated=True),
            ),
            models.Index(fields=["assignee", "status"], name="conv_assignee_status_idx"),
            models.Index(fields=["patient", "-last_interaction_at"], name="conv_patient_idx"),
            models.Index(
                fields=["account", "contact_index", "status"], name="conv_thread_lookup_idx"
            ),
            models.Index(
                fields=["team", "sla_due_at", "id"],
                name="conv_team_sla_idx",
                condition=Q(status__in=["open", "pending"], sla_due_at__isnull=False),
            ),
            # The SLA sweep's resolution targets (escalation/).
            models.Index(
                fields=["resolution_due_at", "id"],
                name="conv_resolution_due_idx",
                condition=Q(status__in=["open", "pending"], resolution_due_at__isnull=False),
            ),
            # The KPI report's ranges of days computed live (reporting/).
            models.Index(fields=["created_at"], name="conv_created_idx"),
            models.Index(
                fields=["resolved_at"],
                name="conv_resolved_idx",
                condition=Q(status="resolved"),
            ),
            models.Index(
                fields=["callback_due_at", "id"],
                name="conv_callback_due_idx",
                condition=Q(status__in=["open", "pending"], callback_due_at__isnull=False),
            ),
            models.Index(
                fields=["snoozed_until"],
                name="conv_snoozed_idx",
                condition=Q(status="snoozed"),
            ),
        ]

    def __str__(self):
        return f"Conversation {self.pk} ({self.channel})"


class ConversationGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Conversation, on_delete=models.CASCADE)


class ConversationUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Conversation, on_delete=models.CASCADE)


class Interaction(models.Model):
    class Kind(models.TextChoices):
        MESSAGE = "message"
        CALL = "call"
        VOICEMAIL = "voicemail"
        NOTE = "note"
        EVENT = "event"

    class Direction(models.TextChoices):
        INBOUND = "inbound"
        OUTBOUND = "outbound"
        INTERNAL = "internal"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of their own: interaction_conv_idx and interaction_timeline_idx begin
    # with them and serve every look-up by either (and the foreign-key checks), and
    # each index more is written by every message a webhook stores.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.PROTECT, related_name="interactions", db_index=False
    )
    patient = models.ForeignKey(
        Patient,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="interactions",
        db_index=False,
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MESSAGE)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    body = EncryptedTextField(blank=True, default="")
    provider_id = models.CharField(max_length=128, blank=True, default="")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    sentiment = models.FloatField(null=True, blank=True)
    # Set once the slow work (sentiment, rules, routing) ran; the sweeper finds
    # inbound rows left unprocessed while the broker was down.
    processed_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="Ids and codes only, no PHI.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "provider_id"],
                condition=~Q(provider_id=""),
                name="interaction_unique_provider_id",
            )
        ]
        indexes = [
            models.Index(
                fields=["patient", "-occurred_at", "-id"], name="interaction_timeline_idx"
            ),
            models.Index(
                fields=["conversation", "-occurred_at", "-id"], name="interaction_conv_idx"
            ),
            # Searches across the caller's conversations (FHIR Communication by
            # sent, received or medium without a patient): newest first, by keyset.
            models.Index(fields=["-occurred_at", "-id"], name="interaction_occurred_idx"),
            models.Index(
                fields=["occurred_at"],
                name="interaction_calls_idx",
                condition=Q(channel="voice"),
            ),
            models.Index(
                fields=["created_at"],
                name="interaction_unprocessed_idx",
                condition=Q(processed_at__isnull=True, direction="inbound"),
            ),
            # The nightly retention purge reads one day's range of created_at.
            models.Index(fields=["created_at"], name="interaction_created_idx"),
        ]

    def __str__(self):
        return f"{self.kind} {self.direction} {self.pk}"


class VoiceMenuChoice(models.Model):
    """One choice of a voice number's menu, pressed as its key (1 to 4) or spoken:
    the team whose queue the caller joins. 0 (a person) is always the number's own
    team and is not configured."""

    MAX_KEY = 4

    account = models.ForeignKey(
        ChannelAccount, on_delete=models.CASCADE, related_name="menu_choices"
    )
    key = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_KEY)]
    )
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    label_en = models.CharField(
        max_length=60, help_text='Said after "For": "appointments", "billing questions".'
    )
    label_es = models.CharField(max_length=60, help_text='Said after "Para": "citas".')
    speech_en = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="Comma-separated words that choose this when spoken in English "
        '("appointment, schedule, booking"); the label always counts.',
    )
    speech_es = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["account", "key"]
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="voicemenuchoice_unique_key"),
            models.CheckConstraint(
                condition=Q(key__gte=1, key__lte=4), name="voicemenuchoice_key_1_to_4"
            ),
        ]

    def __str__(self):
        return f"{self.key}: {self.label_en}"


class CallDetail(models.Model):
    class QueueResult(models.TextChoices):
        IN_PROGRESS = "in_progress"
        ANSWERED = "answered"
        ABANDONED = "abandoned"
        VOICEMAIL = "voicemail"
        MISSED = "missed"
        # Left the queue with a callback that keeps the caller's place, or told
        # that the callback asked for earlier is still coming.
        CALLBACK = "callback"

    class Language(models.TextChoices):
        ENGLISH = "en"
        SPANISH = "es"

    interaction = models.OneToOneField(
        Interaction, primary_key=True, on_delete=models.CASCADE, related_name="call"
    )
    status = models.CharField(max_length=20, default="ringing")
    queue_result = models.CharField(
        max_length=12, choices=QueueResult.choices, default=QueueResult.IN_PROGRESS
    )
    queue_wait_seconds = models.PositiveIntegerField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    recording_url = EncryptedCharField(max_length=500, blank=True, default="")
    recording_sid = models.CharField(max_length=64, blank=True, default="")
    transcript = EncryptedTextField(blank=True, default="")
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    # The menu key the caller chose (0 is a person); null before a choice.
    menu_key = models.PositiveSmallIntegerField(null=True, blank=True)
    # The team queue the call joined and when: its place in that queue.
    queue_team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    queued_at = models.DateTimeField(null=True, blank=True)
    callback_offered_at = models.DateTimeField(null=True, blank=True)
    missed_call_text_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Callers waiting in a team's queue now, in the order they joined it.
            models.Index(
                fields=["queue_team", "queued_at"],
                name="call_waiting_idx",
                condition=Q(queue_result="in_progress", queued_at__isnull=False),
            ),
            # The expected wait: a queue's most recently answered calls.
            models.Index(
                fields=["queue_team", "-answered_at"],
                name="call_answered_idx",
                condition=Q(queue_result="answered", answered_at__isnull=False),
            ),
        ]

    def __str__(self):
        return f"call {self.interaction_id} ({self.queue_result})"


class Callback(models.Model):
    """A caller's request to be called back, holding the place in the team's queue
    that the call had (`queued_at`) and the window promised to them (`due_at`)."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting in the queue (again, after a call that did not connect)
        DIALLING = "dialling"  # an agent asked; Twilio is calling the patient
        DONE = "done"  # the patient answered the callback

    OPEN_STATUSES = (Status.PENDING, Status.DIALLING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.PROTECT, related_name="callbacks"
    )
    call = models.OneToOneField(
        CallDetail, null=True, blank=True, on_delete=models.SET_NULL, related_name="callback"
    )
    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="callbacks")
    phone = EncryptedCharField(max_length=32)
    phone_index = BlindIndexField(db_index=False)
    language = models.CharField(
        max_length=2, choices=CallDetail.Language.choices, default=CallDetail.Language.ENGLISH
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    queued_at = models.DateTimeField()
    requested_at = models.DateTimeField()
    due_at = models.DateTimeField()
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The phone the agent answers on (a staff number, not patient data).
    agent_number = models.CharField(max_length=32, blank=True, default="")
    dial_requested_at = models.DateTimeField(null=True, blank=True)
    dial_attempts = models.PositiveSmallIntegerField(default=0)
    # When Twilio first accepted a call to the patient: the callback was made.
    dialled_at = models.DateTimeField(null=True, blank=True)
    provider_call_sid = models.CharField(max_length=64, blank=True, default="")
    provider_status = models.CharField(max_length=20, blank=True, default="")
    last_error = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [
            # One waiting callback per number and practice line: calling again keeps it.
            models.UniqueConstraint(
                fields=["account", "phone_index"],
                condition=Q(status__in=["pending", "dialling"]),
                name="callback_one_waiting_per_number",
            )
        ]
        indexes = [
            models.Index(
                fields=["team", "queued_at", "id"],
                name="callback_queue_idx",
                condition=Q(status="pending"),
            ),
            # KPIs by the day the callback was asked for.
            models.Index(fields=["requested_at"], name="callback_requested_idx"),
        ]

    def __str__(self):
        return f"callback {self.pk} ({self.status})"


class EmailDetail(models.Model):
    interaction = models.OneToOneField(
        Interaction, primary_key=True, on_delete=models.CASCADE, related_name="email"
    )
    message_id = models.CharField(max_length=255, db_index=True)
    in_reply_to = models.CharField(max_length=255, blank=True, default="")
    references = models.JSONField(default=list, blank=True)
    quoted_text = EncryptedTextField(blank=True, default="")
    parse_problems = models.JSONField(default=list, blank=True)

    def __str__(self):
        return f"email {self.interaction_id}"


class Attachment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    interaction = models.ForeignKey(
        Interaction, on_delete=models.CASCADE, related_name="attachments"
    )
    filename = EncryptedCharField(max_length=255, blank=True, default="")
    content_type = models.CharField(max_length=127)
    size = models.PositiveBigIntegerField()
    # Base64 of the bytes, encrypted; None when refused (see rejected_reason).
    content = EncryptedTextField(null=True, blank=True)
    rejected_reason = models.CharField(max_length=200, blank=True, default="")

    def __str__(self):
        return f"attachment {self.pk} ({self.content_type}, {self.size} bytes)"


class OutboundMessage(models.Model):
    """The delivery record of a reply, reminder or auto-reply. Written in the same
    transaction as its Interaction; only moves forward."""

    class State(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        DELIVERED = "delivered"
        FAILED = "failed"
        UNDELIVERABLE = "undeliverable"

    FINAL_STATES = (State.DELIVERED, State.FAILED, State.UNDELIVERABLE)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    interaction = models.OneToOneField(
        Interaction, on_delete=models.PROTECT, related_name="outbound"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    to_address = EncryptedCharField(max_length=500)
    state = models.CharField(max_length=14, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, default="")
    provider_id = models.CharField(max_length=128, blank=True, default="")
    provider_status = models.CharField(max_length=20, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["state", "updated_at"],
                name="outbound_pending_idx",
                condition=Q(state__in=["queued", "sending"]),
            ),
            models.Index(fields=["channel", "provider_id"], name="outbound_provider_idx"),
        ]

    def __str__(self):
        return f"delivery {self.pk} ({self.state})"


class DeliveryAttempt(models.Model):
    """One try at handing a delivery to its provider: when, how long it took, what
    the provider answered or the error, so staff can see why a message failed.
    The error is the adapter's message, as OutboundMessage.last_error keeps it."""

    class Outcome(models.TextChoices):
        SENT = "sent"
        TRANSIENT_ERROR = "transient_error"
        PERMANENT_ERROR = "permanent_error"

    id = models.BigAutoField(primary_key=True)
    outbound = models.ForeignKey(
        OutboundMessage, on_delete=models.CASCADE, related_name="delivery_attempts"
    )
    number = models.PositiveSmallIntegerField()
    attempted_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    provider_status = models.CharField(max_length=20, blank=True, default="")
    error = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["outbound", "number"], name="delivery_attempt_unique")
        ]

    def __str__(self):
        return f"attempt {self.number} of {self.outbound_id} ({self.outcome})"


class RawEvent(models.Model):
    """What a provider sent, encrypted, stored in the request's transaction."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.CharField(max_length=32)
    provider_id = models.CharField(max_length=128, blank=True, default="")
    payload = EncryptedJSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    interaction = models.ForeignKey(
        Interaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="raw_events"
    )

    class Meta:
        indexes = [
            models.Index(fields=["source", "received_at"], name="rawevent_source_idx"),
            # The retention purge's range, across every source.
            models.Index(fields=["received_at"], name="rawevent_received_idx"),
        ]

    def __str__(self):
        return f"{self.source} event {self.pk}"


class WebhookSignatureUse(models.Model):
    """A webhook signature already accepted. A signature is valid for minutes, so a
    captured request could be replayed within that window; the unique constraint
    refuses the second use in the database, in the transaction that stores the
    event, so the check holds without the cache and never outlives a rolled-back
    request. Rows older than the validity window are purged by the sweeper."""

    signature = models.CharField(max_length=64, unique=True)
    used_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self):
        return f"webhook signature used at {self.used_at:%Y-%m-%d %H:%M:%S}"


class ConversationRead(models.Model):
    """When a user last read a conversation: unread = activity after that."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="reads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    last_read_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "user"], name="conversation_read_unique"
            )
        ]

    def __str__(self):
        return f"read of {self.conversation_id} by {self.user_id}"


class CannedResponse(models.Model):
    """A team's reply template; placeholders such as $first_name are filled in
    from the conversation's patient when a reply uses it."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="canned_responses")
    title = models.CharField(max_length=100)
    body = models.TextField(max_length=1600)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "title"], name="canned_response_unique_title")
        ]

    def __str__(self):
        return self.title


class LocalOutboxMessage(models.Model):
    """What a local provider (the defaults of `make run`) would have sent: an SMS, a
    call or an email, kept here instead of leaving the machine, then reported
    delivered through the status service a provider's callback calls. Production
    refuses the local providers (contactcenter/checks.py), so this stays empty there."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    # The id the local provider gave the message (SM..., CA... or the email's
    # Message-ID), as a real provider's id is stored on the delivery record.
    provider_id = models.CharField(max_length=255, unique=True)
    outbound = models.ForeignKey(
        OutboundMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_address = models.CharField(max_length=254, blank=True, default="")
    to_address = EncryptedCharField(max_length=500)
    subject = EncryptedCharField(max_length=300, blank=True, default="")
    body = EncryptedTextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "local outbox message"
        verbose_name_plural = "local outbox"
        indexes = [models.Index(fields=["-created_at"], name="localoutbox_created_idx")]

    def __str__(self):
        return f"local {self.channel} {self.provider_id}"
