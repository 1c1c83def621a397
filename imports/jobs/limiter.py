"""A rate limiter shared by every worker process: at most one call per interval for a name.

StartDICOMImportJob is throttled per account, whatever the number of workers, so Celery's per-worker
`rate_limit` cannot enforce it. Each datastore has its own slot and its own rate (`start_jobs_per_second`, default
1: AWS's older throttling page lists 1 call per second, burst 2; a newer one 40, burst 80). With a Redis broker the
slot is a Redis key set with NX and an expiry of one interval; on the embedded default (no Redis) it is a database
row moved forward by a conditional UPDATE. Either way, taking a slot is one atomic operation, so two workers racing
for the same slot cannot both win it.
"""

from __future__ import annotations

import contextlib
import functools
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone
from prometheus_client import Histogram

from imports.models import Datastore, RateLimit

START_IMPORT_JOB = "healthimaging.StartDICOMImportJob"

# How long `acquire` waited: "acquired", or "timed_out" after JOBS_LIMITER_WAIT_S (the job is retried later).
WAIT_SECONDS = Histogram(
    "imports_limiter_wait_seconds",
    "Time a worker waited for a rate-limiter slot (StartDICOMImportJob), by outcome.",
    ["outcome"],
    buckets=(0.005, 0.05, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


def start_import_slot(datastore: Datastore) -> tuple[str, float]:
    """The slot name and the interval in seconds between StartDICOMImportJob calls into this datastore."""
    return f"{START_IMPORT_JOB}.{datastore.pk}", 1 / datastore.start_jobs_per_second


@functools.cache
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _redis_url() -> str | None:
    url = str(settings.JOBS_LIMITER_URL)
    return url if url.startswith(("redis://", "rediss://")) else None


def try_acquire(name: str, interval_s: float, *, now: datetime | None = None) -> float:
    """Take the slot of `name` if it is free. Returns 0 when taken, else the seconds until it frees.

    `now` stands in for the clock of the database slot (tests); Redis keeps its own clock."""
    url = _redis_url()
    if url is not None:
        client = _redis(url)
        key = f"imports:ratelimit:{name}"
        if client.set(key, "1", nx=True, px=max(1, int(interval_s * 1000))):
            return 0.0
        remaining_ms = int(client.pttl(key))
        # -1/-2: no expiry or already gone; try again almost at once.
        return max(remaining_ms, 10) / 1000
    now = now or timezone.now()
    # A concurrent caller may create the row first; either way it exists afterwards.
    with contextlib.suppress(IntegrityError):
        RateLimit.objects.get_or_create(
            name=name, defaults={"next_at": now - timedelta(seconds=1)}
        )
    taken = RateLimit.objects.filter(name=name, next_at__lte=now).update(
        next_at=now + timedelta(seconds=interval_s)
    )
    if taken:
        return 0.0
    next_at = RateLimit.objects.values_list("next_at", flat=True).get(name=name)
    return max((next_at - now).total_seconds(), 0.01)


def acquire(name: str, interval_s: float, timeout_s: float) -> bool:
    """Wait for the slot of `name` for at most `timeout_s`; False if it never came."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        wait = try_acquire(name, interval_s)
        if wait == 0:
            WAIT_SECONDS.labels(outcome="acquired").observe(time.monotonic() - started)
            return True
        if time.monotonic() + wait > deadline:
            WAIT_SECONDS.labels(outcome="timed_out").observe(time.monotonic() - started)
            return False
        time.sleep(wait)
