from django.urls import path

from reporting import views

urlpatterns = [
    path("reports/kpis/", views.KpiReportView.as_view(), name="report-kpis"),
]
