from pathlib import Path

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from contactcenter import roles
from contactcenter.models import Team
from contactcenter.permissions import role_permission
from contactcenter.services import teams_of
from reporting import selectors
from reporting.renderers import KpiCsvRenderer
from reporting.serializers import KpiQuerySerializer, KpiReportSerializer

# One text for both the README's metrics section and the API schema, so the two
# cannot drift apart.
METRICS_DEFINITIONS = (Path(__file__).with_name("METRICS.md")).read_text(encoding="utf-8")


def _team_scope(user, team_id):
    """The team ids the caller's report covers (None: every team). Supervisors
    see their own teams only; admins see every team. Team ids and names are not
    PHI, so asking for another team is a plain 403."""
    if roles.has_role(user, roles.ADMIN):
        if team_id is None:
            return None
        if not Team.objects.filter(pk=team_id).exists():
            raise ValidationError({"team": "No such team."})
        return [team_id]
    own = set(teams_of(user).values_list("pk", flat=True))
    if team_id is None:
        return sorted(own)
    if team_id not in own:
        raise PermissionDenied("You can only report on your own teams.")
    return [team_id]


class KpiReportView(APIView):
    """Contact-center KPIs; no PHI (counts, rates and durations only), so the
    request is not audited."""

    permission_classes = [role_permission(roles.SUPERVISOR, roles.ADMIN)]
    renderer_classes = [JSONRenderer, KpiCsvRenderer]

    @extend_schema(
        summary="Contact-center KPIs for a period, per day or week",
        description=METRICS_DEFINITIONS,
        parameters=[
            KpiQuerySerializer,
            OpenApiParameter(
                "format", enum=["json", "csv"], description="csv: the same report as CSV."
            ),
        ],
        responses={
            200: KpiReportSerializer,
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="With ?format=csv: one row per interval, then the period.",
            ),
        },
    )
    def get(self, request):
        query = KpiQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        report = selectors.kpi_report(
            since=params["since"],
            until=params["until"],
            team_ids=_team_scope(request.user, params.get("team")),
            channel=params.get("channel"),
            interval=params["interval"],
        )
        # The selector already answers in the documented shape (KpiReportSerializer,
        # for the schema); serialising a year of days through DRF fields again
        # would cost more than computing the report from the rollups.
        response = Response(report)
        if request.accepted_renderer.format == KpiCsvRenderer.format:
            response["Content-Disposition"] = (
                f'attachment; filename="kpis-{params["since"]}-{params["until"]}.csv"'
            )
        return response

    def handle_exception(self, exc):
        # Errors keep the API's one JSON shape, also when CSV was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)
