"""Import jobs: confirm one, submit it to HealthImaging exactly once, queue it behind the datastore's quota.

The hand-off from the composer is `job_create`. From there a Celery task (`imports.tasks.job_submit`)
calls `job_submit`, which claims the job, waits for the shared one-call-per-second slot and calls
StartDICOMImportJob with the job's own clientToken. Because AWS answers a repeated token with the job
it already made, every retry (ours, Celery's, or a second worker's after a crash) lands on the same AWS
job. Tracking (polling, results, external jobs) lives in `imports.jobtracking`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from kombu.exceptions import KombuError

from imports import aws, limiter
from imports.audit import Actor, audit_record
from imports.mappings import MAX_MAPPINGS, Mapping
from imports.models import (
    AuditEvent,
    Datastore,
    DraftMapping,
    ImportDraft,
    ImportJob,
    ImportJobResult,
    ObjectHeader,
    Scan,
)
from imports.validators import split_s3_uri

logger = logging.getLogger(__name__)

REQUEST_KEYS = {
    "datastoreId",
    "dataAccessRoleArn",
    "inputS3Uri",
    "outputS3Uri",
    "inputOwnerAccountId",
    "jobName",
    "importConfiguration",
}
REQUIRED_KEYS = ("datastoreId", "dataAccessRoleArn", "inputS3Uri", "outputS3Uri")


class InvalidJobRequest(ValueError):
    """A request that StartDICOMImportJob would refuse; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- The request ----------------------------------------------------------------------------


def job_request_build(
    *,
    datastore: Datastore,
    input_s3_uri: str | None = None,
    output_s3_uri: str | None = None,
    job_name: str = "",
    mappings: Iterable[Mapping] = (),
) -> dict[str, Any]:
    """StartDICOMImportJob's parameters (clientToken aside) for a datastore, as boto3 takes them.

    Optional members are left out rather than sent empty: AWS refuses an empty inputOwnerAccountId, and
    importConfiguration needs at least one mapping.
    """
    request: dict[str, Any] = {
        "datastoreId": datastore.datastore_id,
        "dataAccessRoleArn": datastore.role_arn,
        "inputS3Uri": input_s3_uri or datastore.input_s3_uri,
        "outputS3Uri": output_s3_uri or datastore.output_s3_uri,
    }
    if datastore.input_owner_account_id:
        request["inputOwnerAccountId"] = datastore.input_owner_account_id
    if job_name:
        request["jobName"] = job_name
    items = []
    for mapping in mappings:
        item = {"studyInstanceUID": mapping.study_instance_uid}
        if mapping.series_instance_uid:
            item["seriesInstanceUID"] = mapping.series_instance_uid
        item["metadataFilePath"] = mapping.metadata_file_path
        items.append(item)
    if items:
        request["importConfiguration"] = {
            "dicomJsonMetadataImportConfiguration": {"dicomMetadataMappings": items}
        }
    return request


def request_mappings(request: dict[str, Any]) -> list[dict[str, str]]:
    configuration = request.get("importConfiguration") or {}
    mappings: list[dict[str, str]] = configuration.get(
        "dicomJsonMetadataImportConfiguration", {}
    ).get("dicomMetadataMappings", [])
    return mappings


def request_problems(request: dict[str, Any], *, datastore: Datastore) -> list[str]:
    """The shape checks a request must pass before it is stored (the composer checks the content)."""
    problems = [
        f"Unknown parameter “{key}”." for key in sorted(set(request) - REQUEST_KEYS)
    ]
    problems += [
        f"“{key}” is missing." for key in REQUIRED_KEYS if not request.get(key)
    ]
    if request.get("datastoreId") and request["datastoreId"] != datastore.datastore_id:
        problems.append(
            f"datastoreId {request['datastoreId']} is not the datastore's ({datastore.datastore_id})."
        )
    if "importConfiguration" in request:
        mappings = request_mappings(request)
        if not isinstance(mappings, list) or not 1 <= len(mappings) <= MAX_MAPPINGS:
            problems.append(
                f"importConfiguration needs 1 to {MAX_MAPPINGS} mappings in "
                "dicomJsonMetadataImportConfiguration.dicomMetadataMappings."
            )
        else:
            for index, item in enumerate(mappings, start=1):
                if not isinstance(item, dict) or not item.get("studyInstanceUID"):
                    problems.append(f"Mapping {index} has no studyInstanceUID.")
                elif not item.get("metadataFilePath"):
                    problems.append(f"Mapping {index} has no metadataFilePath.")
                elif set(item) - {
                    "studyInstanceUID",
                    "seriesInstanceUID",
                    "metadataFilePath",
                }:
                    problems.append(f"Mapping {index} has unknown members.")
    try:
        json.dumps(request)
    except (TypeError, ValueError):
        problems.append("The request holds values that are not JSON.")
    return problems


def request_sha256(request: dict[str, Any], client_token: str) -> str:
    """sha256 of exactly what is sent (keys sorted): an auditor can hash the stored request and compare."""
    payload = {**request, "clientToken": client_token}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- Confirming: the composer's hand-off ----------------------------------------------------


def job_create(
    *,
    actor: Actor,
    draft: ImportDraft | None,
    datastore: Datastore,
    request: dict[str, Any],
    idempotency_key: str,
) -> ImportJob:
    """Store a confirmed job (PENDING) with its exact request and a fresh clientToken; submit on commit.

    A second call with the same `idempotency_key` (a double POST) returns the first call's job.
    Raises InvalidJobRequest if the request's shape is wrong; nothing is stored then.
    """
    existing = ImportJob.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    problems = request_problems(request, datastore=datastore)
    if problems:
        raise InvalidJobRequest(problems)
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
            )
            # No UIDs in the audit trail's details: mappings name studies (PHI-adjacent).
            audit_record(
                actor=actor,
                action=AuditEvent.Action.JOB_CREATED,
                target=job,
                summary=f"Confirmed import job {job.pk} into “{datastore.name}” from "
                f"{job.input_s3_uri} ({mapping_count} mapping{'s' if mapping_count != 1 else ''})",
                details={
                    "sha256": digest,
                    "client_token": client_token,
                    "draft": draft.pk if draft else None,
                    "input_s3_uri": job.input_s3_uri,
                    "output_s3_uri": request["outputS3Uri"],
                    "mappings": mapping_count,
                },
            )
            transaction.on_commit(functools.partial(_enqueue_submit, job.pk))
    except IntegrityError:
        # The same key won a race with us: that job is the one.
        job = ImportJob.objects.get(idempotency_key=idempotency_key)
    return job


def _enqueue_submit(job_id: int) -> None:
    """Hand the job to a worker. With the broker down the job stays PENDING, which the page shows as
    waiting for a worker, and beat enqueues it again later (jobs_requeue_pending): nothing is lost."""
    from imports.tasks import job_submit as job_submit_task

    try:
        job_submit_task.delay(job_id)
    except (KombuError, OSError) as error:
        logger.warning(
            "Import job %s waits for the broker (%s); beat will enqueue it again",
            job_id,
            type(error).__name__,
        )


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


def plain_submit_error(error: aws.AwsError, *, gave_up: bool = False) -> str:
    """The sentence shown for a submission that failed for good."""
    if gave_up:
        advice = (
            f"HealthImaging did not accept the job after {settings.JOBS_SUBMIT_MAX_ATTEMPTS} "
            "attempts. Submit it again later (Clone as new draft)."
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
    if not limiter.acquire(
        limiter.START_IMPORT_JOB,
        settings.JOBS_START_INTERVAL_S,
        timeout_s=settings.JOBS_LIMITER_WAIT_S,
    ):
        # Many jobs are waiting for the slot; this one goes back in line without spending an attempt.
        delay = float(settings.JOBS_START_INTERVAL_S) + random.uniform(0, 1)
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
        if error.transient and job.submit_attempts < settings.JOBS_SUBMIT_MAX_ATTEMPTS:
            delay = backoff_s(job.submit_attempts)
            note = (
                f"Attempt {job.submit_attempts} of {settings.JOBS_SUBMIT_MAX_ATTEMPTS} failed "
                f"({error.code}); trying again with the same token in {delay:.0f} s."
            )
            logger.warning(
                "Import job %s: transient %s, retrying in %.1fs",
                job.pk,
                error.code,
                delay,
            )
            _release_for_retry(job, delay=delay, note=note, error=error)
            return delay
        _mark_submit_failed(job, error, gave_up=error.transient)
        return None
    _record_submitted(job, started)
    return None


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
    message = plain_submit_error(error, gave_up=gave_up)
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
        # response was lost (a worker killed mid-call): the dashboard's own row wins.
        ImportJob.objects.filter(
            datastore_id=job.datastore_id, aws_job_id=started.job_id, external=True
        ).delete()
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
    # Imported here: the tasks module imports this one.
    from imports.tasks import job_notify

    jobs_release_queued(datastore_id=job.datastore_id)
    job_notify.delay_on_commit(job.pk)  # type: ignore[attr-defined]


def jobs_release_queued(*, datastore_id: int) -> list[int]:
    """Enqueue the oldest waiting jobs of a datastore, as many as its quota has room for."""
    from imports.tasks import job_submit as job_submit_task

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
        job_submit_task.delay(pk)
    return waiting


def jobs_requeue_pending() -> list[int]:
    """Run by beat: nothing confirmed is ever lost.

    - A job whose submitting worker died (lease over) goes back to PENDING: its next attempt sends the
      same clientToken, so AWS answers with the job it may already have made.
    - A job PENDING for over a minute (the broker was down at confirm, or its message was lost) is
      enqueued again; the conditional claim makes any duplicate message do nothing.
    """
    from imports.tasks import job_submit as job_submit_task

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
        job_submit_task.delay(pk)
    return requeued


# --- The duplicate-import guard -------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateImport:
    instances: int
    job: ImportJob | None


def job_duplicate_instances(*, datastore: Datastore, scan: Scan) -> DuplicateImport:
    """SOP instances of a scan that a completed job already imported into this datastore.

    An earlier job's success lines name S3 keys; the scan cache knows which SOP instance each key held.
    A re-import of those instances updates their image sets (or forks non-primary ones), which is
    rarely what the operator wants. `job` is the most recent such job, to link to.
    """
    imported_keys = ImportJobResult.objects.filter(
        job__datastore=datastore,
        job__status=ImportJob.Status.COMPLETED,
        job__input_bucket=OuterRef("bucket"),
        outcome__in=(ImportJobResult.Outcome.SUCCESS, ImportJobResult.Outcome.WARNING),
        input_file=OuterRef("key"),
    )
    imported_sops = (
        ObjectHeader.objects.filter(Exists(imported_keys))
        .exclude(sop_instance_uid="")
        .values("sop_instance_uid")
    )
    duplicates = ObjectHeader.objects.of_scan(scan).filter(
        sop_instance_uid__in=imported_sops
    )
    count = duplicates.values("sop_instance_uid").distinct().count()
    if not count:
        return DuplicateImport(0, None)
    keys = ObjectHeader.objects.filter(
        sop_instance_uid__in=duplicates.values("sop_instance_uid")
    )
    job = (
        ImportJob.objects.filter(
            datastore=datastore,
            status=ImportJob.Status.COMPLETED,
            files__outcome__in=(
                ImportJobResult.Outcome.SUCCESS,
                ImportJobResult.Outcome.WARNING,
            ),
            files__input_file__in=keys.values("key"),
        )
        .order_by("-ended_at", "-pk")
        .first()
    )
    return DuplicateImport(count, job)


# --- New drafts from a job ------------------------------------------------------------------


@dataclass(frozen=True)
class RetryScope:
    studies: set[str]
    series: set[tuple[str, str]]
    # Failed files that are not DICOM (or were never scanned): a retry cannot help them.
    unknown_files: list[str]


def job_failed_scope(job: ImportJob) -> RetryScope:
    """The studies and series the failed files of a job belong to."""
    failed = list(
        ImportJobResult.objects.filter(job=job, outcome=ImportJobResult.Outcome.FAILURE)
        .values_list("input_file", flat=True)
        .distinct()
    )
    _, prefix = split_s3_uri(job.input_s3_uri)
    mapping_by_key = {
        _metadata_key(prefix, m["metadataFilePath"]): m
        for m in request_mappings(job.request)
    }
    studies: set[str] = set()
    series: set[tuple[str, str]] = set()
    known: set[str] = set()
    headers = ObjectHeader.objects.filter(
        bucket=job.input_bucket, key__in=failed
    ).exclude(study_instance_uid="")
    for key, study, serie in headers.values_list(
        "key", "study_instance_uid", "series_instance_uid"
    ):
        studies.add(study)
        series.add((study, serie))
        known.add(key)
    for key in failed:
        mapping = mapping_by_key.get(key)
        if mapping is not None:
            studies.add(mapping["studyInstanceUID"])
            if mapping.get("seriesInstanceUID"):
                series.add((mapping["studyInstanceUID"], mapping["seriesInstanceUID"]))
            known.add(key)
    return RetryScope(studies, series, sorted(set(failed) - known))


def _metadata_key(prefix: str, path: str) -> str:
    base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    return base + path.lstrip("/")


def _draft_from_job(
    job: ImportJob, *, actor: Actor, mappings: list[dict[str, str]], name_suffix: str
) -> ImportDraft:
    job_name = job.job_name
    if job_name:
        job_name = job_name[: 64 - len(name_suffix)] + name_suffix
    draft = ImportDraft.objects.create(
        datastore=job.datastore,
        input_s3_uri=job.input_s3_uri or job.datastore.input_s3_uri,
        output_s3_uri=job.request.get("outputS3Uri") or job.datastore.output_s3_uri,
        job_name=job_name,
        scan=job.draft.scan if job.draft else None,
        owner=actor if isinstance(actor, User) else None,
        source_job=job,
    )
    DraftMapping.objects.bulk_create(
        DraftMapping(
            draft=draft,
            study_instance_uid=m["studyInstanceUID"],
            series_instance_uid=m.get("seriesInstanceUID", ""),
            metadata_file_path=m["metadataFilePath"],
        )
        for m in mappings
    )
    return draft


def job_draft_retry_failed(
    *, job: ImportJob, actor: Actor
) -> tuple[ImportDraft, RetryScope]:
    """A new draft for the failed files' studies: only the original mappings that concern them."""
    scope = job_failed_scope(job)
    mappings = [
        m
        for m in request_mappings(job.request)
        if m["studyInstanceUID"] in scope.studies
    ]
    with transaction.atomic():
        draft = _draft_from_job(
            job, actor=actor, mappings=mappings, name_suffix="-retry"
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.JOB_DRAFTED,
            target=job,
            summary=f"Made draft {draft.pk} to retry the failed files of import job {job.pk} "
            f"({len(scope.studies)} stud{'y' if len(scope.studies) == 1 else 'ies'}, "
            f"{len(mappings)} mapping{'s' if len(mappings) != 1 else ''})",
            details={"draft": draft.pk, "kind": "retry", "mappings": len(mappings)},
        )
    return draft, scope


def job_draft_clone(*, job: ImportJob, actor: Actor) -> ImportDraft:
    """A new draft with everything the job sent."""
    mappings = request_mappings(job.request)
    with transaction.atomic():
        draft = _draft_from_job(
            job, actor=actor, mappings=mappings, name_suffix="-copy"
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.JOB_DRAFTED,
            target=job,
            summary=f"Cloned import job {job.pk} as draft {draft.pk}",
            details={"draft": draft.pk, "kind": "clone", "mappings": len(mappings)},
        )
    return draft
