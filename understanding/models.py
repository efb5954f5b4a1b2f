"""What understanding decides per inbound message, and what the practice configures:
intent routes, self-service answers, refill intake dialogs."""

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from channels_app.models import Conversation, Interaction
from contactcenter.fields import EncryptedCharField, EncryptedJSONField
from contactcenter.models import Team
from understanding.classifier import INTENTS

INTENT_CHOICES = [(name, name.replace("_", " ")) for name in INTENTS]


class IntentDecision(models.Model):
    """The intent of one inbound message with its confidence and explanation, and
    what was done about it. The explanation quotes the message, so it is encrypted
    like the message; the intent name and figures are a category and numbers, kept in
    clear for routing and reports."""

    class Action(models.TextChoices):
        NONE = "none"
        HELD = "held"  # an escalation, urgency or distress: a person decides
        ROUTED = "routed"
        ANSWERED = "answered"
        HANDED_OFF = "handed_off"
        REFILL_ASKED = "refill_asked"
        REFILL_REQUESTED = "refill_requested"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    interaction = models.OneToOneField(
        Interaction, on_delete=models.CASCADE, related_name="intent_decision"
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    intent = models.CharField(max_length=32, choices=INTENT_CHOICES)
    confidence = models.FloatField()
    clinical_probability = models.FloatField()
    language = models.CharField(max_length=8, blank=True, default="")
    # The words of the message that weighed most towards the intent.
    explanation = EncryptedJSONField(default=list)
    model_version = models.CharField(max_length=16)
    action = models.CharField(max_length=20, choices=Action.choices, blank=True, default="")
    # Names the words that weighed most: encrypted like the explanation.
    action_reason = EncryptedCharField(max_length=300, blank=True, default="")
    acted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "-created_at"], name="intent_conv_idx"),
            models.Index(fields=["action", "created_at"], name="intent_action_idx"),
        ]

    def __str__(self):
        return f"{self.intent} {self.confidence:.2f}"


class IntentRoute(models.Model):
    """Messages of this intent go to this team when the model is at least this
    sure; below it the conversation stays with the team of the number it came in on."""

    intent = models.CharField(max_length=32, choices=INTENT_CHOICES, unique=True)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    min_confidence = models.FloatField(
        default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["intent"]

    def __str__(self):
        return f"{self.intent} → {self.team} (from {self.min_confidence:.2f})"


class SelfServiceAnswer(models.Model):
    """A practice-written answer to a general-information question (hours, address,
    parking, fax, portal), in one language. It is chosen when the message contains
    one of its keywords; the closing line on how to reach a person is added to it."""

    topic = models.CharField(max_length=40, help_text="hours, address, parking, fax, portal...")
    language = models.CharField(max_length=8, default="en")
    keywords = models.CharField(
        max_length=500,
        help_text="Comma-separated words or phrases, as patients write them "
        "(accents and case do not matter): open, close, hours, saturday",
    )
    body = models.TextField(max_length=1000)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["topic", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["topic", "language"], name="self_service_topic_language"
            )
        ]

    def __str__(self):
        return f"{self.topic} ({self.language})"


class RefillRequest(models.Model):
    """A refill asked by a patient, gathered in at most two questions (which
    medication, which pharmacy) and then handed to the clinical team as one
    structured request. Medication and pharmacy are the patient's words: encrypted."""

    class State(models.TextChoices):
        ASKING_MEDICATION = "asking_medication"
        ASKING_PHARMACY = "asking_pharmacy"
        REQUESTED = "requested"
        HANDED_OFF = "handed_off"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=20, choices=State.choices)
    details = EncryptedJSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    OPEN_STATES = (State.ASKING_MEDICATION, State.ASKING_PHARMACY)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=models.Q(state__in=["asking_medication", "asking_pharmacy"]),
                name="one_open_refill_dialog",
            )
        ]

    def __str__(self):
        return f"refill {self.state}"


class SelfServiceResolution(models.Model):
    """A conversation closed by an automated answer; `came_back_at` is when the same
    sender next reached a person (asked for AGENT, or wrote again and was not
    answered automatically). The KPI report counts both."""

    conversation = models.OneToOneField(Conversation, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=8)
    account_id = models.UUIDField(null=True, blank=True)
    contact_index = models.CharField(max_length=64, blank=True, default="")
    resolved_at = models.DateTimeField()
    came_back_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["resolved_at"], name="self_service_resolved_idx"),
            models.Index(
                fields=["account_id", "contact_index", "-resolved_at"],
                name="self_service_contact_idx",
            ),
        ]

    def __str__(self):
        return f"self-service {self.resolved_at:%Y-%m-%d %H:%M}"
