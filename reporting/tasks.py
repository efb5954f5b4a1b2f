"""Thin task wrappers around reporting services (beat schedule in settings)."""

from celery import shared_task

from reporting import services


@shared_task(name="reporting.tasks.nightly_kpi_rollup", ignore_result=True)
def nightly_kpi_rollup():
    services.kpi_rollup_nightly()


@shared_task(name="reporting.tasks.intraday_kpi_rollup", ignore_result=True)
def intraday_kpi_rollup():
    services.kpi_rollup_intraday()


@shared_task(name="reporting.tasks.send_due_surveys", ignore_result=True)
def send_due_surveys():
    services.surveys_send_due()
