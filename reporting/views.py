from pathlib import Path

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from contactcenter import roles
from contactcenter.models import Team
from contactcenter.permissions import role_permission
from contactcenter.replica import ReplicaReadsMixin
from contactcenter.services import teams_of
from contactcenter.throttling import address_throttled
from reporting import selectors, services
from reporting.forms import SurveyAnswerForm
from reporting.renderers import KpiCsvRenderer
from reporting.serializers import KpiQuerySerializer, KpiReportSerializer

# The definitions are the API schema's description; README's Metrics section holds
# a copy that tests/reporting/test_kpis.py keeps word for word.
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


class KpiReportView(ReplicaReadsMixin, APIView):
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


SURVEY_THANKS = "Thank you! Your answer has been recorded."
SURVEY_ALREADY_ANSWERED = "Thank you, we already have your answer."
SURVEY_CLOSED = "This survey has closed. Thank you for your time."
SURVEY_LINK_INVALID = "This survey link is not valid. Please check that the whole link was copied."


def _survey_page(request, template, *, status=200, **context):
    context["practice_name"] = settings.PRACTICE_NAME
    return render(request, f"reporting/{template}", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def survey_link_answer(request, token):
    """The page a survey link opens, without login. GET only shows the form:
    mail security scanners open the links in an email, and must not answer for
    the patient. POST records the answer. Nothing on the page is about the
    patient or the conversation. Limited per source address: the tokens are long
    and random, but nobody should try many of them."""
    throttled = address_throttled(request, "survey")
    if throttled is not None:
        return throttled
    form = SurveyAnswerForm(request.POST) if request.method == "POST" else SurveyAnswerForm()
    try:
        if form.is_bound and form.is_valid():
            recorded = services.survey_link_answer_record(
                token=token,
                score=form.cleaned_data["score"],
                comment=form.cleaned_data["comment"],
            )
            message = SURVEY_THANKS if recorded else SURVEY_ALREADY_ANSWERED
            return _survey_page(request, "survey_message.html", message=message)
        survey = services.survey_for_link(token)
    except services.SurveyLinkExpired:
        return _survey_page(request, "survey_message.html", status=410, message=SURVEY_CLOSED)
    except services.SurveyLinkInvalid:
        return _survey_page(request, "survey_message.html", status=404, message=SURVEY_LINK_INVALID)
    if survey.state == survey.State.ANSWERED:
        return _survey_page(request, "survey_message.html", message=SURVEY_ALREADY_ANSWERED)
    # An unbound form is the page itself; a bound one here failed validation.
    return _survey_page(
        request, "survey_form.html", status=400 if form.is_bound else 200, form=form
    )
