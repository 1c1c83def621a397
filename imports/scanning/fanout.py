"""A scan on the workers, fanned out: a coordinator lists, chunk tasks read, database counters fan in.

The coordinator (`imports.scan_prefix`) lists the prefix (or reads the S3 Inventory, or the unread rows
for "read the rest") and writes each page as a ScanChunk row with at most SCAN_CHUNK_OBJECTS objects, then
sends `imports.scan_chunk` for it on the `scan` queue; it does not wait for them. Each chunk task claims its
row with a lease, reads the objects with the read pipeline (the ETag cache, retries, the breaker) and adds
one to the scan's `chunks_ended`. Whoever makes `chunks_ended` equal to `chunks_total` on a sealed scan
claims the fan-in with a conditional UPDATE and ends the scan. No Celery chord: a chord's callback is lost
with its result backend, and this app keeps no results there.

A chunk holds a lease renewed by every write it makes, and each write checks it in the same transaction:
a chunk whose worker died is queued again by beat's recovery once the lease runs out (control), and its
objects already read come from the cache; a worker that merely lost its lease writes nothing more.
Chunks check the scan between writes: a cancel, or a scan that ended otherwise, stops every chunk.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from imports.aws import client as aws
from imports.enqueue import SCAN_CHUNK, enqueue_task
from imports.models import Scan, ScanChunk, ScanUnread
from imports.scanning import inventory, run, shared
from imports.scanning.browse import s3_problem
from imports.scanning.pipeline import (
    ListingGaveUp,
    ReadPipeline,
    ScanCancelled,
    _folders_of,
    check_cancel,
)

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 1000


class LeaseLost(Exception):
    """Another process holds this chunk now (its lease had run out): this one writes nothing more."""


# --- the coordinator --------------------------------------------------------------------------


def scan_coordinate(*, scan_id: int) -> None:
    """Claim a queued scan and write its chunks; resumes the chunks of a coordinator that died."""
    now = timezone.now()
    claimed = Scan.objects.filter(pk=scan_id, status=Scan.Status.QUEUED).update(
        status=Scan.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return
    scan = Scan.objects.get(pk=scan_id)
    try:
        if not scan.chunks_sealed:
            if scan.chunks_total == 0 and run._only_the_rest_is_left(scan):
                _chunk_the_rest(scan)
            else:
                if scan.chunks_total == 0:
                    run._restart_listing(scan)
                _chunk_the_listing(scan)
        else:
            # Sealed already: the process that was ending the scan died; end it here.
            Scan.objects.filter(pk=scan.pk).update(fanned_in=False)
    except ScanCancelled:
        # Chunks already written see the cancel themselves; the last of them ends the scan.
        Scan.objects.filter(pk=scan.pk).update(chunks_sealed=True)
    except ListingGaveUp as gave_up:
        logger.warning(
            "Scan %s failed: listing got no answer from S3 for %.0f s (%s)",
            scan.pk,
            gave_up.waited_s,
            gave_up.error.code,
        )
        _fail(
            scan,
            f"S3 did not answer the listing for {gave_up.waited_s:.0f} s; start the scan "
            f"again when it is back. Last answer: {gave_up.error}",
        )
        return
    except inventory.InventoryRefused as refused:
        _fail(scan, str(refused))
        return
    except aws.AwsError as error:
        _fail(
            scan,
            s3_problem(
                uri=scan.uri, error=error, needs="s3:ListBucket and s3:GetObject"
            ),
        )
        return
    except Exception:
        logger.exception("Scan %s failed unexpectedly while listing", scan.pk)
        _fail(scan, "The scan stopped on an internal error; see the worker log.")
        return
    scan_fan_in(scan_id=scan.pk)


def _chunk_the_listing(scan: Scan) -> None:
    """Write the listing as chunks, after those a died coordinator already wrote, then seal the scan."""
    written = list(
        ScanChunk.objects.filter(scan=scan)
        .order_by("sequence")
        .values_list("batch", "next_token")
    )
    tally = _Tally(scan.prefix)
    for batch, _ in written:
        tally.add(batch)
    sequence = len(written)
    size = max(1, min(settings.SCAN_CHUNK_OBJECTS, LIST_PAGE_SIZE))
    with ThreadPoolExecutor(max_workers=1) as pool:
        # No reads here: the pipeline lends its patience with listing pages, its pause and its cancel check.
        patience = ReadPipeline(scan, pool)
        pages: Iterable[tuple[list[list[object]], str]]
        if scan.inventory_uri:
            pages = _inventory_batches(scan, skip=tally.count, size=size)
        elif written and not written[-1][1]:
            pages = ()  # the last page was written; only the seal is missing
        else:
            token = written[-1][1] if written else None
            pages = _listing_pages(scan, patience, token=token, size=size)
        for batch, next_token in pages:
            check_cancel(scan)
            tally.add(batch)
            _write_chunk(scan, sequence, batch, next_token=next_token, tally=tally)
            sequence += 1
    now = timezone.now()
    Scan.objects.filter(pk=scan.pk).update(
        objects_listed=tally.count,
        bytes_total=tally.bytes,
        folders=len(tally.folders),
        listing_finished_at=now,
        chunks_sealed=True,
        heartbeat_at=now,
    )


def _listing_pages(
    scan: Scan, patience: ReadPipeline, *, token: str | None, size: int
) -> Iterator[tuple[list[list[object]], str]]:
    while True:

        def one_page(token: str | None = token) -> aws.S3ListPage:
            return aws.s3_list_page(
                region=scan.region,
                bucket=scan.bucket,
                prefix=scan.prefix,
                delimiter=None,
                token=token,
                max_keys=size,
            )

        page = patience.patiently(one_page)
        # Zero-byte keys ending in "/" are folder placeholders made by the S3 console, not files.
        batch = [
            [obj.key, obj.size, obj.etag]
            for obj in page.objects
            if not (obj.key.endswith("/") and obj.size == 0)
        ]
        if batch:
            yield batch, page.next_token or ""
        if page.next_token is None:
            return
        token = page.next_token


def _inventory_batches(
    scan: Scan, *, skip: int, size: int
) -> Iterator[tuple[list[list[object]], str]]:
    # The inventory reads in the same order every time, so a resumed coordinator skips what it wrote.
    objects = (
        [obj.key, obj.size, obj.etag]
        for page, _ in run._inventory_pages(scan)
        for obj in page
    )
    rest = islice(objects, skip, None)
    while batch := list(islice(rest, size)):
        yield batch, ""


def _chunk_the_rest(scan: Scan) -> None:
    """ "Read the rest": the unread rows become sealed chunks in one transaction (no listing)."""
    size = max(1, settings.SCAN_CHUNK_OBJECTS)
    rows = (
        ScanUnread.objects.filter(scan=scan)
        .order_by("key")
        .values_list("key", "size", "etag")
    )
    with transaction.atomic():
        sequence = 0
        it = rows.iterator(chunk_size=2000)
        while batch := [list(row) for row in islice(it, size)]:
            chunk = ScanChunk.objects.create(
                scan=scan,
                sequence=sequence,
                batch=batch,
                rest=True,
                objects_total=len(batch),
                enqueued_at=timezone.now(),
            )
            enqueue_task(SCAN_CHUNK, chunk.pk)
            sequence += 1
        Scan.objects.filter(pk=scan.pk).update(
            chunks_total=sequence, chunks_sealed=True, heartbeat_at=timezone.now()
        )


class _Tally:
    """What the listing found so far (set on the scan, not added: the listing has no rows)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        self.bytes = 0
        self.folders: set[str] = set()

    def add(self, batch: list[list[object]]) -> None:
        for key, size, _etag in batch:
            self.count += 1
            self.bytes += int(str(size))
            self.folders.update(_folders_of(str(key), self.prefix))


def _write_chunk(
    scan: Scan,
    sequence: int,
    batch: list[list[object]],
    *,
    next_token: str,
    tally: _Tally,
) -> None:
    now = timezone.now()
    with transaction.atomic():
        chunk = ScanChunk.objects.create(
            scan=scan,
            sequence=sequence,
            batch=batch,
            next_token=next_token,
            objects_total=len(batch),
            enqueued_at=now,
        )
        Scan.objects.filter(pk=scan.pk).update(
            chunks_total=F("chunks_total") + 1,
            objects_listed=tally.count,
            bytes_total=tally.bytes,
            folders=len(tally.folders),
            heartbeat_at=now,
        )
        enqueue_task(SCAN_CHUNK, chunk.pk)


def _fail(scan: Scan, error: str) -> None:
    # Running chunks see the scan is no longer RUNNING at their next write and stop.
    Scan.objects.filter(pk=scan.pk, status=Scan.Status.RUNNING).update(
        status=Scan.Status.FAILED,
        error=error,
        finished_at=timezone.now(),
        paused_since=None,
    )


# --- a chunk ----------------------------------------------------------------------------------


def scan_chunk_run(*, chunk_id: int) -> None:
    """Claim a queued chunk (or one whose lease ran out), read its objects, then try the fan-in."""
    owner = f"{socket.gethostname()}:{os.getpid()}"
    now = timezone.now()
    lease = timedelta(seconds=settings.SCAN_CHUNK_LEASE_S)
    claimed = (
        ScanChunk.objects.filter(pk=chunk_id)
        .filter(
            Q(state=ScanChunk.State.QUEUED)
            | Q(state=ScanChunk.State.RUNNING, lease_expires_at__lt=now)
        )
        .update(
            state=ScanChunk.State.RUNNING,
            lease_owner=owner,
            lease_pid=os.getpid(),
            lease_expires_at=now + lease,
            attempts=F("attempts") + 1,
            started_at=now,
        )
    )
    if not claimed:
        return  # a duplicate message, or a redelivery while the lease still holds
    chunk = ScanChunk.objects.select_related("scan").get(pk=chunk_id)
    ScanChunk.objects.filter(pk=chunk_id, lease_owner=owner).update(
        pids=[*chunk.pids, os.getpid()]
    )
    scan = chunk.scan
    if scan.status != Scan.Status.RUNNING or scan.cancel_requested:
        _end_chunk(chunk, owner, ScanChunk.State.STOPPED)
    elif chunk.attempts > settings.SCAN_MAX_ATTEMPTS:
        _fail(
            scan,
            f"Part {chunk.sequence + 1} of the scan stopped {chunk.attempts - 1} times without finishing "
            "(its worker was lost each time); start the scan again.",
        )
        _end_chunk(chunk, owner, ScanChunk.State.STOPPED)
    else:
        try:
            state = _read_chunk(chunk, owner, lease)
        except LeaseLost:
            logger.warning(
                "Scan %s chunk %s: another worker took it over", scan.pk, chunk.sequence
            )
            return
        except Exception:
            logger.exception(
                "Scan %s chunk %s failed unexpectedly", scan.pk, chunk.sequence
            )
            _fail(scan, "The scan stopped on an internal error; see the worker log.")
            state = ScanChunk.State.STOPPED
        _end_chunk(chunk, owner, state)
    scan_fan_in(scan_id=scan.pk)


def _read_chunk(chunk: ScanChunk, owner: str, lease: timedelta) -> ScanChunk.State:
    scan = chunk.scan

    def renew(new: int, requests: int, throttled: int) -> None:
        # In the write's own transaction: a write by a process that lost the lease is rolled back.
        now = timezone.now()
        if not ScanChunk.objects.filter(
            pk=chunk.pk, lease_owner=owner, state=ScanChunk.State.RUNNING
        ).update(
            lease_expires_at=now + lease,
            objects_done=F("objects_done") + new,
            requests=F("requests") + requests,
        ):
            raise LeaseLost
        reads = shared.read_share(
            chunk_id=chunk.pk, scan_id=scan.pk, throttled=throttled, now=now
        )
        pipeline.window = shared.window_for(reads)

    def stop_check() -> None:
        stop, paused = shared.scan_state(scan.pk)
        if stop:
            raise ScanCancelled
        # The breaker is the scan's: another chunk that found S3 away (or back) says so here.
        shared.follow_pause(pipeline, paused=paused)

    objects = [
        aws.S3Object(key=str(key), size=int(size), etag=str(etag), last_modified=None)
        for key, size, etag in chunk.batch
    ]
    with ThreadPoolExecutor(
        max_workers=settings.SCAN_THREADS,
        thread_name_prefix=f"scan-{scan.pk}-{chunk.sequence}",
    ) as pool:
        pipeline = ReadPipeline(scan, pool, on_write=renew, stop_check=stop_check)
        pipeline.window = shared.window_for(
            shared.read_share(
                chunk_id=chunk.pk, scan_id=scan.pk, throttled=0, now=timezone.now()
            )
        )
        try:
            pipeline.add_page(objects, unread_rows=chunk.rest)
            pipeline.drain()
        except ScanCancelled:
            pipeline.abandon()
            return ScanChunk.State.STOPPED
        except BaseException:
            pipeline.abandon()
            raise
    return ScanChunk.State.DONE


def _end_chunk(chunk: ScanChunk, owner: str, state: ScanChunk.State) -> None:
    with transaction.atomic():
        if ScanChunk.objects.filter(
            pk=chunk.pk, lease_owner=owner, state=ScanChunk.State.RUNNING
        ).update(state=state, finished_at=timezone.now(), lease_expires_at=None):
            Scan.objects.filter(pk=chunk.scan_id).update(
                chunks_ended=F("chunks_ended") + 1, heartbeat_at=timezone.now()
            )


# --- the fan-in -------------------------------------------------------------------------------


def scan_fan_in(*, scan_id: int) -> None:
    """End the scan if every chunk of a sealed scan has ended; only one caller gets to."""
    if not Scan.objects.filter(
        pk=scan_id,
        status=Scan.Status.RUNNING,
        chunks_sealed=True,
        fanned_in=False,
        chunks_ended=F("chunks_total"),
    ).update(fanned_in=True, heartbeat_at=timezone.now()):
        return
    scan = Scan.objects.get(pk=scan_id)
    # Each chunk wrote the count it saw; the rows are the truth once all have ended.
    Scan.objects.filter(pk=scan_id).update(
        objects_pending=ScanUnread.objects.filter(scan=scan).count()
    )
    if scan.cancel_requested:
        run._finish(scan, Scan.Status.CANCELLED)
        return
    try:
        run._finish_with_index(scan)
    except Exception:
        logger.exception("Scan %s failed unexpectedly while ending", scan.pk)
        run._finish(
            scan,
            Scan.Status.FAILED,
            error="The scan stopped on an internal error; see the worker log.",
        )
