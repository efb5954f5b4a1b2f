from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

API_PREFIX = "api/v1/"


def api_collection_routes():
    """Every route under /api/v1/ that takes no parameter (a collection, an action
    or a report), read from the URLconf, so a new resource is listed without anyone
    remembering to: {"conversations": "conversation-list", ...}. Routes with
    parameters (one conversation, a patient's timeline) are reached from these."""
    found = {}

    def walk(patterns, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern) and entry.name and "<" not in route:
                key = route.removeprefix(API_PREFIX).strip("/")
                if key:
                    found[key] = entry.name

    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and str(entry.pattern) == API_PREFIX:
            walk(entry.url_patterns, API_PREFIX)
    return found


class ApiRootView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(exclude=True)
    def get(self, request):
        links = {
            key: reverse(url_name, request=request)
            for key, url_name in sorted(api_collection_routes().items())
        }
        links["schema"] = reverse("schema", request=request)
        links["docs"] = reverse("swagger-ui", request=request)
        return Response({"version": "v1", "links": links})
