"""Escalation rules, escalation records with their handoff context, SLA policies and
business hours, and the markers that make inbound processing idempotent."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from channels_app.models import Conversation, Interaction
from contactcenter.business_hours import calendar_from_config
from contactcenter.fields import EncryptedJSONField, EncryptedTextField
from contactcenter.models import Team
from escalation import rules
from patients.models import Patient, validate_time_zone


class EscalationRule(models.Model):
    """An ordered rule: when every condition holds, the conversation is escalated and
    the actions run. The shapes of `conditions` and `actions` are in rules.py."""

    name = models.CharField(max_length=100, unique=True)
    order = models.PositiveIntegerField(default=100, help_text="Lower runs first.")
    active = models.BooleanField(default=True)
    conditions = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self):
        return self.name

    def clean(self):
        errors = {}
        condition_errors = rules.conditions_errors(self.conditions)
        if condition_errors:
            errors["conditions"] = condition_errors
        action_errors = rules.actions_errors(self.actions)
        team = (self.actions or {}).get("route_to_team") if isinstance(self.actions, dict) else None
        if (
            not action_errors
            and isinstance(team, int)
            and not Team.objects.filter(pk=team).exists()
        ):
            action_errors.append(f"route_to_team: no team with id {team}.")
        if action_errors:
            errors["actions"] = action_errors
        if errors:
            raise ValidationError(errors)


class EscalationRun(models.Model):
    """One inbound interaction processed at one stage: "contact" (a call before its
    transcript) or "text". Written in the processing transaction, so processing the
    same interaction again finds it and changes nothing, while a voicemail
    transcript that arrives later is still read."""

    class Stage(models.TextChoices):
        CONTACT = "contact"
        TEXT = "text"

    interaction = models.ForeignKey(Interaction, on_delete=models.CASCADE, related_name="+")
    stage = models.CharField(max_length=8, choices=Stage.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["interaction", "stage"], name="escalation_run_unique")
        ]

    def __str__(self):
        return f"run of {self.interaction_id} ({self.stage})"


class Escalation(models.Model):
    """Why a conversation went to whom, with what the receiver needs to know so the
    patient never has to repeat themselves. Reason, matched terms and the context
    summary come from patient messages, so they are encrypted."""

    class Kind(models.TextChoices):
        RULE = "rule"
        SLA_BREACH = "sla_breach"
        MANUAL = "manual"
        # Automatic processing of a message failed for good: a person decides.
        FAILSAFE = "failsafe"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.PROTECT, related_name="escalations"
    )
    # Denormalised from the conversation, for the audit trail and patient merges.
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rule = models.ForeignKey(
        EscalationRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    interaction = models.ForeignKey(
        Interaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = EncryptedTextField()
    matched = EncryptedJSONField(default=dict)
    from_team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="escalations")
    from_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    to_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    context_summary = EncryptedJSONField(default=dict)
    # The due time that passed, for an SLA breach: one escalation per breach.
    breach_due_at = models.DateTimeField(null=True, blank=True)
    # The auto-reply this escalation sent: at most one per conversation and rule.
    auto_reply = models.OneToOneField(
        Interaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "rule", "interaction"],
                condition=Q(rule__isnull=False, interaction__isnull=False),
                name="escalation_unique_rule_interaction",
            ),
            models.UniqueConstraint(
                fields=["conversation", "breach_due_at"],
                condition=Q(kind="sla_breach"),
                name="escalation_unique_breach",
            ),
            models.UniqueConstraint(
                fields=["conversation", "rule"],
                condition=Q(auto_reply__isnull=False),
                name="escalation_one_auto_reply_per_rule",
            ),
            models.UniqueConstraint(
                fields=["interaction"],
                condition=Q(kind="failsafe"),
                name="escalation_one_failsafe_per_interaction",
            ),
        ]
        indexes = [
            models.Index(
                fields=["to_team", "-created_at", "-id"],
                name="escalation_open_idx",
                condition=Q(acknowledged_at__isnull=True),
            ),
            models.Index(fields=["conversation", "-created_at"], name="escalation_conv_idx"),
        ]

    def __str__(self):
        return f"escalation {self.pk} ({self.kind})"


class Notification(models.Model):
    """An escalation a supervisor was told about; read_at once they looked."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="escalation_notifications"
    )
    escalation = models.ForeignKey(
        Escalation, on_delete=models.CASCADE, related_name="notifications"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "escalation"], name="notification_unique")
        ]
        indexes = [
            models.Index(
                fields=["user", "-created_at"],
                name="notification_unread_idx",
                condition=Q(read_at__isnull=True),
            )
        ]

    def __str__(self):
        return f"notification of {self.escalation_id} to {self.user_id}"


class SlaPolicy(models.Model):
    """Response targets for one priority, in business minutes of the team's calendar."""

    priority = models.PositiveSmallIntegerField(choices=Conversation.Priority.choices, unique=True)
    first_response_minutes = models.PositiveIntegerField()
    next_response_minutes = models.PositiveIntegerField()
    resolution_minutes = models.PositiveIntegerField()

    class Meta:
        verbose_name_plural = "SLA policies"
        ordering = ["-priority"]
        constraints = [
            models.CheckConstraint(
                condition=Q(first_response_minutes__gt=0)
                & Q(next_response_minutes__gt=0)
                & Q(resolution_minutes__gt=0),
                name="slapolicy_positive_targets",
            )
        ]

    def __str__(self):
        return f"SLA for {self.get_priority_display()}"


class BusinessHours(models.Model):
    """A team's opening hours; SLA clocks only run while it is open. A team without
    a row counts around the clock."""

    team = models.OneToOneField(
        Team, primary_key=True, on_delete=models.CASCADE, related_name="business_hours"
    )
    time_zone = models.CharField(
        max_length=64, default="America/New_York", validators=[validate_time_zone]
    )
    weekly = models.JSONField(
        default=dict, help_text='{"0": [["09:00", "17:00"]], ...}; 0 is Monday, missing is closed.'
    )
    holidays = models.JSONField(default=list, blank=True, help_text='["2026-12-25", ...]')

    class Meta:
        verbose_name_plural = "business hours"

    def __str__(self):
        return f"hours of {self.team_id}"

    def config(self):
        return {"time_zone": self.time_zone, "weekly": self.weekly, "holidays": self.holidays}

    def calendar(self):
        return calendar_from_config(self.config())

    def clean(self):
        try:
            validate_time_zone(self.time_zone)
        except ValidationError:
            return  # the field's own validator reports it
        try:
            calendar = self.calendar()
        except ValueError as exc:
            raise ValidationError({"weekly": [str(exc)]}) from None
        if not calendar.has_hours:
            raise ValidationError({"weekly": ["Business hours must open on at least one weekday."]})
