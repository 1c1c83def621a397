"""Tracking import jobs after submission: one poller, the per-file results, external jobs, the email.

Only Celery talks to AWS. Browsers read the database, so the number of people watching a job never
changes the number of GetDICOMImportJob calls: `jobs_poll` (run by beat) asks about each running job at
most once per interval, and spends at most JOBS_POLL_BUDGET calls per run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from imports import aws
from imports.audit import audit_record
from imports.jobs import job_status_audit, jobs_release_queued
from imports.models import AuditEvent, Datastore, ImportJob, ImportJobResult
from imports.validators import split_s3_uri

logger = logging.getLogger(__name__)

MANIFEST = "job-output-manifest.json"
RESULT_FILES = (
    ("SUCCESS/success.ndjson", ImportJobResult.Outcome.SUCCESS),
    ("FAILURE/failure.ndjson", ImportJobResult.Outcome.FAILURE),
    ("WARNING/warning.ndjson", ImportJobResult.Outcome.WARNING),
)
BATCH = 1000
MANIFEST_MAX_BYTES = 16 * 1024 * 1024


# --- Polling --------------------------------------------------------------------------------


def poll_interval(job: ImportJob, now: datetime) -> timedelta:
    """Often while a job is young, rarely once it has run for a while (imports take minutes to hours)."""
    age = (now - (job.submitted_at or job.created_at)).total_seconds()
    if age < 60:
        return timedelta(seconds=settings.JOBS_POLL_FIRST_S)
    if age < 600:
        return timedelta(seconds=10)
    return timedelta(seconds=30)


def jobs_poll() -> int:
    """Ask AWS about every running job that is due; returns the number of GetDICOMImportJob calls."""
    now = timezone.now()
    due = list(
        ImportJob.objects.filter(status__in=ImportJob.AT_AWS)
        .exclude(aws_job_id="")
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .select_related("datastore")
        .order_by(F("next_poll_at").asc(nulls_first=True))[: settings.JOBS_POLL_BUDGET]
    )
    calls = 0
    for job in due:
        # Moving next_poll_at forward is the claim: two pollers overlapping never ask twice.
        if not ImportJob.objects.filter(
            pk=job.pk, status=job.status, next_poll_at=job.next_poll_at
        ).update(next_poll_at=now + poll_interval(job, now)):
            continue
        calls += 1
        try:
            info = aws.import_job_describe(
                region=job.datastore.region,
                datastore_id=job.datastore.datastore_id,
                job_id=job.aws_job_id,
            )
        except aws.AwsError as error:
            logger.warning("Polling import job %s failed: %s", job.pk, error.code)
            continue
        job_apply_aws_status(job, info)
    _requeue_lost_ingestions(now)
    return calls


def job_apply_aws_status(job: ImportJob, info: aws.ImportJobInfo) -> bool:
    """Record what AWS says about a job; True if its status changed."""
    from imports.tasks import job_ingest_results

    new = ImportJob.FROM_AWS.get(info.status)
    if new is None or new == job.status:
        return False
    now = timezone.now()
    updates: dict[str, Any] = {"status": new}
    if new in (
        ImportJob.Status.IN_PROGRESS,
        ImportJob.Status.COMPLETED,
        ImportJob.Status.FAILED,
    ):
        updates["started_at"] = job.started_at or now
    if info.output_s3_uri:
        updates["output_folder_uri"] = info.output_s3_uri
    ended = new in (ImportJob.Status.COMPLETED, ImportJob.Status.FAILED)
    if ended:
        updates.update(
            ended_at=info.ended_at or now,
            message=info.message,
            results=ImportJob.Results.PENDING,
        )
    with transaction.atomic():
        if not ImportJob.objects.filter(pk=job.pk, status=job.status).update(**updates):
            return False
        old = job.status
        for name, value in updates.items():
            setattr(job, name, value)
        job_status_audit(
            job, old, extra=info.message[:200] if new == ImportJob.Status.FAILED else ""
        )
        if ended:
            job_ingest_results.delay_on_commit(job.pk)  # type: ignore[attr-defined]
    if ended:
        jobs_release_queued(datastore_id=job.datastore_id)
    return True


def _requeue_lost_ingestions(now: datetime) -> None:
    """Ended jobs whose results task was lost (or whose reader died) get another one."""
    from imports.tasks import job_ingest_results

    stuck = ImportJob.objects.filter(
        Q(
            results=ImportJob.Results.PENDING,
            ended_at__lt=now - timedelta(seconds=settings.JOBS_MANIFEST_RETRY_S * 3),
        )
        | Q(results=ImportJob.Results.INGESTING, results_lease_until__lt=now)
    ).values_list("pk", flat=True)[: settings.JOBS_POLL_BUDGET]
    for pk in stuck:
        job_ingest_results.delay(pk)


# --- Results --------------------------------------------------------------------------------


def _claim_ingestion(job_id: int) -> ImportJob | None:
    now = timezone.now()
    claimed = ImportJob.objects.filter(
        Q(results=ImportJob.Results.PENDING)
        | Q(results=ImportJob.Results.INGESTING, results_lease_until__lt=now),
        pk=job_id,
    ).update(
        results=ImportJob.Results.INGESTING,
        results_lease_until=now + timedelta(seconds=settings.JOBS_INGEST_LEASE_S),
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
            _release_ingestion(job)
            return float(settings.JOBS_MANIFEST_RETRY_S)
        note = (
            f"The job's {MANIFEST} did not appear within {settings.JOBS_MANIFEST_WAIT_S} s; "
            "the counts below come from the result files alone."
        )
    except aws.AwsError as error:
        if error.transient:
            _release_ingestion(job)
            return float(settings.JOBS_MANIFEST_RETRY_S)
        note = f"The job's {MANIFEST} could not be read: {error}"
    except ValueError as error:
        note = f"The job's {MANIFEST} is not valid: {error}"
    try:
        with transaction.atomic():
            # Idempotent: a second reading of the same files replaces the first.
            ImportJobResult.objects.filter(job=job).delete()
            counts = _ingest_files(job, region, bucket, prefix)
            ImportJob.objects.filter(pk=job.pk).update(
                results=ImportJob.Results.DONE,
                results_lease_until=None,
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
    _enqueue_notify(job)
    return None


def _release_ingestion(job: ImportJob) -> None:
    ImportJob.objects.filter(pk=job.pk, results=ImportJob.Results.INGESTING).update(
        results=ImportJob.Results.PENDING, results_lease_until=None
    )


def _ingestion_problem(job: ImportJob, note: str) -> float | None:
    """Give up reading results (said on the page), and still tell the submitter how the job ended."""
    ImportJob.objects.filter(pk=job.pk).update(
        results=ImportJob.Results.DONE, results_lease_until=None, results_error=note
    )
    job.results_error = note
    _enqueue_notify(job)
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


def _ingest_files(
    job: ImportJob, region: str, bucket: str, prefix: str
) -> dict[str, int]:
    counts = {
        "success_count": 0,
        "failure_count": 0,
        "warning_count": 0,
        "invalid_line_count": 0,
    }
    non_primary: set[str] = set()
    for name, outcome in RESULT_FILES:
        batch: list[ImportJobResult] = []
        try:
            for row in _rows(
                job,
                name,
                outcome,
                aws.s3_iter_lines(region=region, bucket=bucket, key=prefix + name),
            ):
                if row.outcome == ImportJobResult.Outcome.INVALID:
                    counts["invalid_line_count"] += 1
                else:
                    counts[f"{row.outcome}_count"] += 1
                if row.is_primary is False:
                    non_primary.add(row.image_set_id)
                batch.append(row)
                if len(batch) >= BATCH:
                    ImportJobResult.objects.bulk_create(batch)
                    batch = []
        except aws.NotFound:
            pass  # WARNING/ exists only when there are warnings
        if batch:
            ImportJobResult.objects.bulk_create(batch)
    counts["non_primary_count"] = len(non_primary)
    return counts


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
        yield ImportJobResult(
            job=job,
            outcome=outcome,
            line=number,
            input_file=item["inputFile"][:1024],
            image_set_id=str(response.get("imageSetId") or "")[:32],
            image_set_version=version
            if isinstance(version, int) and version >= 0
            else None,
            is_primary=primary if isinstance(primary, bool) else None,
            exception_type=str(exception.get("exceptionType") or "")[:128],
            message=message,
        )


# --- External jobs --------------------------------------------------------------------------


def jobs_sync_external() -> int:
    """Bring jobs started outside the dashboard (console, CLI) into the history; returns how many."""
    found = 0
    now = timezone.now()
    for datastore in Datastore.objects.filter(enabled=True):
        known = set(
            ImportJob.objects.filter(datastore=datastore)
            .exclude(aws_job_id="")
            .values_list("aws_job_id", flat=True)
        )
        try:
            infos = list(
                aws.import_jobs_list(
                    region=datastore.region,
                    datastore_id=datastore.datastore_id,
                    max_pages=settings.JOBS_SYNC_MAX_PAGES,
                )
            )
        except aws.AwsError as error:
            logger.warning(
                "Listing import jobs of datastore %s failed: %s",
                datastore.pk,
                error.code,
            )
            continue
        for info in infos:
            if info.job_id in known:
                continue
            status = ImportJob.FROM_AWS.get(info.status, ImportJob.Status.SUBMITTED)
            ended = status in (ImportJob.Status.COMPLETED, ImportJob.Status.FAILED)
            with transaction.atomic():
                job = ImportJob.objects.create(
                    datastore=datastore,
                    external=True,
                    aws_job_id=info.job_id,
                    job_name=info.job_name[:64],
                    status=status,
                    message=info.message,
                    submitted_at=info.submitted_at,
                    ended_at=info.ended_at if ended else None,
                    next_poll_at=now,
                    results=ImportJob.Results.PENDING
                    if ended
                    else ImportJob.Results.NONE,
                )
                audit_record(
                    actor=None,
                    action=AuditEvent.Action.JOB_DISCOVERED,
                    target=job,
                    summary=f"Found import job {info.job_id} started outside the dashboard "
                    f"in “{datastore.name}” ({job.get_status_display().lower()})",
                    details={"aws_job_id": info.job_id},
                )
                if ended:
                    from imports.tasks import job_ingest_results

                    job_ingest_results.delay_on_commit(job.pk)  # type: ignore[attr-defined]
            found += 1
    return found


# --- The email at the end -------------------------------------------------------------------


def _enqueue_notify(job: ImportJob) -> None:
    from imports.tasks import job_notify

    job_notify.delay_on_commit(job.pk)  # type: ignore[attr-defined]


def job_notify(*, job_id: int) -> bool:
    """Tell the submitter how their job ended, once. True if an email went out."""
    job = (
        ImportJob.objects.select_related("submitted_by", "datastore")
        .filter(pk=job_id)
        .first()
    )
    if (
        job is None
        or not job.has_ended
        or job.submitted_by is None
        or not job.submitted_by.email
    ):
        return False
    if not ImportJob.objects.filter(pk=job.pk, notified_at__isnull=True).update(
        notified_at=timezone.now()
    ):
        return False
    link = settings.SITE_URL.rstrip("/") + reverse("imports:job_detail", args=[job.pk])
    lines = [
        f"Import job {job.pk}{f' ({job.job_name})' if job.job_name else ''} into “{job.datastore.name}”: "
        f"{job.display_status}.",
        "",
    ]
    if job.status == ImportJob.Status.SUBMIT_FAILED:
        lines.append(job.error_message)
    else:
        lines.append(
            f"Files imported: {job.success_count + job.warning_count}, failed: {job.failure_count}, "
            f"with warnings: {job.warning_count}."
        )
        if job.non_primary_count:
            lines.append(f"Non-primary image sets: {job.non_primary_count}.")
        if job.message:
            lines.append(f"HealthImaging said: {job.message}")
        if job.results_error:
            lines.append(job.results_error)
    lines += ["", f"Details: {link}"]
    # No study UIDs or file names in the email: it leaves the dashboard.
    send_mail(
        subject=f"Import job {job.pk}: {job.display_status}",
        message="\n".join(lines),
        from_email=None,
        recipient_list=[job.submitted_by.email],
    )
    return True
