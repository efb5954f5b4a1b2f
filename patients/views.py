import django_filters
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from compliance.mixins import AuditedViewMixin
from contactcenter import roles
from contactcenter.auth import api_client_of, staff_user_of
from contactcenter.errors import Conflict
from contactcenter.filters import IdFilter, query_cleaned
from contactcenter.idempotency import IdempotentCreateMixin
from contactcenter.models import Team
from contactcenter.permissions import role_permission
from contactcenter.services import teams_of
from patients import selectors, services
from patients.models import Appointment, Patient
from patients.serializers import (
    PATIENT_FLAG_CHOICES,
    AppointmentSerializer,
    AppointmentUpsertSerializer,
    MergeSerializer,
    PatientSerializer,
)

# Staff who work with patients; compliance and admin roles see no PHI by role.
CARE_ROLES = (roles.AGENT, roles.SUPERVISOR, roles.CLINICIAN)


class PatientFilter(django_filters.FilterSet):
    phone = django_filters.CharFilter(method="noop", help_text="Exact, any format of the number.")
    email = django_filters.CharFilter(method="noop", help_text="Exact, case-insensitive.")
    mrn = django_filters.CharFilter(method="noop", help_text="Exact.")
    team = IdFilter(method="noop")
    flag = django_filters.ChoiceFilter(choices=PATIENT_FLAG_CHOICES, method="noop")

    def noop(self, queryset, name, value):
        # The lookups are applied by patient_list() through blind indexes.
        return queryset


def _duplicate_mrn_conflict(view, existing_id):
    """A 409 that names the existing patient only to a caller who may see it; the
    attempt is audited against that patient either way, so the compliance officer
    sees who tried an MRN of a patient outside their teams."""
    view.audit(patient_ids=[existing_id], reason="duplicate_mrn")
    visible = selectors.patients_visible_to(view.request.user).filter(pk=existing_id).exists()
    return Conflict(
        "A patient with this MRN exists.",
        code="duplicate_mrn",
        details={"existing_id": str(existing_id)} if visible else {},
    )


def _resolve_team(request, requested_team):
    """The team a new patient belongs to: one of the caller's teams for staff, the
    key's team (or the one named) for an integration. An unknown or foreign team
    is a field error, so the answer does not reveal other teams' ids."""
    user = staff_user_of(request)
    if user is not None:
        mine = list(teams_of(user))
        if requested_team is None and len(mine) == 1:
            return mine[0]
        if requested_team is not None and any(t.pk == requested_team.pk for t in mine):
            return requested_team
        raise ValidationError({"team": ["Choose one of your teams."]})
    client = api_client_of(request)
    if client.team_id:
        if requested_team is not None and requested_team.pk != client.team_id:
            raise ValidationError({"team": ["This API key is bound to another team."]})
        return Team.objects.get(pk=client.team_id)
    if requested_team is None:
        raise ValidationError({"team": ["This field is required."]})
    return requested_team


def _check_coordinator(data, team):
    coordinator = data.get("primary_coordinator")
    if coordinator and not coordinator.groups.filter(pk=team.group_id).exists():
        raise ValidationError({"primary_coordinator": ["Must be a member of the patient's team."]})


class PatientListCreateView(IdempotentCreateMixin, AuditedViewMixin, generics.ListCreateAPIView):
    serializer_class = PatientSerializer
    filterset_class = PatientFilter
    queryset = Patient.objects.none()
    audit_resource_type = "patient"
    required_scopes = {"GET": "patients:read", "POST": "patients:write"}
    ordering = ("-created_at", "-id")

    def get_permissions(self):
        return [*super().get_permissions(), role_permission(*CARE_ROLES, roles.INTEGRATION)()]

    def get_queryset(self):
        data = query_cleaned(PatientFilter, self.request, Patient)
        try:
            return selectors.patient_list(
                user=self.request.user,
                phone=data.get("phone") or None,
                email=data.get("email") or None,
                mrn=data.get("mrn") or None,
                team_id=data.get("team"),
                flag=data.get("flag") or None,
            )
        except selectors.LookupValueInvalid as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.service_kwargs()
        team = _resolve_team(request, data.pop("team", None))
        _check_coordinator(data, team)
        try:
            patient = services.patient_create(team=team, **data)
        except services.DuplicateMrn as dup:
            raise _duplicate_mrn_conflict(self, dup.existing_id) from None
        self.audit(patient_ids=[patient.pk], resource_id=patient.pk)
        patient = selectors.patient_get_visible(user=request.user, patient_id=patient.pk) or patient
        return Response(PatientSerializer(patient).data, status=status.HTTP_201_CREATED)


class PatientDetailView(AuditedViewMixin, generics.RetrieveUpdateAPIView):
    serializer_class = PatientSerializer
    queryset = Patient.objects.none()
    audit_resource_type = "patient"
    required_scopes = {"GET": "patients:read", "PATCH": "patients:write"}
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        return (
            selectors.patients_visible_to(self.request.user)
            .select_related("team")
            .prefetch_related("contact_points")
        )

    def get_object(self):
        try:
            return super().get_object()
        except ValidationError:
            raise NotFound() from None

    def partial_update(self, request, *args, **kwargs):
        patient = self.get_object()
        if patient.merged_into_id:
            raise Conflict(
                "This patient was merged; update the survivor.",
                code="patient_merged",
                details={"merged_into": str(patient.merged_into_id)},
            )
        serializer = self.get_serializer(patient, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.service_kwargs()
        team = data.pop("team", None)
        if team is not None and team.pk != patient.team_id:
            team = _resolve_team(request, team)
        _check_coordinator(data, team or patient.team)
        try:
            services.patient_update(patient=patient, team=team, **data)
        except services.DuplicateMrn as dup:
            raise _duplicate_mrn_conflict(self, dup.existing_id) from None
        patient = self.get_queryset().get(pk=patient.pk)
        return Response(PatientSerializer(patient).data)


class PatientMergeView(AuditedViewMixin, generics.GenericAPIView):
    serializer_class = MergeSerializer
    queryset = Patient.objects.none()
    audit_resource_type = "patient_merge"
    audit_action = "update"
    permission_classes = [role_permission(roles.SUPERVISOR, roles.ADMIN)]

    @extend_schema(responses={200: PatientSerializer})
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = serializer.validated_data
        visible = {
            p.pk: p
            for p in selectors.patients_visible_to(request.user).filter(
                pk__in=[ids["survivor"], ids["duplicate"]]
            )
        }
        self.audit(patient_ids=[ids["survivor"], ids["duplicate"]], resource_id=ids["survivor"])
        if ids["survivor"] not in visible or ids["duplicate"] not in visible:
            raise NotFound("No such patient among those you may see.")
        try:
            survivor = services.patient_merge(
                survivor=visible[ids["survivor"]],
                duplicate=visible[ids["duplicate"]],
                actor=staff_user_of(request),
                request=request,
            )
        except services.MergeRefused as refused:
            raise Conflict(str(refused), code=refused.code) from None
        survivor = selectors.patient_get_visible(user=request.user, patient_id=survivor.pk)
        return Response(PatientSerializer(survivor).data)


def _visible_patient_or_404(request, patient_id):
    patient = selectors.patient_get_visible(user=request.user, patient_id=patient_id)
    if patient is None:
        raise NotFound()
    return patient


class PatientAppointmentsView(IdempotentCreateMixin, AuditedViewMixin, generics.ListCreateAPIView):
    serializer_class = AppointmentSerializer
    queryset = Appointment.objects.none()
    audit_resource_type = "appointment"
    audit_patient_field = "patient_id"
    required_scopes = {"GET": "patients:read", "POST": "appointments:write"}
    ordering = ("-starts_at", "-id")
    lookup_url_kwarg = "patient_id"

    def get_queryset(self):
        patient = _visible_patient_or_404(self.request, self.kwargs["patient_id"])
        self.audit(patient_ids=[patient.pk])
        return Appointment.objects.filter(patient=patient)

    def perform_create(self, serializer):
        patient = _visible_patient_or_404(self.request, self.kwargs["patient_id"])
        serializer.instance = services.appointment_create(
            patient=patient, **serializer.validated_data
        )
        self.audit(patient_ids=[patient.pk], resource_id=serializer.instance.pk)


class AppointmentDetailView(AuditedViewMixin, generics.RetrieveUpdateAPIView):
    serializer_class = AppointmentSerializer
    queryset = Appointment.objects.none()
    audit_resource_type = "appointment"
    audit_patient_field = "patient_id"
    required_scopes = {"GET": "patients:read", "PATCH": "appointments:write"}
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.appointments_visible_to(self.request.user)

    def get_object(self):
        try:
            return super().get_object()
        except ValidationError:
            raise NotFound() from None

    def perform_update(self, serializer):
        changes = {
            k: v for k, v in serializer.validated_data.items() if k not in ("source", "external_id")
        }
        serializer.instance = services.appointment_update(
            appointment=serializer.instance, **changes
        )


class AppointmentUpsertView(AuditedViewMixin, generics.GenericAPIView):
    """PUT by the scheduling system's id: creates or updates, idempotently."""

    serializer_class = AppointmentUpsertSerializer
    queryset = Appointment.objects.none()
    audit_resource_type = "appointment"
    required_scopes = {"PUT": "appointments:write"}

    @extend_schema(responses={200: AppointmentSerializer, 201: AppointmentSerializer})
    def put(self, request, source, external_id):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        patient = _visible_patient_or_404(request, data.pop("patient_id"))
        self.audit(patient_ids=[patient.pk])
        try:
            with transaction.atomic():
                appointment, created = services.appointment_upsert_external(
                    source=source, external_id=external_id, patient=patient, **data
                )
        except ValueError as exc:
            raise Conflict(str(exc), code="external_id_conflict") from None
        self.audit(resource_id=appointment.pk)
        return Response(
            AppointmentSerializer(appointment).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
