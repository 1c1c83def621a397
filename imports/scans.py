"""Scanning an S3 prefix: list every object, read DICOM headers with ranged GETs, index the result.

The scan runs in a Celery task (imports.tasks.scan_prefix) or inline from `manage.py scan`. Only the
calling thread touches the database; a thread pool does the S3 reads. Results are cached per object
version (bucket, key, ETag) in ObjectHeader, so a rescan of an unchanged prefix issues no GET. The
study/series index is written in one transaction together with the final status, so a failed or
cancelled scan never leaves half an index behind.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from imports import aws
from imports.audit import audit_record
from imports.dicom import HeaderRead, read_header, sniff_kind
from imports.dicomjson import validate_dicom_json
from imports.models import (
    DEFAULT_FILES_PER_JOB,
    MAX_BYTES_PER_JOB,
    AuditEvent,
    Datastore,
    ObjectHeader,
    Scan,
    ScanObject,
    ScanSeries,
    ScanStudy,
)
from imports.services import Actor, s3_problem

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 1000
# Marks an S3 failure while reading (throttling that outlasted retries, a denied GET): such a
# result is not the object's fault and is read again by the next scan.
TRANSIENT_PREFIX = "S3: "
# Results are written (and progress shown) every WRITE_BATCH objects or PROGRESS_INTERVAL_S.
WRITE_BATCH = 500
PROGRESS_INTERVAL_S = 0.5
# Attributes whose disagreement between instances is flagged, by level. The classic reason for an
# override is a StudyDescription or PatientName spelled two ways.
STUDY_ATTRIBUTES = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "StudyDate": "study_date",
    "StudyDescription": "study_description",
    "AccessionNumber": "accession_number",
}
SERIES_ATTRIBUTES = {
    "Modality": "modality",
    "SeriesNumber": "series_number",
    "SeriesDescription": "series_description",
}


class ScanCancelled(Exception):
    pass


# --- Starting and cancelling ----------------------------------------------------------------


def scan_start(
    *,
    actor: Actor,
    bucket: str,
    prefix: str,
    region: str,
    datastore: Datastore | None = None,
    enqueue: bool = True,
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
            )
            audit_record(
                actor=actor,
                action=AuditEvent.Action.SCAN_STARTED,
                target=scan,
                summary=f"Started a scan of {scan.uri}",
            )
            if enqueue:
                from imports.tasks import scan_prefix  # here: tasks imports this module

                # celery-types does not know DjangoTask, which Celery's Django fixup installs.
                scan_prefix.delay_on_commit(scan.pk)  # type: ignore[attr-defined]
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


def scans_recover_stalled() -> list[int]:
    """Requeue running scans whose worker died (no heartbeat for SCAN_STALL_TIMEOUT_S); run by beat.

    A worker killed mid-scan leaves its scan RUNNING, and the redelivered message cannot claim it
    again; without this the prefix could never be scanned again. Objects already read are in the
    cache, so the second attempt only reads the rest. After SCAN_MAX_ATTEMPTS the scan fails instead.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.SCAN_STALL_TIMEOUT_S)
    stalled = Scan.objects.filter(status=Scan.Status.RUNNING, heartbeat_at__lt=cutoff)
    requeued: list[int] = []
    for scan in stalled:
        if scan.attempts >= settings.SCAN_MAX_ATTEMPTS:
            Scan.objects.filter(
                pk=scan.pk, status=Scan.Status.RUNNING, heartbeat_at__lt=cutoff
            ).update(
                status=Scan.Status.FAILED,
                error=f"The scan stopped {scan.attempts} times without finishing (its worker was lost); start it again.",
                finished_at=timezone.now(),
            )
            continue
        with transaction.atomic():
            # Conditional, so that a scan that just came back to life is left alone.
            if Scan.objects.filter(
                pk=scan.pk, status=Scan.Status.RUNNING, heartbeat_at__lt=cutoff
            ).update(status=Scan.Status.QUEUED):
                from imports.tasks import scan_prefix  # here: tasks imports this module

                scan_prefix.delay_on_commit(scan.pk)  # type: ignore[attr-defined]
                requeued.append(scan.pk)
    if requeued:
        logger.warning("Requeued stalled scans %s", requeued)
    return requeued


# --- Running --------------------------------------------------------------------------------


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
            if header is not None and not _is_transient(header):
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


def _is_transient(header: ObjectHeader) -> bool:
    """An S3 error (not the file's fault) during an earlier read: read again rather than trust it."""
    return header.status == ObjectHeader.Status.UNREADABLE and header.error.startswith(
        TRANSIENT_PREFIX
    )


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


# --- Reading one object (runs in the pool: no database access here) -------------------------


class FirstReadSizes:
    """How many bytes to fetch first, learnt per folder from the headers read there.

    Files of one series sit in one folder and have headers of nearly the same length, so after a
    few reads each object of the folder costs one ranged GET of little more than its header. A
    folder starts at the configured size; a sample is a header whose length the reader saw.
    """

    SAMPLES = 16
    FOLDERS = 1000
    STEP = 8 * 1024
    CEILING = 1024 * 1024

    def __init__(self, default: int) -> None:
        self.default = default
        self.samples: dict[str, deque[int]] = {}

    def size_for(self, key: str) -> int:
        samples = self.samples.get(key.rpartition("/")[0])
        if not samples:
            return self.default
        # A quarter more than the median header, in whole steps: small enough to stay near
        # the header, large enough that the folder's slightly longer headers still fit.
        median = sorted(samples)[len(samples) // 2]
        return min(
            self.CEILING, max(self.STEP, -(-(median * 5 // 4) // self.STEP) * self.STEP)
        )

    def observe(self, header: ObjectHeader) -> None:
        if (
            header.kind != ObjectHeader.Kind.DICOM
            or header.status != ObjectHeader.Status.OK
        ):
            return
        if header.header_length is None:
            return
        folder = header.key.rpartition("/")[0]
        if folder not in self.samples and len(self.samples) >= self.FOLDERS:
            self.samples.pop(
                next(iter(self.samples))
            )  # forget the oldest folder: memory stays flat
        self.samples.setdefault(folder, deque(maxlen=self.SAMPLES)).append(
            header.header_length
        )


def read_object(
    region: str, bucket: str, obj: aws.S3Object, first_read: int | None = None
) -> ObjectHeader:
    """Read what the scan needs from one object version. Never raises: problems become the status."""
    header = ObjectHeader(bucket=bucket, key=obj.key, etag=obj.etag, size=obj.size)
    name_kind = sniff_kind(obj.key, b"")
    if obj.size == 0:
        header.kind = name_kind
        header.status = (
            ObjectHeader.Status.UNREADABLE
            if name_kind != "json"
            else ObjectHeader.Status.JSON_INVALID
        )
        header.error = "0-byte object"
        return header
    if name_kind == "json":
        return _read_json(region, bucket, obj, header, head=b"")
    first_bytes: list[bytes] = []

    def fetch(start: int, end: int) -> bytes:
        data = aws.s3_get_range(
            region=region, bucket=bucket, key=obj.key, start=start, end=end
        )
        if start == 0 and not first_bytes:
            first_bytes.append(data)
        return data

    try:
        # read_header lets fetch's errors through, so an S3 failure is never taken for a bad file.
        result = read_header(
            fetch,
            size=obj.size,
            first_read=first_read or settings.SCAN_FIRST_READ_BYTES,
        )
    except aws.AwsError as error:
        # Not the file's fault: marked so that the next scan reads it again.
        header.kind = name_kind
        header.status = ObjectHeader.Status.UNREADABLE
        header.error = f"{TRANSIENT_PREFIX}{error}"
        return header
    head = first_bytes[0] if first_bytes else b""
    if (
        result.status == "not_dicom"
        and name_kind == "other"
        and sniff_kind(obj.key, head) == "json"
    ):
        return _read_json(
            region, bucket, obj, header, head=head, requests=result.requests
        )
    _apply_header(header, result, name_kind)
    return header


def _apply_header(header: ObjectHeader, result: HeaderRead, name_kind: str) -> None:
    header.requests = result.requests
    header.bytes_read = result.bytes_read
    header.header_length = result.header_length
    if result.status == "not_dicom":
        header.kind = (
            ObjectHeader.Kind.OTHER if name_kind != "dicom" else ObjectHeader.Kind.DICOM
        )
        header.status = ObjectHeader.Status.NOT_DICOM
        header.error = result.error
        return
    header.kind = ObjectHeader.Kind.DICOM
    header.status = (
        ObjectHeader.Status.OK
        if result.status == "ok"
        else ObjectHeader.Status.UNREADABLE
    )
    header.error = result.error
    missing = [
        name
        for name, value in (
            ("TransferSyntaxUID", result.transfer_syntax_uid),
            ("SOPInstanceUID", result.sop_instance_uid),
            ("StudyInstanceUID", result.study_instance_uid),
            ("SeriesInstanceUID", result.series_instance_uid),
        )
        if not value
    ]
    if header.status == ObjectHeader.Status.OK and missing:
        # HealthImaging rejects such files; say so now rather than after the import.
        header.status = ObjectHeader.Status.UNREADABLE
        header.error = (
            f"Missing {', '.join(missing)}: HealthImaging rejects files without it."
        )
    header.transfer_syntax_uid = result.transfer_syntax_uid or ""
    header.sop_class_uid = result.sop_class_uid or ""
    header.sop_instance_uid = result.sop_instance_uid or ""
    header.study_instance_uid = result.study_instance_uid or ""
    header.series_instance_uid = result.series_instance_uid or ""
    header.patient_name = result.patient_name or ""
    header.patient_id = result.patient_id or ""
    header.study_date = result.study_date or ""
    header.study_description = result.study_description or ""
    header.accession_number = result.accession_number or ""
    header.modality = result.modality or ""
    header.series_number = result.series_number
    header.series_description = result.series_description or ""
    header.instance_number = result.instance_number


def _read_json(
    region: str,
    bucket: str,
    obj: aws.S3Object,
    header: ObjectHeader,
    *,
    head: bytes,
    requests: int = 0,
) -> ObjectHeader:
    header.kind = ObjectHeader.Kind.JSON
    limit = settings.SCAN_JSON_MAX_BYTES
    if obj.size > limit:
        header.status = ObjectHeader.Status.JSON_INVALID
        header.error = (
            f"The file is {obj.size:,} bytes; metadata files over {limit:,} bytes are not read "
            "(a DICOM JSON header override is a few kilobytes)."
        )
        header.requests = requests
        return header
    try:
        data = (
            head
            if len(head) >= obj.size
            else aws.s3_get_range(
                region=region, bucket=bucket, key=obj.key, start=0, end=obj.size - 1
            )
        )
    except aws.AwsError as error:
        header.status = ObjectHeader.Status.UNREADABLE
        header.error = f"{TRANSIENT_PREFIX}{error}"
        return header
    header.requests = requests + (0 if len(head) >= obj.size else 1)
    header.bytes_read = len(data) + (len(head) if len(head) < obj.size else 0)
    check = validate_dicom_json(data, max_bytes=limit)
    header.status = (
        ObjectHeader.Status.JSON_VALID
        if check.is_valid
        else ObjectHeader.Status.JSON_INVALID
    )
    header.json_study_uids = sorted(check.study_uids)
    header.json_series_uids = sorted(check.series_uids)
    header.json_errors = [
        {"path": issue.path, "message": issue.message} for issue in check.errors[:50]
    ]
    header.error = check.errors[0].message if check.errors else ""
    return header


# --- The index ------------------------------------------------------------------------------


def _finish_with_index(scan: Scan, progress: _Progress) -> None:
    _save_progress(scan, progress)
    with transaction.atomic():
        _build_index(scan)
        Scan.objects.filter(pk=scan.pk).update(
            status=Scan.Status.COMPLETED, finished_at=timezone.now()
        )


def _build_index(scan: Scan) -> None:
    """Group the scan's readable DICOM instances into studies and series, flagging disagreements."""
    fields = [
        "study_instance_uid",
        "series_instance_uid",
        "size",
        "transfer_syntax_uid",
        "pk",
    ]
    fields += list(STUDY_ATTRIBUTES.values()) + list(SERIES_ATTRIBUTES.values())
    rows = (
        ObjectHeader.objects.filter(
            pk__in=ScanObject.objects.filter(scan=scan).values("header_id")
        )
        .filter(kind=ObjectHeader.Kind.DICOM, status=ObjectHeader.Status.OK)
        .order_by("study_instance_uid", "series_instance_uid", "instance_number", "key")
        .values(*fields)
    )
    studies: list[ScanStudy] = []
    series_by_study: list[list[ScanSeries]] = []
    study_values: dict[str, dict[Any, int]] = {}
    series_values: dict[str, dict[Any, int]] = {}
    current_study: ScanStudy | None = None
    current_series: ScanSeries | None = None
    for row in rows.iterator(chunk_size=2000):
        if (
            current_study is None
            or row["study_instance_uid"] != current_study.study_instance_uid
        ):
            if current_study is not None and current_series is not None:
                _close(current_series, series_values, SERIES_ATTRIBUTES)
                _close(current_study, study_values, STUDY_ATTRIBUTES)
            current_study = ScanStudy(
                scan=scan,
                study_instance_uid=row["study_instance_uid"],
                instance_count=0,
                bytes=0,
            )
            studies.append(current_study)
            series_by_study.append([])
            study_values = {name: {} for name in STUDY_ATTRIBUTES}
            current_series = None
        if (
            current_series is None
            or row["series_instance_uid"] != current_series.series_instance_uid
        ):
            if current_series is not None:
                _close(current_series, series_values, SERIES_ATTRIBUTES)
            current_series = ScanSeries(
                series_instance_uid=row["series_instance_uid"],
                instance_count=0,
                bytes=0,
                sample_header_id=row["pk"],
            )
            series_by_study[-1].append(current_series)
            series_values = {name: {} for name in SERIES_ATTRIBUTES}
        for target in (current_study, current_series):
            target.instance_count += 1
            target.bytes += row["size"]
        if row["transfer_syntax_uid"] not in current_series.transfer_syntaxes:
            current_series.transfer_syntaxes.append(row["transfer_syntax_uid"])
        for name, column in STUDY_ATTRIBUTES.items():
            study_values[name][row[column]] = study_values[name].get(row[column], 0) + 1
        for name, column in SERIES_ATTRIBUTES.items():
            series_values[name][row[column]] = (
                series_values[name].get(row[column], 0) + 1
            )
    if current_study is not None and current_series is not None:
        _close(current_study, study_values, STUDY_ATTRIBUTES)
        _close(current_series, series_values, SERIES_ATTRIBUTES)
    ScanStudy.objects.bulk_create(studies)
    for study, series_list in zip(studies, series_by_study, strict=True):
        for series in series_list:
            series.study = study
    ScanSeries.objects.bulk_create(
        [series for series_list in series_by_study for series in series_list]
    )


def _close(
    target: ScanStudy | ScanSeries,
    values: dict[str, dict[Any, int]],
    attributes: dict[str, str],
) -> None:
    """Set each attribute to its most common value and record the attributes spelled more than one way."""
    variants: dict[str, list[Any]] = {}
    for name, column in attributes.items():
        counts = values[name]
        ranked = sorted(counts, key=lambda value: (-counts[value], str(value)))
        setattr(target, column, ranked[0] if ranked else None)
        if len(ranked) > 1:
            variants[name] = ranked
    target.variants = variants
