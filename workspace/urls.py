from django.urls import path

from workspace import compliance_desk as desk
from workspace import outbox, patient_panel, stream, supervisor, views

app_name = "workspace"

urlpatterns = [
    path("", views.home, name="home"),
    path("signin/", views.signin_page, name="signin"),
    path("signout/", views.signout, name="signout"),
    path("me/availability/", views.availability, name="availability"),
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/rows/", views.inbox_rows, name="inbox-rows"),
    path("inbox/counts/", views.inbox_counts, name="inbox-counts"),
    path("live/", stream.events, name="live"),
    path("conversations/<uuid:conversation_id>/", views.conversation, name="conversation"),
    path(
        "conversations/<uuid:conversation_id>/thread/",
        views.conversation_thread,
        name="conversation-thread",
    ),
    path("conversations/<uuid:conversation_id>/reply/", views.reply, name="reply"),
    path(
        "conversations/<uuid:conversation_id>/suggestions/",
        views.composer_suggestions,
        name="suggestions",
    ),
    path(
        "conversations/<uuid:conversation_id>/match/search/",
        patient_panel.match_search,
        name="match-search",
    ),
    path(
        "conversations/<uuid:conversation_id>/match/link/",
        patient_panel.match_link,
        name="match-link",
    ),
    path(
        "conversations/<uuid:conversation_id>/match/create/",
        patient_panel.match_create,
        name="match-create",
    ),
    path("patients/search/", patient_panel.patient_search, name="patient-search"),
    path("outbox/", outbox.local_outbox, name="local-outbox"),
    path("conversations/<uuid:conversation_id>/act/", views.act, name="act"),
    path("conversations/<uuid:conversation_id>/presence/", views.presence, name="presence"),
    path(
        "attachments/<uuid:attachment_id>/",
        views.attachment_download,
        name="attachment",
    ),
    path("calls/<uuid:interaction_id>/recording/", views.call_recording, name="recording"),
    path("patients/<uuid:patient_id>/timeline/", views.patient_timeline, name="timeline"),
    path("patients/<uuid:patient_id>/break-glass/", views.break_glass, name="break-glass"),
    # The compliance officer's desk (workspace.compliance_desk).
    path("compliance/", desk.desk, name="compliance"),
    path("compliance/audit/", desk.audit_search, name="compliance-audit"),
    path("compliance/audit/export.csv", desk.audit_export, name="compliance-audit-export"),
    path("compliance/access-report/", desk.access_report, name="compliance-access"),
    path(
        "compliance/access-report/export.csv",
        desk.access_report_csv,
        name="compliance-access-csv",
    ),
    path(
        "compliance/access-report/export.pdf",
        desk.access_report_pdf,
        name="compliance-access-pdf",
    ),
    path("compliance/break-glass/", desk.break_glass_queue, name="compliance-break-glass"),
    path(
        "compliance/break-glass/<uuid:grant_id>/review/",
        desk.break_glass_review,
        name="compliance-break-glass-review",
    ),
    path("compliance/disclosures/", desk.disclosures, name="compliance-disclosures"),
    path("compliance/chain/", desk.chain_status, name="compliance-chain"),
    path("compliance/chain/verify/", desk.chain_verify, name="compliance-chain-verify"),
    path("compliance/chain/runs/<str:run_id>/", desk.chain_run, name="compliance-chain-run"),
    path("compliance/anomalies/", desk.anomalies, name="compliance-anomalies"),
    # The supervisor's pages (workspace.supervisor).
    path("supervisor/board/", supervisor.board, name="supervisor-board"),
    path("supervisor/board/live/", supervisor.board_fragment, name="supervisor-board-live"),
    path("supervisor/board/reassign/", supervisor.reassign, name="supervisor-reassign"),
    path("supervisor/kpis/", supervisor.kpis, name="supervisor-kpis"),
    path("supervisor/kpis/export.csv", supervisor.kpis_csv, name="supervisor-kpis-csv"),
    path("supervisor/kpis/conversations/", supervisor.drilldown, name="supervisor-drilldown"),
    path("supervisor/rules/", supervisor.rules, name="supervisor-rules"),
    path("supervisor/rules/new/", supervisor.rule_edit, name="supervisor-rule-new"),
    path("supervisor/rules/<int:rule_id>/", supervisor.rule_edit, name="supervisor-rule-edit"),
    path("supervisor/rules/dry-run/", supervisor.dry_run, name="supervisor-dry-run"),
    path(
        "supervisor/sla-policies/<int:policy_id>/",
        supervisor.sla_policy_edit,
        name="supervisor-sla-edit",
    ),
]
