"""Import jobs and drafts: the duplicate-import guard, and new drafts made from a job (retry failed files, clone)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef

from imports.audit import Actor, audit_record
from imports.jobrequest import request_mappings
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
