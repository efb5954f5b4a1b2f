from rest_framework import serializers

from understanding.models import IntentDecision


class IntentDecisionSerializer(serializers.ModelSerializer):
    words = serializers.ListField(source="explanation", child=serializers.CharField())
    interaction = serializers.UUIDField(source="interaction_id")
    action = serializers.CharField(
        help_text="What understanding did: none, held, routed, answered, handed_off, "
        "refill_asked, refill_requested (empty while the rules run)."
    )

    class Meta:
        model = IntentDecision
        fields = [
            "id",
            "interaction",
            "intent",
            "confidence",
            "clinical_probability",
            "language",
            "words",
            "model_version",
            "action",
            "action_reason",
            "created_at",
        ]


class SuggestionSerializer(serializers.Serializer):
    canned_response = serializers.IntegerField(source="canned_response.pk")
    title = serializers.CharField(source="canned_response.title")
    body = serializers.CharField(source="canned_response.body")
    score = serializers.FloatField()
    why = serializers.CharField()


class SuggestionsSerializer(serializers.Serializer):
    message = serializers.UUIDField(allow_null=True, help_text="The latest inbound message.")
    intent = IntentDecisionSerializer(allow_null=True)
    suggestions = SuggestionSerializer(many=True)
