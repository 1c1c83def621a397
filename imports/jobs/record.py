"""The signed import record: what was asked, what happened, and what was verified, in one JSON file an auditor keeps.

Written when a job's verification ends (verified, or with its mismatches), and kept on the job
(ImportJob.record). Its top-level fields are FIELDS; `signature` holds the SHA-256 of each field's canonical JSON
(sorted keys, no spaces, UTF-8) and an HMAC-SHA256 over those digests, keyed by `record_key()`. So `record_check`
can name the first field that changed: the field whose digest no longer matches, or `signature` when the
digests themselves were edited.

The key is IMPORT_RECORD_KEY, or, unset, one derived from SECRET_KEY: a record is checked where one of the two is
the same as where it was written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.utils import timezone

from imports.audit.records import audit_record
from imports.jobs.request import request_mappings
from imports.models import (
    AuditEvent,
    DraftApproval,
    ImportJob,
    ImportJobResult,
    ObjectHeader,
)
from imports.validators import split_s3_uri

FORMAT = "healthimaging-import-record/1"
ALGORITHM = "HMAC-SHA256"
FIELDS = (
    "format",
    "job",
    "request",
    "mapping_files",
    "files",
    "prediction",
    "verification",
    "submitter",
    "approval",
    "times",
)


def record_key() -> bytes:
    if settings.IMPORT_RECORD_KEY:
        return str(settings.IMPORT_RECORD_KEY).encode()
    return hmac.new(
        settings.SECRET_KEY.encode(), b"imports signed import record", hashlib.sha256
    ).digest()


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def _mac(digests: dict[str, str]) -> str:
    return hmac.new(record_key(), canonical(digests), hashlib.sha256).hexdigest()


def record_sign(fields: dict[str, Any]) -> dict[str, Any]:
    """The record: `fields` (every name of FIELDS) and their signature."""
    digests = {name: _digest(fields[name]) for name in FIELDS}
    return {
        **{name: fields[name] for name in FIELDS},
        "signature": {"algorithm": ALGORITHM, "digests": digests, "mac": _mac(digests)},
    }


def record_text(record: dict[str, Any]) -> str:
    """The record as a file for an auditor: its fields in FIELDS order, then the signature.

    PostgreSQL's jsonb keeps an object's keys in its own order (shortest first), so the stored record comes back
    reordered; the digests do not depend on the order, but a reader should find the fields as documented.
    """
    ordered = {name: record[name] for name in (*FIELDS, "signature") if name in record}
    ordered.update({k: v for k, v in record.items() if k not in ordered})
    return json.dumps(ordered, indent=2, ensure_ascii=False)


def record_check(record: Any) -> str | None:
    """None when the record is intact; else the first field (in FIELDS order) that changed, or `signature`."""
    if not isinstance(record, dict):
        return "(the whole record: it is not a JSON object)"
    signature = record.get("signature")
    if not isinstance(signature, dict) or not isinstance(
        signature.get("digests"), dict
    ):
        return "signature"
    digests: dict[str, Any] = signature["digests"]
    for name in FIELDS:
        if name not in record or digests.get(name) != _digest(record[name]):
            return name
    extra = sorted(str(name) for name in set(record) - {*FIELDS, "signature"})
    if extra:
        return extra[0]
    if set(digests) != set(FIELDS) or signature.get("algorithm") != ALGORITHM:
        return "signature"
    mac = signature.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(
        mac, _mac({k: str(v) for k, v in digests.items()})
    ):
        return "signature"
    return None


def _approval(job: ImportJob) -> dict[str, Any] | None:
    """Who approved the patient changes the job imported (four eyes), or None when none was needed."""
    approved = DraftApproval.objects.of_confirmed_draft(job.draft_id)
    if approved is None:
        return None
    return {
        "approver": approved.approver_username,
        "reason": approved.reason,
        "note": approved.note,
        "draft_version": approved.draft_version,
        "approved_at": _iso(approved.created_at),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _mapping_files(job: ImportJob) -> dict[str, Any]:
    """Each mapping file with the ETag its latest scan recorded, and one hash over them all."""
    bucket, prefix = split_s3_uri(job.input_s3_uri) if job.input_s3_uri else ("", "")
    paths = sorted(
        {m.get("metadataFilePath", "") for m in request_mappings(job.request)}
    )
    etags = dict(
        ObjectHeader.objects.filter(bucket=bucket, key__in=[prefix + p for p in paths])
        .order_by("id")
        .values_list("key", "etag")
    )
    files = [{"path": p, "etag": etags.get(prefix + p)} for p in paths]
    return {
        "files": files,
        "content_sha256": hashlib.sha256(
            "\n".join(f"{f['path']}\t{f['etag'] or ''}" for f in files).encode()
        ).hexdigest(),
    }


def record_fields(job: ImportJob) -> dict[str, Any]:
    outcomes = [
        {
            "file": file,
            "outcome": outcome,
            "image_set_id": image_set_id or None,
            "image_set_version": version,
            "is_primary": primary,
            "exception_type": exception or None,
        }
        for file, outcome, image_set_id, version, primary, exception in ImportJobResult.objects.filter(
            job=job
        )
        .order_by("id")
        .values_list(
            "input_file",
            "outcome",
            "image_set_id",
            "image_set_version",
            "is_primary",
            "exception_type",
        )
        .iterator(chunk_size=2000)
    ]
    detail = job.verification_detail or {}
    return {
        "format": FORMAT,
        "job": {
            "id": job.pk,
            "aws_job_id": job.aws_job_id or None,
            "datastore": job.datastore.name,
            "datastore_id": job.datastore.datastore_id,
            "region": job.datastore.region,
            "job_name": job.job_name or None,
            "status": job.status_code,
            "request_sha256": job.request_sha256 or None,
        },
        "request": job.request,
        "mapping_files": _mapping_files(job),
        "files": {
            "imported": job.success_count + job.warning_count,
            "failed": job.failure_count,
            "warnings": job.warning_count,
            "non_primary_image_sets": job.non_primary_count,
            "outcomes": outcomes,
        },
        "prediction": {**(job.prediction or {}), "confirmed": job.prediction_confirmed},
        "verification": {
            "state": job.verification,
            "image_sets": detail.get("image_sets", 0),
            "attributes_checked": detail.get("attributes_checked", 0),
            "mismatches": detail.get("mismatches", []),
            "image_sets_gone": detail.get("gone", []),
            "unreadable_files": detail.get("unreadable_files", []),
            "wrong_predictions": detail.get("wrong_predictions", []),
        },
        "submitter": job.submitted_by.get_username() if job.submitted_by else None,
        "approval": _approval(job),
        "times": {
            "created_at": _iso(job.created_at),
            "submitted_at": _iso(job.submitted_at),
            "started_at": _iso(job.started_at),
            "ended_at": _iso(job.ended_at),
            "verified_at": _iso(job.verified_at),
            "recorded_at": timezone.now().isoformat(),
        },
    }


def job_record_write(*, job: ImportJob) -> dict[str, Any]:
    """Sign and keep the job's record, and say so in the audit trail (with the record's MAC, which the page
    links to)."""
    record = record_sign(record_fields(job))
    ImportJob.objects.filter(pk=job.pk).update(record=record)
    job.record = record
    audit_record(
        actor=None,
        action=AuditEvent.Action.RECORD_WRITTEN,
        target=job,
        summary=f"Import job {job.pk}: signed import record written ({job.get_verification_display().lower()})",
        details={"mac": record["signature"]["mac"], "format": FORMAT},
    )
    return record
