"""Rate limits (issue 16): per API key and per staff token on the API, per source
address on the survey page and on webhook requests whose signature fails; 429 with
Retry-After in the one error shape; open when the cache cannot be reached."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from django.test import RequestFactory

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
    throttle().reset(ident)


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


# --- The sliding-window counter -----------------------------------------------------


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def address_throttle(rates, monkeypatch):
    """A survey-page throttle at 10/minute on a clock the test moves, for one address
    no other test uses, counted from zero."""
    rates(survey="10/minute")
    clock = Clock(1_800_000_000.0)  # the start of a minute window
    monkeypatch.setattr(AddressThrottle, "timer", clock)
    throttle = AddressThrottle("survey")
    request = RequestFactory().get("/survey/x/", REMOTE_ADDR="203.0.113.77")
    throttle.reset("203.0.113.77")
    clock.now += 60
    throttle.reset("203.0.113.77")
    clock.now -= 60
    yield throttle, request, clock
    throttle.reset("203.0.113.77")


def test_the_limit_slides_over_the_window_boundary(address_throttle):
    throttle, request, clock = address_throttle
    clock.now += 59  # the last second of the first window

    assert [throttle.allow_request(request, None) for _ in range(11)] == [True] * 10 + [False]
    # Halfway through the next window, half of the last one still counts: 5 + 5.
    clock.now += 31
    assert [throttle.allow_request(request, None) for _ in range(6)] == [True] * 5 + [False]


def test_retry_after_is_when_the_next_request_gets_through(address_throttle):
    throttle, request, clock = address_throttle
    for _ in range(10):
        assert throttle.allow_request(request, None)
    clock.now += 30
    assert not throttle.allow_request(request, None)
    wait = throttle.wait()
    # The 10 requests weigh less than 9 once 10% of the next window has passed:
    # 30 seconds left of this window, then 6 of the next.
    assert wait == pytest.approx(36.0)

    clock.now += wait - 1
    assert not throttle.allow_request(request, None)
    clock.now += 1.01
    assert throttle.allow_request(request, None)


def test_refused_requests_do_not_count(address_throttle):
    throttle, request, clock = address_throttle
    for _ in range(10):
        throttle.allow_request(request, None)
    for _ in range(50):
        assert not throttle.allow_request(request, None)

    clock.now += 66  # as for a single refusal: the 50 others did not add to the wait
    assert throttle.allow_request(request, None)


def test_concurrent_requests_cannot_both_take_the_last_place(address_throttle):
    """Twenty requests at once against a limit of 10, each thread on its own Redis
    connection: the count is atomic, so exactly ten pass."""
    _throttle, request, _clock = address_throttle
    start = threading.Barrier(20)

    def attempt():
        start.wait()
        return AddressThrottle("survey").allow_request(request, None)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: attempt(), range(20)))

    assert answers.count(True) == 10


def test_other_caches_count_the_same_way(address_throttle, monkeypatch, tmp_path):
    """`make run` has no Redis: the file cache counts without the pipeline."""
    throttle, request, clock = address_throttle
    monkeypatch.setattr(AddressThrottle, "cache", FileBasedCache(str(tmp_path), {}))

    assert [throttle.allow_request(request, None) for _ in range(11)] == [True] * 10 + [False]
    clock.now += 90  # halfway through the next window
    assert [throttle.allow_request(request, None) for _ in range(6)] == [True] * 5 + [False]
