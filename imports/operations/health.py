"""The probes behind /healthz and /readyz: cheap, bounded by a timeout each, never calling AWS.

Each probe answers "ok" or a short reason with no patient data and no secret (no URL, no host name
with credentials): the answer is public, for the load balancer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ProbeTimeout
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from imports.models import Heartbeat, ImportJob, Scan

logger = logging.getLogger(__name__)

OK = "ok"
BEAT = "beat"


@dataclass(frozen=True)
class Health:
    checks: dict[str, str]
    # The checks whose failure makes the answer 503; the others are reported but do not fail it.
    required: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return all(self.checks[name] == OK for name in self.required)


def beat_heartbeat() -> None:
    """Record that beat's schedule reached a worker (the task beat sends every HEALTH_BEAT_EVERY_S)."""
    Heartbeat.objects.update_or_create(name=BEAT, defaults={"at": timezone.now()})


@dataclass(frozen=True)
class WorkerSilence:
    """Work waits in the queue and no worker has answered beat's heartbeat for `seconds`."""

    seconds: int
    scans: int
    jobs: int


def worker_silence() -> WorkerSilence | None:
    """Queued work that nothing consumes: a heartbeat older than HEALTH_BEAT_MAX_AGE_S, and work waiting longer.

    Both must hold. A stale heartbeat with nothing queued troubles no one on the dashboard (/healthz reports it),
    and queued work with a fresh heartbeat is only waiting its turn. With no heartbeat ever recorded, the silence
    counts from the oldest waiting item. Three cheap queries; no broker call, so a page never waits for it.
    """
    max_age = timedelta(seconds=settings.HEALTH_BEAT_MAX_AGE_S)
    now = timezone.now()
    beat = Heartbeat.objects.filter(name=BEAT).values_list("at", flat=True).first()
    if beat is not None and now - beat <= max_age:
        return None
    waiting_scans = Scan.objects.filter(
        status=Scan.Status.QUEUED, created_at__lt=now - max_age
    )
    waiting_jobs = ImportJob.objects.filter(
        status=ImportJob.Status.PENDING, created_at__lt=now - max_age
    )
    scans, jobs = waiting_scans.count(), waiting_jobs.count()
    if not scans and not jobs:
        return None
    if beat is None:
        oldest = [
            waiting.order_by("created_at").values_list("created_at", flat=True).first()
            for waiting in (waiting_scans, waiting_jobs)
        ]
        since = min(at for at in oldest if at is not None)
    else:
        since = beat
    return WorkerSilence(int((now - since).total_seconds()), scans, jobs)


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:  # any driver's error: the answer is a reason, not a 500
        return f"unreachable ({type(error).__name__})"
    finally:
        connections.close_all()  # the probe ran in its own thread, with its own connection
    return OK


def _broker() -> str:
    try:
        with current_app.connection_for_write() as conn:
            # One quick retry: kombu's default waits 2 s first, as long as the whole probe may take,
            # and a refused connection then read "no answer" instead of "unreachable".
            conn.ensure_connection(
                max_retries=1,
                interval_start=0,
                interval_step=1,
                interval_max=1,
                timeout=settings.HEALTH_PROBE_TIMEOUT_S,
            )
            # A connection object can exist without a server behind it: open a channel too.
            conn.default_channel  # noqa: B018
    except Exception as error:  # kombu, redis and OS errors alike
        return f"unreachable ({type(error).__name__})"
    return OK


def _beat() -> str:
    try:
        beat = Heartbeat.objects.filter(name=BEAT).values_list("at", flat=True).first()
    except Exception as error:
        return f"unknown ({type(error).__name__})"
    finally:
        connections.close_all()
    if beat is None:
        return "no heartbeat yet"
    age = timezone.now() - beat
    if age > timedelta(seconds=settings.HEALTH_BEAT_MAX_AGE_S):
        return f"last heartbeat {age.total_seconds():.0f} s ago"
    return OK


def _migrations() -> str:
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as error:
        return f"unknown ({type(error).__name__})"
    finally:
        connections.close_all()
    if pending:
        return f"{len(pending)} migration{'s' if len(pending) != 1 else ''} not applied"
    return OK


def _run(probes: dict[str, Callable[[], str]]) -> dict[str, str]:
    """Every probe at once, each in its own thread, each given HEALTH_PROBE_TIMEOUT_S."""
    timeout = settings.HEALTH_PROBE_TIMEOUT_S
    pool = ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="health")
    futures = {name: pool.submit(probe) for name, probe in probes.items()}
    answers = {}
    for name, future in futures.items():
        try:
            answers[name] = future.result(timeout=timeout)
        except ProbeTimeout:
            answers[name] = f"no answer within {timeout:g} s"
    # A probe stuck past its timeout is left to finish in its thread; the answer does not wait for it.
    pool.shutdown(wait=False, cancel_futures=True)
    return answers


def health() -> Health:
    """/healthz: the database and the broker must answer; beat is reported."""
    return Health(
        _run({"database": _database, "broker": _broker, "beat": _beat}),
        required=("database", "broker"),
    )


def readiness() -> Health:
    """/readyz: health, and every migration applied."""
    return Health(
        _run(
            {
                "database": _database,
                "broker": _broker,
                "beat": _beat,
                "migrations": _migrations,
            }
        ),
        required=("database", "broker", "migrations"),
    )
