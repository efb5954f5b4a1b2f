from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from channels_app.models import (
    CannedResponse,
    ChannelAccount,
    Conversation,
    LocalOutboxMessage,
    VoiceMenuChoice,
)
from channels_app.selectors import conversations_visible_to, local_outbox_visible_to
from channels_app.serializers import mask_address
from channels_app.services import (
    channel_account_create,
    channel_account_update,
    channel_account_validate,
)
from contactcenter.admin_site import RoleRestrictedAdmin
from contactcenter.templating import template_placeholders
from patients.admin import PhiAdminMixin, mask_name


class ChannelAccountForm(forms.ModelForm):
    """The admin's channel-account form checks what the admin-role API
    (/api/v1/channel-accounts/) and `manage.py create_channel_account` check: the
    same service, channel_account_validate (E.164 numbers, one account per kind and
    address, IMAP settings only on a mailbox, opening hours only on a voice number,
    a secret where one is needed). Secrets are write-only: the field is always shown
    empty, and leaving it empty keeps the stored (encrypted) value."""

    new_secret = forms.CharField(
        label="Secret",
        required=False,
        max_length=500,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="IMAP password or portal webhook secret. Write-only: never shown. "
        "Leave it empty to keep the current one.",
    )

    class Meta:
        model = ChannelAccount
        fields = [
            "kind",
            "name",
            "address",
            "team",
            "help_text",
            "greeting",
            "greeting_es",
            "open_hours",
            "active",
            "imap_host",
            "imap_port",
            "imap_username",
            "imap_use_ssl",
            "imap_folder",
        ]

    def account_values(self):
        """The cleaned values as the channel-account services take them."""
        # Not self._meta.fields: the admin builds the form with its declared fields too.
        values = {name: self.cleaned_data[name] for name in ChannelAccountForm.Meta.fields}
        values["open_hours"] = values["open_hours"] or {}  # an empty box is "always open"
        if self.cleaned_data.get("new_secret"):
            values["secret"] = self.cleaned_data["new_secret"]
        return values

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned  # a field's own check failed; the service needs every value
        existing = None if self.instance._state.adding else self.instance
        try:
            values = channel_account_validate(values=self.account_values(), account=existing)
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                field = "new_secret" if name == "secret" else name
                self.add_error(field if field in self.fields else None, messages)
        else:
            cleaned["address"] = values["address"]
        return cleaned


class VoiceMenuChoiceInline(admin.TabularInline):
    """A voice number's menu: keys 1 to 4, each to a team's queue (0 is always a
    person at the number's own team)."""

    model = VoiceMenuChoice
    extra = 0
    max_num = VoiceMenuChoice.MAX_KEY
    fields = ["key", "team", "label_en", "label_es", "speech_en", "speech_es"]


@admin.register(ChannelAccount)
class ChannelAccountAdmin(RoleRestrictedAdmin):
    form = ChannelAccountForm
    inlines = [VoiceMenuChoiceInline]
    list_display = ["name", "kind", "address", "team", "has_secret", "active"]
    list_filter = ["kind", "active", "team"]
    search_fields = ["name", "address"]

    @admin.display(boolean=True, description="secret set")
    def has_secret(self, account):
        return bool(account.secret)

    def save_model(self, request, obj, form, change):
        """Written by the services the API and the command use (an update also
        starts a changed mailbox from its first message)."""
        values = form.account_values()
        if change:
            stored = ChannelAccount.objects.get(pk=obj.pk)
            saved = channel_account_update(account=stored, values=values)
        else:
            # The admin's own object keeps its id, so the menu inlines saved after
            # this point at the account the service created.
            saved = channel_account_create(values={**values, "id": obj.pk})
        obj.secret = saved.secret
        obj._state.adding = False
        obj._state.db = saved._state.db


class CannedResponseForm(forms.ModelForm):
    class Meta:
        model = CannedResponse
        fields = ["team", "title", "body"]

    def clean_body(self):
        body = self.cleaned_data["body"]
        try:
            unknown = template_placeholders(body) - {"first_name", "practice_name"}
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        if unknown:
            raise forms.ValidationError(
                "Unknown placeholders: " + ", ".join(f"${name}" for name in sorted(unknown))
            )
        return body


@admin.register(CannedResponse)
class CannedResponseAdmin(RoleRestrictedAdmin):
    form = CannedResponseForm
    admin_roles = ("admin", "supervisor")
    list_display = ["title", "team", "created_at"]
    list_filter = ["team"]
    search_fields = ["title"]


@admin.register(Conversation)
class ConversationAdmin(PhiAdminMixin, admin.ModelAdmin):
    audit_resource_type = "conversation"
    list_display = [
        "masked_patient",
        "channel",
        "masked_contact",
        "status",
        "priority",
        "team",
        "assignee",
        "last_interaction_at",
    ]
    list_filter = ["status", "channel", "priority", "team", "escalated"]
    list_select_related = ["patient", "team", "assignee"]
    show_full_result_count = False
    ordering = ["-last_interaction_at"]
    readonly_fields = [
        "channel",
        "patient",
        "team",
        "status",
        "priority",
        "assignee",
        "labels",
        "last_interaction_at",
        "created_at",
        "resolved_at",
    ]
    fields = readonly_fields

    def patient_id_of(self, obj):
        return obj.patient_id

    def get_queryset(self, request):
        return conversations_visible_to(request.user).select_related("patient", "team", "assignee")

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="patient")
    def masked_patient(self, conversation):
        patient = conversation.patient
        return mask_name(patient.given_name, patient.family_name) if patient else "unmatched"

    @admin.display(description="contact")
    def masked_contact(self, conversation):
        return mask_address(conversation.contact_address)


@admin.register(LocalOutboxMessage)
class LocalOutboxAdmin(PhiAdminMixin, admin.ModelAdmin):
    """What the local providers of `make run` would have sent, read-only, for the
    conversations the user's teams may see, audited like every PHI page."""

    audit_resource_type = "local_outbox_message"
    list_display = ["created_at", "channel", "masked_to", "delivery_state", "conversation"]
    list_filter = ["channel"]
    list_select_related = ["outbound__interaction"]
    ordering = ["-created_at"]
    show_full_result_count = False
    readonly_fields = [
        "created_at",
        "channel",
        "provider_id",
        "from_address",
        "to_address",
        "subject",
        "body",
        "delivery_state",
        "conversation",
        "reported_at",
    ]
    fields = readonly_fields

    def patient_id_of(self, obj):
        return obj.outbound.interaction.patient_id if obj.outbound else None

    def get_queryset(self, request):
        return local_outbox_visible_to(request.user).select_related("outbound__interaction")

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="to")
    def masked_to(self, message):
        return mask_address(message.to_address)

    @admin.display(description="delivery")
    def delivery_state(self, message):
        return message.outbound.state if message.outbound else "unknown"

    @admin.display(description="conversation")
    def conversation(self, message):
        return str(message.outbound.interaction.conversation_id) if message.outbound else ""
