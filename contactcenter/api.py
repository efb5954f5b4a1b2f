from django.urls import NoReverseMatch
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

# Each app registers its collection endpoints by URL name; the root lists them.
API_ROOT_LINKS = {"patients": "patient-list", "auth": "auth-token"}


def register_root_link(key, url_name):
    API_ROOT_LINKS[key] = url_name


class ApiRootView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(exclude=True)
    def get(self, request):
        links = {}
        for key, url_name in sorted(API_ROOT_LINKS.items()):
            try:
                links[key] = reverse(url_name, request=request)
            except NoReverseMatch:
                continue
        links["schema"] = reverse("schema", request=request)
        links["docs"] = reverse("swagger-ui", request=request)
        return Response({"version": "v1", "links": links})
