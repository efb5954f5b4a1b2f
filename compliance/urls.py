from django.urls import path

from compliance import views

urlpatterns = [
    path("audit-events/", views.AuditEventListView.as_view(), name="audit-event-list"),
    path(
        "audit-events/export.csv",
        views.AuditEventExportView.as_view(),
        name="audit-event-export",
    ),
    path("audit-events/verify/", views.AuditChainVerifyView.as_view(), name="audit-chain-verify"),
    path(
        "patients/<uuid:patient_id>/access-report/",
        views.PatientAccessReportView.as_view(),
        name="patient-access-report",
    ),
    path(
        "patients/<uuid:patient_id>/break-glass/",
        views.BreakGlassCreateView.as_view(),
        name="patient-break-glass",
    ),
    path(
        "patients/<uuid:patient_id>/disclosures/",
        views.PatientDisclosuresView.as_view(),
        name="patient-disclosures",
    ),
    path("break-glass/", views.BreakGlassQueueView.as_view(), name="break-glass-list"),
    path("break-glass/<uuid:pk>/", views.BreakGlassReviewView.as_view(), name="break-glass-review"),
    path("compliance/anomalies/", views.AnomalyReportView.as_view(), name="compliance-anomalies"),
]
