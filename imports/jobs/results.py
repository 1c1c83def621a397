"""A finished job's results: the manifest and the SUCCESS, FAILURE and WARNING ndjson files, read once.

A job that says COMPLETED can still have failed files, so the per-file outcome is what the job page
shows. Tracking (`imports.jobs.tracking`) enqueues this when a job ends.

The reader claims the job with a short lease (JOBS_INGEST_LEASE_S) under a token of its own. It stores
the rows 1,000 at a time, each batch in one transaction with the lease renewed and the place it reached
([file, line]), so:
- a reader that dies is replaced once its lease runs out (about 2 minutes, not the length of the read),
  and the replacement resumes after the last stored line: no row twice, none missing;
- a reader that was only slow, and has been replaced meanwhile, finds its token gone at its next batch
  and stops, storing nothing more;
- reading a job's results again from the start (no place stored) replaces the rows the last reading
  stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from imports.audit.records import audit_record
from imports.aws import client as aws
from imports.enqueue import JOB_NOTIFY, enqueue_task
from imports.jobs import verification
from imports.models import AuditEvent, ImportJob, ImportJobResult
from imports.storable_text import text_storable
from imports.validators import split_s3_uri

MANIFEST = "job-output-manifest.json"
RESULT_FILES = (
    ("SUCCESS/success.ndjson", ImportJobResult.Outcome.SUCCESS),
    ("FAILURE/failure.ndjson", ImportJobResult.Outcome.FAILURE),
    ("WARNING/warning.ndjson", ImportJobResult.Outcome.WARNING),
)
BATCH = 1000
MANIFEST_MAX_BYTES = 16 * 1024 * 1024


class _Superseded(Exception):
    """Another reader claimed the job after this one's lease ran out: this one stops."""


def _lease_until() -> Any:
    return timezone.now() + timedelta(seconds=settings.JOBS_INGEST_LEASE_S)


def _claim_ingestion(job_id: int) -> ImportJob | None:
    now = timezone.now()
    claimed = ImportJob.objects.filter(
        Q(results=ImportJob.Results.PENDING)
        | Q(results=ImportJob.Results.INGESTING, results_lease_until__lt=now),
        pk=job_id,
    ).update(
        results=ImportJob.Results.INGESTING,
        results_lease_until=_lease_until(),
        results_reader=str(uuid.uuid4()),
    )
    return (
        ImportJob.objects.select_related("datastore").get(pk=job_id)
        if claimed
        else None
    )


def job_ingest_results(*, job_id: int) -> float | None:
    """Read a finished job's manifest and ndjson files into the database.

    Returns the seconds after which to try again while the manifest has not appeared yet (it can
    appear after the status changes), else None.
    """
    job = _claim_ingestion(job_id)
    if job is None:
        return None
    region = job.datastore.region
    folder = job.output_folder_uri
    if not folder:
        # External jobs come from ListDICOMImportJobs, whose summaries carry no output URI.
        try:
            info = aws.import_job_describe(
                region=region,
                datastore_id=job.datastore.datastore_id,
                job_id=job.aws_job_id,
            )
        except aws.AwsError as error:
            return _ingestion_problem(
                job, f"Could not find the job's output folder: {error}"
            )
        folder = info.output_s3_uri
    if not folder.endswith("/"):
        folder += "/"
    bucket, prefix = split_s3_uri(folder)
    summary: dict[str, Any] = {}
    note = ""
    try:
        raw = aws.s3_read_object(
            region=region,
            bucket=bucket,
            key=prefix + MANIFEST,
            max_bytes=MANIFEST_MAX_BYTES,
        )
        summary = _manifest_summary(raw)
    except aws.NotFound:
        waited = (timezone.now() - (job.ended_at or timezone.now())).total_seconds()
        if waited < settings.JOBS_MANIFEST_WAIT_S:
            return _wait_holding_claim(job)
        note = (
            f"The job's {MANIFEST} did not appear within {settings.JOBS_MANIFEST_WAIT_S} s; "
            "the counts below come from the result files alone."
        )
    except aws.AwsError as error:
        if error.transient:
            return _wait_holding_claim(job)
        note = f"The job's {MANIFEST} could not be read: {error}"
    except ValueError as error:
        note = f"The job's {MANIFEST} is not valid: {error}"
    try:
        _ingest_files(job, region, bucket, prefix)
        with transaction.atomic():
            counts = _counts(job)
            finished = ImportJob.objects.filter(
                pk=job.pk, results_reader=job.results_reader
            ).update(
                results=ImportJob.Results.DONE,
                results_lease_until=None,
                results_reader="",
                results_resume=[],
                results_error=note,
                output_folder_uri=folder,
                scanned_files=summary.get("numberOfScannedFiles"),
                imported_files=summary.get("numberOfImportedFiles"),
                customer_error_files=summary.get("numberOfFilesWithCustomerError"),
                server_error_files=summary.get("numberOfFilesWithServerError"),
                generated_image_sets=summary.get("numberOfGeneratedImageSets"),
                image_sets=summary.get("imageSetsSummary") or [],
                **counts,
            )
        if not finished:
            raise _Superseded
    except _Superseded:
        return None  # the reader that replaced this one finishes the job
    except aws.AwsError as error:
        if error.transient:
            _release_ingestion(job)
            return float(settings.JOBS_MANIFEST_RETRY_S)
        return _ingestion_problem(
            job, f"The job's result files could not be read: {error}"
        )
    job.refresh_from_db()
    audit_record(
        actor=None,
        action=AuditEvent.Action.JOB_STATUS_CHANGED,
        target=job,
        summary=f"Import job {job.pk}: results read, {job.display_status.lower()} "
        f"({job.success_count + job.warning_count} imported, {job.failure_count} failed"
        + (
            f", {job.non_primary_count} non-primary image sets"
            if job.non_primary_count
            else ""
        )
        + ")",
        details={"to": job.status_code, "results": counts},
    )
    enqueue_task(JOB_NOTIFY, job.pk)
    # Did the overrides land, and did the prediction come true? Never part of the job's own outcome.
    verification.job_verification_queue(job_id=job.pk)
    return None


def _wait_holding_claim(job: ImportJob) -> float:
    """Try again in JOBS_MANIFEST_RETRY_S, keeping the claim until then.

    The lease runs out exactly when this task's retry is due, so the poller (which requeues only a
    PENDING job or an INGESTING one whose lease ran out) adds no second reader meanwhile: one waiter
    per job, one manifest GET per retry interval, however long the manifest is late.
    """
    retry_s = float(settings.JOBS_MANIFEST_RETRY_S)
    ImportJob.objects.filter(
        pk=job.pk,
        results=ImportJob.Results.INGESTING,
        results_reader=job.results_reader,
    ).update(results_lease_until=timezone.now() + timedelta(seconds=retry_s))
    return retry_s


def _release_ingestion(job: ImportJob) -> None:
    """Back to PENDING, keeping the place reached: the next reader resumes there."""
    ImportJob.objects.filter(
        pk=job.pk,
        results=ImportJob.Results.INGESTING,
        results_reader=job.results_reader,
    ).update(results=ImportJob.Results.PENDING, results_lease_until=None)


def _ingestion_problem(job: ImportJob, note: str) -> float | None:
    """Give up reading results (said on the page), and still tell the submitter how the job ended."""
    # What was stored before the failure stays, counted, beside the reason.
    ImportJob.objects.filter(pk=job.pk, results_reader=job.results_reader).update(
        results=ImportJob.Results.DONE,
        results_lease_until=None,
        results_reader="",
        results_resume=[],
        results_error=note,
        verification=ImportJob.Verification.NOT_VERIFIED,
        verification_detail={"reason": f"the job's results could not be read ({note})"},
        **_counts(job),
    )
    job.results_error = note
    enqueue_task(JOB_NOTIFY, job.pk)
    return None


def _manifest_summary(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ValueError("it is not JSON") from error
    summary = document.get("jobSummary") if isinstance(document, dict) else None
    if not isinstance(summary, dict):
        raise ValueError("it has no jobSummary")
    clean: dict[str, Any] = {}
    for name in (
        "numberOfScannedFiles",
        "numberOfImportedFiles",
        "numberOfFilesWithCustomerError",
        "numberOfFilesWithServerError",
        "numberOfGeneratedImageSets",
    ):
        value = summary.get(name)
        clean[name] = value if isinstance(value, int) and value >= 0 else None
    image_sets = summary.get("imageSetsSummary")
    if isinstance(image_sets, list):
        clean["imageSetsSummary"] = [
            {
                "imageSetId": str(s.get("imageSetId", ""))[:64],
                "imageSetVersion": s.get("imageSetVersion"),
                "isPrimary": s.get("isPrimary"),
                "numberOfMatchedSOPInstances": s.get("numberOfMatchedSOPInstances"),
            }
            for s in image_sets
            if isinstance(s, dict)
        ]
    return clean


def _ingest_files(job: ImportJob, region: str, bucket: str, prefix: str) -> None:
    """Store the result files' rows, resuming after the place a replaced reader stored."""
    reader = job.results_reader
    stored = job.results_resume
    resume: tuple[int, int] = (-1, 0)
    if isinstance(stored, list) and len(stored) == 2:
        resume = (int(stored[0]), int(stored[1]))
    else:
        # From the start: a second reading of the same files replaces the first.
        with transaction.atomic():
            _renew(job, reader, resume)
            ImportJobResult.objects.filter(job=job).delete()
    for index, (name, outcome) in enumerate(RESULT_FILES):
        if index < resume[0]:
            continue  # stored whole by the reader this one replaces
        batch: list[ImportJobResult] = []
        try:
            for row in _rows(
                job,
                name,
                outcome,
                aws.s3_iter_lines(region=region, bucket=bucket, key=prefix + name),
            ):
                if (index, row.line) <= resume:
                    continue
                batch.append(row)
                if len(batch) >= BATCH:
                    _store(job, reader, batch, (index, row.line))
                    batch = []
        except aws.NotFound:
            pass  # WARNING/ exists only when there are warnings
        if batch:
            _store(job, reader, batch, (index, batch[-1].line))


def _renew(job: ImportJob, reader: str, place: tuple[int, int]) -> None:
    """Renew this reader's lease and record its place, inside the caller's transaction."""
    renewed = ImportJob.objects.filter(
        pk=job.pk, results=ImportJob.Results.INGESTING, results_reader=reader
    ).update(results_lease_until=_lease_until(), results_resume=list(place))
    if not renewed:
        raise _Superseded


def _store(
    job: ImportJob, reader: str, batch: list[ImportJobResult], place: tuple[int, int]
) -> None:
    with transaction.atomic():
        _renew(job, reader, place)
        ImportJobResult.objects.bulk_create(batch)


def _counts(job: ImportJob) -> dict[str, int]:
    """The job's tallies from its stored rows (a resumed reading saw only part of the files)."""
    by_outcome = dict(
        ImportJobResult.objects.filter(job=job)
        .values("outcome")
        .annotate(n=Count("pk"))
        .values_list("outcome", "n")
    )
    return {
        "success_count": by_outcome.get(ImportJobResult.Outcome.SUCCESS, 0),
        "failure_count": by_outcome.get(ImportJobResult.Outcome.FAILURE, 0),
        "warning_count": by_outcome.get(ImportJobResult.Outcome.WARNING, 0),
        "invalid_line_count": by_outcome.get(ImportJobResult.Outcome.INVALID, 0),
        "non_primary_count": ImportJobResult.objects.filter(job=job, is_primary=False)
        .values("image_set_id")
        .distinct()
        .count(),
    }


def _member(item: dict[str, Any], name: str) -> dict[str, Any]:
    value = item.get(name)
    return value if isinstance(value, dict) else {}


def _rows(
    job: ImportJob, name: str, outcome: ImportJobResult.Outcome, lines: Iterator[bytes]
) -> Iterator[ImportJobResult]:
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            if not isinstance(item, dict) or not isinstance(item.get("inputFile"), str):
                raise ValueError("no inputFile")
        except (ValueError, RecursionError):
            # One bad line must not cost the others: it is kept as a row of its own.
            yield ImportJobResult(
                job=job,
                outcome=ImportJobResult.Outcome.INVALID,
                line=number,
                message=f"Line {number} of {name} is not a result line HealthImaging documents; "
                "it was skipped.",
            )
            continue
        response = _member(item, "importResponse")
        exception = _member(item, "exception")
        version = response.get("imageSetVersion")
        primary = response.get("isPrimary")
        message = str(exception.get("message") or "")
        warnings = response.get("warnings")
        if isinstance(warnings, list):
            message = "; ".join(
                f"{w.get('type', 'warning')}: {w.get('message', '')}".strip()
                for w in warnings
                if isinstance(w, dict)
            )
        # The result files are AWS's, but their text comes from the input (keys, exception messages): a NUL
        # or a lone surrogate there would fail the whole batch, so it becomes U+FFFD, as in the scan.
        yield ImportJobResult(
            job=job,
            outcome=outcome,
            line=number,
            input_file=text_storable(item["inputFile"][:1024]),
            image_set_id=text_storable(str(response.get("imageSetId") or "")[:32]),
            image_set_version=version
            if isinstance(version, int) and version >= 0
            else None,
            is_primary=primary if isinstance(primary, bool) else None,
            exception_type=text_storable(
                str(exception.get("exceptionType") or "")[:128]
            ),
            message=text_storable(message),
        )
