"""Reminder policies and templates (admin-managed), the reminders of each appointment,
the replies they received and the no-show risk of each appointment."""

import re
from datetime import UTC, datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from contactcenter.templating import render_template, template_placeholders
from patients.models import Appointment, Channel
from reminders.planning import format_local, sms_segments

PLACEHOLDERS = frozenset({"first_name", "date", "time", "location", "practice_phone"})
SMS_MAX_SEGMENTS = 2
# What an SMS template is measured with: names, places and numbers of a usual length,
# and every weekday of the month with the longest name (a Spanish "sábado" alone
# makes a message UCS-2, 70 characters a segment). A longer location still goes out,
# as one more segment.
SAMPLE_CONTEXT = {
    "first_name": "Alexandra",
    "location": "Main Street Clinic",
    "practice_phone": "+14155550100",
}
_SAMPLE_DAYS = [datetime(2026, 9, 21, 12, tzinfo=UTC) + timedelta(days=n) for n in range(7)]
# The confirm and reschedule keywords, named as whole capital letters. CANCEL is an
# opt-out keyword for carriers and for our SMS webhook: naming it in a reminder would
# make a patient who means "cancel my appointment" stop every text instead.
_CONFIRM_OPTION = re.compile(r"\bC\b")
_RESCHEDULE_OPTION = re.compile(r"\bR\b")
_OPT_OUT_WORD = re.compile(r"\bCANCEL\b")


def _default_offsets():
    return [72 * 60, 24 * 60, 2 * 60]


def _default_channel_order():
    return [ReminderPolicy.PREFERRED, Channel.SMS, Channel.EMAIL]


class ReminderPolicy(models.Model):
    """When reminders go out and how. One policy is the default; it plans every
    appointment's reminders."""

    PREFERRED = "preferred"

    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)
    offsets_minutes = models.JSONField(
        default=_default_offsets,
        help_text="Minutes before the appointment, e.g. [4320, 1440, 120] for 72 h, 24 h, 2 h.",
    )
    channel_order = models.JSONField(
        default=_default_channel_order,
        help_text='Channels tried in order; "preferred" is the patient\'s preferred channel. '
        "A channel without a template is passed over.",
    )
    quiet_start = models.TimeField(default=time(20, 0), help_text="Patient's local time.")
    quiet_end = models.TimeField(default=time(8, 0), help_text="Patient's local time.")
    stop_after_confirmation = models.BooleanField(
        default=True, help_text="Send no further reminders once the appointment is confirmed."
    )
    high_risk_threshold = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A no-show risk score at or above this adds one extra reminder.",
    )
    high_risk_extra_offset_minutes = models.PositiveIntegerField(
        default=18 * 60,
        help_text="When the extra reminder goes out (minutes before the appointment); "
        "0 means never. The default lands the afternoon before a morning appointment, "
        "after the 24 h reminder and clear of the morning quiet hours.",
    )
    practice_phone = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="$practice_phone in templates; empty means the practice's SMS number.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "reminder policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="reminderpolicy_one_default",
            )
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        # Planning trusts offsets and channels to be well formed; every writer is held
        # to it, not only the admin form.
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self):
        offsets = self.offsets_minutes
        if (
            not isinstance(offsets, list)
            or not all(isinstance(value, int) and value > 0 for value in offsets)
            or len(set(offsets)) != len(offsets)
        ):
            raise ValidationError(
                {"offsets_minutes": "A list of distinct positive whole minutes, e.g. [4320, 1440]."}
            )
        allowed = {self.PREFERRED, *Channel.values}
        order = self.channel_order
        if not isinstance(order, list) or not order or not set(order) <= allowed:
            raise ValidationError({"channel_order": f"A list of channels from {sorted(allowed)}."})


class ReminderTemplate(models.Model):
    """The text of a reminder on one channel in one language. Checked when saved: only
    known placeholders, and an SMS stays within two segments and names the replies."""

    policy = models.ForeignKey(ReminderPolicy, on_delete=models.CASCADE, related_name="templates")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    language = models.CharField(
        max_length=16, help_text='A language tag such as "en", "es" or "es-MX" (lower case).'
    )
    body = models.TextField(
        max_length=1600,
        help_text="Placeholders: $first_name $date $time $location $practice_phone. "
        "SMS: reply C to confirm, R to reschedule; never CANCEL or STOP.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "channel", "language"], name="remindertemplate_unique"
            )
        ]

    def __str__(self):
        return f"{self.policy} {self.channel} {self.language}"

    def save(self, *args, **kwargs):
        # Admin forms validate already; this catches every other writer, so a
        # template that cannot render is never stored.
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self):
        self.language = (self.language or "").strip().lower().replace("_", "-")
        try:
            names = template_placeholders(self.body)
        except ValueError as error:
            raise ValidationError({"body": str(error)}) from None
        unknown = names - PLACEHOLDERS
        if unknown:
            listed = ", ".join(f"${name}" for name in sorted(unknown))
            raise ValidationError({"body": f"Unknown placeholder(s): {listed}."})
        if self.channel == Channel.SMS:
            self._clean_sms()

    def _clean_sms(self):
        if not (_CONFIRM_OPTION.search(self.body) and _RESCHEDULE_OPTION.search(self.body)):
            raise ValidationError(
                {"body": "An SMS reminder names its replies: C to confirm and R to reschedule."}
            )
        if _OPT_OUT_WORD.search(self.body):
            raise ValidationError(
                {"body": "CANCEL is an opt-out keyword: a patient replying it stops every text."}
            )
        longest = max(sms_segments(self.render_sample(day)) for day in _SAMPLE_DAYS)
        if longest > SMS_MAX_SEGMENTS:
            raise ValidationError(
                {
                    "body": f"Too long: {longest} SMS segments with sample values, "
                    f"at most {SMS_MAX_SEGMENTS}."
                }
            )

    def render_sample(self, starts_at):
        local = format_local(starts_at, time_zone="UTC", language=self.language)
        return render_template(self.body, {**SAMPLE_CONTEXT, **local})


class Reminder(models.Model):
    """One reminder of one appointment: one row per offset, sent at most once."""

    class State(models.TextChoices):
        SCHEDULED = "scheduled"
        SENT = "sent"
        SKIPPED = "skipped"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # A sent or failed reminder is never planned again, so never sent twice.
    FINAL_STATES = (State.SENT, State.FAILED)

    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="reminders")
    policy = models.ForeignKey(ReminderPolicy, on_delete=models.PROTECT, related_name="+")
    offset_minutes = models.PositiveIntegerField()
    is_extra = models.BooleanField(
        default=False, help_text="Added because the appointment's no-show risk is high."
    )
    planned_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.SCHEDULED)
    skip_reason = models.CharField(max_length=40, blank=True, default="")
    channel = models.CharField(max_length=8, choices=Channel.choices, blank=True, default="")
    outbound = models.ForeignKey(
        "channels_app.OutboundMessage",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "offset_minutes"], name="reminder_unique_offset"
            )
        ]
        indexes = [
            models.Index(
                fields=["planned_at"],
                name="reminder_due_idx",
                condition=Q(state="scheduled"),
            ),
            models.Index(fields=["sent_at"], name="reminder_sent_idx", condition=Q(state="sent")),
        ]

    def __str__(self):
        return f"reminder {self.pk} ({self.offset_minutes} min, {self.state})"


class ReminderReply(models.Model):
    """An inbound SMS taken as a reply to a reminder. One row per interaction: the
    inbound worker may hand the same message over twice, and the second time finds
    this row and changes nothing."""

    class Action(models.TextChoices):
        CONFIRM = "confirm"
        RESCHEDULE = "reschedule"

    interaction = models.OneToOneField(
        "channels_app.Interaction", on_delete=models.CASCADE, related_name="+"
    )
    reminder = models.ForeignKey(Reminder, on_delete=models.CASCADE, related_name="replies")
    action = models.CharField(max_length=10, choices=Action.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "reminder replies"

    def __str__(self):
        return f"{self.action} reply to {self.reminder_id}"


class AppointmentRisk(models.Model):
    """The no-show risk of an appointment (see reminders.risk for the formula)."""

    appointment = models.OneToOneField(
        Appointment, primary_key=True, on_delete=models.CASCADE, related_name="no_show_risk"
    )
    score = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    factors = models.JSONField(default=dict, help_text="Points per factor and their inputs.")
    computed_at = models.DateTimeField()

    def __str__(self):
        return f"risk {self.score:.2f} of {self.appointment_id}"
