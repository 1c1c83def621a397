"""Import jobs: confirm one, submit it to HealthImaging exactly once, queue it behind the datastore's quota.

The hand-off from the composer is `job_create`. From there a Celery task (`imports.tasks.job_submit`)
calls `job_submit`, which claims the job, waits for the datastore's shared StartDICOMImportJob slot and calls
StartDICOMImportJob with the job's own clientToken. Because AWS answers a repeated token with the job
it already made, every retry (ours, Celery's, or a second worker's after a crash) lands on the same AWS
job. Tracking (polling, results, external jobs) lives in `imports.jobs.tracking`.
"""

from __future__ import annotations

import copy
import logging
import random
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from imports.audit.records import Actor, audit_record
from imports.aws import client as aws
from imports.enqueue import JOB_NOTIFY, JOB_SUBMIT, enqueue_task
from imports.jobs import limiter
from imports.jobs.derived import SameRequest, job_same_request
from imports.jobs.request import (
    InvalidJobRequest,
    request_mappings,
    request_problems,
    request_sha256,
)
from imports.models import (
    AuditEvent,
    Datastore,
    ImportDraft,
    ImportJob,
)
from imports.validators import split_s3_uri

logger = logging.getLogger(__name__)


# --- Confirming: the composer's hand-off ----------------------------------------------------


def job_create(
    *,
    actor: Actor,
    draft: ImportDraft | None,
    datastore: Datastore,
    request: dict[str, Any],
    idempotency_key: str,
    import_again: bool = False,
    prediction: dict[str, Any] | None = None,
) -> ImportJob:
    """Store a confirmed job (PENDING) with its exact request and a fresh clientToken; submit on commit.

    A second call with the same `idempotency_key` (a double POST) returns the first call's job.
    Raises InvalidJobRequest if the request's shape is wrong, and SameRequest if a job of the last
    JOBS_DUPLICATE_WINDOW_DAYS made this same request and `import_again` is not given; nothing is stored then.
    With `import_again`, the audit event names the earlier job. `prediction` is what the submission
    predicted (imports.drafts.prediction.prediction_for_job), kept with the job for its verification.
    """
    existing = ImportJob.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    problems = request_problems(request, datastore=datastore)
    if problems:
        raise InvalidJobRequest(problems)
    earlier = job_same_request(datastore=datastore, request=request)
    if earlier is not None and not import_again:
        raise SameRequest(earlier)
    request = copy.deepcopy(request)
    client_token = str(uuid.uuid4())
    digest = request_sha256(request, client_token)
    mapping_count = len(request_mappings(request))
    try:
        with transaction.atomic():
            job = ImportJob.objects.create(
                datastore=datastore,
                draft=draft,
                submitted_by=actor if isinstance(actor, User) else None,
                request=request,
                request_sha256=digest,
                client_token=client_token,
                idempotency_key=idempotency_key,
                job_name=request.get("jobName", ""),
                input_s3_uri=request["inputS3Uri"],
                input_bucket=split_s3_uri(request["inputS3Uri"])[0],
                mapping_count=mapping_count,
                prediction=prediction or {},
            )
            # No UIDs in the audit trail's details: mappings name studies (PHI-adjacent).
            audit_record(
                actor=actor,
                action=AuditEvent.Action.JOB_CREATED,
                target=job,
                summary=f"Confirmed import job {job.pk} into “{datastore.name}” from "
                f"{job.input_s3_uri} ({mapping_count} mapping{'s' if mapping_count != 1 else ''})"
                + (
                    f", importing again what job {earlier.pk} imported"
                    if earlier
                    else ""
                ),
                details={
                    "sha256": digest,
                    "client_token": client_token,
                    "draft": draft.pk if draft else None,
                    "input_s3_uri": job.input_s3_uri,
                    "output_s3_uri": request["outputS3Uri"],
                    "mappings": mapping_count,
                    **(
                        {"prediction": _prediction_counts(prediction)}
                        if prediction
                        else {}
                    ),
                    **({"import_again_of": earlier.pk} if earlier else {}),
                },
            )
            # With the broker down the job stays PENDING ("waiting for a worker"): beat sends it again.
            enqueue_task(JOB_SUBMIT, job.pk)
    except IntegrityError:
        # The same key won a race with us: that job is the one.
        job = ImportJob.objects.get(idempotency_key=idempotency_key)
    return job


def _prediction_counts(prediction: dict[str, Any]) -> dict[str, Any]:
    # Counts only: the series entries name studies (PHI-adjacent), which the trail never holds.
    return {
        name: prediction.get(name)
        for name in ("new", "adds_to", "non_primary", "not_predicted")
    }


# --- Submitting -----------------------------------------------------------------------------

# What to do about each permanent StartDICOMImportJob error, in words an administrator can act on.
PERMANENT_ERRORS = {
    "ValidationException": "HealthImaging refused the request as invalid. Clone the job as a new draft, "
    "correct what AWS names below, and submit again.",
    "AccessDeniedException": "HealthImaging cannot assume the data access role, or the dashboard may not "
    "start imports: check the role's trust policy (principal medical-imaging.amazonaws.com), its S3 "
    "permissions, and that the dashboard's credentials allow medical-imaging:StartDICOMImportJob and "
    "iam:PassRole on the role.",
    "ConflictException": "HealthImaging refused the job as conflicting: the datastore is not ACTIVE, or "
    "an earlier request used the same token with other parameters. Check the datastore in the "
    "HealthImaging console, then clone the job as a new draft.",
    "ResourceNotFoundException": "HealthImaging has no such datastore: check the datastore's ID and "
    "region in the admin site.",
    "ServiceQuotaExceededException": "The datastore has reached HealthImaging's concurrent import quota "
    "(jobs started outside the dashboard count too). Wait for running jobs to end, lower the "
    "datastore's “concurrent jobs” in the admin site or ask AWS for a higher quota, then clone the "
    "job as a new draft.",
    "NoCredentials": "The dashboard has no AWS credentials: give it an instance role, or set AWS_PROFILE "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    "Throttling": "HealthImaging kept throttling the request. Submit again later.",
}


def plain_submit_error(
    error: aws.AwsError,
    *,
    gave_up: bool = False,
    attempts: int = 0,
    unknown: bool = False,
) -> str:
    """The sentence shown for a submission that failed for good."""
    if gave_up and unknown:
        advice = (
            f"HealthImaging did not answer {attempts} attempt{'s' if attempts != 1 else ''} with the "
            "same token, and at least one was sent without an answer, so it may have started the job: "
            "its ListDICOMImportJobs does not show it yet. Check the HealthImaging console before "
            "submitting again; the external-job sync lists it here if it appears."
        )
    elif gave_up:
        advice = (
            f"HealthImaging did not accept the job after {attempts} attempt{'s' if attempts != 1 else ''} "
            "with the same token. Submit it again later (Clone as new draft)."
        )
    else:
        advice = PERMANENT_ERRORS.get(
            error.code,
            "HealthImaging refused the job. Clone it as a new draft and submit again, or ask an "
            "administrator to check the datastore.",
        )
    detail = error.detail or str(error)
    return f"{advice} (AWS said: {error.code}: {detail})" if detail else advice


def backoff_s(attempt: int) -> float:
    """Exponential backoff with jitter: about base·2^(n-1), capped, never zero.

    Half of the delay is random ("equal jitter"), so workers throttled together do not retry together.
    """
    ceiling = min(
        settings.JOBS_SUBMIT_BACKOFF_CAP_S,
        settings.JOBS_SUBMIT_BACKOFF_S * 2 ** max(attempt - 1, 0),
    )
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def queue_position(job: ImportJob) -> int | None:
    """1-based position among the datastore's waiting jobs, or None when the job is not waiting."""
    if job.status != ImportJob.Status.PENDING:
        return None
    ahead = ImportJob.objects.filter(
        datastore_id=job.datastore_id, status=ImportJob.Status.PENDING
    ).filter(
        Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, pk__lt=job.pk)
    )
    return ahead.count() + 1


def in_flight_count(datastore_id: int) -> int:
    return ImportJob.objects.filter(
        datastore_id=datastore_id, status__in=ImportJob.IN_FLIGHT
    ).count()


def _claim_for_submit(job_id: int) -> ImportJob | None:
    """PENDING → SUBMITTING, if the datastore's quota has room and the job's turn has come."""
    now = timezone.now()
    with transaction.atomic():
        job = ImportJob.objects.filter(pk=job_id).first()
        if job is None or job.status != ImportJob.Status.PENDING:
            return None
        if job.retry_at is not None and job.retry_at > now + timedelta(seconds=1):
            return None  # an early duplicate of a delayed retry; the retry itself comes later
        # Locks the datastore row, so that two workers deciding about its quota take turns.
        datastore = Datastore.objects.select_for_update().get(pk=job.datastore_id)
        ahead = ImportJob.objects.filter(
            datastore_id=datastore.pk,
            status=ImportJob.Status.PENDING,
            created_at__lt=job.created_at,
        ).count()
        # Older waiting jobs keep their place: the queue is first come, first served.
        if in_flight_count(datastore.pk) + ahead >= datastore.max_concurrent_jobs:
            return None
        claimed = ImportJob.objects.filter(
            pk=job_id, status=ImportJob.Status.PENDING
        ).update(
            status=ImportJob.Status.SUBMITTING,
            lease_until=now + timedelta(seconds=settings.JOBS_SUBMIT_LEASE_S),
            submit_attempts=F("submit_attempts") + 1,
            retry_at=None,
            first_attempt_at=Coalesce(F("first_attempt_at"), Value(now)),
        )
    if not claimed:
        return None
    job.refresh_from_db()
    return job


def job_submit(*, job_id: int) -> float | None:
    """One submission attempt. Returns None when done (either way), or the seconds until the next try."""
    job = _claim_for_submit(job_id)
    if job is None:
        return None
    datastore = Datastore.objects.get(pk=job.datastore_id)
    slot, interval_s = limiter.start_import_slot(datastore)
    if not limiter.acquire(slot, interval_s, timeout_s=settings.JOBS_LIMITER_WAIT_S):
        # Many jobs are waiting for the slot; this one goes back in line without spending an attempt.
        delay = interval_s + random.uniform(0, 1)
        _release_for_retry(
            job, delay=delay, note="Waiting for a free submission slot.", spent=False
        )
        return delay
    try:
        started = aws.import_job_start(
            region=datastore.region,
            request=job.request,
            client_token=str(job.client_token),
        )
    except aws.AwsError as error:
        if isinstance(error, aws.OutcomeUnknown) and not job.outcome_unknown:
            ImportJob.objects.filter(pk=job.pk).update(outcome_unknown=True)
            job.outcome_unknown = True
        if error.transient and _still_patient(job):
            delay = backoff_s(job.submit_attempts)
            logger.warning(
                "Import job %s: transient %s, retrying in %.1fs",
                job.pk,
                error.code,
                delay,
            )
            _release_for_retry(
                job, delay=delay, note=_retry_note(job, error, delay), error=error
            )
            return delay
        if error.transient and job.outcome_unknown:
            # Before saying "not submitted": AWS may have started it from an unanswered attempt.
            found = _find_started_by_us(job, datastore)
            if found is not None:
                _record_submitted(job, found)
                return None
        _mark_submit_failed(job, error, gave_up=error.transient)
        return None
    _record_submitted(job, started)
    return None


def _still_patient(job: ImportJob) -> bool:
    """Transient errors are retried for JOB_SUBMIT_PATIENCE_S from the first attempt (and, when
    JOBS_SUBMIT_MAX_ATTEMPTS is positive, for at most that many attempts)."""
    if 0 < settings.JOBS_SUBMIT_MAX_ATTEMPTS <= job.submit_attempts:
        return False
    since = job.first_attempt_at or timezone.now()
    return timezone.now() - since < timedelta(seconds=settings.JOB_SUBMIT_PATIENCE_S)


def _retry_reason(error: aws.AwsError) -> str:
    if isinstance(error, aws.OutcomeUnknown):
        return "HealthImaging did not answer in time and may have started the job"
    if isinstance(error, aws.Throttled):
        return "HealthImaging is throttling"
    if isinstance(error, aws.Unavailable):
        return "HealthImaging answers with server errors"
    if isinstance(error, aws.Unreachable):
        return "HealthImaging cannot be reached"
    return f"HealthImaging answered {error.code}"


def _retry_note(job: ImportJob, error: aws.AwsError, delay: float) -> str:
    """What the job page says while it waits: why, since when, and until when."""
    since = job.first_attempt_at or timezone.now()
    until = since + timedelta(seconds=settings.JOB_SUBMIT_PATIENCE_S)
    return (
        f"Retrying: {_retry_reason(error)} (since {since:%H:%M} UTC, attempt {job.submit_attempts}). "
        f"The same token is sent again in {delay:.0f} s, until {until:%H:%M} UTC."
    )


def _find_started_by_us(job: ImportJob, datastore: Datastore) -> aws.StartedJob | None:
    """The AWS job an unanswered attempt started, from ListDICOMImportJobs: same datastore, same job
    name, submitted after our first attempt, and not already another row's. None when unsure."""
    if not job.job_name or job.first_attempt_at is None:
        return None  # without a name, two candidates cannot be told apart
    earliest = job.first_attempt_at - timedelta(
        seconds=60
    )  # clock skew between us and AWS
    known = set(
        ImportJob.objects.filter(datastore_id=datastore.pk, external=False)
        .exclude(aws_job_id="")
        .values_list("aws_job_id", flat=True)
    )
    try:
        candidates = [
            info
            for info in aws.import_jobs_list(
                region=datastore.region,
                datastore_id=datastore.datastore_id,
                max_pages=4,
            )
            if info.job_name == job.job_name
            and info.job_id not in known
            and info.submitted_at is not None
            and info.submitted_at >= earliest
        ]
    except aws.AwsError as error:
        logger.warning("Import job %s: reconciling failed: %s", job.pk, error.code)
        return None
    if len(candidates) != 1:
        return None
    info = candidates[0]
    return aws.StartedJob(
        job_id=info.job_id, status=info.status, submitted_at=info.submitted_at
    )


def _release_for_retry(
    job: ImportJob,
    *,
    delay: float,
    note: str,
    error: aws.AwsError | None = None,
    spent: bool = True,
) -> None:
    updates: dict[str, Any] = {
        "status": ImportJob.Status.PENDING,
        "lease_until": None,
        "retry_at": timezone.now() + timedelta(seconds=delay),
        "error_message": note,
        "error_code": error.code if error else "",
    }
    if not spent:
        updates["submit_attempts"] = F("submit_attempts") - 1
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.SUBMITTING).update(
        **updates
    )


def _mark_submit_failed(job: ImportJob, error: aws.AwsError, *, gave_up: bool) -> None:
    message = plain_submit_error(
        error,
        gave_up=gave_up,
        attempts=job.submit_attempts,
        unknown=job.outcome_unknown,
    )
    with transaction.atomic():
        changed = ImportJob.objects.filter(
            pk=job.pk, status=ImportJob.Status.SUBMITTING
        ).update(
            status=ImportJob.Status.SUBMIT_FAILED,
            error_code=error.code,
            error_message=message,
            lease_until=None,
            ended_at=timezone.now(),
        )
        if changed:
            job.status = ImportJob.Status.SUBMIT_FAILED
            job_status_audit(job, ImportJob.Status.SUBMITTING, extra=error.code)
    if changed:
        logger.warning("Import job %s was not submitted: %s", job.pk, error.code)
        _after_job_ended(job)


def _record_submitted(job: ImportJob, started: aws.StartedJob) -> None:
    # A repeated token can answer with a job that has already ended (its first response was lost):
    # it is recorded as submitted, and the poller applies the end, results and all, moments later.
    status = (
        ImportJob.Status.IN_PROGRESS
        if started.status == "IN_PROGRESS"
        else ImportJob.Status.SUBMITTED
    )
    now = timezone.now()
    with transaction.atomic():
        # The ListDICOMImportJobs sync may have recorded this AWS job as external while the
        # response was lost (a worker killed mid-call): the dashboard's own row wins. The twin's
        # events stay in the append-only trail; this one says which job absorbed them.
        for twin in ImportJob.objects.filter(
            datastore_id=job.datastore_id, aws_job_id=started.job_id, external=True
        ):
            audit_record(
                actor=None,
                action=AuditEvent.Action.JOB_ADOPTED,
                target=job,
                summary=f"Import job {job.pk} adopted AWS job {started.job_id}, recorded "
                f"meanwhile as external import job {twin.pk}; that row's events are this job's",
                details={"absorbed_job": twin.pk, "aws_job_id": started.job_id},
            )
            twin.delete()
        changed = ImportJob.objects.filter(
            pk=job.pk, status=ImportJob.Status.SUBMITTING
        ).update(
            status=status,
            aws_job_id=started.job_id,
            submitted_at=started.submitted_at or now,
            lease_until=None,
            error_code="",
            error_message="",
            next_poll_at=now + timedelta(seconds=settings.JOBS_POLL_FIRST_S),
        )
        if changed:
            job.status, job.aws_job_id = status, started.job_id
            job_status_audit(job, ImportJob.Status.SUBMITTING)


def job_status_audit(job: ImportJob, old: str, *, extra: str = "") -> None:
    """One audit event per status change of a job, by "system" (the change happens in a worker)."""
    labels = dict(ImportJob.Status.choices)
    new_label = (
        job.display_status
        if job.status == ImportJob.Status.COMPLETED
        else labels[job.status]
    )
    summary = (
        f"Import job {job.pk}: {labels.get(old, old).lower()} → {new_label.lower()}"
    )
    if job.aws_job_id and job.status == ImportJob.Status.SUBMITTED:
        summary += f" (AWS job {job.aws_job_id})"
    if extra:
        summary += f" ({extra})"
    audit_record(
        actor=None,
        action=AuditEvent.Action.JOB_STATUS_CHANGED,
        target=job,
        summary=summary,
        details={"from": old, "to": job.status, "aws_job_id": job.aws_job_id},
    )


def _after_job_ended(job: ImportJob) -> None:
    """A slot of the datastore's quota is free: let the next waiting jobs go, and tell the submitter."""
    jobs_release_queued(datastore_id=job.datastore_id)
    enqueue_task(JOB_NOTIFY, job.pk)


def jobs_release_queued(*, datastore_id: int) -> list[int]:
    """Enqueue the oldest waiting jobs of a datastore, as many as its quota has room for."""
    datastore = Datastore.objects.get(pk=datastore_id)
    room = datastore.max_concurrent_jobs - in_flight_count(datastore_id)
    if room <= 0:
        return []
    now = timezone.now()
    waiting = list(
        ImportJob.objects.filter(
            datastore_id=datastore_id, status=ImportJob.Status.PENDING
        )
        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:room]
    )
    for pk in waiting:
        enqueue_task(JOB_SUBMIT, pk)
    return waiting


def jobs_requeue_pending() -> list[int]:
    """Run by beat: nothing confirmed is ever lost.

    - A job whose submitting worker died (lease over) goes back to PENDING: its next attempt sends the
      same clientToken, so AWS answers with the job it may already have made.
    - A job PENDING for over a minute (the broker was down at confirm, or its message was lost) is
      enqueued again; the conditional claim makes any duplicate message do nothing.
    """
    now = timezone.now()
    lost = ImportJob.objects.filter(
        status=ImportJob.Status.SUBMITTING, lease_until__lt=now
    )
    recovered: list[int] = []
    for pk in lost.values_list("pk", flat=True):
        if ImportJob.objects.filter(
            pk=pk, status=ImportJob.Status.SUBMITTING, lease_until__lt=now
        ).update(status=ImportJob.Status.PENDING, lease_until=None, retry_at=None):
            logger.warning(
                "Import job %s lost its submitting worker; submitting again", pk
            )
            recovered.append(pk)
    stale = (
        ImportJob.objects.filter(
            status=ImportJob.Status.PENDING,
            created_at__lt=now - timedelta(seconds=settings.JOBS_PENDING_REQUEUE_S),
        )
        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
        .order_by("created_at", "pk")
    )
    requeued = recovered + [
        pk
        for pk in stale.values_list("pk", flat=True)[: settings.JOBS_REQUEUE_BATCH]
        if pk not in recovered
    ]
    for pk in requeued:
        enqueue_task(JOB_SUBMIT, pk)
    return requeued
