"""Staff sign-in, one rule for every door: the API's token endpoint and the
workspace's sign-in page. Password through Django's backends (django-axes counts
failures and locks out), then the TOTP code; a wrong code counts towards the
lockout like a wrong password. Each outcome is recorded as a security event."""

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_login_failed

from contactcenter import services
from contactcenter.signals import security_event

BAD_CREDENTIALS = "The username, password or code is wrong."
LOCKED_OUT = "Too many failed logins. Try again later."
MFA_NOT_SET_UP = "A second factor is required and none is set up for this account."


class SignInRefused(Exception):
    def __init__(self, message, *, code, http_status):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


def staff_sign_in_check(*, request, sender, username, password, otp):
    """The user when password and code are right; SignInRefused otherwise.
    `request` is the Django request (axes reads it), `sender` names the door.
    Returns (user, TOTP device or None)."""

    def event(action, http_status, *, actor=None, **details):
        if not actor:
            details["username"] = username[:150]
        security_event.send(
            sender=sender,
            action=action,
            outcome="denied",
            request=request,
            actor=actor,
            api_client=None,
            http_status=http_status,
            details=details,
        )

    user = authenticate(request=request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):
        event("lockout", 429)
        raise SignInRefused(LOCKED_OUT, code="locked_out", http_status=429)
    if user is None:
        event("login_failed", 401, reason="bad_credentials")
        raise SignInRefused(BAD_CREDENTIALS, code="login_failed", http_status=401)
    device = services.totp_confirmed_device(user)
    if device is None and settings.MFA_REQUIRED:
        event("login_failed", 403, actor=user, reason="mfa_not_set_up")
        raise SignInRefused(MFA_NOT_SET_UP, code="mfa_required", http_status=403)
    if device is not None and not device.verify_token(otp or ""):
        user_login_failed.send(sender=sender, credentials={"username": username}, request=request)
        event("login_failed", 401, actor=user, reason="bad_otp")
        raise SignInRefused(BAD_CREDENTIALS, code="login_failed", http_status=401)
    return user, device


def record_sign_in(*, request, sender, user, http_status):
    security_event.send(
        sender=sender,
        action="login",
        outcome="success",
        request=request,
        actor=user,
        api_client=None,
        http_status=http_status,
        details={},
    )
