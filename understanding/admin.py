from django.contrib import admin

from contactcenter.admin_site import RoleRestrictedAdmin
from understanding.models import IntentRoute, SelfServiceAnswer


@admin.register(IntentRoute)
class IntentRouteAdmin(RoleRestrictedAdmin):
    list_display = ["intent", "team", "min_confidence", "active"]
    list_editable = ["min_confidence", "active"]
    list_filter = ["team", "active"]


@admin.register(SelfServiceAnswer)
class SelfServiceAnswerAdmin(RoleRestrictedAdmin):
    list_display = ["topic", "language", "keywords", "active"]
    list_filter = ["language", "active"]
    search_fields = ["topic", "keywords"]
