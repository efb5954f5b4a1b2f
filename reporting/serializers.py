from datetime import timedelta

from rest_framework import serializers

from patients.models import Channel
from reporting.selectors import INTERVALS, kpi_today

# A report is one grouped pass over the period's rollups; two years keeps a
# request bounded while covering a year-on-year comparison.
MAX_REPORT_DAYS = 731
DEFAULT_REPORT_DAYS = 7


class KpiQuerySerializer(serializers.Serializer):
    since = serializers.DateField(
        required=False, help_text="First local day (YYYY-MM-DD); default: 6 days before until."
    )
    until = serializers.DateField(
        required=False, help_text="Last local day, inclusive; default: today."
    )
    team = serializers.IntegerField(
        required=False, min_value=1, help_text="One team; default: all teams you may see."
    )
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    interval = serializers.ChoiceField(choices=INTERVALS, default="day")

    def validate(self, attrs):
        until = attrs.get("until") or kpi_today()
        since = attrs.get("since") or until - timedelta(days=DEFAULT_REPORT_DAYS - 1)
        if since > until:
            raise serializers.ValidationError({"since": "since must not be after until."})
        if (until - since).days + 1 > MAX_REPORT_DAYS:
            raise serializers.ValidationError(
                {"since": f"A report covers at most {MAX_REPORT_DAYS} days."}
            )
        return {**attrs, "since": since, "until": until}


class CallsSerializer(serializers.Serializer):
    offered = serializers.IntegerField()
    answered = serializers.IntegerField()
    abandoned = serializers.IntegerField()
    short_abandoned = serializers.IntegerField()
    abandonment_rate = serializers.FloatField(allow_null=True)
    asa_seconds = serializers.FloatField(allow_null=True)
    service_level = serializers.FloatField(allow_null=True)


class CallbacksSerializer(serializers.Serializer):
    offered = serializers.IntegerField()
    accepted = serializers.IntegerField()
    acceptance_rate = serializers.FloatField(allow_null=True)
    made = serializers.IntegerField()
    made_within_window = serializers.IntegerField()
    within_window_rate = serializers.FloatField(allow_null=True)
    mean_time_to_callback_seconds = serializers.FloatField(allow_null=True)


class DurationSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    median = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)


class ConversationsSerializer(serializers.Serializer):
    opened = serializers.IntegerField()
    resolved = serializers.IntegerField()
    first_response_seconds = DurationSerializer()
    resolution_seconds = DurationSerializer()
    fcr = serializers.IntegerField()
    fcr_rate = serializers.FloatField(allow_null=True)
    escalated = serializers.IntegerField()
    escalation_rate = serializers.FloatField(allow_null=True)
    resolved_without_escalation = serializers.IntegerField()
    resolved_without_escalation_rate = serializers.FloatField(allow_null=True)
    reopened = serializers.IntegerField()
    reopen_rate = serializers.FloatField(allow_null=True)


class SentimentSerializer(serializers.Serializer):
    conversations = serializers.IntegerField()
    mean_delta = serializers.FloatField(allow_null=True)


class SelfServiceSerializer(serializers.Serializer):
    resolved = serializers.IntegerField()
    came_back_within_24h = serializers.IntegerField()
    came_back_rate = serializers.FloatField(allow_null=True)


class CsatSerializer(serializers.Serializer):
    surveys_sent = serializers.IntegerField()
    responses = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)
    satisfied_share = serializers.FloatField(allow_null=True)
    ces_responses = serializers.IntegerField()
    ces_mean = serializers.FloatField(allow_null=True)


class KpiFiguresSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    calls = CallsSerializer()
    callbacks = CallbacksSerializer()
    conversations = ConversationsSerializer()
    sentiment = SentimentSerializer()
    csat = CsatSerializer()
    self_service = SelfServiceSerializer()


class KpiParametersSerializer(serializers.Serializer):
    short_abandon_seconds = serializers.IntegerField()
    service_level_seconds = serializers.IntegerField()
    fcr_window_days = serializers.IntegerField()


class KpiSourcesSerializer(serializers.Serializer):
    rolled_up_days = serializers.IntegerField(help_text="Days read whole from the rollup.")
    partly_rolled_up_days = serializers.IntegerField(
        help_text="Days read from the rollup up to a moment and computed live after it "
        "(today, through its last closed quarter of an hour)."
    )
    rolled_up_until = serializers.DateTimeField(
        allow_null=True,
        help_text="Where the latest partly rolled-up day's rollup ends; null when none is.",
    )
    live_days = serializers.IntegerField(help_text="Days computed whole from the source rows.")


class KpiReportSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    interval = serializers.ChoiceField(choices=INTERVALS)
    time_zone = serializers.CharField()
    teams = serializers.ListField(
        child=serializers.IntegerField(),
        allow_null=True,
        help_text="The teams the figures cover; null means every team.",
    )
    channel = serializers.CharField(allow_null=True)
    parameters = KpiParametersSerializer()
    sources = KpiSourcesSerializer()
    period = KpiFiguresSerializer()
    intervals = KpiFiguresSerializer(many=True)
