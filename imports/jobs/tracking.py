"""Tracking import jobs after submission: one poller, external jobs, the email at the end.

Only Celery talks to AWS. Browsers read the database, so the number of people watching a job never
changes the number of GetDICOMImportJob calls: `jobs_poll` (run by beat) asks about each running job at
most once per interval, and spends at most JOBS_POLL_BUDGET calls per run. When a job ends, its
results are read by imports.jobs.results.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from imports.audit.records import audit_record
from imports.aws import client as aws
from imports.enqueue import JOB_INGEST_RESULTS, enqueue_task
from imports.jobs import leases, verification
from imports.jobs.submit import job_status_audit, jobs_release_queued
from imports.models import AuditEvent, Datastore, ImportJob

logger = logging.getLogger(__name__)

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
    """Ask AWS about every running job that is due; returns the number of GetDICOMImportJob calls.

    One poll at a time (a lease), each bounded in time: see JOBS_POLL_* in config/settings.py.
    """
    # The lease outlives the task's hard time limit, so a killed poll is replaced, never doubled.
    with leases.lease_held(POLL_LEASE, seconds=POLL_LEASE_S) as held:
        if not held:
            logger.info("Another poll is running; this one stops")
            return 0
        return _poll_due()


POLL_LEASE = "jobs_poll"
POLL_LEASE_S = 150.0  # the poll task's time_limit (imports/tasks.py)


def _poll_due() -> int:
    now = timezone.now()
    started = time.monotonic()
    due = list(
        ImportJob.objects.filter(status__in=ImportJob.AT_AWS)
        .exclude(aws_job_id="")
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .select_related("datastore")
        .order_by(F("next_poll_at").asc(nulls_first=True))[: settings.JOBS_POLL_BUDGET]
    )
    calls = failures_in_a_row = 0
    for job in due:
        if time.monotonic() - started > settings.JOBS_POLL_TIME_BUDGET_S:
            logger.warning(
                "Poll time budget spent; %s jobs wait for the next poll",
                len(due) - calls,
            )
            break
        if failures_in_a_row >= settings.JOBS_POLL_FAILURES_TO_STOP:
            logger.warning(
                "HealthImaging is away (%s failed calls in a row); the next poll tries again",
                failures_in_a_row,
            )
            break
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
                for_poll=True,
            )
        except aws.AwsError as error:
            logger.warning("Polling import job %s failed: %s", job.pk, error.code)
            # Only what says HealthImaging is away (throttling, 5xx, no answer) counts towards
            # stopping; a job AWS no longer knows says nothing about the others.
            failures_in_a_row = failures_in_a_row + 1 if error.transient else 0
            continue
        failures_in_a_row = 0
        job_apply_aws_status(job, info)
    _requeue_lost_ingestions(now)
    verification.jobs_verification_requeue()
    return calls


def job_apply_aws_status(job: ImportJob, info: aws.ImportJobInfo) -> bool:
    """Record what AWS says about a job; True if its status changed."""
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
            enqueue_task(JOB_INGEST_RESULTS, job.pk)
    if ended:
        jobs_release_queued(datastore_id=job.datastore_id)
    return True


def _requeue_lost_ingestions(now: datetime) -> None:
    """Ended jobs whose results task was lost (or whose reader died) get another one."""
    stuck = ImportJob.objects.filter(
        Q(
            results=ImportJob.Results.PENDING,
            ended_at__lt=now - timedelta(seconds=settings.JOBS_MANIFEST_RETRY_S * 3),
        )
        | Q(results=ImportJob.Results.INGESTING, results_lease_until__lt=now)
    ).values_list("pk", flat=True)[: settings.JOBS_POLL_BUDGET]
    for pk in stuck:
        enqueue_task(JOB_INGEST_RESULTS, pk)


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
        # Dashboard jobs still submitting: an AWS job of theirs is theirs to record (the same token
        # gets its ID back), not a job "started outside the dashboard".
        submitting = list(
            ImportJob.objects.filter(
                datastore=datastore,
                external=False,
                status__in=(ImportJob.Status.PENDING, ImportJob.Status.SUBMITTING),
                first_attempt_at__isnull=False,
            )
            .exclude(job_name="")
            .values_list("job_name", "first_attempt_at")
        )
        for info in infos:
            if info.job_id in known or _ours_still_submitting(info, submitting):
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
                    enqueue_task(JOB_INGEST_RESULTS, job.pk)
            found += 1
    return found


def _ours_still_submitting(
    info: aws.ImportJobInfo, submitting: list[tuple[str, datetime | None]]
) -> bool:
    submitted = info.submitted_at
    if submitted is None:
        return False
    return any(
        name == info.job_name
        and first is not None
        and submitted >= first - timedelta(seconds=60)  # clock skew with AWS
        for name, first in submitting
    )


# --- The email at the end -------------------------------------------------------------------


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
