"""Starting, cancelling and recovering scans. The work itself is imports.scanning.run, in a Celery task."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from imports.audit.records import Actor, audit_record
from imports.enqueue import SCAN_CHUNK, SCAN_PREFIX, enqueue_task
from imports.models import (
    DEFAULT_FILES_PER_JOB,
    MAX_BYTES_PER_JOB,
    AuditEvent,
    Datastore,
    Scan,
    ScanChunk,
)

logger = logging.getLogger(__name__)


def scan_start(
    *,
    actor: Actor,
    bucket: str,
    prefix: str,
    region: str,
    datastore: Datastore | None = None,
    enqueue: bool = True,
    origin: Scan.Origin = Scan.Origin.DASHBOARD,
    inventory_uri: str = "",
) -> tuple[Scan, bool]:
    """Create a scan of s3://bucket/prefix and enqueue it; or join the one already running there.

    Returns (scan, created). A partial unique constraint allows one active scan per prefix, so two
    people pressing "Scan" at once share one run even when their requests race.
    """
    existing = Scan.objects.filter(
        bucket=bucket, prefix=prefix, status__in=Scan.ACTIVE
    ).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            scan = Scan.objects.create(
                bucket=bucket,
                prefix=prefix,
                region=region,
                datastore=datastore,
                max_files=datastore.max_files_per_job
                if datastore
                else DEFAULT_FILES_PER_JOB,
                max_bytes=datastore.max_bytes_per_job
                if datastore
                else MAX_BYTES_PER_JOB,
                started_by=actor if isinstance(actor, User) else None,
                origin=origin,
                inventory_uri=inventory_uri,
            )
            audit_record(
                actor=actor,
                action=AuditEvent.Action.SCAN_STARTED,
                target=scan,
                summary=f"Started a scan of {scan.uri}"
                + (" from the command line" if origin == Scan.Origin.CLI else ""),
            )
            if enqueue:
                # With the broker down the scan stays QUEUED ("waiting for a worker") and beat sends
                # it again (scans_recover_stalled).
                enqueue_task(SCAN_PREFIX, scan.pk)
    except IntegrityError:
        return Scan.objects.get(
            bucket=bucket, prefix=prefix, status__in=Scan.ACTIVE
        ), False
    return scan, True


def scan_cancel(*, scan: Scan, actor: Actor) -> bool:
    """Ask a running scan to stop; it stops between reads. Returns False if it had already ended."""
    updated = Scan.objects.filter(pk=scan.pk, status__in=Scan.ACTIVE).update(
        cancel_requested=True
    )
    # A queued scan that no worker picked up yet is cancelled on the spot.
    Scan.objects.filter(pk=scan.pk, status=Scan.Status.QUEUED).update(
        status=Scan.Status.CANCELLED, finished_at=timezone.now()
    )
    if updated:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.SCAN_CANCELLED,
            target=scan,
            summary=f"Cancelled the scan of {scan.uri}",
        )
    return bool(updated)


def scan_read_rest(*, scan: Scan, actor: Actor, enqueue: bool = True) -> bool:
    """Send an Incomplete scan back to read only what S3 did not answer for (its ScanUnread rows).

    Returns False when the scan is not Incomplete (a second press, or it ended otherwise) or when
    another scan of its prefix is running: one active scan per prefix still holds.
    """
    try:
        with transaction.atomic():
            updated = Scan.objects.filter(
                pk=scan.pk, status=Scan.Status.INCOMPLETE
            ).update(
                status=Scan.Status.QUEUED,
                error="",
                finished_at=None,
                cancel_requested=False,
                # A fresh budget for the stalled-scan recovery: this is a new run of the scan.
                attempts=0,
                # The last run's chunks are done with: the rest is chunked anew from its unread rows.
                chunks_total=0,
                chunks_ended=0,
                chunks_sealed=False,
                fanned_in=False,
            )
            if not updated:
                return False
            ScanChunk.objects.filter(scan=scan).delete()
            audit_record(
                actor=actor,
                action=AuditEvent.Action.SCAN_STARTED,
                target=scan,
                summary=f"Started reading the rest of the scan of {scan.uri}",
            )
            if enqueue:
                enqueue_task(SCAN_PREFIX, scan.pk)
    except IntegrityError:
        return False
    return True


def scans_recover_stalled() -> list[int]:
    """Requeue running scans whose worker died (no heartbeat for SCAN_STALL_TIMEOUT_S), and queued
    scans whose message was never delivered (older than SCAN_QUEUED_REQUEUE_S); run by beat.

    A worker killed mid-scan leaves its scan RUNNING, and the redelivered message cannot claim it
    again; without this the prefix could never be scanned again. Objects already read are in the
    cache, so the second attempt only reads the rest. After SCAN_MAX_ATTEMPTS the scan fails instead.
    """
    chunks_recover_stalled()
    requeued: list[int] = []
    cutoff = timezone.now() - timedelta(seconds=settings.SCAN_STALL_TIMEOUT_S)
    # A fanned-out scan waiting for its chunks (queued behind other work, or requeued above) is not
    # stalled: only a scan with no live chunk lost its coordinator or the process that was ending it.
    live = ScanChunk.objects.filter(
        state__in=[ScanChunk.State.QUEUED, ScanChunk.State.RUNNING]
    ).values("scan_id")
    stalled = Scan.objects.filter(
        status=Scan.Status.RUNNING, heartbeat_at__lt=cutoff
    ).exclude(pk__in=live)
    for scan in stalled:
        if scan.attempts >= settings.SCAN_MAX_ATTEMPTS:
            if Scan.objects.filter(
                pk=scan.pk, status=Scan.Status.RUNNING, heartbeat_at__lt=cutoff
            ).update(
                status=Scan.Status.FAILED,
                error=f"The scan stopped {scan.attempts} times without finishing (its worker was lost); start it again.",
                finished_at=timezone.now(),
                paused_since=None,
            ):
                logger.warning(
                    "Scan %s failed after %s attempts: its worker was lost each time",
                    scan.pk,
                    scan.attempts,
                )
            continue
        with transaction.atomic():
            # Conditional, so that a scan that just came back to life is left alone.
            if Scan.objects.filter(
                pk=scan.pk, status=Scan.Status.RUNNING, heartbeat_at__lt=cutoff
            ).update(status=Scan.Status.QUEUED):
                enqueue_task(SCAN_PREFIX, scan.pk)
                requeued.append(scan.pk)
    # A scan whose message never reached the broker (it was down when the scan started) is still
    # QUEUED: send it again. A message that did arrive and is merely waiting for a free worker gets a
    # twin that does nothing, since scan_run claims QUEUED → RUNNING with a conditional UPDATE.
    undelivered = Scan.objects.filter(
        status=Scan.Status.QUEUED,
        created_at__lt=timezone.now()
        - timedelta(seconds=settings.SCAN_QUEUED_REQUEUE_S),
    ).values_list("pk", flat=True)
    for pk in undelivered:
        enqueue_task(SCAN_PREFIX, pk)
        requeued.append(pk)
    if requeued:
        logger.warning("Requeued stalled or undelivered scans %s", requeued)
    return requeued


def chunks_recover_stalled() -> list[int]:
    """Requeue the chunks whose lease ran out (their worker died mid-chunk); returns their scans.

    The chunk is read again from its start; what the lost worker had read is in the cache and already
    linked to the scan, so nothing is read or counted twice. A chunk queued for SCAN_STALL_TIMEOUT_S
    whose message may never have reached the broker is sent again; a twin of a message that did arrive
    does nothing, since the chunk is claimed with a conditional UPDATE.
    """
    now = timezone.now()
    scans: list[int] = []
    expired = ScanChunk.objects.filter(
        state=ScanChunk.State.RUNNING, lease_expires_at__lt=now
    ).values_list("pk", "scan_id", "lease_owner")
    for pk, scan_id, owner in expired:
        with transaction.atomic():
            if ScanChunk.objects.filter(
                pk=pk, state=ScanChunk.State.RUNNING, lease_expires_at__lt=now
            ).update(state=ScanChunk.State.QUEUED, lease_owner="", enqueued_at=now):
                logger.warning(
                    "Scan %s: requeued a chunk whose worker (%s) was lost",
                    scan_id,
                    owner,
                )
                enqueue_task(SCAN_CHUNK, pk)
                scans.append(scan_id)
    unsent = ScanChunk.objects.filter(
        state=ScanChunk.State.QUEUED,
        enqueued_at__lt=now - timedelta(seconds=settings.SCAN_STALL_TIMEOUT_S),
    ).values_list("pk", "scan_id")
    for pk, scan_id in unsent:
        if ScanChunk.objects.filter(pk=pk, state=ScanChunk.State.QUEUED).update(
            enqueued_at=now
        ):
            enqueue_task(SCAN_CHUNK, pk)
            scans.append(scan_id)
    return sorted(set(scans))
