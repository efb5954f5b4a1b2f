"""Real processes for failure tests: a private Redis that a test may stop and start
(the shared one is never touched), and Celery worker subprocesses that a test may
SIGKILL mid-task, as the kernel's OOM killer or a lost machine would.

The worker subprocesses run the production entry point (`celery -A config
worker`) against the test database, so they read what the test committed: tests
using these fixtures need `@pytest.mark.django_db(transaction=True)`. The test
process publishes to the private Redis too (`publishing_to`), so what the web tier
queues, a worker subprocess consumes.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connection
from kombu import pools
from kombu.utils.collections import eqhash

from config.celery import app as celery_app

BASE_DIR = Path(settings.BASE_DIR)
# The celery script of the environment running the tests (.venv/bin/celery).
CELERY = Path(sys.executable).with_name("celery")
QUEUES = "inbound,outbound,reminders,escalations,default"
# Short, so a task whose worker was killed is redelivered within a test; real
# deployments keep it above the longest task (see settings).
VISIBILITY_TIMEOUT_SECONDS = 3


def wait_for(predicate, *, timeout, interval=0.05, what="the condition"):
    """Poll until `predicate()` is truthy and return its value, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _reap(process, *, grace):
    """Stop `process` (SIGTERM, then SIGKILL after `grace` seconds) and wait for it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class PrivateRedis:
    """A redis-server of this test alone, on a free loopback port, without
    persistence, in its own directory. Stopping it is a real outage: connections
    are refused until `start()` runs again on the same port."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self):
        if self.process is not None and self.process.poll() is None:
            return self
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        wait_for(self._answers, timeout=10, what=f"redis-server on port {self.port}")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{log}")
        try:
            return self.client().ping()
        except redis.ConnectionError:
            return False

    def stop(self):
        if self.process is not None:
            _reap(self.process, grace=5)
            self.process = None

    def queued(self, queue):
        """Messages waiting in a Celery queue (kombu keys carry the test's prefix)."""
        return self.client().llen(settings.TEST_RUN_PREFIX + queue)

    def unacked(self):
        """Messages delivered to a worker and not yet acknowledged, with the time
        each was delivered (the clock the visibility timeout runs on)."""
        return self.client().zrange(
            settings.TEST_RUN_PREFIX + "unacked_index", 0, -1, withscores=True
        )

    def drained(self):
        """True when every published message was consumed and acknowledged."""
        return not self.unacked() and all(self.queued(q) == 0 for q in QUEUES.split(","))


def _forget_producer_pools(app, *, close):
    """Make the app's next publish build its connection and producer pools for the
    current broker_url. Pools live in kombu's global registry keyed by the broker
    address; the shared broker's are only dropped from the app (closing them would
    leave a closed pool in the registry that the rest of the suite gets back), the
    private broker's are closed and removed, as that Redis goes away."""
    if close:
        broker = app.connection_for_write()
        try:
            key = eqhash(broker)
            for group in (pools.producers, pools.connections):
                pool = dict.pop(group, key, None)
                if pool is not None:
                    pool.force_close_all()
        finally:
            broker.release()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@contextmanager
def publishing_to(broker_url, app=celery_app):
    """Point this process's task publishing (and remote control) at `broker_url`."""
    previous = app.conf.broker_url
    _forget_producer_pools(app, close=False)
    app.conf.broker_url = broker_url
    try:
        yield
    finally:
        _forget_producer_pools(app, close=True)
        app.conf.broker_url = previous


def current_database_url():
    """The URL of the database this test runs on (pytest-django's test_<name>)."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}@{host}{port}/{quote(db['NAME'], safe='')}"


class WorkerProcess:
    """One `celery worker -P solo` subprocess; solo runs tasks in the worker's own
    process, so a SIGKILL ends the task where it stands, like a lost machine."""

    def __init__(self, *, name, env, log_path):
        self.name = name
        self.hostname = f"{name}@reliability"
        self.log_path = log_path
        self.env = env
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(CELERY),
                    "-A",
                    "config",
                    "worker",
                    "-P",
                    "solo",
                    "-Q",
                    QUEUES,
                    "-n",
                    self.hostname,
                    "--without-heartbeat",
                    "--without-mingle",
                    "--without-gossip",
                ],
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout=20):
        """Wait until the worker consumes: it answers a broadcast ping, which it
        only reads from the broker once its consumer runs."""

        def answered():
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
            return celery_app.control.ping(destination=[self.hostname], timeout=0.3)

        wait_for(answered, timeout=timeout, interval=0, what=f"worker {self.name} to start")
        return self

    def tasks_run(self):
        """Tasks this worker has run (or is running), by name, from its stats."""
        # A broadcast reply can miss its one-second window (a worker busy with its
        # first task, a broker that just came back): ask again until it answers.
        deadline = time.monotonic() + 15
        while True:
            replies = celery_app.control.inspect([self.hostname], timeout=1.0).stats() or {}
            if self.hostname in replies or time.monotonic() >= deadline:
                return replies.get(self.hostname, {}).get("total", {})

    def kill(self):
        """SIGKILL: no shutdown, no acknowledgement, no cleanup."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)


def worker_environment(*, broker_url, twilio_stub=None, **extra):
    """The environment of a worker subprocess: the test database, the private
    broker and cache, this test run's key prefix, and the test's provider stubs."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": current_database_url(),
        "REDIS_URL": broker_url,
        "CELERY_BROKER_URL": broker_url,
        "CC_TEST_PREFIX": settings.TEST_RUN_PREFIX,
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_SECONDS),
        "FIELD_ENCRYPTION_KEYS": settings.FIELD_ENCRYPTION_KEYS,
        "BLIND_INDEX_KEY": settings.BLIND_INDEX_KEY,
        "PUBLIC_BASE_URL": settings.PUBLIC_BASE_URL,
        # No persistent connections: a worker holds no session open between tasks.
        "DATABASE_CONN_MAX_AGE": "0",
    }
    if twilio_stub is not None:
        env.update(
            TWILIO_API_BASE_URL=twilio_stub.base_url,
            TWILIO_ACCOUNT_SID=twilio_stub.account_sid,
            TWILIO_AUTH_TOKEN=twilio_stub.auth_token,
        )
    env.update({key: str(value) for key, value in extra.items()})
    return env


@pytest.fixture
def private_redis(tmp_path):
    """A running private Redis, stopped and reaped after the test."""
    server = PrivateRedis(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def private_broker(private_redis):
    """The private Redis, with this process publishing its tasks there."""
    with publishing_to(private_redis.url):
        yield private_redis


@pytest.fixture
def start_worker(transactional_db, private_broker, twilio_stub_settings, tmp_path):
    """Start Celery worker subprocesses on the private broker:
    `start_worker(name, ready=True, **env)`. Every one is killed and reaped after
    the test, before the test database is emptied."""
    workers = []

    def start(name="worker", *, ready=True, **extra_env):
        worker = WorkerProcess(
            name=f"{name}-{len(workers)}",
            env=worker_environment(
                broker_url=private_broker.url, twilio_stub=twilio_stub_settings, **extra_env
            ),
            log_path=tmp_path / f"{name}-{len(workers)}.log",
        )
        workers.append(worker)
        worker.start()
        return worker.wait_ready() if ready else worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()
