from django import forms
from django.contrib.auth.signals import user_login_failed
from django_otp.admin import OTPAdminAuthenticationForm

from contactcenter.services import totp_confirmed_device


class TotpAdminAuthenticationForm(OTPAdminAuthenticationForm):
    """Password and TOTP code in one step. Staff have one TOTP device each, so it is
    chosen for them; a wrong code counts towards the lockout like a wrong password."""

    def _chosen_device(self, user):
        return super()._chosen_device(user) or totp_confirmed_device(user)

    def clean_otp(self, user):
        try:
            super().clean_otp(user)
        except forms.ValidationError:
            user_login_failed.send(
                sender=__name__,
                credentials={"username": user.get_username()},
                request=self.request,
            )
            raise
