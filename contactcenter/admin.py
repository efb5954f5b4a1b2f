from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from contactcenter.admin_site import RoleRestrictedAdmin
from contactcenter.models import ApiClient, StaffProfile, Team
from contactcenter.services import api_client_create, api_client_revoke

User = get_user_model()


class TeamForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=admin.widgets.FilteredSelectMultiple("members", is_stacked=False),
    )

    class Meta:
        model = Team
        fields = ["name", "is_clinical"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["members"].initial = self.instance.group.user_set.all()


@admin.register(Team)
class TeamAdmin(RoleRestrictedAdmin):
    form = TeamForm
    list_display = ["name", "is_clinical", "member_count", "created_at"]
    list_filter = ["is_clinical"]
    search_fields = ["name"]

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(members_count=Count("group__user"))

    @admin.display(description="members", ordering="members_count")
    def member_count(self, team):
        return team.members_count

    def save_model(self, request, obj, form, change):
        if not change:
            obj.group = Group.objects.create(name=f"team:{obj.name}")
        obj.save()
        obj.group.user_set.set(form.cleaned_data["members"])


@admin.register(StaffProfile)
class StaffProfileAdmin(RoleRestrictedAdmin):
    list_display = ["user", "availability", "capacity", "languages"]
    list_filter = ["availability"]
    list_editable = ["availability", "capacity"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]


class ApiClientCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiClient.Scope.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiClient
        fields = ["name", "scopes", "team"]


@admin.register(ApiClient)
class ApiClientAdmin(RoleRestrictedAdmin):
    """The key is shown once, on creation; afterwards only its public prefix."""

    list_display = ["name", "prefix", "scope_list", "team", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "team"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]
    readonly_fields = [
        "name",
        "prefix",
        "scopes",
        "team",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiClientCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj else ["name", "scopes", "team"]

    @admin.display(description="scopes")
    def scope_list(self, client):
        return ", ".join(client.scopes)

    def save_model(self, request, obj, form, change):
        if change:
            return
        issued = api_client_create(
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            team=form.cleaned_data["team"],
            created_by=request.user,
        )
        obj.pk = issued.client.pk
        messages.warning(
            request,
            f"API key for {issued.client.name} (shown once; store it now): {issued.key}",
        )

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request, queryset):
        for client in queryset:
            api_client_revoke(client=client)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
