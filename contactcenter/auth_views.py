from axes.helpers import get_client_ip_address
from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from contactcenter import services, signin
from contactcenter.auth import staff_user_of
from contactcenter.errors import ApiError
from contactcenter.models import AuthToken
from contactcenter.signals import security_event


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    otp = serializers.RegexField(r"^\d{6,8}$", required=False, allow_blank=True)


TokenSerializer = inline_serializer(
    name="StaffToken",
    fields={
        "token": serializers.CharField(),
        "expires_at": serializers.DateTimeField(),
        "idle_timeout_seconds": serializers.IntegerField(),
    },
)


class TokenView(APIView):
    """Staff login (password and TOTP) and logout."""

    audits_itself = True

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    def get_authenticators(self):
        from contactcenter.auth import BearerAuthentication

        return [BearerAuthentication()]

    @extend_schema(request=LoginSerializer, responses={201: TokenSerializer})
    def post(self, request):
        data = LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        django_request = request._request
        try:
            user, _device = signin.staff_sign_in_check(
                request=django_request,
                sender=type(self),
                username=data.validated_data["username"],
                password=data.validated_data["password"],
                otp=data.validated_data.get("otp"),
            )
        except signin.SignInRefused as refused:
            raise ApiError(
                str(refused), code=refused.code, status_code=refused.http_status
            ) from None
        # The client behind TRUSTED_PROXY_COUNT proxies, as lockout and audit see it.
        issued = services.token_issue(user=user, source_ip=get_client_ip_address(django_request))
        signin.record_sign_in(request=request, sender=type(self), user=user, http_status=201)
        return Response(
            {
                "token": issued.token,
                "expires_at": issued.expires_at,
                "idle_timeout_seconds": settings.TOKEN_IDLE_SECONDS,
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        if not isinstance(request.auth, AuthToken):
            raise ApiError("Only a staff token can be revoked here.", code="not_a_staff_token")
        services.token_revoke(token=request.auth)
        self._event(request, "logout", "success", 204, actor=staff_user_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _event(self, request, action, outcome, http_status, *, actor=None, username="", **details):
        if username and not actor:
            details["username"] = username[:150]
        security_event.send(
            sender=type(self),
            action=action,
            outcome=outcome,
            request=request,
            actor=actor,
            api_client=None,
            http_status=http_status,
            details=details,
        )
