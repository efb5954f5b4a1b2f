"""KPI rollups and patient-satisfaction surveys.

No model here holds PHI except SurveyResponse.comment (encrypted): a rollup is
counts, sums and durations per day, team and channel.
"""

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from channels_app.models import Conversation, Interaction
from contactcenter.fields import EncryptedTextField
from contactcenter.models import Team
from patients.models import Channel, Patient
from reporting.fields import PackedIntegersField


class KpiDailyRollup(models.Model):
    """The KPI figures of one local day (KPI_TIME_ZONE), team and channel, written
    by the nightly rollup: the additive ones (counts and sums, ADDITIVE_KEYS) a
    column each, so a period is one SUM per column. Medians cannot be summed, so
    the durations percentiles are taken over are kept as samples (sorted, whole
    seconds): a period's median over rollups is exact."""

    day = models.DateField()
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices)

    calls_offered = models.BigIntegerField(default=0)
    calls_answered = models.BigIntegerField(default=0)
    calls_abandoned = models.BigIntegerField(default=0)
    calls_short_abandoned = models.BigIntegerField(default=0)
    calls_answered_wait_seconds = models.BigIntegerField(default=0)
    calls_answered_within_target = models.BigIntegerField(default=0)
    callbacks_offered = models.BigIntegerField(default=0)
    callbacks_accepted = models.BigIntegerField(default=0)
    callbacks_made = models.BigIntegerField(default=0)
    callbacks_made_within_window = models.BigIntegerField(default=0)
    callbacks_time_to_callback_seconds = models.BigIntegerField(default=0)
    conversations_opened = models.BigIntegerField(default=0)
    conversations_resolved = models.BigIntegerField(default=0)
    conversations_fcr = models.BigIntegerField(default=0)
    conversations_escalated = models.BigIntegerField(default=0)
    conversations_reopened = models.BigIntegerField(default=0)
    sentiment_conversations = models.BigIntegerField(default=0)
    # Sentiment deltas are summed as whole millionths: float sums added in another
    # order (per group, then over groups) differ in the last digits, and the
    # rolled-up report must equal the live one exactly.
    sentiment_delta_millionths = models.BigIntegerField(default=0)
    surveys_sent = models.BigIntegerField(default=0)
    csat_responses = models.BigIntegerField(default=0)
    csat_score_sum = models.BigIntegerField(default=0)
    csat_satisfied = models.BigIntegerField(default=0)
    ces_responses = models.BigIntegerField(default=0)
    ces_score_sum = models.BigIntegerField(default=0)
    # Conversations closed by an automated answer, and those of them whose sender
    # reached a person within 24 hours (understanding/).
    self_service_resolved = models.BigIntegerField(default=0)
    self_service_came_back = models.BigIntegerField(default=0)

    first_response_samples = PackedIntegersField()
    resolution_samples = PackedIntegersField()
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "team", "channel"], name="kpi_rollup_unique_day_team_channel"
            )
        ]

    def __str__(self):
        return f"KPIs of team {self.team_id} on {self.channel} for {self.day}"


# The figures a period sums, everything in the report derives from these and from
# the samples: KpiDailyRollup's whole-number columns.
ADDITIVE_KEYS = tuple(
    field.name
    for field in KpiDailyRollup._meta.concrete_fields
    if type(field) is models.BigIntegerField
)


class KpiRollupDay(models.Model):
    """A day the rollup covers. A day with no activity has no KpiDailyRollup rows,
    so this marker is what tells the report "rolled up, nothing happened" apart
    from "not rolled up yet, compute it live".

    The day in progress is rolled up too, through its last closed quarter of an
    hour (`covers_until`), so that a report of today computes live only the minutes
    since then; the nightly rollup then replaces it with the whole day (null)."""

    day = models.DateField(primary_key=True)
    computed_at = models.DateTimeField()
    covers_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Null: the whole day is rolled up. Otherwise the rollup holds the day's "
        "figures up to this moment and the rest of the day is computed live.",
    )

    def __str__(self):
        if self.covers_until is None:
            return f"rolled up {self.day}"
        return f"rolled up {self.day} until {self.covers_until:%H:%M}"


class SurveyRequest(models.Model):
    """The survey decision for one resolved conversation: scheduled, then sent or
    skipped with the reason. One per conversation, so a second resolution or a
    repeated signal never surveys twice."""

    class State(models.TextChoices):
        SCHEDULED = "scheduled"
        SENT = "sent"
        ANSWERED = "answered"
        SKIPPED = "skipped"
        FAILED = "failed"

    class SkipReason(models.TextChoices):
        URGENT = "urgent"
        OPTED_OUT = "opted_out"
        RECENT_SURVEY = "recent_survey"
        CHANNEL_NOT_SURVEYED = "channel_not_surveyed"
        REOPENED = "reopened"
        AWAITING_OTHER_REPLY = "awaiting_other_reply"
        # Nobody to send it to: an SMS or email conversation without an address,
        # a portal one without a patient (consent_check() uses the same reason).
        NO_CONTACT_POINT = "no_contact_point"

    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="survey_request"
    )
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.SCHEDULED)
    # A SkipReason, or the reason consent_check() refused (opted_out,
    # no_contact_point, patient_inactive, invalid_address).
    skip_reason = models.CharField(max_length=24, blank=True, default="")
    scheduled_for = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    # The outbound question; a reply is an answer only while this is the last
    # message the practice sent to that number.
    question = models.OneToOneField(
        Interaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["scheduled_for"],
                name="survey_due_idx",
                condition=Q(state="scheduled"),
            ),
            models.Index(fields=["patient", "created_at"], name="survey_patient_idx"),
            models.Index(fields=["sent_at"], name="survey_sent_idx"),
        ]

    def __str__(self):
        return f"survey of {self.conversation_id} ({self.state})"


class SurveyResponse(models.Model):
    """A patient's answer: satisfaction 1-5, effort 1-5 when asked, and an
    optional comment (encrypted) with its sentiment score."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survey = models.OneToOneField(SurveyRequest, on_delete=models.CASCADE, related_name="response")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    score = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    effort_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    effort_question = models.OneToOneField(
        Interaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    comment = EncryptedTextField(blank=True, default="")
    comment_sentiment = models.FloatField(null=True, blank=True)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(score__gte=1, score__lte=5), name="survey_score_1_to_5"
            ),
            models.CheckConstraint(
                condition=Q(effort_score__isnull=True)
                | Q(effort_score__gte=1, effort_score__lte=5),
                name="survey_effort_1_to_5",
            ),
        ]
        indexes = [models.Index(fields=["received_at"], name="survey_response_received_idx")]

    def __str__(self):
        return f"survey response {self.pk}"


class SurveyReply(models.Model):
    """An inbound message taken as a survey answer. The interaction is the key, so
    a message processed twice records nothing new; the KPIs leave these messages
    out of "new contact" (FCR), and leave out the conversation a bare score opened
    (closed automatically, `closed_conversation`) from every conversation figure."""

    class Part(models.TextChoices):
        SCORE = "score"
        EFFORT = "effort"
        COMMENT = "comment"

    interaction = models.OneToOneField(
        Interaction, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    survey = models.ForeignKey(SurveyRequest, on_delete=models.CASCADE, related_name="replies")
    part = models.CharField(max_length=8, choices=Part.choices)
    closed_conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self):
        return f"survey {self.part} in {self.interaction_id}"
