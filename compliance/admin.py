from django.contrib import admin

from compliance.models import AuditEvent, Disclosure
from contactcenter import roles


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only for compliance officers: no add, change or delete for anyone,
    superusers included (the table's triggers refuse them anyway)."""

    list_display = [
        "recorded_at",
        "actor_username",
        "actor_role",
        "action",
        "resource_type",
        "resource_id",
        "outcome",
        "http_status",
        "purpose_of_use",
        "source_ip",
    ]
    list_filter = ["action", "outcome", "resource_type", "purpose_of_use", "actor_role"]
    search_fields = ["actor_username", "resource_id", "request_id", "api_client_name"]
    date_hierarchy = "recorded_at"
    ordering = ["-recorded_at", "-id"]
    show_full_result_count = False

    def has_view_permission(self, request, obj=None):
        return roles.has_role(request.user, roles.COMPLIANCE)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


@admin.register(Disclosure)
class DisclosureAdmin(admin.ModelAdmin):
    """The accounting of disclosures (45 CFR 164.528), kept by compliance officers."""

    list_display = ["disclosed_at", "patient_id", "created_by"]
    list_filter = ["disclosed_at"]
    search_fields = ["patient_id"]
    date_hierarchy = "disclosed_at"
    fields = [
        "patient_id",
        "disclosed_at",
        "recipient_name",
        "recipient_address",
        "description",
        "purpose",
    ]

    def _is_officer(self, request):
        return roles.has_role(request.user, roles.COMPLIANCE)

    def has_module_permission(self, request):
        return self._is_officer(request)

    def has_view_permission(self, request, obj=None):
        return self._is_officer(request)

    def has_add_permission(self, request):
        return self._is_officer(request)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.created_by = request.user
        super().save_model(request, obj, form, change)
