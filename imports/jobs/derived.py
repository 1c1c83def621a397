"""The duplicate-import guard: SOP instances that a completed job already imported."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef

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
