from datetime import timedelta

import pytest
from django.urls import path
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance.models import AuditEvent
from config.urls import urlpatterns as base_urlpatterns
from contactcenter.models import AuthToken
from contactcenter.services import api_client_revoke, token_issue
from tests.factories import bearer, current_totp, make_api_key, make_staff

TOKEN_URL = "/api/v1/auth/token/"


class _ScopedView(APIView):
    required_scopes = {"GET": "patients:read"}

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [*base_urlpatterns, path("api/v1/scoped/", _ScopedView.as_view())]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def _login(client, user, *, password="correct-horse-battery-staple", otp=None):
    payload = {"username": user.username, "password": password}
    if otp is not None:
        payload["otp"] = otp
    return client.post(TOKEN_URL, payload, content_type="application/json")


def _last_event(**filters):
    return AuditEvent.objects.filter(**filters).order_by("-id").first()


def test_login_with_password_and_totp_returns_token_with_expiry(client):
    user = make_staff(totp=True)

    response = _login(client, user, otp=current_totp(user))

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["token"].startswith("ccs_")
    assert body["expires_at"]
    stored = AuthToken.objects.get(user=user)
    assert body["token"] not in stored.key_hash
    assert _last_event(action="login").actor_user_id == user.pk


def test_token_records_the_client_behind_the_trusted_proxy_not_the_proxy(client, settings):
    """Behind the compose file's proxy REMOTE_ADDR is the proxy; the token keeps the
    client that lockout and audit see."""
    settings.TRUSTED_PROXY_COUNT = 1
    user = make_staff(totp=True)

    response = client.post(
        TOKEN_URL,
        {
            "username": user.username,
            "password": "correct-horse-battery-staple",
            "otp": current_totp(user),
        },
        content_type="application/json",
        REMOTE_ADDR="172.18.0.5",
        HTTP_X_FORWARDED_FOR="198.51.100.23",
    )

    assert response.status_code == 201, response.json()
    assert AuthToken.objects.get(user=user).source_ip == "198.51.100.23"


def test_wrong_otp_is_refused_and_audited(client):
    user = make_staff(totp=True)

    response = _login(client, user, otp="000000")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "login_failed"
    event = _last_event(action="login_failed")
    assert event.outcome == "denied"
    assert event.details["reason"] == "bad_otp"
    assert not AuthToken.objects.filter(user=user).exists()


def test_missing_second_factor_is_refused_when_mfa_required(client, settings):
    settings.MFA_REQUIRED = True
    user = make_staff(totp=False)

    response = _login(client, user)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "mfa_required"
    assert _last_event(action="login_failed").details["reason"] == "mfa_not_set_up"


def test_six_bad_passwords_lock_out_even_the_right_one(client):
    user = make_staff(totp=True)

    statuses = [_login(client, user, password=f"wrong-{i}").status_code for i in range(6)]
    locked = _login(client, user, otp=current_totp(user))

    # The fifth failure reaches the limit and is answered with the lockout.
    assert statuses == [401, 401, 401, 401, 429, 429]
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    assert AuditEvent.objects.filter(action="login_failed").count() == 4
    assert AuditEvent.objects.filter(action="lockout").count() == 3


def test_token_authenticates_and_logout_revokes_it(client):
    user = make_staff(totp=True)
    token = _login(client, user, otp=current_totp(user)).json()["token"]

    assert client.get("/api/v1/scoped/", **bearer(token)).status_code == 200
    assert client.delete(TOKEN_URL, **bearer(token)).status_code == 204
    after = client.get("/api/v1/scoped/", **bearer(token))

    assert after.status_code == 401
    assert _last_event(action="logout").actor_user_id == user.pk
    assert _last_event(action="denied").details["reason"] == "token_revoked"


def test_expired_token_gives_401_and_an_audit_row(client):
    user = make_staff()
    issued = token_issue(user=user)
    AuthToken.objects.filter(pk=issued.record.pk).update(expires_at=timezone.now())

    response = client.get("/api/v1/scoped/", **bearer(issued.token))

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    event = _last_event(action="denied")
    assert event.http_status == 401
    assert event.details["reason"] == "token_expired"


def test_idle_token_gives_401(client, settings):
    user = make_staff()
    issued = token_issue(user=user)
    AuthToken.objects.filter(pk=issued.record.pk).update(
        last_used_at=timezone.now() - timedelta(seconds=settings.TOKEN_IDLE_SECONDS + 1)
    )

    response = client.get("/api/v1/scoped/", **bearer(issued.token))

    assert response.status_code == 401
    assert _last_event(action="denied").details["reason"] == "token_idle_expired"


def test_unknown_token_gives_401(client):
    response = client.get("/api/v1/scoped/", **bearer("ccs_not-a-real-token"))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_api_key_with_scope_is_accepted(client):
    key, api_client = make_api_key(scopes=["patients:read"])

    response = client.get("/api/v1/scoped/", **bearer(key))

    assert response.status_code == 200
    api_client.refresh_from_db()
    assert api_client.last_used_at is not None


def test_api_key_without_the_scope_gets_403_and_an_audit_row(client):
    key, api_client = make_api_key(scopes=["portal:write"])

    response = client.get("/api/v1/scoped/", **bearer(key))

    assert response.status_code == 403
    event = _last_event(action="denied")
    assert event.http_status == 403
    assert event.api_client_id == str(api_client.pk) or event.api_client_id == api_client.pk


def test_revoked_api_key_gives_401_and_an_audit_row(client):
    key, api_client = make_api_key(scopes=["patients:read"])
    api_client_revoke(client=api_client)

    response = client.get("/api/v1/scoped/", **bearer(key))

    assert response.status_code == 401
    assert _last_event(action="denied").details["reason"] == "api_key_revoked"


def test_api_key_with_a_wrong_secret_gives_401(client):
    key, _ = make_api_key(scopes=["patients:read"])

    response = client.get("/api/v1/scoped/", **bearer(key[:-4] + "abcd"))

    assert response.status_code == 401
    assert _last_event(action="denied").details["reason"] == "unknown_api_key"
