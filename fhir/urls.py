from django.urls import path, re_path

from fhir import views

urlpatterns = [
    path("metadata", views.MetadataView.as_view(), name="fhir-metadata"),
    path(
        ".well-known/smart-configuration",
        views.SmartConfigurationView.as_view(),
        name="fhir-smart-configuration",
    ),
    path("auth/token", views.TokenView.as_view(), name="fhir-token"),
    path("Patient/$export", views.ExportKickOffView.as_view(), name="fhir-patient-export"),
    path(
        "Group/<str:group_id>/$export", views.ExportKickOffView.as_view(), name="fhir-group-export"
    ),
    path(
        "$export-status/<str:resource_id>",
        views.ExportStatusView.as_view(),
        name="fhir-export-status",
    ),
    path(
        "$export-file/<str:resource_id>/<str:file_name>",
        views.ExportFileView.as_view(),
        name="fhir-export-file",
    ),
    path("Patient", views.PatientTypeView.as_view(), name="fhir-patient-type"),
    path("Patient/<str:resource_id>", views.PatientInstanceView.as_view(), name="fhir-patient"),
    path("Communication", views.CommunicationTypeView.as_view(), name="fhir-communication-type"),
    path(
        "Communication/<str:resource_id>",
        views.CommunicationInstanceView.as_view(),
        name="fhir-communication",
    ),
    path("Appointment", views.AppointmentTypeView.as_view(), name="fhir-appointment-type"),
    path(
        "Appointment/<str:resource_id>",
        views.AppointmentInstanceView.as_view(),
        name="fhir-appointment",
    ),
    path(
        "CommunicationRequest",
        views.CommunicationRequestTypeView.as_view(),
        name="fhir-communication-request-type",
    ),
    path("Consent", views.ConsentTypeView.as_view(), name="fhir-consent-type"),
    path("Consent/<str:resource_id>", views.ConsentInstanceView.as_view(), name="fhir-consent"),
    path(
        "Consent/<str:resource_id>/_history",
        views.ConsentInstanceView.as_view(),
        {"history": True},
        name="fhir-consent-history",
    ),
    path("AuditEvent", views.AuditEventTypeView.as_view(), name="fhir-audit-event-type"),
    path("Subscription", views.SubscriptionTypeView.as_view(), name="fhir-subscription-type"),
    path(
        "Subscription/<str:resource_id>",
        views.SubscriptionInstanceView.as_view(),
        name="fhir-subscription",
    ),
    re_path(r"^(?P<path>.*)$", views.not_found_view),
]
