from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config import health
from config.api import ApiRootView
from contactcenter.auth_views import TokenView
from reporting.views import survey_link_answer

api_v1 = [
    path("", ApiRootView.as_view(), name="api-root"),
    path("auth/token/", TokenView.as_view(), name="auth-token"),
    path("", include("patients.urls")),
    path("", include("channels_app.urls")),
    path("", include("escalation.urls")),
    path("", include("reminders.urls")),
    path("", include("compliance.urls")),
    path("", include("reporting.urls")),
    path("", include("understanding.urls")),
]

handler500 = "contactcenter.errors.server_error"

urlpatterns = [
    path("health/", health.liveness, name="health"),
    path("health/ready/", health.readiness, name="health-ready"),
    # The CSAT survey page patients open from an email or the portal (no login).
    path("survey/<str:token>/", survey_link_answer, name="survey-link"),
    path("api/v1/", include(api_v1)),
    path("webhooks/", include("channels_app.urls_webhooks")),
    path("fhir/", include("fhir.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's set-up script from a URL (?script), so the
    # page needs no inline script under the Content-Security-Policy.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", template_name="contactcenter/swagger_ui.html"
        ),
        name="swagger-ui",
    ),
    path("admin/", admin.site.urls),
    # The staff workspace (sign-in, inbox, conversations) owns the other paths.
    path("", include("workspace.urls")),
]
