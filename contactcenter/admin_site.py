"""The admin site: a second factor (django-otp) whenever MFA_REQUIRED is on, as in
production; django-axes locks it out like the API; headers name the practice."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp.admin import OTPAdminSite

from contactcenter.admin_forms import TotpAdminAuthenticationForm


class ContactCenterAdminSite(admin.AdminSite):
    site_url = None

    @property
    def site_header(self):
        return f"{settings.PRACTICE_NAME} · contact center"

    @property
    def site_title(self):
        return settings.PRACTICE_NAME

    index_title = "Configuration"

    @property
    def login_form(self):
        return TotpAdminAuthenticationForm if settings.MFA_REQUIRED else AdminAuthenticationForm

    @property
    def login_template(self):
        return OTPAdminSite.login_template if settings.MFA_REQUIRED else None

    def has_permission(self, request):
        if not super().has_permission(request):
            return False
        return not settings.MFA_REQUIRED or request.user.is_verified()


class RoleRestrictedAdmin(admin.ModelAdmin):
    """Configuration models are managed by the admin role (and superusers); the
    role decides, not per-model Django permissions."""

    admin_roles = ("admin",)

    def _allowed(self, request):
        from contactcenter import roles

        user = request.user
        return user.is_active and (user.is_superuser or roles.has_role(user, *self.admin_roles))

    def has_module_permission(self, request):
        return self._allowed(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request)

    def has_add_permission(self, request):
        return self._allowed(request)

    def has_change_permission(self, request, obj=None):
        return self._allowed(request)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request)
