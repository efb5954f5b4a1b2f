"""Input of the workspace's pages: what a person typed or picked, checked and
turned into the arguments of the selectors and services below."""

from urllib.parse import urlencode

from django import forms
from django.utils import timezone

from channels_app import selectors
from channels_app.models import Conversation
from contactcenter.blind_index import normalise_phone
from patients.models import Channel


class SignInForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(max_length=256, strip=False, widget=forms.PasswordInput)
    otp = forms.RegexField(
        regex=r"^\d{6,8}$",
        required=False,
        label="Code from your authenticator app",
        error_messages={"invalid": "The code is the 6 digits your authenticator app shows."},
    )


TABS = {
    "all": ("All my teams", {}),
    "mine": ("Mine", {"assignee": "me"}),
    "unassigned": ("Unassigned", {"assignee": "unassigned"}),
    "escalated": ("Escalated", {"escalated": True}),
}
STATUS_CHOICES = [
    ("", "Open and pending"),
    ("open", "Open"),
    ("pending", "Pending"),
    ("snoozed", "Snoozed"),
    ("resolved", "Resolved"),
]
PRIORITIES = {label: value for value, label in Conversation.Priority.choices}


class InboxForm(forms.Form):
    tab = forms.ChoiceField(choices=[(k, v[0]) for k, v in TABS.items()], required=False)
    channel = forms.ChoiceField(choices=[("", "Any channel"), *Channel.choices], required=False)
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    priority = forms.ChoiceField(
        choices=[("", "Any priority"), *[(k, k.capitalize()) for k in PRIORITIES]], required=False
    )
    label = forms.CharField(max_length=50, required=False)
    unmatched = forms.BooleanField(required=False, label="Unknown sender only")
    sort = forms.ChoiceField(
        choices=[("last_interaction", "Latest activity"), ("sla_due", "Response due soonest")],
        required=False,
    )

    def _value(self, name):
        data = getattr(self, "cleaned_data", {})
        return data.get(name) or ""

    def current_tab(self):
        return self._value("tab") or "all"

    def filters(self):
        tab = TABS[self.current_tab()][1]
        status = self._value("status")
        label = self._value("label").strip()
        return selectors.InboxFilters(
            statuses=(status,) if status else tuple(Conversation.ACTIVE_STATUSES),
            assignee=tab.get("assignee"),
            escalated=tab.get("escalated"),
            channel=self._value("channel") or None,
            priority=PRIORITIES.get(self._value("priority")),
            label=label or None,
            unmatched=True if self._value("unmatched") else None,
            sort=self._value("sort") or "last_interaction",
        )

    def query_string(self, exclude=()):
        """The valid filters as a query string, for links that keep them."""
        data = getattr(self, "cleaned_data", {})
        return urlencode(
            {name: value for name, value in data.items() if value and name not in exclude}
        )


class ActionForm(forms.Form):
    action = forms.ChoiceField(
        choices=[
            (name, name)
            for name in (
                "assign_me",
                "assign",
                "unassign",
                "resolve",
                "reopen",
                "snooze",
                "priority",
                "labels",
                "escalate",
                "acknowledge",
                "call_back",
            )
        ]
    )
    assignee = forms.IntegerField(required=False)
    until = forms.DateTimeField(
        required=False, input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
    )
    priority = forms.ChoiceField(choices=[(k, k) for k in PRIORITIES], required=False)
    labels = forms.CharField(max_length=300, required=False)
    reason = forms.CharField(max_length=500, required=False)
    escalation = forms.UUIDField(required=False)
    agent_number = forms.CharField(max_length=32, required=False)

    def __init__(self, *args, teammates=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.teammates = {user.pk: user for user in teammates}

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if action == "snooze":
            until = data.get("until")
            if until is None or until <= timezone.now():
                self.add_error("until", "Pick a time in the future to snooze until.")
        elif action == "priority" and not data.get("priority"):
            self.add_error("priority", "Pick a priority.")
        elif action == "assign" and data.get("assignee") not in self.teammates:
            self.add_error("assignee", "Pick someone on this conversation's team.")
        elif action == "escalate" and len((data.get("reason") or "").strip()) < 5:
            self.add_error("reason", "Say in a few words why this needs escalating.")
        elif action == "acknowledge" and not data.get("escalation"):
            self.add_error("escalation", "No escalation was named.")
        elif action == "call_back":
            try:
                data["agent_number"] = normalise_phone(data.get("agent_number") or "")
            except ValueError:
                self.add_error("agent_number", "Give the phone number you will answer on.")
        return data

    def first_error(self):
        for errors in self.errors.values():
            return errors[0]
        return "That did not work."

    def changes(self, *, user):
        """The `changes` argument of channels_app.services.conversation_change."""
        data = self.cleaned_data
        action = data["action"]
        if action == "assign_me":
            return {"assignee": user}
        if action == "assign":
            return {"assignee": self.teammates[data["assignee"]]}
        if action == "unassign":
            return {"assignee": None}
        if action == "resolve":
            return {"status": Conversation.Status.RESOLVED}
        if action == "reopen":
            return {"status": Conversation.Status.OPEN}
        if action == "snooze":
            return {"status": Conversation.Status.SNOOZED, "snoozed_until": data["until"]}
        if action == "priority":
            return {"priority": PRIORITIES[data["priority"]]}
        labels = [label.strip() for label in data["labels"].split(",")]
        return {"labels": [label for label in labels if label]}
