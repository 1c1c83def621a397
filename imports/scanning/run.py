"""Running a scan: list the prefix, read what the cache lacks in a thread pool, write results in batches.

Only the calling thread touches the database; the pool only reads S3 (imports.scanning.reader).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from imports import aws
from imports.browsing import s3_problem
from imports.models import ObjectHeader, Scan, ScanObject
from imports.scanning.index import index_build
from imports.scanning.reader import FirstReadSizes, is_transient, read_object

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 1000
# Results are written (and progress shown) every WRITE_BATCH objects or PROGRESS_INTERVAL_S.
WRITE_BATCH = 500
PROGRESS_INTERVAL_S = 0.5


class ScanCancelled(Exception):
    pass


@dataclass
class _Progress:
    listed: int = 0
    done: int = 0
    cached: int = 0
    unreadable: int = 0
    bytes_total: int = 0
    requests: int = 0
    bytes_read: int = 0
    folders: set[str] = field(default_factory=set)


def scan_run(*, scan_id: int) -> Scan | None:
    """Run a queued scan to its end. Safe to call twice: only the first call claims the scan."""
    now = timezone.now()
    claimed = Scan.objects.filter(pk=scan_id, status=Scan.Status.QUEUED).update(
        status=Scan.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    scan = Scan.objects.get(pk=scan_id)
    progress = _Progress()
    try:
        _scan_all(scan, progress)
        _finish_with_index(scan, progress)
    except ScanCancelled:
        _finish(scan, progress, Scan.Status.CANCELLED)
    except aws.AwsError as error:
        _finish(
            scan,
            progress,
            Scan.Status.FAILED,
            error=s3_problem(
                uri=scan.uri, error=error, needs="s3:ListBucket and s3:GetObject"
            ),
        )
    except Exception:
        logger.exception("Scan %s failed unexpectedly", scan.pk)
        _finish(
            scan,
            progress,
            Scan.Status.FAILED,
            error="The scan stopped on an internal error; see the worker log.",
        )
    scan.refresh_from_db()
    return scan


def _scan_all(scan: Scan, progress: _Progress) -> None:
    """List and read everything, keeping the read pool busy across listing pages.

    The thread pool only reads S3; this thread lists, looks up the cache and writes the results
    in batches, while up to READ_WINDOW reads are in flight.
    """
    with ThreadPoolExecutor(
        max_workers=settings.SCAN_THREADS, thread_name_prefix=f"scan-{scan.pk}"
    ) as pool:
        pipeline = _ReadPipeline(scan, progress, pool)
        try:
            for page in _list_pages(scan):
                _check_cancel(scan)
                progress.listed += len(page)
                for obj in page:
                    progress.bytes_total += obj.size
                    progress.folders.update(_folders_of(obj.key, scan.prefix))
                pipeline.add_page(page)
            pipeline.drain()
        except BaseException:
            pipeline.abandon()
            raise


class _ReadPipeline:
    """Reads not-yet-cached object versions in the pool and writes results in batches."""

    def __init__(
        self, scan: Scan, progress: _Progress, pool: ThreadPoolExecutor
    ) -> None:
        self.scan = scan
        self.progress = progress
        self.pool = pool
        # Twice the threads: the pool never waits for this thread, and a new folder's first
        # reads (at the default first-read size) stay few before its header size is learnt.
        self.window = settings.SCAN_THREADS * 2
        self.in_flight: set[Future[ObjectHeader]] = set()
        self.read: list[ObjectHeader] = []
        self.cached: list[ObjectHeader] = []
        # (key, etag) -> pk of an earlier transient failure, overwritten by the new read.
        self.rereads: dict[tuple[str, str], int] = {}
        self.last_flush = time.monotonic()
        self.first_reads = FirstReadSizes(settings.SCAN_FIRST_READ_BYTES)

    def add_page(self, page: list[aws.S3Object]) -> None:
        known = {
            (h.key, h.etag): h
            for h in ObjectHeader.objects.filter(
                bucket=self.scan.bucket, key__in=[o.key for o in page]
            )
        }
        for obj in page:
            header = known.get((obj.key, obj.etag))
            if header is not None and not is_transient(header):
                self.cached.append(header)
                self.progress.cached += 1
                self.progress.done += 1
                self.progress.unreadable += (
                    header.status == ObjectHeader.Status.UNREADABLE
                )
                continue
            if header is not None:
                self.rereads[(obj.key, obj.etag)] = header.pk
            while len(self.in_flight) >= self.window:
                self._collect(wait(self.in_flight, return_when=FIRST_COMPLETED).done)
            first_read = self.first_reads.size_for(obj.key)
            self.in_flight.add(
                self.pool.submit(
                    read_object, self.scan.region, self.scan.bucket, obj, first_read
                )
            )
        self._collect({f for f in self.in_flight if f.done()})

    def drain(self) -> None:
        while self.in_flight:
            self._collect(wait(self.in_flight, return_when=FIRST_COMPLETED).done)
        self._flush()

    def abandon(self) -> None:
        for future in self.in_flight:
            future.cancel()

    def _collect(self, done: set[Future[ObjectHeader]]) -> None:
        for future in done:
            self.in_flight.discard(future)
            header = future.result()
            self.first_reads.observe(header)
            self.read.append(header)
            self.progress.done += 1
            self.progress.requests += header.requests
            self.progress.bytes_read += header.bytes_read
            self.progress.unreadable += header.status == ObjectHeader.Status.UNREADABLE
        if (
            len(self.read) + len(self.cached) >= WRITE_BATCH
            or time.monotonic() - self.last_flush > PROGRESS_INTERVAL_S
        ):
            self._flush()

    def _flush(self) -> None:
        read, self.read = self.read, []
        for header in read:
            earlier = self.rereads.pop((header.key, header.etag), None)
            if earlier is not None:
                header.pk = earlier
                header.read_at = timezone.now()
                header.save()
        # Two scans of overlapping prefixes may read the same version at once; the unique
        # constraint keeps one row, and the re-query below picks up whichever won.
        ObjectHeader.objects.bulk_create(
            [h for h in read if h.pk is None], ignore_conflicts=True
        )
        saved = ObjectHeader.objects.filter(
            bucket=self.scan.bucket, key__in=[h.key for h in read if h.pk is None]
        ).values_list("key", "etag", "pk")
        header_ids = [h.pk for h in self.cached] + [
            h.pk for h in read if h.pk is not None
        ]
        wanted = {(h.key, h.etag) for h in read}
        header_ids += [pk for key, etag, pk in saved if (key, etag) in wanted]
        self.cached = []
        ScanObject.objects.bulk_create(
            [ScanObject(scan_id=self.scan.pk, header_id=pk) for pk in header_ids],
            ignore_conflicts=True,
        )
        _save_progress(self.scan, self.progress)
        _check_cancel(self.scan)
        self.last_flush = time.monotonic()


def _list_pages(scan: Scan) -> Iterator[list[aws.S3Object]]:
    token: str | None = None
    while True:
        page = aws.s3_list_page(
            region=scan.region,
            bucket=scan.bucket,
            prefix=scan.prefix,
            delimiter=None,
            token=token,
            max_keys=LIST_PAGE_SIZE,
        )
        # Zero-byte keys ending in "/" are folder placeholders made by the S3 console, not files.
        yield [
            obj for obj in page.objects if not (obj.key.endswith("/") and obj.size == 0)
        ]
        if page.next_token is None:
            return
        token = page.next_token


def _folders_of(key: str, prefix: str) -> Iterable[str]:
    """The nested folders a key sits in, below the scanned prefix (HealthImaging counts these)."""
    parts = key[len(prefix) :].split("/")[:-1]
    return ("/".join(parts[: i + 1]) for i in range(len(parts)))


def _check_cancel(scan: Scan) -> None:
    if Scan.objects.filter(pk=scan.pk, cancel_requested=True).exists():
        raise ScanCancelled


def _save_progress(scan: Scan, progress: _Progress) -> None:
    Scan.objects.filter(pk=scan.pk).update(
        objects_listed=progress.listed,
        objects_done=progress.done,
        objects_cached=progress.cached,
        objects_unreadable=progress.unreadable,
        bytes_total=progress.bytes_total,
        folders=len(progress.folders),
        requests=progress.requests,
        bytes_read=progress.bytes_read,
        heartbeat_at=timezone.now(),
    )


def _finish(
    scan: Scan, progress: _Progress, status: Scan.Status, *, error: str = ""
) -> None:
    _save_progress(scan, progress)
    Scan.objects.filter(pk=scan.pk).update(
        status=status, error=error, finished_at=timezone.now()
    )


def _finish_with_index(scan: Scan, progress: _Progress) -> None:
    _save_progress(scan, progress)
    with transaction.atomic():
        index_build(scan=scan)
        Scan.objects.filter(pk=scan.pk).update(
            status=Scan.Status.COMPLETED, finished_at=timezone.now()
        )
