"""New drafts made from an import job: retry its failed files, or clone its whole request.

A draft made here is confirmable from the moment it exists: its content hash is computed with its
mappings, as `draft_start` does, and a retry with nothing retryable makes no draft at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction

from imports.audit.records import Actor, audit_record
from imports.drafts.services import draft_content_hash
from imports.jobs.request import request_mappings
from imports.models import (
    AuditEvent,
    DraftMapping,
    ImportDraft,
    ImportJob,
    ImportJobResult,
    ObjectHeader,
)
from imports.validators import split_s3_uri


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
    draft.content_hash = draft_content_hash(draft=draft)
    draft.save(update_fields=["content_hash"])
    return draft


def job_draft_retry_failed(
    *, job: ImportJob, actor: Actor
) -> tuple[ImportDraft | None, RetryScope]:
    """A new draft for the failed files' studies: only the original mappings that concern them.

    No draft (None) when no failed file belongs to a known study: an empty draft would import the
    whole prefix again, which is the opposite of a retry.
    """
    scope = job_failed_scope(job)
    if not scope.studies:
        return None, scope
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
