from django.urls import path

from patients import views

urlpatterns = [
    path("patients/", views.PatientListCreateView.as_view(), name="patient-list"),
    path("patients/merge/", views.PatientMergeView.as_view(), name="patient-merge"),
    path("patients/<uuid:pk>/", views.PatientDetailView.as_view(), name="patient-detail"),
    path(
        "patients/<uuid:patient_id>/appointments/",
        views.PatientAppointmentsView.as_view(),
        name="patient-appointments",
    ),
    path(
        "appointments/<uuid:pk>/", views.AppointmentDetailView.as_view(), name="appointment-detail"
    ),
    path(
        "appointments/by-external-id/<str:source>/<str:external_id>/",
        views.AppointmentUpsertView.as_view(),
        name="appointment-upsert",
    ),
]
