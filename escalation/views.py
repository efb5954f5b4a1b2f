from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from channels_app.selectors import conversation_get_visible
from compliance.mixins import AuditedViewMixin
from contactcenter import roles
from contactcenter.errors import ApiError
from contactcenter.idempotency import IdempotentCreateMixin
from contactcenter.models import StaffProfile, Team
from contactcenter.permissions import role_permission
from escalation import selectors, services
from escalation.models import Escalation, EscalationRule
from escalation.rules import CLINICAL
from escalation.serializers import (
    AvailabilitySerializer,
    EscalationRuleSerializer,
    EscalationSerializer,
    ManualEscalationSerializer,
)

# Staff who work conversations; compliance officers and admins see no messages.
CARE_ROLES = (roles.AGENT, roles.SUPERVISOR, roles.CLINICIAN)
# Who takes an escalation in hand (DESIGN: supervisors acknowledge; triage nurses
# receive the clinical ones).
ACKNOWLEDGING_ROLES = (roles.SUPERVISOR, roles.CLINICIAN)


class ConfigurationAuditMixin(AuditedViewMixin):
    """Audited like every API call, but rules and staff availability concern no
    patient: there is no patient id to read, on success or on denial."""

    audit_purpose_of_use = "HSYSADMIN"

    def _patient_id_of(self, obj):
        return None

    def _denied_patient_ids(self):
        return []


def _validation_error(exc):
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)


class EscalationRuleListCreateView(
    IdempotentCreateMixin, ConfigurationAuditMixin, generics.ListCreateAPIView
):
    """Escalation rules, in the order they run (admins only)."""

    serializer_class = EscalationRuleSerializer
    queryset = EscalationRule.objects.all()
    audit_resource_type = "escalation_rule"
    permission_classes = [role_permission(roles.ADMIN)]
    ordering = ("order", "id")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            rule = services.rule_create(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise _validation_error(exc) from None
        self.audit(resource_id=rule.pk)
        return Response(self.get_serializer(rule).data, status=status.HTTP_201_CREATED)


class EscalationRuleDetailView(ConfigurationAuditMixin, generics.RetrieveUpdateDestroyAPIView):
    """One escalation rule (admins only); a change that makes it invalid is refused."""

    serializer_class = EscalationRuleSerializer
    queryset = EscalationRule.objects.all()
    audit_resource_type = "escalation_rule"
    permission_classes = [role_permission(roles.ADMIN)]

    def update(self, request, *args, **kwargs):
        rule = self.get_object()
        serializer = self.get_serializer(
            rule, data=request.data, partial=kwargs.get("partial", False)
        )
        serializer.is_valid(raise_exception=True)
        try:
            rule = services.rule_update(rule=rule, changes=serializer.validated_data)
        except DjangoValidationError as exc:
            raise _validation_error(exc) from None
        return Response(self.get_serializer(rule).data)

    def perform_destroy(self, instance):
        services.rule_delete(rule=instance)


class EscalationListView(AuditedViewMixin, generics.ListAPIView):
    """Open (unacknowledged) escalations to my teams, newest first."""

    serializer_class = EscalationSerializer
    queryset = Escalation.objects.none()
    audit_resource_type = "escalation"
    audit_patient_field = "patient_id"
    permission_classes = [role_permission(*CARE_ROLES)]
    ordering = ("-created_at", "-id")

    def get_queryset(self):
        return selectors.escalations_open_for(user=self.request.user)

    def filter_queryset(self, queryset):
        return queryset


class EscalationAcknowledgeView(AuditedViewMixin, generics.GenericAPIView):
    serializer_class = EscalationSerializer
    queryset = Escalation.objects.none()
    audit_resource_type = "escalation"
    audit_patient_field = "patient_id"
    audit_action = "update"
    permission_classes = [role_permission(*ACKNOWLEDGING_ROLES)]

    @extend_schema(request=None, responses=EscalationSerializer)
    def post(self, request, pk):
        escalation = selectors.escalation_get_visible(user=request.user, escalation_id=pk)
        if escalation is None:
            raise NotFound()
        self.audit(patient_ids=[escalation.patient_id], resource_id=escalation.pk)
        try:
            escalation = services.escalation_acknowledge(escalation=escalation, actor=request.user)
        except services.EscalationRefused as refused:
            raise ApiError(str(refused), code=refused.code, status_code=409) from None
        return Response(EscalationSerializer(escalation).data)


class ConversationEscalateView(IdempotentCreateMixin, AuditedViewMixin, generics.GenericAPIView):
    """Escalate a conversation by hand, with a reason; optionally to another team
    (a team id, or "clinical") and at a higher priority."""

    serializer_class = ManualEscalationSerializer
    queryset = Escalation.objects.none()
    audit_resource_type = "escalation"
    audit_patient_field = "patient_id"
    permission_classes = [role_permission(*CARE_ROLES)]

    @extend_schema(request=ManualEscalationSerializer, responses={201: EscalationSerializer})
    def post(self, request, pk):
        conversation = conversation_get_visible(user=request.user, conversation_id=pk)
        if conversation is None:
            raise NotFound()
        self.audit(patient_ids=[conversation.patient_id], conversation=str(conversation.pk))
        data = ManualEscalationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        to_team = None
        if "to_team" in data.validated_data:
            target = data.validated_data["to_team"]
            to_team = (
                selectors.clinical_team()
                if target == CLINICAL
                else Team.objects.filter(pk=target).first()
            )
            if to_team is None:
                raise ValidationError({"to_team": ["No such team."]})
        priority = data.validated_data.get("priority")
        try:
            escalation = services.escalation_manual_create(
                conversation=conversation,
                actor=request.user,
                reason=data.validated_data["reason"],
                to_team=to_team,
                priority=services.PRIORITY_BY_NAME[priority] if priority else None,
            )
        except services.EscalationRefused as refused:
            raise ApiError(str(refused), code=refused.code, status_code=409) from None
        self.audit(resource_id=escalation.pk)
        escalation = Escalation.objects.select_related(
            "rule", "to_user", "from_user", "acknowledged_by", "conversation"
        ).get(pk=escalation.pk)
        return Response(EscalationSerializer(escalation).data, status=status.HTTP_201_CREATED)


class MyAvailabilityView(ConfigurationAuditMixin, generics.GenericAPIView):
    """Set my availability for routing: available, busy or away."""

    serializer_class = AvailabilitySerializer
    queryset = StaffProfile.objects.none()
    audit_resource_type = "staff_availability"
    audit_purpose_of_use = "HOPERAT"
    permission_classes = [role_permission(*CARE_ROLES)]
    http_method_names = ["get", "put", "head", "options"]

    def get(self, request):
        # Staff created outside staff_create() have no profile yet: show the defaults.
        profile = StaffProfile.objects.filter(user=request.user).first() or StaffProfile()
        return Response(AvailabilitySerializer(profile).data)

    def put(self, request):
        data = AvailabilitySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        profile = services.staff_availability_set(
            user=request.user, availability=data.validated_data["availability"]
        )
        self.audit(resource_id=profile.user_id)
        return Response(AvailabilitySerializer(profile).data)
