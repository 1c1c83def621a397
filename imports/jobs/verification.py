"""After a job: did every attribute its mappings set reach the stored metadata, and did the prediction come true?

Once a job's results are read (imports.jobs.results), and again whenever an operator asks, `job_verify` reads
GetImageSetMetadata (gzipped JSON, keyed by attribute name) for every image set the job's result lines name, and
compares each attribute of the job's metadata files (study file, then series file: the series wins, as the
preview merges them) with the stored value at its level: group 0010 under Patient, imports.dicom.levels' study
attributes under Study, the rest under the series. It then compares what the submission predicted for each series
(ImportJob.prediction) with what happened (the result lines' isPrimary and version).

What AWS does not document, and the conservative choice made here (UNVERIFIED):
- **Levels.** An attribute is looked for at its own level only: found elsewhere, it counts as a mismatch (it did
  not land where a reader of that level looks). Instance-level attributes and the study and series UIDs (the
  mapping's keys) are not checked.
- **Values.** Trailing spaces and NUL padding are ignored, several values compare joined by a backslash, a person
  name compares by its alphabetic group (the metadata holds a plain string), numbers by their text. A case change
  is a mismatch.
- **What "now" means.** The latest version is read: an image set changed by someone else since the import shows
  that change as a mismatch, and one deleted since is named as gone.

Faults never fail a job: a ConflictException "not consistent yet" and throttling are asked again every
JOBS_VERIFY_RETRY_S for JOBS_VERIFY_PATIENCE_S from the first attempt (the image sets already read are kept), then
the job says "not verified yet" with the reason; any other refusal says so at once. An operator can ask again.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from imports.audit.records import Actor, audit_record
from imports.aws import client as aws
from imports.aws import image_sets as aws_image_sets
from imports.enqueue import JOB_VERIFY, enqueue_task
from imports.jobs.metadata_compare import (
    file_overrides,
    observed_outcome,
    stored_level,
    value_text,
)
from imports.jobs.record import job_record_write
from imports.jobs.request import request_mappings
from imports.models import AuditEvent, ImportJob, ImportJobResult, ObjectHeader
from imports.validators import split_s3_uri

# How often the progress (image sets read so far) is saved while reading.
SAVE_EVERY = 100
NOT_VERIFIED_WORDS = "not verified yet"


# ---- asking for it ---------------------------------------------------------------------------------------------


def job_verification_queue(*, job_id: int) -> None:
    """The results are read: verify the job (by task, after commit)."""
    # The lease of a pending verification is when its message was sent: the poller sends it again only
    # once that is long past (jobs_verification_requeue).
    ImportJob.objects.filter(pk=job_id).exclude(
        verification=ImportJob.Verification.RUNNING
    ).update(
        verification=ImportJob.Verification.PENDING,
        verification_detail={},
        verification_started_at=None,
        verification_lease_until=timezone.now(),
    )
    enqueue_task(JOB_VERIFY, job_id)


def job_verify_again(*, job: ImportJob, actor: Actor) -> bool:
    """An operator asks for the verification again (the job page's button). False when it cannot run now."""
    if job.results != ImportJob.Results.DONE:
        return False
    now = timezone.now()
    changed = (
        ImportJob.objects.filter(pk=job.pk, results=ImportJob.Results.DONE)
        .filter(
            ~Q(verification=ImportJob.Verification.RUNNING)
            | Q(verification_lease_until__lt=now)
        )
        .update(
            verification=ImportJob.Verification.PENDING,
            verification_detail={},
            verification_started_at=None,
            verification_lease_until=now,
        )
    )
    if not changed:
        return False
    audit_record(
        actor=actor,
        action=AuditEvent.Action.JOB_VERIFIED,
        target=job,
        summary=f"Asked for import job {job.pk}'s verification again",
        details={"requested": True},
    )
    enqueue_task(JOB_VERIFY, job.pk)
    return True


def jobs_verification_requeue() -> list[int]:
    """Run by the poller: a verification whose message was lost (broker down) or whose worker died goes again."""
    now = timezone.now()
    lost = now - timedelta(seconds=settings.JOBS_VERIFY_LEASE_S)
    due = list(
        ImportJob.objects.filter(
            Q(verification=ImportJob.Verification.PENDING)
            & (
                Q(verification_lease_until__isnull=True)
                | Q(verification_lease_until__lt=lost)
            )
            | Q(
                verification=ImportJob.Verification.RUNNING,
                verification_lease_until__lt=now,
            )
        ).values_list("pk", flat=True)[:50]
    )
    for pk in due:
        enqueue_task(JOB_VERIFY, pk)
    return due


# ---- the verification ------------------------------------------------------------------------------------------


def _claim(job_id: int) -> ImportJob | None:
    now = timezone.now()
    claimed = (
        ImportJob.objects.filter(pk=job_id, results=ImportJob.Results.DONE)
        .filter(
            Q(verification=ImportJob.Verification.PENDING)
            & (
                Q(verification_lease_until__isnull=True)
                | Q(verification_lease_until__lte=now + timedelta(seconds=1))
            )
            | Q(
                verification=ImportJob.Verification.RUNNING,
                verification_lease_until__lt=now,
            )
        )
        .update(
            verification=ImportJob.Verification.RUNNING,
            verification_lease_until=now
            + timedelta(seconds=settings.JOBS_VERIFY_LEASE_S),
        )
    )
    if not claimed:
        return None
    job = ImportJob.objects.select_related("datastore", "submitted_by").get(pk=job_id)
    if job.verification_started_at is None:
        job.verification_started_at = now
        ImportJob.objects.filter(pk=job.pk).update(verification_started_at=now)
    return job


def job_verify(*, job_id: int) -> float | None:
    """Verify a job whose results are read. Returns the seconds after which to ask again, or None when done."""
    job = _claim(job_id)
    if job is None:
        return None
    plan, unreadable = _plan(job)
    detail: dict[str, Any] = dict(job.verification_detail or {})
    done: dict[str, Any] = dict(detail.get("done") or {})
    detail.update(unreadable_files=unreadable)
    region, datastore_id = job.datastore.region, job.datastore.datastore_id
    for count, (image_set_id, item) in enumerate(sorted(plan.items()), start=1):
        if image_set_id in done:
            continue
        try:
            document = aws_image_sets.get_image_set_metadata(
                region=region, datastore_id=datastore_id, image_set_id=image_set_id
            )
        except aws.NotFound:
            done[image_set_id] = {"gone": True, "checked": len(item["checks"])}
            continue
        except aws.AwsError as error:
            return _interrupted(job, detail, done, error)
        done[image_set_id] = _compare(item, document)
        if count % SAVE_EVERY == 0:
            ImportJob.objects.filter(
                pk=job.pk, verification=ImportJob.Verification.RUNNING
            ).update(
                verification_detail={**detail, "done": done},
                verification_lease_until=timezone.now()
                + timedelta(seconds=settings.JOBS_VERIFY_LEASE_S),
            )
    _finish(job, plan, detail, done)
    return None


def _plan(job: ImportJob) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """image set ID -> its series, files and the checks its overrides make; and the mapping files not found."""
    bucket, prefix = split_s3_uri(job.input_s3_uri) if job.input_s3_uri else ("", "")
    files: dict[tuple[str, str], str] = {}
    for m in request_mappings(job.request):
        files[(m.get("studyInstanceUID", ""), m.get("seriesInstanceUID") or "")] = (
            m.get("metadataFilePath", "")
        )
    documents: dict[str, Any] = {}
    unreadable = []
    for path in sorted(set(files.values())):
        header = (
            ObjectHeader.objects.filter(bucket=bucket, key=prefix + path)
            .order_by("-id")
            .values_list("json_document", flat=True)
            .first()
        )
        if header is None:
            unreadable.append(path)
        documents[path] = file_overrides(header or {})
    rows = (
        ImportJobResult.objects.filter(
            job=job,
            outcome__in=(
                ImportJobResult.Outcome.SUCCESS,
                ImportJobResult.Outcome.WARNING,
            ),
        )
        .exclude(image_set_id="")
        .values_list("image_set_id", "input_file", "image_set_version", "is_primary")
    )
    by_set: dict[str, dict[str, Any]] = {}
    for image_set_id, input_file, version, primary in rows.iterator(chunk_size=2000):
        item = by_set.setdefault(
            image_set_id,
            {"files": [], "version": version, "is_primary": primary, "series": set()},
        )
        item["files"].append(input_file)
        if version is not None and (item["version"] or 0) < version:
            item["version"] = version
    keys = [f for item in by_set.values() for f in item["files"]]
    where: dict[str, tuple[str, str]] = {}
    for start in range(0, len(keys), 1000):
        for key, study, series in ObjectHeader.objects.filter(
            bucket=job.input_bucket, key__in=keys[start : start + 1000]
        ).values_list("key", "study_instance_uid", "series_instance_uid"):
            where[key] = (study, series)
    for item in by_set.values():
        pairs = {where[f] for f in item["files"] if f in where}
        item["series"] = sorted(pairs)
        checks: dict[tuple[str, str, str], tuple[str, str]] = {}
        for study, series in item["series"]:
            # Study file first, then the series file: the series file wins, as in the preview.
            for layer in (files.get((study, "")), files.get((study, series))):
                for level, keyword, expected in documents.get(layer or "", []):
                    checks[(series, level, keyword)] = (expected, layer or "")
        item["checks"] = [
            {"series": s, "level": level, "keyword": k, "expected": v, "file": path}
            for (s, level, k), (v, path) in sorted(checks.items())
        ]
        item["first_file"] = min(item["files"]) if item["files"] else ""
    return by_set, unreadable


def _compare(item: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    mismatches = []
    for check in item["checks"]:
        level = stored_level(document, check["level"], check["series"])
        stored = (
            value_text(level.get(check["keyword"]))
            if check["keyword"] in level
            else None
        )
        if stored != check["expected"]:
            mismatches.append({**check, "stored": stored})
    return {"checked": len(item["checks"]), "mismatches": mismatches}


def _interrupted(
    job: ImportJob,
    detail: dict[str, Any],
    done: dict[str, Any],
    error: aws.AwsError,
) -> float | None:
    """A refusal part way: ask again within the patience (keeping what was read), else "not verified yet"."""
    since = job.verification_started_at or timezone.now()
    patient = timezone.now() - since < timedelta(
        seconds=settings.JOBS_VERIFY_PATIENCE_S
    )
    detail = {**detail, "done": done}
    if error.transient and patient:
        retry_s = float(settings.JOBS_VERIFY_RETRY_S)
        detail["retrying"] = _reason(error)
        ImportJob.objects.filter(
            pk=job.pk, verification=ImportJob.Verification.RUNNING
        ).update(
            verification=ImportJob.Verification.PENDING,
            verification_detail=detail,
            # The claim waits for the retry: the poller's requeue sends nothing meanwhile.
            verification_lease_until=timezone.now() + timedelta(seconds=retry_s),
        )
        return retry_s
    detail["reason"] = _reason(error) + (
        f" (asked again for {settings.JOBS_VERIFY_PATIENCE_S} s)"
        if error.transient
        else ""
    )
    detail.pop("retrying", None)
    ImportJob.objects.filter(
        pk=job.pk, verification=ImportJob.Verification.RUNNING
    ).update(
        verification=ImportJob.Verification.NOT_VERIFIED,
        verification_detail=detail,
        verification_lease_until=None,
    )
    audit_record(
        actor=None,
        action=AuditEvent.Action.JOB_VERIFIED,
        target=job,
        summary=f"Import job {job.pk}: {NOT_VERIFIED_WORDS} ({error.code})",
        details={"state": ImportJob.Verification.NOT_VERIFIED, "code": error.code},
    )
    return None


def _reason(error: aws.AwsError) -> str:
    if isinstance(error, aws_image_sets.NotConsistentYet):
        return (
            f"HealthImaging's metadata is not consistent yet after the import: {error}"
        )
    if isinstance(error, aws.Throttled):
        return f"HealthImaging kept throttling GetImageSetMetadata: {error}"
    if isinstance(error, aws.AccessDenied):
        return (
            "HealthImaging refused the dashboard's credentials (they need medical-imaging:GetImageSetMetadata): "
            f"{error}"
        )
    return f"HealthImaging could not be asked: {error}"


def _finish(
    job: ImportJob,
    plan: dict[str, dict[str, Any]],
    detail: dict[str, Any],
    done: dict[str, Any],
) -> None:
    mismatches: list[dict[str, Any]] = []
    gone = []
    checked = 0
    for image_set_id, result in sorted(done.items()):
        item = plan.get(image_set_id, {})
        checked += int(result.get("checked", 0))
        if result.get("gone"):
            gone.append(image_set_id)
            mismatches.extend(
                {**check, "stored": None, "gone": True, "image_set_id": image_set_id}
                for check in item.get("checks", [])
            )
        for mismatch in result.get("mismatches", []):
            mismatches.append(
                {
                    **mismatch,
                    "image_set_id": image_set_id,
                    "input_file": item.get("first_file", ""),
                }
            )
    wrong, compared = _prediction_compared(job, plan)
    state = (
        ImportJob.Verification.MISMATCHES
        if mismatches or gone
        else ImportJob.Verification.VERIFIED
    )
    summary = {
        "image_sets": len(plan),
        "attributes_checked": checked,
        "mismatches": mismatches,
        "gone": gone,
        "unreadable_files": detail.get("unreadable_files", []),
        "wrong_predictions": wrong,
        "predictions_compared": compared,
    }
    confirmed = None if not compared else not wrong
    now = timezone.now()
    if not ImportJob.objects.filter(
        pk=job.pk, verification=ImportJob.Verification.RUNNING
    ).update(
        verification=state,
        verification_detail=summary,
        verification_lease_until=None,
        verified_at=now,
        prediction_confirmed=confirmed,
    ):
        return
    job.verification, job.verification_detail, job.verified_at = state, summary, now
    job.prediction_confirmed = confirmed
    audit_record(
        actor=None,
        action=AuditEvent.Action.JOB_VERIFIED,
        target=job,
        summary=f"Import job {job.pk}: {verification_sentence(job)}"
        + (f"; {len(wrong)} series not as predicted" if wrong else ""),
        details={
            "state": state,
            "image_sets": len(plan),
            "attributes_checked": checked,
            "mismatches": len(mismatches),
            "wrong_predictions": len(wrong),
        },
    )
    job_record_write(job=job)


def _prediction_compared(
    job: ImportJob, plan: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """The series whose outcome was not the predicted one, and how many series could be compared."""
    happened: dict[str, tuple[str, int | None, bool | None]] = {}
    for image_set_id, item in plan.items():
        for _, series in item["series"]:
            happened.setdefault(
                series, (image_set_id, item["version"], item["is_primary"])
            )
    wrong = []
    compared = 0
    for predicted in (job.prediction or {}).get("series", []):
        if predicted.get("outcome") is None:
            continue
        found = happened.get(predicted.get("series_instance_uid", ""))
        if found is None:
            continue  # the series imported nothing (its files failed)
        image_set_id, version, primary = found
        observed = observed_outcome(
            is_primary=primary,
            version=version,
            image_set_id=image_set_id,
            predicted=predicted,
        )
        if observed is None:
            continue
        compared += 1
        same_set = predicted["outcome"] != "adds_to" or (
            predicted.get("image_set_id") == image_set_id
        )
        if observed != predicted["outcome"] or not same_set:
            wrong.append(
                {
                    "study_instance_uid": predicted.get("study_instance_uid", ""),
                    "series_instance_uid": predicted.get("series_instance_uid", ""),
                    "predicted": predicted["outcome"],
                    "predicted_image_set_id": predicted.get("image_set_id"),
                    "observed": observed,
                    "image_set_id": image_set_id,
                    "image_set_version": version,
                    "is_primary": primary,
                }
            )
    return wrong, compared


# ---- how it reads ----------------------------------------------------------------------------------------------


def verification_summary(job: ImportJob) -> dict[str, Any]:
    """`status --json`'s "verification": pending (not ended, or not done yet), verified, mismatches, not_verified."""
    detail = job.verification_detail or {}
    V = ImportJob.Verification
    if job.verification in (V.PENDING, V.RUNNING) or (
        job.verification == V.NONE and job.is_live
    ):
        state = "pending"
    elif job.verification == V.NONE:
        state = "not_verified"
    else:
        state = str(job.verification)
    finished = job.verification in (V.VERIFIED, V.MISMATCHES)
    return {
        "state": state,
        "image_sets": detail.get("image_sets", 0) if finished else 0,
        "attributes_checked": detail.get("attributes_checked", 0) if finished else 0,
        "mismatches": len(detail.get("mismatches", [])) if finished else 0,
    }


def verification_pending(job: ImportJob) -> bool:
    """Will the verification still change? (`status --wait` waits for it.)"""
    return job.is_live or job.verification in (
        ImportJob.Verification.PENDING,
        ImportJob.Verification.RUNNING,
    )


def verification_reason(job: ImportJob) -> str:
    detail = job.verification_detail or {}
    if job.verification == ImportJob.Verification.NOT_VERIFIED:
        return str(detail.get("reason", ""))
    if job.verification == ImportJob.Verification.NONE and not job.is_live:
        return "the job made no results to verify"
    return str(detail.get("retrying", ""))


def verification_sentence(job: ImportJob) -> str:
    """One line for the page, the trail and the command line."""
    detail = job.verification_detail or {}
    V = ImportJob.Verification
    if job.verification in (V.VERIFIED, V.MISMATCHES):
        checked = int(detail.get("attributes_checked", 0))
        sets = int(detail.get("image_sets", 0))
        wrong = len(detail.get("mismatches", []))
        where = f"in {sets} image set{'s' if sets != 1 else ''}"
        if job.verification == V.VERIFIED:
            sentence = f"Overrides verified: {checked} of {checked} attributes {where}"
            return sentence + (" (the job's mappings set none)" if not checked else "")
        return f"Overrides not all verified: {wrong} of {checked} attributes {where} differ from the stored metadata"
    if verification_pending(job):
        retrying = detail.get("retrying")
        return "Verification pending" + (
            f" ({retrying}; asking again)" if retrying else ""
        )
    return f"Overrides {NOT_VERIFIED_WORDS}: {verification_reason(job)}"


def prediction_summary(job: ImportJob) -> dict[str, Any]:
    """`status --json`'s "prediction": the counts, and whether what happened confirmed it (None: not known)."""
    predicted = job.prediction or {}
    return {
        "new": int(predicted.get("new", 0)),
        "adds_to": int(predicted.get("adds_to", 0)),
        "non_primary": int(predicted.get("non_primary", 0)),
        "confirmed": job.prediction_confirmed,
    }


def mismatches_by_file(job: ImportJob) -> list[tuple[str, list[dict[str, Any]]]]:
    """The mismatches grouped by the metadata file that set them, for the page."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for mismatch in (job.verification_detail or {}).get("mismatches", []):
        grouped[mismatch.get("file", "")].append(mismatch)
    return sorted(grouped.items())
