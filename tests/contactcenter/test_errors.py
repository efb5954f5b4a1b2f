import pytest
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as base_urlpatterns


def _boom(request):
    raise RuntimeError("something broke with secret detail")


class _Echo(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        return Response(request.data)


urlpatterns = [
    *base_urlpatterns,
    path("api/v1/boom/", _boom),
    path("api/v1/echo/", _Echo.as_view()),
]


def test_unknown_api_url_is_404_in_error_shape(client):
    response = client.get("/api/v1/does-not-exist/")

    assert response.status_code == 404
    body = response.json()
    assert body["error"]["code"] == "not_found"
    assert body["error"]["request_id"] == response["X-Request-ID"]


def test_unknown_webhook_url_is_404_in_error_shape(client):
    response = client.post("/webhooks/nothing/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_unknown_non_api_url_is_not_rewritten(client):
    response = client.get("/not-api/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.urls(__name__)
def test_unhandled_exception_is_500_with_request_id_and_no_traceback(api_client_raw):
    response = api_client_raw.get("/api/v1/boom/", HTTP_X_REQUEST_ID="req-123")

    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "server_error"
    assert body["error"]["request_id"] == "req-123"
    text = response.content.decode()
    assert "Traceback" not in text
    assert "secret detail" not in text


def test_request_id_is_generated_when_absent_and_echoed_when_valid(client):
    generated = client.get("/health/")
    echoed = client.get("/health/", HTTP_X_REQUEST_ID="abc-123")
    rejected = client.get("/health/", HTTP_X_REQUEST_ID="bad id\nINJECTED")

    assert len(generated["X-Request-ID"]) == 32
    assert echoed["X-Request-ID"] == "abc-123"
    assert "INJECTED" not in rejected["X-Request-ID"]


@pytest.mark.urls(__name__)
def test_malformed_json_is_400_parse_error(client):
    response = client.post("/api/v1/echo/", data='{"a": ', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


@pytest.mark.urls(__name__)
def test_wrong_method_is_405_in_error_shape(client):
    response = client.get("/api/v1/echo/")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
