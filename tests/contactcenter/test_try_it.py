"""The README's "Try it", end to end, as a newcomer runs it: `make run`'s steps
(scripts/run_local.sh: keys, migrations, demo data, web + worker + beat on SQLite
and the filesystem broker) in a fresh copy of the repository, then
`simulate_inbound --scenario`, then the API as the demo staff see it. Only the
install step is skipped: the copy runs on this test's virtualenv."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings

PASSWORD = "demo-password-123"
# Waits for a condition, so a generous bound costs nothing when the machine is idle;
# on a loaded 2-core machine the first start (migrations, demo data, three
# processes) has taken two minutes.
READY_TIMEOUT = 300


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fresh_copy(target):
    """The repository's files as a clone has them (plus files not committed yet, so
    the test checks the working tree), without var/, the venv or caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = Path(settings.BASE_DIR) / os.fsdecode(name)
        if source.is_file():
            destination = target / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(source.read_bytes())
            destination.chmod(source.stat().st_mode)


@pytest.fixture(scope="module")
def running_copy(tmp_path_factory):
    """A fresh copy started as `make run` starts it; yields (base URL, copy, env)."""
    copy = tmp_path_factory.mktemp("fresh") / "contactcenter"
    copy.mkdir()
    _fresh_copy(copy)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(copy),
        # The copy's code, not the editable install's, on the test's virtualenv.
        "PYTHONPATH": str(copy),
        "VENV": str(Path(sys.executable).parent.parent),
        "PORT": str(port),
        "PUBLIC_BASE_URL": base_url,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
    }
    log = (copy / "run.log").open("wb")
    process = subprocess.Popen(
        ["bash", "scripts/run_local.sh"],
        cwd=copy,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until_ready(base_url, process, copy / "run.log")
        yield base_url, copy, env
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_until_ready(base_url, process, log_path):
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make run's steps stopped:\n{log_path.read_text()[-4000:]}")
        try:
            if requests.get(f"{base_url}/health/ready/", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or busy starting
        time.sleep(0.25)
    raise AssertionError(f"not ready in {READY_TIMEOUT} s:\n{log_path.read_text()[-4000:]}")


def _token(base_url, username):
    response = requests.post(
        f"{base_url}/api/v1/auth/token/",
        json={"username": username, "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _get(base_url, path, headers):
    response = requests.get(f"{base_url}{path}", headers=headers, timeout=10)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def _messages(base_url, conversation_id, headers):
    return _get(base_url, f"/api/v1/conversations/{conversation_id}/messages/", headers)["results"]


def _scenario_conversations(stdout):
    """Conversation ids by step, from the scenario's summary lines."""
    found = {}
    for line in stdout.splitlines():
        step = re.match(r"\s*(\d)\.", line)
        number = step.group(1) if step else None
        ids = re.findall(r"conversation ([0-9a-f-]{36})", line)
        if ids and number:
            found[number] = uuid.UUID(ids[0])
        elif ids and "replied C" in line:
            found["1"] = uuid.UUID(ids[0])
    return found


@pytest.fixture(scope="module")
def scenario(running_copy):
    base_url, copy, env = running_copy
    played = subprocess.run(
        [sys.executable, "manage.py", "simulate_inbound", "--scenario", "--timeout", "120"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert played.returncode == 0, played.stdout + played.stderr
    return base_url, copy, _scenario_conversations(played.stdout), played.stdout


def test_every_scenario_message_arrives_and_the_distressed_one_escalates(scenario):
    base_url, _copy, conversations, stdout = scenario
    agent = _token(base_url, "agent.north")
    nurse = _token(base_url, "nurse.clinical")
    assert set(conversations) == {"1", "2", "3", "4"}, stdout

    reply_c = [m for m in _messages(base_url, conversations["1"], agent) if m["body"] == "C"]
    reminders = [
        m
        for m in _messages(base_url, conversations["1"], agent)
        if m["direction"] == "outbound" and m["author"] is None
    ]
    assert reply_c and reply_c[0]["direction"] == "inbound"
    assert reminders and reminders[-1]["delivery_status"] == "delivered"
    reminded = _get(base_url, f"/api/v1/conversations/{conversations['1']}/", agent)
    appointments = _get(base_url, f"/api/v1/patients/{reminded['patient']}/appointments/", agent)
    assert "confirmed" in {a["status"] for a in appointments["results"]}

    billing = _messages(base_url, conversations["2"], agent)
    assert [m["channel"] for m in billing] == ["email"]
    assert "insurance should cover it" in billing[0]["body"]

    distressed = _get(base_url, f"/api/v1/conversations/{conversations['3']}/", nurse)
    assert distressed["escalated"] is True
    assert distressed["priority"] == "urgent"
    open_escalations = _get(base_url, "/api/v1/escalations/", nurse)["results"]
    assert str(conversations["3"]) in {
        str(uuid.UUID(str(e["conversation"]))) for e in open_escalations
    }
    # Moved to the clinical team: the front desk no longer sees it.
    assert (
        requests.get(
            f"{base_url}/api/v1/conversations/{conversations['3']}/", headers=agent, timeout=10
        ).status_code
        == 404
    )

    unknown = _get(base_url, f"/api/v1/conversations/{conversations['4']}/", agent)
    assert unknown["patient"] is None and unknown["channel"] == "voice"
    [voicemail] = _messages(base_url, conversations["4"], agent)
    assert voicemail["kind"] == "voicemail" and "new patient" in voicemail["body"]


def test_a_reply_reaches_the_local_outbox_as_delivered(scenario):
    base_url, _copy, conversations, _stdout = scenario
    agent = _token(base_url, "agent.north")

    sent = requests.post(
        f"{base_url}/api/v1/conversations/{conversations['2']}/messages/",
        json={"body": "Hello James, your insurer paid; the bill is for the co-pay."},
        headers={**agent, "Idempotency-Key": uuid.uuid4().hex},
        timeout=10,
    )
    assert sent.status_code == 201, sent.text
    reply_id = uuid.UUID(sent.json()["id"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [reply] = [
            m
            for m in _messages(base_url, conversations["2"], agent)
            if uuid.UUID(m["id"]) == reply_id
        ]
        if reply["delivery_status"] == "delivered":
            break
        time.sleep(0.2)
    assert reply["delivery_status"] == "delivered", reply

    admin = requests.Session()
    login_page = admin.get(f"{base_url}/admin/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
    admin.post(
        f"{base_url}/admin/login/?next=/admin/",
        data={"username": "agent.north", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base_url}/admin/login/"},
        timeout=10,
    )
    outbox = admin.get(f"{base_url}/admin/channels_app/localoutboxmessage/", timeout=10)
    assert outbox.status_code == 200
    assert "j***@example.org" in outbox.text and "delivered" in outbox.text


def test_the_messages_show_in_the_staff_workspace(scenario):
    base_url, _copy, conversations, _stdout = scenario
    browser = requests.Session()
    signin = browser.get(f"{base_url}/signin/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', signin.text).group(1)

    browser.post(
        f"{base_url}/signin/",
        data={"username": "agent.north", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base_url}/signin/"},
        timeout=10,
    )
    inbox = browser.get(f"{base_url}/inbox/", timeout=10)

    assert inbox.status_code == 200
    shown = {
        uuid.UUID(found) for found in re.findall(r"/conversations/([0-9a-f-]{32,36})/", inbox.text)
    }
    assert {conversations["1"], conversations["2"], conversations["4"]} <= shown
    # Moved to the clinical team: not in the front desk's workspace.
    assert conversations["3"] not in shown


def test_the_worker_logs_no_error_while_the_scenario_runs(scenario):
    """SQLite under `make run` runs what PostgreSQL runs in the other tests: a
    statement only PostgreSQL understands fails here, and a failure that the code
    catches and logs (understanding's follow-up, a retried task) shows only in the
    log. The web server's 503s from /health/ready/ while it starts are not errors."""
    _base_url, copy, _conversations, _stdout = scenario
    errors = [
        line
        for line in (copy / "run.log").read_text().splitlines()
        if '"level": "error"' in line and "/health/ready/" not in line
    ]
    assert not errors, "\n".join(line[:600] for line in errors)
