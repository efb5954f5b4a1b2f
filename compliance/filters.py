import django_filters
from django import forms

from compliance.models import AuditEvent, BreakGlassGrant
from compliance.selectors import naming_patient
from contactcenter.filters import IdFilter


class IPAddressFilter(django_filters.Filter):
    # Validated as an address by the form, so a malformed value is a 400, not a
    # database error on the inet cast.
    field_class = forms.GenericIPAddressField


class AuditEventFilter(django_filters.FilterSet):
    """The audit search; the CSV export takes the same parameters."""

    actor = IdFilter(field_name="actor_user_id", help_text="Staff user id.")
    patient = django_filters.UUIDFilter(method="filter_patient", help_text="Patient id.")
    action = django_filters.ChoiceFilter(choices=AuditEvent.Action.choices)
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)
    resource_type = django_filters.CharFilter()
    purpose = django_filters.ChoiceFilter(
        field_name="purpose_of_use", choices=AuditEvent.PurposeOfUse.choices
    )
    api_client = IdFilter(field_name="api_client_id", help_text="API key id.")
    ip = IPAddressFilter(field_name="source_ip")
    since = django_filters.IsoDateTimeFilter(field_name="recorded_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="recorded_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = []

    def filter_patient(self, queryset, name, value):
        return naming_patient(queryset, value)


class BreakGlassGrantFilter(django_filters.FilterSet):
    reviewed = django_filters.BooleanFilter(method="filter_reviewed")

    class Meta:
        model = BreakGlassGrant
        fields = []

    def filter_reviewed(self, queryset, name, value):
        return queryset.filter(reviewed_at__isnull=not value)
