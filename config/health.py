"""Liveness (/health/) and readiness (/health/ready/: database, broker, worker)."""

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app as celery_app
from contactcenter.errors import service_unavailable_response

WORKER_PING_TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
def liveness(request):
    return JsonResponse({"status": "ok"})


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker():
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _check_worker():
    # limit=1: one answering worker is enough, so a healthy check returns at once.
    replies = celery_app.control.ping(timeout=WORKER_PING_TIMEOUT_SECONDS, limit=1)
    if not replies:
        raise RuntimeError(f"no worker answered a ping within {WORKER_PING_TIMEOUT_SECONDS:g} s")


CHECKS = (("database", _check_database), ("broker", _check_broker), ("worker", _check_worker))


@never_cache
@require_GET
def readiness(request):
    results, failed = {}, []
    for name, check in CHECKS:
        if failed and name == "worker":
            # A worker cannot be pinged through a broker that is down.
            results[name] = "skipped"
            continue
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"error: {exc.__class__.__name__}: {exc}"[:300]
            failed.append(name)
    if failed:
        return service_unavailable_response(
            request,
            message=f"Not ready: {', '.join(failed)}.",
            details={"failed": failed, "checks": results},
        )
    return JsonResponse({"status": "ok", "checks": results})
