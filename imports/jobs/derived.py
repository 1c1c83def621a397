"""The duplicate-import guards: the same request confirmed again, and SOP instances a completed job imported.

`job_same_request` is the one both the composer and `import_job submit` go through (in `job_create`): a request
whose datastore, input and mappings equal a job's of the last JOBS_DUPLICATE_WINDOW_DAYS needs an explicit,
audited "import again". `job_duplicate_instances` is the wider, softer warning shown before confirming.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from imports.models import Datastore, ImportJob, ImportJobResult, ObjectHeader, Scan


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


# What makes two requests "the same import": where it goes, what it reads, and which metadata overrides it.
# The job name, the output prefix and the role differ between two runs of one import and change nothing in
# the datastore, so they are left out; so is the clientToken, which is new for every job.
SAME_REQUEST_FIELDS = ("datastoreId", "inputS3Uri", "importConfiguration")


def request_fingerprint(request: dict[str, Any]) -> str:
    """sha256 of the request's SAME_REQUEST_FIELDS, keys sorted: equal for two runs of one import."""
    payload = {field: request.get(field) for field in SAME_REQUEST_FIELDS}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class SameRequest(Exception):
    """A job of the last days made this very request; confirming again needs an explicit "import again"."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        super().__init__(same_request_refusal(job))


def job_same_request(
    *, datastore: Datastore, request: dict[str, Any]
) -> ImportJob | None:
    """The latest job of the window whose datastore, input and mappings equal `request`'s, if any.

    Every job that may have reached HealthImaging counts, finished or not; a job that was never submitted
    (and whose outcome is known) imported nothing and does not. The mapped files are compared by path, not by
    content: a file rewritten under the same path still asks for "import again", which errs on the side of
    asking. The query narrows by datastore, input and date; the few rows left are compared in Python.
    """
    since = timezone.now() - timedelta(days=settings.JOBS_DUPLICATE_WINDOW_DAYS)
    candidates = (
        ImportJob.objects.filter(
            datastore=datastore,
            input_s3_uri=request.get("inputS3Uri", ""),
            created_at__gte=since,
        )
        .exclude(Q(status=ImportJob.Status.SUBMIT_FAILED) & Q(outcome_unknown=False))
        .order_by("-created_at", "-pk")
        .only("pk", "request", "status", "created_at", "datastore_id")
    )
    wanted = request_fingerprint(request)
    for job in candidates.iterator():
        if job.request and request_fingerprint(job.request) == wanted:
            return job
    return None


def same_request_refusal(job: ImportJob) -> str:
    """The refusal's words, the same in the browser and on the command line."""
    when = timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"Import job {job.pk} ({job.get_status_display().lower()}, confirmed {when}) made this same "
        "request: the same datastore, input prefix and mappings. Importing it again adds to or forks "
        "the image sets it made, and HealthImaging bills each import for at least 30 days."
    )
