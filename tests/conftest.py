"""A small fixed world: alice the operator, bob the viewer, carol the administrator.

Services: the tests use whatever DATABASE_URL and CELERY_BROKER_URL say (PostgreSQL and Redis in
CI, SQLite and the file-system broker on a bare machine). With CI=true, a test whose service or tool
is missing fails instead of skipping, so CI cannot pass by testing less.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from config.celery import app as celery_app
from imports.aws import client as aws
from imports.models import Datastore
from imports.models.datastores import MAX_START_JOBS_PER_SECOND
from imports.roles import ADMINISTRATOR, OPERATOR, VIEWER, sync_role_groups
from localaws.server import LocalAWS

pytest_plugins = ["localaws.testing"]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


def pytest_sessionstart(session: pytest.Session) -> None:
    """A killed run's SQLite write-ahead log goes before the test database is made again.

    Django replaces the database file but not its `-wal` and `-shm` neighbours, and SQLite would
    replay a stale log into the new file.
    """
    database = django_settings.DATABASES["default"]
    name = database.get("TEST", {}).get("NAME")
    if database["ENGINE"] == "django.db.backends.sqlite3" and name:
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)


def missing_service(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs this, but it is missing: {reason}")
    pytest.skip(reason)


def _user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username, f"{username}@example.org", PASSWORD)
    if role:
        if not Group.objects.filter(name=role).exists():
            # A transactional test's flush erased what the data migration created.
            sync_role_groups(django_apps)
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def alice(db: None) -> User:
    return _user("alice", OPERATOR)


@pytest.fixture
def bob(db: None) -> User:
    return _user("bob", VIEWER)


@pytest.fixture
def carol(db: None) -> User:
    return _user("carol", ADMINISTRATOR)


@pytest.fixture
def nobody(db: None) -> User:
    """Signed in, but in no role."""
    return _user("nobody", None)


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client_alice(alice: User) -> Client:
    return _client_for(alice)


@pytest.fixture
def client_bob(bob: User) -> Client:
    return _client_for(bob)


@pytest.fixture
def client_carol(carol: User) -> Client:
    return _client_for(carol)


@pytest.fixture
def datastore(db: None) -> Datastore:
    return Datastore.objects.create(
        name="Radiology",
        region="us-east-1",
        datastore_id="0123456789abcdef0123456789abcdef",
        role_arn="arn:aws:iam::123456789012:role/HealthImagingImportRole",
        input_s3_uri="s3://dicom-input/incoming/",
        output_s3_uri="s3://dicom-output/results/",
        # The fastest rate a datastore may have, so that tests of other rules wait 25 ms for a submission slot.
        start_jobs_per_second=MAX_START_JOBS_PER_SECOND,
    )


@pytest.fixture(autouse=True)
def _fresh_aws_clients() -> Iterator[None]:
    """Each test builds its clients from its own environment (endpoint, credentials)."""
    aws.reset_clients()
    yield
    aws.reset_clients()


# --- A real Celery worker -------------------------------------------------------------------


def _database_url_for_worker() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    if connection.vendor == "postgresql":
        user = settings.get("USER") or "postgres"
        password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
        host = settings.get("HOST") or "127.0.0.1"
        port = settings.get("PORT") or 5432
        return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"
    raise RuntimeError(f"No worker database URL for {connection.vendor}")


def _localaws_environment() -> dict[str, str]:
    # Imported here: the module is a pytest plugin, registered (and assert-rewritten) by pytest_plugins.
    from localaws.testing import ENVIRONMENT

    return dict(ENVIRONMENT)


class WorkerProcess:
    def __init__(self, process: subprocess.Popen[bytes], queue: str, log: Path) -> None:
        self.process = process
        self.queue = queue
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_celery_worker(
    django_db_blocker: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    localaws_server: LocalAWS,
    *,
    pool: tuple[str, ...] = ("-P", "solo"),
    environment: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start a `celery worker` in its own process, on the configured broker, the test database and localaws;
    returns once it is ready. `pool` and `environment` (settings read from the environment) change it."""
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        database_url = _database_url_for_worker()
    queue = f"tests-{uuid.uuid4().hex[:8]}"
    # The app's four queues (config/settings.py CELERY_TASK_QUEUES), and the round-trip test's own.
    queues = [queue, *(q.name for q in django_settings.CELERY_TASK_QUEUES)]
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
        "AWS_ENDPOINT_URL": localaws_server.endpoint_url,
        **_localaws_environment(),
        **(environment or {}),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", *pool, "-Q", ",".join(queues),
        "-I", "tests.worker_tasks", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-l", "INFO", "-n", f"{queue}@%h",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    worker = WorkerProcess(process, queue, log)
    deadline = time.monotonic() + 60
    while "ready." not in worker.output():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            missing_service(
                f"the Celery worker did not start:\n{worker.output()[-3000:]}"
            )
        time.sleep(0.2)
    return worker


def stop_celery_worker(worker: WorkerProcess) -> None:
    worker.process.terminate()
    try:
        worker.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.process.kill()


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None,
    django_db_blocker: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    localaws_server: LocalAWS,
) -> Iterator[WorkerProcess]:
    """A `celery worker -P solo` in its own process, on the configured broker, the test database and localaws.

    It consumes the app's queues, where its tasks go, and a queue of its own for the
    round-trip test. Tests have a broker folder of their own (tests/settings.py), so a demo running
    on the same machine never takes their messages.
    """
    worker = start_celery_worker(django_db_blocker, tmp_path_factory, localaws_server)
    _SESSION_WORKER.append(
        (worker, (django_db_blocker, tmp_path_factory, localaws_server))
    )
    yield worker
    _SESSION_WORKER.clear()
    stop_celery_worker(worker)


# The session's worker and what started it, while it runs (celery_worker_process).
_SESSION_WORKER: list[tuple[WorkerProcess, tuple[Any, Any, LocalAWS]]] = []


@contextlib.contextmanager
def session_worker_paused() -> Iterator[None]:
    """Stop the session's worker (if an earlier test started it) while a test runs workers of its own.

    Every worker consumes the app's queues, so a test that needs its tasks on a worker with other settings (a
    prefork pool, small chunks) would otherwise share them with the session's worker, and what it asserts
    would depend on which worker took a message. The session's worker comes back afterwards, in the same
    WorkerProcess object, so the tests that hold it go on using it.
    """
    if not _SESSION_WORKER:
        yield
        return
    worker, started_with = _SESSION_WORKER[0]
    stop_celery_worker(worker)
    try:
        yield
    finally:
        again = start_celery_worker(*started_with)
        worker.process, worker.queue, worker.log = again.process, again.queue, again.log


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """What imports.enqueue hands the broker, as (task name, row id), instead of sending it."""
    sent: list[tuple[str, int]] = []

    def record(name: str, args: tuple[int]) -> None:
        sent.append((name, *args))

    monkeypatch.setattr(celery_app, "send_task", record)
    return sent


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message sent fails as kombu fails when Redis refuses the connection."""
    from kombu.exceptions import OperationalError

    def refuse(name: str, args: tuple[int]) -> None:
        raise OperationalError(
            "Error 111 connecting to 127.0.0.1:6379. Connection refused."
        )

    monkeypatch.setattr(celery_app, "send_task", refuse)


def wait_for(
    predicate: object,
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll `predicate()` until it is truthy; fail with `what` after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
