"""What the chunks of a fanned-out scan share through the database, so it works on SQLite with no Redis.

- **The breaker, per scan.** A chunk whose breaker opens records the pause on the scan (`paused_since`, as the
  read pipeline always did). Every other chunk of the scan sees it after its next write and pauses too, sending
  only probes; the first probe of any chunk that succeeds clears it, and the others resume after their next write.
- **The ramp.** A write whose reads S3 throttled (SlowDown) halves the scan's `read_limit`, once a second at most
  however many chunks saw it; each write without one raises it by one, back up to SCAN_THREADS. S3 answers SlowDown
  while it repartitions a prefix, and a scan that came straight back at full speed would be throttled again.
- **One read cap across processes.** A running chunk holds a share of SCAN_MAX_INFLIGHT (`ScanChunk.reads`),
  renewed with its lease: what the other live chunks leave, at least an even share, at most the scan's read
  limit. A chunk whose lease ran out no longer counts. The shares are renewed twice a second, so a newcomer's
  share is taken from the others within that time. On SQLite each write holds the write lock, so the sum is
  exact; on PostgreSQL two chunks renewing at the same instant may overshoot until their next renewal.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, Sum

from imports.models import Scan, ScanChunk
from imports.scanning.pipeline import ReadPipeline, _backoff

RAMP_CUT_EVERY = timedelta(seconds=1)


def read_share(*, chunk_id: int, scan_id: int, throttled: int, now: datetime) -> int:
    """The reads this chunk may have in flight now (call inside the write's transaction)."""
    threads: int = settings.SCAN_THREADS
    row = Scan.objects.filter(pk=scan_id).values("read_limit", "read_limit_cut_at")
    current = row.first() or {"read_limit": 0, "read_limit_cut_at": None}
    limit = current["read_limit"] or threads
    cut_at = current["read_limit_cut_at"]
    if throttled and (cut_at is None or now - cut_at >= RAMP_CUT_EVERY):
        if Scan.objects.filter(
            pk=scan_id, read_limit=current["read_limit"], read_limit_cut_at=cut_at
        ).update(read_limit=max(1, limit // 2), read_limit_cut_at=now):
            limit = max(1, limit // 2)
    elif not throttled and limit < threads:
        Scan.objects.filter(pk=scan_id, read_limit=current["read_limit"]).update(
            read_limit=limit + 1
        )
        limit += 1
    others = (
        ScanChunk.objects.filter(
            state=ScanChunk.State.RUNNING, lease_expires_at__gt=now
        )
        .exclude(pk=chunk_id)
        .aggregate(reads=Sum("reads"), chunks=Count("pk"))
    )
    cap: int = settings.SCAN_MAX_INFLIGHT
    even = max(1, cap // ((others["chunks"] or 0) + 1))
    granted = max(1, min(limit, max(even, cap - (others["reads"] or 0))))
    ScanChunk.objects.filter(pk=chunk_id).update(reads=granted)
    return granted


def window_for(reads: int) -> int:
    """The pipeline's window for a share: the share itself, or the usual twice the threads when it holds them all."""
    threads: int = settings.SCAN_THREADS
    return 2 * threads if reads >= threads else max(1, reads)


def scan_state(scan_id: int) -> tuple[bool, bool]:
    """(whether the chunk should stop, whether the scan is paused), read in one query."""
    row = (
        Scan.objects.filter(pk=scan_id)
        .values("cancel_requested", "status", "paused_since")
        .first()
    )
    if row is None:
        return True, False
    stop = row["cancel_requested"] or row["status"] != Scan.Status.RUNNING
    return stop, row["paused_since"] is not None


def follow_pause(pipeline: ReadPipeline, *, paused: bool) -> None:
    """Open or close this chunk's breaker as the scan's pause says another chunk found S3."""
    breaker = pipeline.breaker
    if paused and not breaker.is_open:
        now = time.monotonic()
        breaker.open_since = now
        breaker.probes_failed = 0
        breaker.probe_due = now + _backoff(1)
        pipeline.paused = True  # recorded already, by the chunk that opened it
    elif not paused and breaker.is_open:
        breaker.open_since = None
        breaker.outcomes.clear()
        pipeline.paused = False


def live_reads(now: datetime) -> int:
    """The reads every live chunk may have in flight together (the tests and the benchmark read it)."""
    total = ScanChunk.objects.filter(
        Q(state=ScanChunk.State.RUNNING) & Q(lease_expires_at__gt=now)
    ).aggregate(reads=Sum("reads"))["reads"]
    return int(total or 0)
