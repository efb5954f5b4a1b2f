"""The staff workspace's pages against the same data through the API, and the time
from a webhook's answer to the message on an open page.

Part 1, server-side time in one process through Django's test Client (middleware,
session, queries, decryption, audit rows, template rendering), interleaved in a
fresh random order every round, for an agent of the team with the most open
conversations (`seed_synthetic`'s big team):

  inbox        GET /inbox/ (tabs, counts, 50 rows)   vs  GET /api/v1/conversations/
                                                          + GET /api/v1/inbox/counts/
  conversation GET /conversations/{id}/ of the conversation with the most messages
               (its thread, up to 50: the seed's longest has about 20; patient
               panel; 50 inbox rows beside it)
                                                      vs  GET /api/v1/conversations/{id}/
                                                          + .../messages/ + GET /api/v1/
                                                          patients/{id}/ + /api/v1/conversations/
  thread       GET /conversations/{id}/thread/ (the whole thread again)
                                                      vs  GET .../messages/
  thread refresh  GET /conversations/{id}/thread/?after=<cursor> (the live refresh:
               the one message after the newest but one)  vs  GET .../messages/?cursor=<same>

The staff token's rate limit is counted per second here (THROTTLE_STAFF_TOKEN_RATE,
see the setting below): a quiet machine passes 600 API requests a minute.

Part 2, live latency with the real pieces: the project served by `manage.py
runserver` (threaded, as the test server), a real Celery worker on Redis, and
Debian's headless Chromium with the conversation open. Each round posts a signed
Twilio SMS to the webhook; the time runs from the webhook's answer to the moment a
MutationObserver in the page sees the message in the thread (the browser's clock
and ours are the same machine's).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_workspace \\
    REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/workspace.py [--patients 100000] [--interactions 1000000] \\
        [--rounds 200] [--live-rounds 100]

`--live-rounds 0` runs part 1 only. The 100k set (a team with 2,200 open):
`--patients 10000 --interactions 100000 --big-team-open 2200`, on a database of its
own (the seed is kept and reused by the next run on the same DATABASE_URL).
"""

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cc_bench_workspace")
# Eight API requests a round pass the staff token's 600/minute on a quiet machine
# (a 429 ends the run). Per second, the throttle still reads and writes its history
# in the cache on every request, and that history stays as short as one agent's.
os.environ.setdefault("THROTTLE_STAFF_TOKEN_RATE", "100000/second")

from bench.inbox_timeline import (  # noqa: E402
    percentile,
    seed_or_reuse,
    setup_django,
    subjects,
    vacuum_analyze,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=8)
    parser.add_argument("--big-team-open", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--live-rounds", type=int, default=100)
    return parser.parse_args()


def busiest_conversation(team):
    """The big team's open SMS conversation with the most messages (with a patient
    and a practice number, so a webhook can add to it)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.id FROM channels_app_conversation c "
            "JOIN channels_app_interaction i ON i.conversation_id = c.id "
            "WHERE c.team_id = %s AND c.status IN ('open', 'pending') "
            "AND c.patient_id IS NOT NULL AND c.channel = 'sms' AND c.account_id IS NOT NULL "
            "GROUP BY c.id ORDER BY count(*) DESC LIMIT 1",
            [team.pk],
        )
        (conversation_id,) = cursor.fetchone()
    from channels_app.models import Conversation

    return Conversation.objects.select_related("patient").get(pk=conversation_id)


def clients(agent):
    from django.test import Client

    from contactcenter.services import token_issue

    page = Client()
    page.force_login(agent)
    api = Client(headers={"Authorization": f"Bearer {token_issue(user=agent).token}"})
    return page, api


def cases_for(agent, conversation):
    page, api = clients(agent)
    c, p = conversation.pk, conversation.patient_id
    after = newest_but_one_cursor(conversation)
    return [
        ("inbox", (page, ["/inbox/"]), (api, ["/api/v1/conversations/", "/api/v1/inbox/counts/"])),
        (
            "conversation",
            (page, [f"/conversations/{c}/"]),
            (
                api,
                [
                    f"/api/v1/conversations/{c}/",
                    f"/api/v1/conversations/{c}/messages/",
                    f"/api/v1/patients/{p}/",
                    "/api/v1/conversations/",
                ],
            ),
        ),
        (
            "thread",
            (page, [f"/conversations/{c}/thread/"]),
            (api, [f"/api/v1/conversations/{c}/messages/"]),
        ),
        (
            "thread refresh",
            (page, [f"/conversations/{c}/thread/?after={after}"]),
            (api, [f"/api/v1/conversations/{c}/messages/?cursor={after}"]),
        ),
    ]


def newest_but_one_cursor(conversation):
    """The keyset cursor of the messages after the conversation's newest but one:
    what an open page asks for when one new message arrived (the live refresh),
    and the same cursor on the API's messages list."""
    from channels_app.models import Interaction
    from contactcenter.keyset import Cursor

    rows = list(
        Interaction.objects.filter(conversation=conversation)
        .order_by("-occurred_at", "-id")
        .values_list("occurred_at", "id")[:2]
    )
    return Cursor(key=rows[-1], backwards=True).encode()


def timed(client, urls):
    started = time.perf_counter_ns()
    for url in urls:
        response = client.get(url)
        if response.status_code != 200:
            sys.exit(f"{url} answered {response.status_code}")
    return (time.perf_counter_ns() - started) / 1e6


def queries(client, urls):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        for url in urls:
            client.get(url)
    return len(captured)


def run_pages(cases, rounds, rng):
    tasks = [(key, side) for key, *_ in cases for side in ("page", "api")]
    by_key = {key: (page, api) for key, page, api in cases}
    samples = {task: [] for task in tasks}
    for _ in range(rounds):
        rng.shuffle(tasks)
        for key, side in tasks:
            client, urls = by_key[key][0 if side == "page" else 1]
            samples[(key, side)].append(timed(client, urls))
    return samples


# --- Part 2: webhook answer to message on the open page --------------------------------


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_processes(port):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "CC_TEST_PREFIX": os.environ["CC_TEST_PREFIX"],
    }
    python = sys.executable
    web = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
        [
            python,
            "manage.py",
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
            "--skip-checks",
            # DEBUG is off in these settings; --insecure serves htmx and the page's script.
            "--insecure",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and celery
        [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "-Q",
            "inbound,outbound,reminders,escalations,default",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health/", timeout=2).status_code == 200:
                return web, worker
        except requests.RequestException:
            time.sleep(0.5)
    sys.exit("runserver did not answer within two minutes")


def sign_in_browser(browser, base, agent):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{base}/signin/")
    browser.find_element(By.ID, "id_username").send_keys(agent.get_username())
    browser.find_element(By.ID, "id_password").send_keys("bench-password-123456")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60).until(lambda d: "/signin/" not in d.current_url)


OBSERVER = """
window.__seen = {};
new MutationObserver(function () {
  var text = document.getElementById('thread') ? document.getElementById('thread').textContent : '';
  (window.__wanted || []).forEach(function (w) {
    if (!window.__seen[w] && text.indexOf(w) >= 0) window.__seen[w] = Date.now();
  });
}).observe(document.body, {childList: true, subtree: true, characterData: true});
"""


def live_latency(args, agent, conversation):
    import requests
    from django.conf import settings
    from selenium.webdriver.support.ui import WebDriverWait
    from twilio.request_validator import RequestValidator

    from tests.chromium import chromium_driver

    agent.set_password("bench-password-123456")
    agent.save(update_fields=["password"])
    from channels_app.models import Interaction

    account = conversation.account
    # A number of its own, so every message joins the one conversation on the page
    # (808 is an area code seed_synthetic never uses).
    sender = f"+1808{random.randrange(200, 999)}{random.randrange(10_000):04d}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/webhooks/twilio/sms/"
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)

    def post_sms(body):
        params = {
            "MessageSid": "SM" + os.urandom(16).hex(),
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "From": sender,
            "To": account.address,
            "Body": body,
            "NumMedia": "0",
        }
        # The server checks the signature against its PUBLIC_BASE_URL, which is `base`.
        signature = validator.compute_signature(url, params)
        response = requests.post(
            url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30
        )
        if response.status_code != 200:
            sys.exit(f"webhook answered {response.status_code}")
        return params["MessageSid"]

    web, worker = start_processes(port)
    browser = chromium_driver((1280, 900))
    latencies = []
    try:
        first = post_sms("bench live: first message")
        conversation_id = Interaction.objects.get(provider_id=first).conversation_id
        sign_in_browser(browser, base, agent)
        browser.get(f"{base}/conversations/{conversation_id}/")
        WebDriverWait(browser, 60).until(
            lambda d: d.find_element("tag name", "body").get_attribute("data-live") == "open"
        )
        browser.execute_script(OBSERVER)
        for n in range(args.live_rounds):
            marker = f"bench live {n} {time.time_ns()}"
            browser.execute_script(
                "window.__wanted = (window.__wanted || []).concat([arguments[0]]);", marker
            )
            post_sms(marker)
            answered = time.time() * 1000
            seen = WebDriverWait(browser, 30, poll_frequency=0.05).until(
                lambda d, m=marker: d.execute_script("return window.__seen[arguments[0]]", m)
            )
            latencies.append(seen - answered)
    finally:
        browser.quit()
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            process.wait(timeout=30)
    return latencies


def main():
    args = parse_args()
    os.environ.setdefault("CC_TEST_PREFIX", f"ccbench-{os.getpid()}-")
    setup_django(os.environ["DATABASE_URL"])
    from django.conf import settings

    from bench.common import prepare_database

    prepare_database()
    how, seed_seconds = seed_or_reuse(args)
    vacuum_analyze()
    who = subjects()
    agent = who["inbox_agent"]
    conversation = busiest_conversation(who["big_team"])
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_app_interaction")
        (n_interactions,) = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM channels_app_conversation WHERE team_id = %s "
            "AND status IN ('open', 'pending')",
            [who["big_team"].pk],
        )
        (n_open,) = cursor.fetchone()
    cases = cases_for(agent, conversation)
    rng = random.Random(args.seed)
    run_pages(cases, args.warmup, rng)
    counts = {key: (queries(*page), queries(*api)) for key, page, api in cases}
    samples = run_pages(cases, args.rounds, rng) if args.rounds else None
    print(
        f"database {settings.DATABASES['default']['NAME']} ({how}"
        f"{f', {seed_seconds:.0f} s' if seed_seconds else ''}): "
        f"{n_interactions:,} interactions; agent {agent.get_username()} of a team with "
        f"{n_open:,} open conversations; conversation {conversation.pk}"
    )
    print(
        f"load average {os.getloadavg()[0]:.2f}; {args.rounds} interleaved rounds; "
        "server-side ms (median, p95); queries per request\n"
    )
    print(f"{'':14}{'page':>16}{'API':>16}{'page/API':>10}{'queries':>12}")
    for key, *_ in cases if samples else ():
        page, api = samples[(key, "page")], samples[(key, "api")]
        ratio = statistics.median(page) / statistics.median(api)
        print(
            f"{key:14}{statistics.median(page):8.1f} {percentile(page, 95):6.1f} "
            f"{statistics.median(api):8.1f} {percentile(api, 95):6.1f} {ratio:9.2f}"
            f"{counts[key][0]:>6} /{counts[key][1]:>3}"
        )
    if args.live_rounds:
        latencies = live_latency(args, agent, conversation)
        print(
            f"\nwebhook answer -> message on the open conversation page ({len(latencies)} "
            f"messages, runserver + Celery worker on Redis + Chromium): "
            f"median {statistics.median(latencies):.0f} ms, "
            f"p99 {percentile(latencies, 99):.0f} ms, max {max(latencies):.0f} ms"
        )


if __name__ == "__main__":
    main()
