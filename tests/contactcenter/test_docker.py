"""No Docker engine runs here, so the compose file is checked by reading it: each
app service's command is a script the image contains, and every variable it sets
for the app is one the settings read."""

import re
from pathlib import Path

import yaml
from django.conf import settings

DOCKER = Path(settings.BASE_DIR) / "docker"


def _compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _variables_read_by_settings():
    names = set()
    for source in (Path(settings.BASE_DIR) / "config" / "settings").glob("*.py"):
        text = source.read_text()
        names.update(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]*)"', text))
        names.update(re.findall(r'required\("([A-Z][A-Z0-9_]*)"\)', text))
    return names


def _app_services(compose):
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == "contactcenter:latest"
    }


def test_every_app_service_command_is_a_script_in_the_image():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    services = _app_services(_compose())

    assert {n for n, s in services.items() if not s.get("profiles")} == {
        "migrate",
        "web",
        "live",
        "worker",
        "beat",
    }
    for name, service in services.items():
        command = service["command"][0]
        assert command.startswith("/app/docker/"), name
        script = DOCKER / Path(command).name
        assert script.exists(), f"{name}: {script} is missing"
        assert script.stat().st_mode & 0o111, f"{name}: {script} is not executable"
        assert Path(command).name in dockerfile, f"{name}: the image does not copy {script.name}"


def _variables_read_by_start_scripts():
    names = set()
    for script in DOCKER.glob("*.sh"):
        names.update(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", script.read_text()))
    return names


def test_every_variable_compose_sets_is_read_by_the_settings():
    read = (
        _variables_read_by_settings()
        | _variables_read_by_start_scripts()
        | {"DJANGO_SETTINGS_MODULE"}
    )

    for name, service in _app_services(_compose()).items():
        unknown = set(service["environment"]) - read
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_production_required_variables_are_set_by_compose():
    production = (Path(settings.BASE_DIR) / "config/settings/production.py").read_text()
    required = set(re.findall(r'required\("([A-Z0-9_]+)"\)', production))

    for name, service in _app_services(_compose()).items():
        assert required <= set(service["environment"]), name


def test_start_scripts_name_commands_that_exist():
    for script in DOCKER.glob("*.sh"):
        text = script.read_text()
        assert text.startswith("#!/bin/sh")
        assert "set -eu" in text
        for command in re.findall(r"^\s*(?:exec\s+)?(\w+)\s", text, flags=re.MULTILINE):
            assert command in {"set", "exec", "python", "gunicorn", "celery"}, (script, command)


def test_the_scale_profile_runs_a_worker_per_queue_web_and_a_replica():
    compose = _compose()
    scale = {n: s for n, s in compose["services"].items() if "scale" in s.get("profiles", ())}
    queues = set(settings.CELERY_TASK_QUEUES_NAMES)

    served = {
        s["environment"]["WORKER_QUEUES"]
        for s in scale.values()
        if s.get("command") == ["/app/docker/start-worker.sh"]
    }
    assert served == queues
    assert any(s.get("command") == ["/app/docker/start-web.sh"] for s in scale.values())
    app_services = _app_services(compose)
    for name, service in scale.items():
        if name in app_services:
            replica_url = service["environment"]["DATABASE_REPLICA_URL"]
            assert "@postgres-replica:5432/" in replica_url, name
    assert "postgres-replica" in scale
    # Queues the settings route tasks to are all served by some worker.
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed <= served


def test_every_file_compose_mounts_or_runs_exists():
    """Bind mounts (the replica's scripts) and every command's program: a script in
    the image, a mounted script, or a server the image ships."""
    compose = _compose()
    mounted = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", ()):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                path = DOCKER / source[2:]
                assert path.exists(), f"{name}: {path} is missing"
                if path.suffix == ".sh":
                    assert path.stat().st_mode & 0o111, f"{name}: {path} is not executable"
                    assert path.read_text().startswith("#!/bin/sh"), path
                mounted[target] = path
    for name, service in compose["services"].items():
        program = service.get("entrypoint") or service.get("command") or []
        program = [part for part in program if part != "/bin/sh"][:1]
        if not program or program[0] in ("redis-server",):
            continue
        target = program[0]
        if target.startswith("/app/docker/"):
            assert (DOCKER / Path(target).name).exists(), name
        else:
            assert target in mounted, f"{name}: {target} is neither in the image nor mounted"


def _bind_port(script):
    return int(re.search(r"--bind 0\.0\.0\.0:(\d+)", (DOCKER / script).read_text()).group(1))


def test_web_is_threaded_wsgi_and_live_is_asgi():
    """gthread carried about 3x uvicorn's webhooks on 2 cores (README); the async
    stream alone needs ASGI."""
    web = (DOCKER / "start-web.sh").read_text()
    live = (DOCKER / "start-live.sh").read_text()
    assert "config.wsgi:application" in web and "--worker-class gthread" in web
    assert "config.asgi:application" in live and "uvicorn_worker.UvicornWorker" in live
    assert _bind_port("start-web.sh") != _bind_port("start-live.sh")


def test_the_proxy_sends_the_live_stream_to_live_and_everything_else_to_web():
    from django.urls import reverse

    from workspace.stream import LIVE_STREAM_SECONDS

    compose = _compose()
    proxy = compose["services"]["proxy"]
    assert "./proxy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert proxy["ports"] == ["8000:8000"]
    assert "ports" not in compose["services"]["web"], "web is reached through the proxy"
    conf = (DOCKER / "proxy" / "nginx.conf").read_text()

    upstreams = dict(re.findall(r"upstream (\w+) \{[^}]*?server ([\w:-]+)", conf))
    assert upstreams == {
        "web": f"web:{_bind_port('start-web.sh')}",
        "live": f"live:{_bind_port('start-live.sh')}",
    }
    locations = {
        path: body for path, body in re.findall(r"location ((?:= )?/[^ ]*) \{([^}]*)\}", conf)
    }
    assert set(locations) == {f"= {reverse('workspace:live')}", "/"}
    stream = locations[f"= {reverse('workspace:live')}"]
    assert "proxy_pass http://live;" in stream
    assert "proxy_buffering off;" in stream
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", stream).group(1))
    assert read_timeout > LIVE_STREAM_SECONDS
    assert "proxy_pass http://web;" in locations["/"]
    # nginx drops the server's proxy_set_header lines in a location that sets one of
    # its own, and X-Forwarded-For with them (seen in a run of this file's config).
    assert all("proxy_set_header" not in body for body in locations.values())
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    # The proxy is a hop the client-address lookup must skip.
    assert compose["x-app"]["environment"]["TRUSTED_PROXY_COUNT"].startswith(
        "${TRUSTED_PROXY_COUNT:-1"
    )
