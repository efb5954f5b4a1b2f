"""Rate limits (issue 16): per API key and per staff token on the API, per source
address on the survey page and on webhook requests whose signature fails; 429 with
Retry-After in the one error shape; open when the cache cannot be reached."""

import pytest
from django.core.cache.backends.redis import RedisCache

from contactcenter.services import token_issue
from contactcenter.throttling import AddressThrottle, ApiKeyThrottle, StaffTokenThrottle
from tests.factories import bearer as bearer_headers
from tests.factories import make_api_key, token_for


@pytest.fixture
def rates(settings):
    def set_rates(**overrides):
        settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, **overrides}

    return set_rates


def assert_throttled(response):
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1


def test_an_api_key_past_its_rate_is_answered_429_with_retry_after(client, rates, db):
    rates(api_key="3/minute")
    key, client_record = make_api_key(scopes=["patients:read"])
    other, _ = make_api_key(scopes=["patients:read"])
    _count_from_zero(ApiKeyThrottle, client_record.pk)

    answers = [client.get("/api/v1/patients/", **bearer_headers(key)) for _ in range(4)]

    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert_throttled(answers[3])
    assert client.get("/api/v1/patients/", **bearer_headers(other)).status_code == 200


def _count_from_zero(throttle, ident):
    """Counters live in Redis under the test run's key prefix, which outlives the
    test's database; in one CI run a count already under this key made the second
    request a 429. The test measures its own requests only."""
    throttle.cache.delete(throttle.cache_format % {"scope": throttle.scope, "ident": ident})


def test_a_staff_token_past_its_rate_is_answered_429(client, rates, member):
    rates(staff_token="2/minute")
    issued = token_issue(user=member)
    _count_from_zero(StaffTokenThrottle, issued.record.pk)
    headers = bearer_headers(issued.token)

    answers = [client.get("/api/v1/patients/", **headers) for _ in range(3)]

    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert_throttled(answers[2])
    assert client.get("/api/v1/patients/", **token_for(member)).status_code == 200


@pytest.mark.parametrize("throttle", [ApiKeyThrottle, StaffTokenThrottle])
def test_api_limits_let_requests_through_when_the_cache_is_down(
    client, rates, member, monkeypatch, throttle
):
    """A Redis nobody answers on (port 1 refuses): logged, and the request served."""
    rates(staff_token="1/minute", api_key="1/minute")
    monkeypatch.setattr(throttle, "cache", RedisCache("redis://127.0.0.1:1/0", {}))
    key, _ = make_api_key(scopes=["patients:read"])
    headers = token_for(member) if throttle is StaffTokenThrottle else bearer_headers(key)

    answers = [client.get("/api/v1/patients/", **headers) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]


def test_address_limits_let_requests_through_when_the_cache_is_down(client, rates, monkeypatch, db):
    rates(survey="1/minute")
    monkeypatch.setattr(AddressThrottle, "cache", RedisCache("redis://127.0.0.1:1/0", {}))

    answers = [client.get("/survey/not-a-token/", REMOTE_ADDR="198.51.100.9") for _ in range(3)]

    assert [a.status_code for a in answers] == [404, 404, 404]


def test_the_survey_page_is_limited_per_address(client, rates, db):
    rates(survey="2/minute")

    answers = [client.get("/survey/not-a-token/", REMOTE_ADDR="198.51.100.7") for _ in range(3)]

    assert [a.status_code for a in answers[:2]] == [404, 404]
    assert_throttled(answers[2])
    assert client.get("/survey/not-a-token/", REMOTE_ADDR="198.51.100.8").status_code == 404


def test_the_schema_documents_429_with_retry_after(client):
    schema = client.get("/api/schema/?format=json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in ("get", "post", "put", "patch", "delete"):
                response = operation["responses"]["429"]
                assert "Retry-After" in response["headers"], (method, path)
