"""The read pipeline of a scan: reads in a thread pool, retries of transient failures, a circuit breaker, batched writes.

S3 trouble is weather, not truth. A read that fails transiently (throttling, 5xx, timeouts, no connection) is
tried again later in the same scan, with backoff and jitter, until SCAN_PATIENCE_S of continuous failure. When
most reads fail, the breaker pauses the whole pool and sends one probe at a time. Counters are written in the same
transaction as the rows they count. imports.scanning.run drives it.
"""

from __future__ import annotations

import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from imports.aws import client as aws
from imports.models import ObjectHeader, Scan, ScanObject, ScanUnread
from imports.scanning.reader import FirstReadSizes, TransientFailure, read_object
from imports.scanning.storable import (
    header_storable,
    headers_create,
    key_refused,
    stand_in,
)
from imports.storable_text import text_storable

logger = logging.getLogger(__name__)

# Results are written (and progress shown) every WRITE_BATCH objects or PROGRESS_INTERVAL_S.
WRITE_BATCH = 500
PROGRESS_INTERVAL_S = 0.5

T = TypeVar("T")


class ScanCancelled(Exception):
    pass


class ListingGaveUp(Exception):
    """A listing page kept failing transiently for longer than the patience."""

    def __init__(self, error: aws.AwsError, waited_s: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.waited_s = waited_s


@dataclass
class _Unread:
    """An object whose reads failed transiently; it has no result yet."""

    obj: aws.S3Object
    first_failure: float
    error: aws.AwsError
    failures: int = 0
    seq: int = 0  # which heap entry is current: older entries are stale


class _Breaker:
    """Opens when most recent reads failed transiently; closes on the first read that succeeds."""

    def __init__(self, window: int, ratio: float) -> None:
        self.outcomes: deque[bool] = deque(maxlen=max(1, window))
        self.ratio = ratio
        self.open_since: float | None = None
        self.probes_failed = 0
        self.probe_due = 0.0

    @property
    def is_open(self) -> bool:
        return self.open_since is not None

    def record(self, ok: bool, now: float) -> bool:
        """Count one read; True when this read changed the state (opened or closed)."""
        if self.open_since is not None:
            if ok:
                self.open_since = None
                self.outcomes.clear()
                return True
            return False
        self.outcomes.append(ok)
        failed = self.outcomes.count(False)
        # Half a window at least, so a few unlucky first reads do not stop the pool.
        if len(self.outcomes) * 2 >= (
            self.outcomes.maxlen or 1
        ) and failed > self.ratio * len(self.outcomes):
            self.open_since = now
            self.probes_failed = 0
            self.probe_due = now + _backoff(1)
            return True
        return False

    def probe_failed(self, now: float) -> None:
        self.probes_failed += 1
        self.probe_due = now + _backoff(self.probes_failed + 1)


_jitter = random.Random()


def _backoff(failures: int) -> float:
    """Exponential from SCAN_RETRY_BASE_S, capped at SCAN_RETRY_MAX_S, with jitter.

    The jitter spreads the retries of many objects (and of several scans) that failed together, so
    they do not return to S3 in one wave.
    """
    base: float = settings.SCAN_RETRY_BASE_S
    ceiling: float = settings.SCAN_RETRY_MAX_S
    return min(ceiling, base * 2.0 ** min(failures - 1, 30)) * _jitter.uniform(0.5, 1.0)


class ReadPipeline:
    """Reads not-yet-cached object versions in the pool, retries transient failures, writes in batches."""

    def __init__(
        self,
        scan: Scan,
        pool: ThreadPoolExecutor,
        *,
        on_write: Callable[[int, int, int], None] | None = None,
        stop_check: Callable[[], None] | None = None,
    ) -> None:
        self.scan = scan
        self.pool = pool
        # A chunk of a fanned-out scan (imports.scanning.fanout): on_write(new objects, requests, throttled) runs in
        # each write's transaction (it renews the chunk's lease, and raises to undo a write whose lease was
        # lost); stop_check after it raises ScanCancelled when the chunk should stop.
        self.on_write = on_write
        self.stop_check = stop_check or (lambda: check_cancel(scan))
        # Twice the threads: the pool never waits for this thread, and a new folder's first
        # reads (at the default first-read size) stay few before its header size is learnt.
        self.window = settings.SCAN_THREADS * 2
        self.patience = settings.SCAN_PATIENCE_S
        self.in_flight: dict[Future[ObjectHeader | TransientFailure], aws.S3Object] = {}
        self.probe: Future[ObjectHeader | TransientFailure] | None = None
        self.queue: deque[aws.S3Object] = deque()  # listed, never tried
        self.failing: dict[str, _Unread] = {}  # tried, failed transiently, to try again
        self.retry_heap: list[tuple[float, int, str]] = []
        self.given_up: dict[
            str, _Unread
        ] = {}  # out of patience: the scan ends Incomplete
        self.seq = 0
        self.breaker = _Breaker(
            settings.SCAN_BREAKER_WINDOW, settings.SCAN_BREAKER_RATIO
        )
        # Continuous failure: since the first failure after the last success.
        self.reads_failing_since: float | None = None
        self.listing_failing_since: float | None = None
        self.paused = False
        self.last_error: aws.AwsError | None = None
        # Waiting to be written by the next flush.
        self.read: list[ObjectHeader] = []
        self.cached: list[ObjectHeader] = []
        self.unread_dirty: dict[str, _Unread] = {}
        self.unread_in_db: set[str] = set()
        self.requests = 0
        self.bytes_read = 0
        self.throttled = (
            0  # reads S3 throttled since the last write (the fan-out's ramp)
        )
        # What the listing found (the listing has no rows: these are set, not added).
        self.listed = 0
        self.bytes_total = 0
        self.folders: set[str] = set()
        self.listing_finished = False
        self.listing_finished_written = False
        self.last_flush = time.monotonic()
        self.first_reads = FirstReadSizes(settings.SCAN_FIRST_READ_BYTES)

    # --- feeding ------------------------------------------------------------------------------

    def add_listed(self, page: list[aws.S3Object], *, last: bool) -> None:
        self.listed += len(page)
        for obj in page:
            self.bytes_total += obj.size
            self.folders.update(_folders_of(obj.key, self.scan.prefix))
        # Before the reads of the last page: the prefix's size is known from here on.
        self.listing_finished = last
        self.add_page(page)

    def add_page(self, page: list[aws.S3Object], *, unread_rows: bool = False) -> None:
        if unread_rows:
            self.unread_in_db.update(obj.key for obj in page)
        known = {
            (h.key, h.etag): h
            for h in ObjectHeader.objects.filter(
                bucket=self.scan.bucket,
                key__in=[o.key for o in page if text_storable(o.key) == o.key],
                reusable=True,
            )
        }
        for obj in page:
            if text_storable(obj.key) != obj.key:
                # Never read: no row can hold its key, and "read the rest" could not ask for it again.
                self.read.append(key_refused(self.scan.bucket, obj))
                continue
            header = known.get((obj.key, obj.etag))
            if header is not None:
                self.cached.append(header)
            else:
                self.queue.append(obj)
        # Keep the listing at most a window ahead of the reads: memory stays flat on huge prefixes.
        while len(self.queue) >= self.window:
            self._step()
        self._pump()

    def drain(self) -> None:
        while self.in_flight or self.queue or self.failing:
            self._step()
        self._flush()

    def abandon(self) -> None:
        for future in self.in_flight:
            future.cancel()

    def patiently(self, call: Callable[[], T]) -> T:
        """Call S3 (a listing page) until it answers, backing off while reads go on; or give up."""
        failures = 0
        first_failure: float | None = None
        while True:
            try:
                result = call()
            except aws.AwsError as error:
                if not error.transient:
                    raise
                now = time.monotonic()
                failures += 1
                first_failure = first_failure or now
                self.last_error = error
                self.listing_failing_since = self.listing_failing_since or now
                self._update_pause()
                if now - first_failure >= self.patience:
                    raise ListingGaveUp(error, now - first_failure) from error
                self._wait(_backoff(failures))
                continue
            if self.listing_failing_since is not None:
                self.listing_failing_since = None
                self._update_pause()
            return result

    # --- the loop -----------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._step(limit=left)

    def _step(self, limit: float = PROGRESS_INTERVAL_S) -> None:
        """Wait for a read, a due retry or a probe (at most `limit`), then submit and maybe write."""
        now = time.monotonic()
        timeout = min(limit, PROGRESS_INTERVAL_S)
        # Wake early only for something that can then be submitted, or this loop would spin.
        if self.breaker.is_open:
            if self.probe is None and now < self.breaker.probe_due:
                timeout = min(timeout, self.breaker.probe_due - now)
        elif self.retry_heap and len(self.in_flight) < self.window:
            timeout = min(timeout, self.retry_heap[0][0] - now)
        timeout = max(timeout, 0.001)
        if self.in_flight:
            done, _ = wait(self.in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                self._collect(future)
        else:
            time.sleep(timeout)
        self._pump()
        if (
            len(self.read) + len(self.cached) >= WRITE_BATCH
            or time.monotonic() - self.last_flush > PROGRESS_INTERVAL_S
        ):
            self._flush()

    def _pump(self) -> None:
        """Submit reads: due retries first, then new objects; only a single probe while paused."""
        now = time.monotonic()
        if self._reads_out_of_patience(now):
            self._give_up_waiting(now)
        if self.breaker.is_open:
            if self.probe is None and now >= self.breaker.probe_due:
                obj = self._next_probe()
                if obj is not None:
                    self.probe = self._submit(obj)
            return
        while len(self.in_flight) < self.window:
            obj = self._next_due_retry(now)
            if obj is None:
                if not self.queue:
                    return
                obj = self.queue.popleft()
            self._submit(obj)

    def _submit(self, obj: aws.S3Object) -> Future[ObjectHeader | TransientFailure]:
        future = self.pool.submit(
            read_object,
            self.scan.region,
            self.scan.bucket,
            obj,
            self.first_reads.size_for(obj.key),
        )
        self.in_flight[future] = obj
        return future

    def _next_due_retry(self, now: float) -> aws.S3Object | None:
        while self.retry_heap:
            due, seq, key = self.retry_heap[0]
            unread = self.failing.get(key)
            if unread is None or unread.seq != seq:
                heapq.heappop(self.retry_heap)  # stale: read since, or rescheduled
                continue
            if due > now:
                return None
            heapq.heappop(self.retry_heap)
            # Out of the heap while in flight; a failure schedules it again.
            unread.seq = -1
            return unread.obj
        return None

    def _next_probe(self) -> aws.S3Object | None:
        for key, unread in self.failing.items():
            if unread.seq != -1:
                unread.seq = -1
                del self.failing[key]
                self.failing[key] = (
                    unread  # to the back: the next probe tries another object
                )
                return unread.obj
        if self.queue:
            return self.queue.popleft()
        if self.given_up:
            # Out of patience, but the listing still goes on: keep asking whether S3 is back.
            key = next(iter(self.given_up))
            unread = self.given_up.pop(key)
            unread.seq = -1
            self.failing[key] = unread
            return unread.obj
        return None

    # --- results ------------------------------------------------------------------------------

    def _collect(self, future: Future[ObjectHeader | TransientFailure]) -> None:
        obj = self.in_flight.pop(future)
        is_probe = future is self.probe
        if is_probe:
            self.probe = None
        try:
            outcome = future.result()
        except (
            Exception
        ) as error:  # read_object catches everything; this is belt and braces
            logger.exception(
                "A read escaped its own error handling (%s)", type(error).__name__
            )
            outcome = ObjectHeader(
                bucket=self.scan.bucket,
                key=obj.key,
                etag=obj.etag,
                size=obj.size,
                kind=ObjectHeader.Kind.OTHER,
                status=ObjectHeader.Status.UNREADABLE,
                error=f"The file could not be checked: {type(error).__name__}.",
                reusable=False,
            )
        now = time.monotonic()
        if isinstance(outcome, TransientFailure):
            self._failed(obj, outcome.error, now, is_probe=is_probe)
        else:
            self._succeeded(outcome, now)

    def _failed(
        self, obj: aws.S3Object, error: aws.AwsError, now: float, *, is_probe: bool
    ) -> None:
        self.last_error = error
        self.throttled += isinstance(error, aws.Throttled)
        unread = self.failing.get(obj.key) or _Unread(
            obj, first_failure=now, error=error
        )
        unread.failures += 1
        unread.error = error
        self.failing[obj.key] = unread
        self.unread_dirty[obj.key] = unread
        self.reads_failing_since = self.reads_failing_since or now
        if is_probe:
            self.breaker.probe_failed(now)
        elif self.breaker.record(False, now):
            self._update_pause()
        if now - unread.first_failure >= self.patience or self._reads_out_of_patience(
            now
        ):
            del self.failing[obj.key]
            self.given_up[obj.key] = unread
            return
        self.seq += 1
        unread.seq = self.seq
        heapq.heappush(
            self.retry_heap, (now + _backoff(unread.failures), unread.seq, obj.key)
        )

    def _succeeded(self, header: ObjectHeader, now: float) -> None:
        self.reads_failing_since = None
        if self.breaker.record(True, now):
            self._update_pause()
        if self.given_up:
            # S3 is back while the scan still runs: what it had given up on is read after all.
            for key, unread in self.given_up.items():
                unread.first_failure = now
                self.seq += 1
                unread.seq = self.seq
                self.failing[key] = unread
                heapq.heappush(self.retry_heap, (now, unread.seq, key))
            self.given_up.clear()
        self.failing.pop(header.key, None)
        self.unread_dirty.pop(header.key, None)
        self.first_reads.observe(header)
        self.read.append(header)
        self.requests += header.requests
        self.bytes_read += header.bytes_read

    def _reads_out_of_patience(self, now: float) -> bool:
        return (
            self.reads_failing_since is not None
            and now - self.reads_failing_since >= self.patience
        )

    def _give_up_waiting(self, now: float) -> None:
        """S3 has failed every read for the whole patience: stop waiting for what is not in flight."""
        error = self.last_error or aws.Unreachable("S3 did not answer")
        while self.queue:
            obj = self.queue.popleft()
            unread = _Unread(obj, first_failure=now, error=error)
            self.given_up[obj.key] = unread
            self.unread_dirty[obj.key] = unread
        in_flight = {obj.key for obj in self.in_flight.values()}
        for key in [key for key in self.failing if key not in in_flight]:
            self.given_up[key] = self.failing.pop(key)

    def _update_pause(self) -> None:
        paused = self.breaker.is_open or self.listing_failing_since is not None
        if paused == self.paused:
            return
        self.paused = paused
        code = self.last_error.code if self.last_error else "no answer"
        if paused:
            logger.warning(
                "Scan %s paused: S3 is not answering (%s)", self.scan.pk, code
            )
            Scan.objects.filter(pk=self.scan.pk).update(paused_since=timezone.now())
        else:
            logger.warning("Scan %s resumed: S3 answers again", self.scan.pk)
            Scan.objects.filter(pk=self.scan.pk).update(paused_since=None)

    # --- writing ------------------------------------------------------------------------------

    def _flush(self) -> None:
        read, self.read = self.read, []
        cached, self.cached = self.cached, []
        dirty, self.unread_dirty = self.unread_dirty, {}
        requests, self.requests = self.requests, 0
        bytes_read, self.bytes_read = self.bytes_read, 0
        # The one choke point: what no column can hold becomes the object's reason here.
        read = [header_storable(h) for h in read]
        with transaction.atomic():
            status_of: dict[int, str] = {h.pk: h.status for h in cached}
            # Two scans of overlapping prefixes may read the same version at once; the unique
            # constraint keeps one reusable row, and the re-query below picks up whichever won.
            # A row the database refuses is replaced by one of this scan's own (headers_create).
            stored = headers_create(
                [h for h in read if h.reusable], ignore_conflicts=True
            )
            reusable = [h for h in stored if h.reusable]
            # Rows that are not reusable are this scan's own: new rows, never an earlier scan's.
            own = [h for h in stored if not h.reusable]
            # A chunk run again after its worker died finds what that worker linked: a reusable version
            # by its row (below), an object with a row of its own by its key.
            private = [h for h in read if not h.reusable]
            linked_keys = (
                set(
                    ScanObject.objects.filter(
                        scan_id=self.scan.pk,
                        header__bucket=self.scan.bucket,
                        header__key__in=[h.key for h in private],
                    ).values_list("header__key", flat=True)
                )
                if private
                else set()
            )
            own += headers_create([h for h in private if h.key not in linked_keys])
            wanted = {(h.key, h.etag) for h in reusable}
            found: set[tuple[str, str]] = set()
            for key, etag, pk, status in ObjectHeader.objects.filter(
                bucket=self.scan.bucket,
                key__in=[h.key for h in reusable],
                reusable=True,
            ).values_list("key", "etag", "pk", "status"):
                if (key, etag) in wanted:
                    status_of[pk] = status
                    found.add((key, etag))
            # SQLite's INSERT OR IGNORE also skips a row its CHECK refuses, without a word.
            lost = [h for h in reusable if (h.key, h.etag) not in found]
            if lost:
                own += headers_create([stand_in(h, "refused by a check") for h in lost])
            status_of.update({h.pk: h.status for h in own})
            # Only the rows this transaction adds are counted: an object a died attempt already
            # recorded is neither linked nor counted twice.
            linked = set(
                ScanObject.objects.filter(
                    scan_id=self.scan.pk, header_id__in=list(status_of)
                ).values_list("header_id", flat=True)
            )
            new = [pk for pk in status_of if pk not in linked]
            ScanObject.objects.bulk_create(
                [ScanObject(scan_id=self.scan.pk, header_id=pk) for pk in new]
            )
            cached_ids = {h.pk for h in cached}
            resolved = self.unread_in_db.intersection(h.key for h in read + cached)
            if resolved:
                ScanUnread.objects.filter(
                    scan_id=self.scan.pk, key__in=resolved
                ).delete()
                self.unread_in_db -= resolved
            if dirty:
                ScanUnread.objects.bulk_create(
                    [
                        ScanUnread(
                            scan_id=self.scan.pk,
                            key=u.obj.key,
                            etag=u.obj.etag,
                            size=u.obj.size,
                            error=text_storable(str(u.error)),
                            failures=u.failures,
                        )
                        for u in dirty.values()
                    ],
                    update_conflicts=True,
                    unique_fields=["scan", "key"],
                    update_fields=["etag", "size", "error", "failures"],
                )
                self.unread_in_db.update(dirty)
            changes: dict[str, object] = {
                "objects_done": F("objects_done") + len(new),
                "objects_cached": F("objects_cached")
                + sum(pk in cached_ids for pk in new),
                "objects_unreadable": F("objects_unreadable")
                + sum(status_of[pk] == ObjectHeader.Status.UNREADABLE for pk in new),
                "objects_pending": ScanUnread.objects.filter(
                    scan_id=self.scan.pk
                ).count(),
                "requests": F("requests") + requests,
                "bytes_read": F("bytes_read") + bytes_read,
                "heartbeat_at": timezone.now(),
            }
            if self.listed or self.listing_finished:
                changes.update(
                    objects_listed=self.listed,
                    bytes_total=self.bytes_total,
                    folders=len(self.folders),
                )
            if self.listing_finished and not self.listing_finished_written:
                changes["listing_finished_at"] = timezone.now()
                self.listing_finished_written = True
            if self.on_write is not None:
                self.on_write(len(new), requests, self.throttled)
                self.throttled = 0
            Scan.objects.filter(pk=self.scan.pk).update(**changes)
        self.stop_check()
        self.last_flush = time.monotonic()


def _folders_of(key: str, prefix: str) -> Iterable[str]:
    """The nested folders a key sits in, below the scanned prefix (HealthImaging counts these)."""
    parts = key[len(prefix) :].split("/")[:-1]
    return ("/".join(parts[: i + 1]) for i in range(len(parts)))


def check_cancel(scan: Scan) -> None:
    if Scan.objects.filter(pk=scan.pk, cancel_requested=True).exists():
        raise ScanCancelled
