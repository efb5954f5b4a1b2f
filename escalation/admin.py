from django import forms
from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path

from contactcenter.admin_site import RoleRestrictedAdmin
from escalation import rules as rule_logic
from escalation.models import BusinessHours, EscalationRule, SlaPolicy
from escalation.sentiment import score_text
from patients.models import PATIENT_FLAGS, Channel


class RuleTestForm(forms.Form):
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}))
    channel = forms.ChoiceField(choices=Channel.choices, initial=Channel.SMS)
    patient_flags = forms.MultipleChoiceField(
        choices=[(flag, flag) for flag in PATIENT_FLAGS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )


@admin.register(EscalationRule)
class EscalationRuleAdmin(RoleRestrictedAdmin):
    """Rules are validated on save (the model's clean()); "Test rules" shows which
    active rules a sample message would fire, and why, without touching any data."""

    list_display = ["name", "order", "active", "updated_at"]
    list_editable = ["order", "active"]
    list_filter = ["active"]
    search_fields = ["name"]
    ordering = ["order", "name"]
    change_list_template = "admin/escalation/escalationrule/change_list.html"

    def get_urls(self):
        test_view = self.admin_site.admin_view(self.test_rules_view)
        return [path("test/", test_view, name="escalation_rule_test"), *super().get_urls()]

    def test_rules_view(self, request):
        form = RuleTestForm(request.POST or None)
        results = None
        if request.method == "POST" and form.is_valid():
            text = form.cleaned_data["message"]
            facts = rule_logic.Facts(
                channel=form.cleaned_data["channel"],
                patient_flags=frozenset(form.cleaned_data["patient_flags"]),
                text=text,
                sentiment=score_text(text),
            )
            results = {
                "sentiment": facts.sentiment,
                "rules": [
                    (rule, rule_logic.evaluate(rule.conditions, facts))
                    for rule in EscalationRule.objects.filter(active=True).order_by("order", "pk")
                ],
            }
        context = {
            **self.admin_site.each_context(request),
            "title": "Test escalation rules against a sample message",
            "opts": self.model._meta,
            "form": form,
            "results": results,
        }
        return TemplateResponse(request, "admin/escalation/escalationrule/test.html", context)


@admin.register(SlaPolicy)
class SlaPolicyAdmin(RoleRestrictedAdmin):
    list_display = [
        "priority",
        "first_response_minutes",
        "next_response_minutes",
        "resolution_minutes",
    ]
    ordering = ["-priority"]


@admin.register(BusinessHours)
class BusinessHoursAdmin(RoleRestrictedAdmin):
    list_display = ["team", "time_zone"]
    search_fields = ["team__name"]
