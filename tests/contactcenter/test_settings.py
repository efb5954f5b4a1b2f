"""Asserts the settings that matter as loaded: a misspelt setting is silently
ignored by Celery and DRF, so the loaded values are what is checked."""

import subprocess
import sys

from celery.contrib.django.task import DjangoTask
from django.conf import settings

from config.celery import app as celery_app


def test_celery_settings_as_loaded():
    conf = celery_app.conf

    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 300
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit + 3600
    assert {q.name for q in conf.task_queues} == {
        "inbound",
        "outbound",
        "reminders",
        "escalations",
        "default",
    }
    assert conf.task_default_queue == "default"
    assert celery_app.amqp.router.route({}, "escalation.tasks.anything")["queue"].name == (
        "escalations"
    )
    assert issubclass(celery_app.Task, DjangoTask)  # gives delay_on_commit


def test_rest_framework_settings_as_loaded():
    from drf_spectacular.openapi import AutoSchema
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_PAGINATION_CLASS.__name__ == "CursorPagination"
    assert api_settings.EXCEPTION_HANDLER.__name__ == "api_exception_handler"
    assert issubclass(api_settings.DEFAULT_SCHEMA_CLASS, AutoSchema)
    assert api_settings.DEFAULT_SCHEMA_CLASS.__name__ == "ApiAutoSchema"
    assert api_settings.DEFAULT_METADATA_CLASS.__name__ == "ApiMetadata"
    assert [p.__name__ for p in api_settings.DEFAULT_PERMISSION_CLASSES] == ["ScopedAccess"]
    assert [a.__name__ for a in api_settings.DEFAULT_AUTHENTICATION_CLASSES] == [
        "BearerAuthentication"
    ]


def test_database_is_postgresql_in_tests():
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _production_check(env_overrides):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "CONTACTCENTER_READ_DEV_ENV": "false",
        **env_overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        capture_output=True,
        text=True,
        env=env,
        cwd=settings.BASE_DIR,
        timeout=120,
    )


PRODUCTION_ENV = {
    "SECRET_KEY": "p" * 20 + "-production-secret-key-for-the-settings-test-" + "q" * 20,
    "DATABASE_URL": "postgres://app@db.internal:5432/contactcenter",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "ALLOWED_HOSTS": "contact.example.org",
    "FIELD_ENCRYPTION_KEYS": "k2:" + "A" * 43 + "=",
    "BLIND_INDEX_KEY": "B" * 43 + "=",
    "AUDIT_MAC_KEYS": "a1:" + "C" * 43 + "=",
    "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example.org:587",
}


def test_production_settings_refuse_to_start_without_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}

    result = _production_check(env)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_settings_refuse_a_malformed_value():
    result = _production_check({**PRODUCTION_ENV, "DATABASE_URL": "not-a-url"})

    assert result.returncode != 0


def test_production_check_deploy_is_clean():
    result = _production_check(PRODUCTION_ENV)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_mail_kept_on_the_machine_and_the_local_providers():
    result = _production_check(
        {
            **PRODUCTION_ENV,
            "EMAIL_URL": "consolemail://",
            "SMS_PROVIDER": "local",
            "VOICE_PROVIDER": "local",
            "PORTAL_PROVIDER": "local",
        }
    )

    assert result.returncode != 0
    assert "contactcenter.E001" in result.stderr
    assert "EMAIL_BACKEND django.core.mail.backends.console.EmailBackend" in result.stderr
    assert result.stderr.count("contactcenter.E002") == 3


def test_production_refuses_the_local_outbox_email_backend():
    result = _production_check({**PRODUCTION_ENV, "EMAIL_URL": "localoutbox://"})

    assert result.returncode != 0
    assert "channels_app.local_outbox.EmailBackend" in result.stderr


def test_an_unknown_provider_stops_start_up_naming_the_variable():
    result = _production_check({**PRODUCTION_ENV, "SMS_PROVIDER": "carrier-pigeon"})

    assert result.returncode != 0
    assert "SMS_PROVIDER" in result.stderr
