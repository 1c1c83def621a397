"""Running a scan: list the prefix, read what the cache lacks in a thread pool, write results in batches.

Only the calling thread touches the database; the pool only reads S3 (imports.scanning.reader), through the
read pipeline (imports.scanning.pipeline), which also retries transient failures and pauses on an outage.

S3 trouble is weather, not truth. A read or a listing page that fails transiently (throttling, 5xx,
timeouts, no connection) is tried again later in the same scan, with backoff and jitter, until
SCAN_PATIENCE_S of continuous failure. When most reads fail, a circuit breaker pauses the whole pool
and sends one probe at a time, so an outage does not burn through the queue. What is still unread
when the patience runs out is kept in ScanUnread and the scan ends Incomplete, never Completed.

Counters are written in the same transaction as the rows they count, as increments by exactly the
rows that transaction added, so they match the database after any failure or restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from imports.aws import client as aws
from imports.models import Scan, ScanUnread
from imports.scanning import inventory
from imports.scanning.browse import s3_problem
from imports.scanning.index import index_build
from imports.scanning.pipeline import (
    ListingGaveUp,
    ReadPipeline,
    ScanCancelled,
)

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 1000


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
    rest = _only_the_rest_is_left(scan)
    if not rest:
        _restart_listing(scan)
    try:
        _scan_all(scan, rest=rest)
        _finish_with_index(scan)
    except ScanCancelled:
        _finish(scan, Scan.Status.CANCELLED)
    except ListingGaveUp as gave_up:
        logger.warning(
            "Scan %s failed: listing got no answer from S3 for %.0f s (%s)",
            scan.pk,
            gave_up.waited_s,
            gave_up.error.code,
        )
        _finish(
            scan,
            Scan.Status.FAILED,
            error=f"S3 did not answer the listing for {gave_up.waited_s:.0f} s; start the scan "
            f"again when it is back. Last answer: {gave_up.error}",
        )
    except inventory.InventoryRefused as refused:
        _finish(scan, Scan.Status.FAILED, error=str(refused))
    except aws.AwsError as error:
        _finish(
            scan,
            Scan.Status.FAILED,
            error=s3_problem(
                uri=scan.uri, error=error, needs="s3:ListBucket and s3:GetObject"
            ),
        )
    except Exception:
        logger.exception("Scan %s failed unexpectedly", scan.pk)
        _finish(
            scan,
            Scan.Status.FAILED,
            error="The scan stopped on an internal error; see the worker log.",
        )
    scan.refresh_from_db()
    return scan


def _only_the_rest_is_left(scan: Scan) -> bool:
    """Whether every listed object already has a result or a ScanUnread row, so no listing is needed.

    True for an Incomplete scan sent to "read the rest" (and for such a run whose worker died);
    false for a scan whose worker died before it had accounted for every listed object.
    """
    return (
        scan.listing_finished_at is not None
        and scan.objects_done + scan.objects_pending == scan.objects_listed
    )


def _restart_listing(scan: Scan) -> None:
    # A requeued scan lists again from the start; what an earlier attempt could not read is read
    # again from that listing, so its unread rows would only be stale.
    with transaction.atomic():
        ScanUnread.objects.filter(scan=scan).delete()
        Scan.objects.filter(pk=scan.pk).update(
            listing_finished_at=None, objects_pending=0, paused_since=None
        )


def _scan_all(scan: Scan, *, rest: bool) -> None:
    """List and read everything (or only the unread rest), keeping the read pool busy across pages."""
    with ThreadPoolExecutor(
        max_workers=settings.SCAN_THREADS, thread_name_prefix=f"scan-{scan.pk}"
    ) as pool:
        pipeline = ReadPipeline(scan, pool)
        try:
            if rest:
                for page in _unread_pages(scan):
                    pipeline.add_page(page, unread_rows=True)
            else:
                pages = (
                    _inventory_pages(scan)
                    if scan.inventory_uri
                    else _list_pages(scan, pipeline)
                )
                for page, last in pages:
                    pipeline.add_listed(page, last=last)
            pipeline.drain()
        except BaseException:
            pipeline.abandon()
            raise


def _list_pages(
    scan: Scan, pipeline: ReadPipeline
) -> Iterator[tuple[list[aws.S3Object], bool]]:
    """Pages of objects, each with whether it is the last."""
    token: str | None = None
    while True:

        def one_page(token: str | None = token) -> aws.S3ListPage:
            return aws.s3_list_page(
                region=scan.region,
                bucket=scan.bucket,
                prefix=scan.prefix,
                delimiter=None,
                token=token,
                max_keys=LIST_PAGE_SIZE,
            )

        # A page that fails transiently is asked for again (same token), reads going on meanwhile.
        page = pipeline.patiently(one_page)
        # Zero-byte keys ending in "/" are folder placeholders made by the S3 console, not files.
        yield (
            [
                obj
                for obj in page.objects
                if not (obj.key.endswith("/") and obj.size == 0)
            ],
            page.next_token is None,
        )
        if page.next_token is None:
            return
        token = page.next_token


def _inventory_pages(scan: Scan) -> Iterator[tuple[list[aws.S3Object], bool]]:
    """The inventory's pages of objects under the prefix, each with whether it is the last."""
    found = inventory.inventory_open(
        region=scan.region, manifest_uri=scan.inventory_uri, bucket=scan.bucket
    )
    Scan.objects.filter(pk=scan.pk).update(inventory_created_at=found.created_at)
    pages = inventory.inventory_pages(
        region=scan.region, inventory=found, prefix=scan.prefix
    )
    page = next(pages, None)
    if page is None:
        yield [], True  # no object under the prefix: the listing still ends
        return
    while page is not None:
        following = next(pages, None)
        yield page, following is None
        page = following


def _unread_pages(scan: Scan) -> Iterator[list[aws.S3Object]]:
    rows = (
        ScanUnread.objects.filter(scan=scan)
        .order_by("key")
        .values_list("key", "etag", "size")
    )
    page: list[aws.S3Object] = []
    for key, etag, size in rows.iterator(chunk_size=LIST_PAGE_SIZE):
        page.append(aws.S3Object(key=key, size=size, etag=etag, last_modified=None))
        if len(page) == LIST_PAGE_SIZE:
            yield page
            page = []
    if page:
        yield page


def _finish(scan: Scan, status: Scan.Status, *, error: str = "") -> None:
    Scan.objects.filter(pk=scan.pk).update(
        status=status, error=error, finished_at=timezone.now(), paused_since=None
    )


def _finish_with_index(scan: Scan) -> None:
    """Completed only when no listed object is left unread; Incomplete otherwise, with the count."""
    with transaction.atomic():
        unread = ScanUnread.objects.filter(scan=scan).count()
        if unread:
            logger.warning(
                "Scan %s ended incomplete: %s objects unread, S3 did not answer",
                scan.pk,
                unread,
            )
            Scan.objects.filter(pk=scan.pk).update(
                status=Scan.Status.INCOMPLETE,
                error=f"{unread:,} object{'s' if unread != 1 else ''} could not be read because S3 "
                "did not answer. Read the rest when S3 is back.",
                finished_at=timezone.now(),
                paused_since=None,
            )
            return
        index_build(scan=scan)
        Scan.objects.filter(pk=scan.pk).update(
            status=Scan.Status.COMPLETED,
            error="",
            finished_at=timezone.now(),
            paused_since=None,
        )
