"""Configuration of reminders in the admin: policies and their templates. Reminders
and risks are shown read-only, by ids and codes (no patient data)."""

from django.contrib import admin

from contactcenter.admin_site import RoleRestrictedAdmin
from reminders.models import AppointmentRisk, Reminder, ReminderPolicy, ReminderTemplate


class ReminderTemplateInline(admin.StackedInline):
    model = ReminderTemplate
    extra = 0


@admin.register(ReminderPolicy)
class ReminderPolicyAdmin(RoleRestrictedAdmin):
    list_display = ("name", "is_default", "offsets_minutes", "quiet_start", "quiet_end")
    list_filter = ("is_default",)
    search_fields = ("name",)
    inlines = [ReminderTemplateInline]


class ReadOnlyAdmin(RoleRestrictedAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Reminder)
class ReminderAdmin(ReadOnlyAdmin):
    list_display = ("id", "appointment_id", "offset_minutes", "state", "planned_at", "skip_reason")
    list_filter = ("state", "skip_reason", "channel")
    raw_id_fields = ("appointment", "outbound")


@admin.register(AppointmentRisk)
class AppointmentRiskAdmin(ReadOnlyAdmin):
    list_display = ("appointment_id", "score", "computed_at")
