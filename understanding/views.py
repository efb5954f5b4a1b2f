from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from channels_app.models import Conversation
from channels_app.selectors import conversation_get_visible
from compliance.mixins import AuditedViewMixin
from contactcenter import roles
from contactcenter.permissions import role_permission
from understanding import selectors
from understanding.serializers import SuggestionsSerializer

CARE_ROLES = (roles.AGENT, roles.SUPERVISOR, roles.CLINICIAN)


class ConversationSuggestionsView(AuditedViewMixin, generics.GenericAPIView):
    """The three canned responses of the conversation's team that best fit the
    patient's latest message and its intent, each with why. The intent decision
    (with the words that weighed most) is PHI: the read is audited."""

    serializer_class = SuggestionsSerializer
    queryset = Conversation.objects.none()
    audit_resource_type = "conversation"
    audit_patient_field = "patient_id"
    permission_classes = [role_permission(*CARE_ROLES)]

    @extend_schema(responses=SuggestionsSerializer)
    def get(self, request, pk):
        conversation = conversation_get_visible(user=request.user, conversation_id=pk)
        if conversation is None:
            raise NotFound()
        self.audit(patient_ids=[conversation.patient_id], resource_id=conversation.pk)
        decision, suggestions = selectors.reply_suggestions(conversation=conversation)
        return Response(
            SuggestionsSerializer(
                {
                    "message": decision.interaction_id if decision else None,
                    "intent": decision,
                    "suggestions": suggestions,
                }
            ).data
        )
