"""The compliance officer's workbench, and the break-glass request of care staff.

Every view audits itself (AuditedViewMixin). The officer's own reads carry the
purpose HCOMPL and name the patient they were about, so a patient's access report
also shows who looked at it.
"""

from datetime import timedelta

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response

from compliance import exports, selectors, services
from compliance.filters import AuditEventFilter, BreakGlassGrantFilter
from compliance.mixins import AuditedViewMixin
from compliance.models import AuditEvent, BreakGlassGrant, Disclosure
from compliance.permissions import role_or_404
from compliance.serializers import (
    AccessReportQuerySerializer,
    AccessReportRowSerializer,
    AnomalyQuerySerializer,
    AnomalyReportSerializer,
    AuditEventSerializer,
    BreakGlassGrantSerializer,
    BreakGlassRequestSerializer,
    BreakGlassReviewSerializer,
    ChainVerificationSerializer,
    DisclosureSerializer,
)
from contactcenter import roles
from contactcenter.auth import api_client_of, staff_user_of
from contactcenter.errors import Conflict
from contactcenter.idempotency import IdempotentCreateMixin
from contactcenter.permissions import ScopedAccess
from contactcenter.replica import ReplicaReadsMixin, stream_from_replica

CARE_ROLES = (roles.AGENT, roles.SUPERVISOR, roles.CLINICIAN)
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


class CsvOrJsonNegotiation(BaseContentNegotiation):
    """The view picks CSV itself (a path ending in .csv, or ?format=csv) and
    streams it; errors stay JSON. DRF's own negotiation would answer 404 to
    ?format=csv and 406 to Accept: text/csv, having no CSV renderer."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _csv_response(stream, filename):
    response = StreamingHttpResponse(stream, content_type=CSV_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ComplianceView(AuditedViewMixin, generics.GenericAPIView):
    """Compliance role only; to everyone else these endpoints do not exist."""

    permission_classes = [role_or_404(roles.COMPLIANCE), ScopedAccess]
    audit_purpose_of_use = AuditEvent.PurposeOfUse.HCOMPL


class _AuditSearchMixin:
    """The audit rows of a page name many patients; the officer's read is about
    the patient searched for, if any, and not about every patient on the page,
    which would fill every one of their access reports with the officer's reads."""

    filter_names = tuple(AuditEventFilter.base_filters)

    def paginate_queryset(self, queryset):
        return generics.GenericAPIView.paginate_queryset(self, queryset)

    def audit_search(self):
        params = self.request.query_params
        used = {name: params[name][:100] for name in self.filter_names if params.get(name)}
        self.audit(patient_ids=[used["patient"]] if "patient" in used else (), filters=used)


class AuditEventListView(
    ReplicaReadsMixin, _AuditSearchMixin, ComplianceView, generics.ListAPIView
):
    """Search the audit trail, newest first, cursor-paginated."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    queryset = AuditEvent.objects.none()
    ordering = ("-recorded_at", "-id")
    audit_resource_type = "audit_event"

    def get_queryset(self):
        return selectors.audit_events()

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        self.audit_search()
        return response


class AuditEventExportView(ReplicaReadsMixin, _AuditSearchMixin, ComplianceView):
    """The audit search as CSV, oldest first, streamed; audited as an export."""

    queryset = AuditEvent.objects.none()
    filterset_class = AuditEventFilter
    content_negotiation_class = CsvOrJsonNegotiation
    audit_resource_type = "audit_event"
    audit_action = AuditEvent.Action.EXPORT

    @extend_schema(
        filters=True,
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY)},
    )
    def get(self, request):
        search = AuditEventFilter(request.query_params, queryset=selectors.audit_events())
        if not search.is_valid():
            raise ValidationError(search.errors)
        self.audit_search()
        rows = search.qs.order_by("recorded_at", "id")
        return _csv_response(
            stream_from_replica(exports.stream_csv(rows, exports.AUDIT_EVENT_COLUMNS)),
            "audit-events.csv",
        )


class AuditChainVerifyView(ComplianceView):
    """Verify the hash chain for up to 10 seconds: OK with the count and head
    hash, or the first broken row. Both answer 200; `ok` says which."""

    queryset = AuditEvent.objects.none()
    audit_resource_type = "audit_chain"
    audit_action = AuditEvent.Action.EXECUTE

    @extend_schema(responses=ChainVerificationSerializer)
    def get(self, request):
        result = selectors.audit_chain_verify()
        self.audit(
            ok=result.ok, complete=result.complete, count=result.count, broken_id=result.broken_id
        )
        return Response(
            ChainVerificationSerializer(
                {
                    "ok": result.ok,
                    "complete": result.complete,
                    "count": result.count,
                    "head_hash": result.head_hash,
                    "head_position": result.head_position,
                    "broken_id": result.broken_id,
                    "broken_position": result.broken_position,
                    "reason": result.reason,
                    "detail": result.detail,
                }
            ).data
        )


class PatientAccessReportView(ReplicaReadsMixin, ComplianceView, generics.ListAPIView):
    """Who touched this patient's record, when, what, why, with what outcome:
    six years unless since/until say otherwise; JSON pages, or ?format=csv."""

    serializer_class = AccessReportRowSerializer
    queryset = AuditEvent.objects.none()
    content_negotiation_class = CsvOrJsonNegotiation
    filter_backends = []
    ordering = ("-recorded_at", "-id")
    audit_resource_type = "access_report"

    def paginate_queryset(self, queryset):
        # The rows' own patient lists name other patients too (a list page); the
        # officer read about this patient only.
        return generics.GenericAPIView.paginate_queryset(self, queryset)

    def get_queryset(self):
        query = self._query()
        return selectors.patient_access_report(
            patient_id=self.kwargs["patient_id"], since=query.get("since"), until=query.get("until")
        )

    def _query(self):
        if not hasattr(self, "_validated_query"):
            serializer = AccessReportQuerySerializer(data=self.request.query_params)
            serializer.is_valid(raise_exception=True)
            self._validated_query = serializer.validated_data
        return self._validated_query

    @extend_schema(
        parameters=[AccessReportQuerySerializer],
        responses={
            (200, "application/json"): AccessReportRowSerializer(many=True),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.BINARY, description="With format=csv: the same rows as CSV."
            ),
        },
    )
    def get(self, request, patient_id):
        self.audit(patient_ids=[patient_id], resource_id=patient_id)
        if self._query()["format"] == "csv":
            self.audit_action = AuditEvent.Action.EXPORT
            rows = self.get_queryset()
            return _csv_response(
                stream_from_replica(exports.stream_csv(rows, exports.ACCESS_REPORT_COLUMNS)),
                f"access-report-{patient_id}.csv",
            )
        return self.list(request)


class BreakGlassCreateView(IdempotentCreateMixin, AuditedViewMixin, generics.GenericAPIView):
    """Emergency read access to a patient outside the caller's teams, for
    BREAK_GLASS_MINUTES, with a reason; every grant waits for a compliance review."""

    serializer_class = BreakGlassRequestSerializer
    queryset = BreakGlassGrant.objects.none()
    permission_classes = [role_or_404(*CARE_ROLES), ScopedAccess]
    audit_resource_type = "break_glass_grant"
    audit_action = AuditEvent.Action.BREAK_GLASS
    audit_purpose_of_use = AuditEvent.PurposeOfUse.ETREAT

    @extend_schema(responses={201: BreakGlassGrantSerializer})
    def post(self, request, patient_id):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            grant = services.break_glass_grant(
                user=request.user, patient_id=patient_id, reason=serializer.validated_data["reason"]
            )
        except services.UnknownPatient:
            raise NotFound() from None
        minutes = (grant.expires_at - grant.granted_at) // timedelta(minutes=1)
        self.audit(patient_ids=[patient_id], resource_id=grant.pk, minutes=minutes)
        return Response(BreakGlassGrantSerializer(grant).data, status=status.HTTP_201_CREATED)


class BreakGlassQueueView(ComplianceView, generics.ListAPIView):
    """Every break-glass grant, newest first; ?reviewed=false for the open queue."""

    serializer_class = BreakGlassGrantSerializer
    filterset_class = BreakGlassGrantFilter
    queryset = BreakGlassGrant.objects.none()
    ordering = ("-granted_at", "-id")
    audit_resource_type = "break_glass_grant"
    audit_patient_field = "patient_id"

    def get_queryset(self):
        return selectors.break_glass_grants()


class BreakGlassReviewView(ComplianceView):
    """Record the review of a grant: outcome and comment; reviewer and time are
    the caller's and now."""

    serializer_class = BreakGlassReviewSerializer
    queryset = BreakGlassGrant.objects.none()
    http_method_names = ["patch", "options"]
    audit_resource_type = "break_glass_grant"
    audit_patient_field = "patient_id"

    def get_queryset(self):
        return selectors.break_glass_grants()

    def get_object(self):
        try:
            return super().get_object()
        except ValidationError:
            raise NotFound() from None

    @extend_schema(responses=BreakGlassGrantSerializer)
    def patch(self, request, pk):
        grant = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            grant = services.break_glass_review(
                grant=grant,
                reviewer=request.user,
                outcome=serializer.validated_data["review_outcome"],
                comment=serializer.validated_data["review_comment"],
            )
        except services.AlreadyReviewed:
            raise Conflict("This grant was reviewed already.", code="already_reviewed") from None
        except services.SelfReview:
            raise Conflict(
                "Nobody reviews their own break-glass access.", code="self_review"
            ) from None
        self.audit(review_outcome=grant.review_outcome)
        grant = self.get_queryset().get(pk=grant.pk)
        return Response(BreakGlassGrantSerializer(grant).data)


class PatientDisclosuresView(IdempotentCreateMixin, AuditedViewMixin, generics.ListCreateAPIView):
    """The accounting of disclosures of one patient (45 CFR 164.528): the last six
    years, newest first; POST records one (compliance officers, or an integration
    with the disclosures:write scope)."""

    serializer_class = DisclosureSerializer
    queryset = Disclosure.objects.none()
    filter_backends = []
    permission_classes = [role_or_404(roles.COMPLIANCE, roles.INTEGRATION), ScopedAccess]
    required_scopes = {"POST": "disclosures:write"}
    ordering = ("-disclosed_at", "-id")
    audit_resource_type = "disclosure"
    audit_patient_field = "patient_id"
    audit_purpose_of_use = AuditEvent.PurposeOfUse.HCOMPL

    def get_queryset(self):
        patient_id = self.kwargs["patient_id"]
        if not selectors.patient_exists(patient_id=patient_id):
            raise NotFound()
        self.audit(patient_ids=[patient_id])
        return selectors.disclosures_of_patient(patient_id=patient_id)

    def create(self, request, *args, **kwargs):
        # An unknown patient is a 404 whatever the body says.
        if not selectors.patient_exists(patient_id=self.kwargs["patient_id"]):
            raise NotFound()
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer):
        try:
            serializer.instance = services.disclosure_create(
                patient_id=self.kwargs["patient_id"],
                created_by=staff_user_of(self.request),
                api_client=api_client_of(self.request),
                **serializer.validated_data,
            )
        except services.UnknownPatient:
            raise NotFound() from None
        self.audit(patient_ids=[self.kwargs["patient_id"]], resource_id=serializer.instance.pk)


class AnomalyReportView(ReplicaReadsMixin, ComplianceView):
    """The day's anomalies (default yesterday, in the practice's time zone): as
    stored by the nightly report, or found now for a day not analysed yet."""

    queryset = AuditEvent.objects.none()
    audit_resource_type = "anomaly_report"

    @extend_schema(parameters=[AnomalyQuerySerializer], responses=AnomalyReportSerializer)
    def get(self, request):
        query = AnomalyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        today = services.practice_today()
        day = query.validated_data.get("day") or today - timedelta(days=1)
        if day > today:
            raise ValidationError({"day": ["The day has not begun."]})
        findings = services.anomaly_report(day=day)
        self.audit(resource_id=day.isoformat(), findings=len(findings))
        return Response(AnomalyReportSerializer({"day": day, "findings": findings}).data)
