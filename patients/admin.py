from django.contrib import admin
from django.utils.html import format_html, format_html_join

from compliance.services import audit_record
from contactcenter import roles
from contactcenter.auth import staff_user_of
from patients.models import PATIENT_FLAGS, Patient
from patients.selectors import patients_visible_to

TIMELINE_ROWS = 50


class PhiAdminMixin:
    """PHI in the admin follows the API's rules: only patients the user's teams
    may see (no superuser bypass), and every page that shows PHI is audited."""

    audit_resource_type = ""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _audit(self, request, *, action, patient_ids, resource_id=""):
        audit_record(
            action=action,
            resource_type=self.audit_resource_type,
            resource_id=str(resource_id),
            patient_ids=[p for p in patient_ids if p],
            actor=staff_user_of(request),
            request=request,
            details={"via": "admin", "path": request.path},
        )

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            self._audit(
                request,
                action="read",
                patient_ids=[self.patient_id_of(obj) for obj in changelist.result_list],
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        obj = self.get_queryset(request).filter(pk=object_id).first()
        if obj is not None:
            action = "update" if request.method == "POST" else "read"
            self._audit(
                request, action=action, patient_ids=[self.patient_id_of(obj)], resource_id=obj.pk
            )
        return response


def mask_name(given, family):
    return f"{given[:1]}. {family[:1]}{'*' * 4}" if given or family else "—"


@admin.register(Patient)
class PatientAdmin(PhiAdminMixin, admin.ModelAdmin):
    audit_resource_type = "patient"
    list_display = [
        "masked_name",
        "masked_mrn",
        "team",
        "preferred_channel",
        "active",
        "created_at",
    ]
    list_filter = ["team", "preferred_channel", "active", "needs_interpreter", "vip"]
    list_select_related = ["team"]
    show_full_result_count = False
    readonly_fields = [
        "mrn",
        "given_name",
        "family_name",
        "birth_date",
        "sex",
        "team",
        "merged_into",
        "created_at",
        "timeline",
    ]
    fields = [
        ("given_name", "family_name"),
        ("mrn", "birth_date", "sex"),
        "team",
        "primary_coordinator",
        ("preferred_channel", "preferred_language", "time_zone"),
        PATIENT_FLAGS,
        "active",
        "merged_into",
        "created_at",
        "timeline",
    ]

    def patient_id_of(self, obj):
        return obj.pk

    def get_queryset(self, request):
        return patients_visible_to(request.user).select_related("team")

    def has_change_permission(self, request, obj=None):
        return roles.has_role(request.user, roles.SUPERVISOR, roles.AGENT, roles.CLINICIAN)

    @admin.display(description="patient")
    def masked_name(self, patient):
        return mask_name(patient.given_name, patient.family_name)

    @admin.display(description="MRN")
    def masked_mrn(self, patient):
        return f"***{patient.mrn[-4:]}"

    @admin.display(description=f"timeline (latest {TIMELINE_ROWS})")
    def timeline(self, patient):
        from django.apps import apps

        interaction_model = apps.get_model("channels_app", "Interaction")
        rows = interaction_model.objects.filter(patient=patient).order_by("-occurred_at", "-id")[
            :TIMELINE_ROWS
        ]
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    i.occurred_at.strftime("%Y-%m-%d %H:%M"),
                    i.channel,
                    i.kind,
                    i.direction,
                    i.body[:300],
                )
                for i in rows
            ),
        )
        return format_html(
            '<table class="timeline"><thead><tr><th>when</th><th>channel</th><th>kind</th>'
            "<th>direction</th><th>text</th></tr></thead><tbody>{}</tbody></table>",
            body or format_html("<tr><td colspan=5>{}</td></tr>", "No interactions yet."),
        )
