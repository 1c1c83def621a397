"""Confirming a draft: every check again, against S3 as it is now, then the import job (imports.jobs.submit.job_create).

A series predicted to make a non-primary image set (imports.drafts.prediction) must be accepted first; a
prediction that could not run blocks nothing. A draft that changes patient data needs a second person's approval
of this very version when its datastore requires it (imports.drafts.approval).
"""

from __future__ import annotations

import hashlib
import json

from django.db import transaction
from django.utils import timezone

from imports.audit.records import Actor, audit_record
from imports.aws import client as aws
from imports.drafts.approval import approval_current, approval_problem
from imports.drafts.prediction import Prediction, prediction_for_job
from imports.drafts.prediction_runs import draft_prediction_state
from imports.drafts.services import (
    DraftConflict,
    DraftRefused,
    draft_frozen_problem,
    draft_request,
    draft_validate,
)
from imports.jobs import submit as jobs
from imports.jobs.request import request_mappings
from imports.models import AuditEvent, ImportDraft, ImportJob, Scan
from imports.scanning.lookup import scan_is_current


class NonPrimaryRefused(DraftRefused):
    """Some series are predicted to fork a non-primary image set and the user has not accepted it."""


class ApprovalMissing(DraftRefused):
    """The draft changes patient data and no approval holds for its current version."""


def draft_confirm(
    *,
    draft: ImportDraft,
    actor: Actor,
    version: int,
    content_hash: str,
    acknowledged_warnings: bool,
    idempotency_key: str,
    import_again: bool = False,
    accepted_non_primary: bool = False,
) -> ImportJob:
    """Check everything again, on the server and against S3 as it is now, then create the import job.

    The page the user confirmed showed `version` and `content_hash`; if the draft or a mapped file's recorded
    ETag changed since, the confirmation is refused rather than applied to something the user did not see.
    The form's `idempotency_key` makes a second POST of the same page return the job the first one made,
    and a draft confirms once: any later confirmation (Back then Confirm, a second tab) returns its job.
    A request another job made within the duplicate window raises SameRequest (the claim is rolled back)
    unless `import_again` says the operator means it.
    """
    existing = ImportJob.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    current = ImportDraft.objects.select_related("datastore", "scan").get(pk=draft.pk)
    if current.confirmed_at is not None:
        return _job_of_confirmed(current)
    if current.version != version or current.content_hash != content_hash:
        raise DraftConflict(current)
    scan = current.scan
    if scan is None or scan.status != Scan.Status.COMPLETED:
        raise DraftRefused(
            "The input prefix has no completed scan; refresh the index first."
        )
    try:
        unchanged = scan_is_current(scan=scan)
    except aws.AwsError as error:
        raise DraftRefused(
            f"The input prefix could not be listed to check it is unchanged: {error}. Nothing was confirmed."
        ) from None
    if not unchanged:
        raise DraftRefused(
            "Objects under the input prefix were added, removed or rewritten since its scan: "
            "refresh the index, check the mappings again, then confirm."
        )
    problems = draft_validate(draft=current)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    if errors:
        raise DraftRefused(
            f"{len(errors)} error{'s' if len(errors) != 1 else ''} must be fixed before the import can be confirmed."
        )
    if problem := approval_problem(draft=current):
        raise ApprovalMissing(problem)
    if warnings and not acknowledged_warnings:
        raise DraftRefused(
            f"Tick the box to acknowledge the {len(warnings)} warning{'s' if len(warnings) != 1 else ''} first."
        )
    # The page's own prediction, kept for this content hash: no second round of AWS calls.
    state = draft_prediction_state(draft=current)
    if state.prediction is None:
        raise DraftRefused(
            f"What this import will do is still being predicted ({state.studies_done:,} of "
            f"{state.studies_total:,} studies looked up): confirm once the page shows it. Nothing was confirmed."
        )
    predicted = state.prediction
    if predicted.non_primary and not accepted_non_primary:
        count = predicted.non_primary
        raise NonPrimaryRefused(
            f"{count} series would make {'a ' if count == 1 else ''}non-primary image set{'s' if count != 1 else ''}: "
            "tick “I accept that these series make non-primary image sets” to confirm, or override the "
            "differing attributes to match the stored ones. Nothing was confirmed."
        )
    approved = approval_current(draft=current)
    request = draft_request(draft=current)
    payload = json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
    with transaction.atomic():
        # The claim: one conditional UPDATE, atomic on PostgreSQL and SQLite alike. Of two tabs (two
        # idempotency keys) confirming at once, one sets confirmed_at; the other updates nothing, and
        # answers with the winner's job once that commits.
        claimed = ImportDraft.objects.filter(
            pk=current.pk,
            confirmed_at__isnull=True,
            version=version,
            content_hash=content_hash,
        ).update(confirmed_at=timezone.now())
        if not claimed:
            current = ImportDraft.objects.select_related("datastore", "scan").get(
                pk=current.pk
            )
            if current.confirmed_at is not None:
                return _job_of_confirmed(current)
            raise DraftConflict(current)
        job = jobs.job_create(
            actor=actor,
            draft=current,
            datastore=current.datastore,
            request=request,
            idempotency_key=idempotency_key,
            import_again=import_again,
            prediction=prediction_for_job(
                predicted,
                accepted_non_primary=accepted_non_primary
                if predicted.non_primary
                else None,
            ),
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DRAFT_CONFIRMED,
            target=current,
            summary=f"Confirmed the import of {current.input_s3_uri} into “{current.datastore.name}” "
            f"as import job {job.pk} ({len(request_mappings(request))} mappings)",
            details={
                "job": job.pk,
                "content_hash": current.content_hash,
                "request_sha256": hashlib.sha256(payload).hexdigest(),
                "acknowledged_warnings": sorted({p.code for p in warnings}),
                "prediction": _prediction_counts(predicted),
                "accepted_non_primary": bool(predicted.non_primary),
                "approval": approved.pk if approved is not None else None,
                "idempotency_key": idempotency_key,
            },
        )
    return job


def _prediction_counts(predicted: Prediction) -> dict[str, int]:
    return {
        "new": predicted.new,
        "adds_to": predicted.adds_to,
        "non_primary": predicted.non_primary,
        "not_predicted": predicted.unpredicted,
    }


def _job_of_confirmed(draft: ImportDraft) -> ImportJob:
    """The job a confirmed draft made (refused, with the reason, if that job is gone)."""
    job = draft.jobs.order_by("created_at", "pk").first()
    if job is None:
        raise DraftRefused(draft_frozen_problem(draft))
    return job
