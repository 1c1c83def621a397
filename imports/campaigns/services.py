"""Campaigns: plan one from the scan index, start, pause, resume and cancel it.

Planning reads the index only (no GET beyond the scans) and stores the plan in one transaction: a refused plan
leaves nothing behind. Starting checks each source against S3 again, as confirming a draft does
(imports.drafts.confirmation), then hands the work to Celery: staging copies (imports.campaigns.staging) and
the campaign's advance (imports.campaigns.accounting), which submits the jobs through imports.jobs.submit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from imports.audit.records import Actor, audit_record
from imports.aws import client as aws
from imports.campaigns import planner
from imports.enqueue import CAMPAIGN_ADVANCE, CAMPAIGN_STAGE, enqueue_task
from imports.mappings.rules import Mapping
from imports.models import (
    AuditEvent,
    Campaign,
    CampaignCopy,
    CampaignJob,
    CampaignObject,
    CampaignSource,
    Datastore,
    ObjectHeader,
    Scan,
)
from imports.scanning.lookup import scan_is_current
from imports.validators import split_s3_uri

BATCH = 2000


class CampaignRefused(Exception):
    """The campaign cannot be planned or changed as asked; `problems` say why, each naming its option."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Planned:
    campaign: Campaign
    plan: planner.Plan


def _source_of(uri: str, option: str) -> planner.Source:
    if not uri.startswith("s3://"):
        raise CampaignRefused(
            [
                f"{option} {uri}: an S3 URI starts with s3://, for example s3://bucket/prefix/."
            ]
        )
    bucket, prefix = split_s3_uri(uri)
    if not bucket:
        raise CampaignRefused([f"{option} {uri}: the URI names no bucket."])
    if prefix and not prefix.endswith("/"):
        # Jobs are cut along folders: a prefix that ends mid-name would take other folders' objects too.
        raise CampaignRefused(
            [f"{option} {uri}: a campaign's prefix is a folder; end it with “/”."]
        )
    return planner.Source(bucket, prefix)


def _overlap(one: planner.Source, other: planner.Source) -> bool:
    return one.bucket == other.bucket and (
        one.prefix.startswith(other.prefix) or other.prefix.startswith(one.prefix)
    )


def _latest_scan(source: planner.Source) -> Scan:
    scan = (
        Scan.objects.filter(
            bucket=source.bucket, prefix=source.prefix, status=Scan.Status.COMPLETED
        )
        .order_by("-finished_at", "-id")
        .first()
    )
    if scan is None:
        raise CampaignRefused(
            [
                f"--input {source.uri}: this prefix has no completed scan; the plan works from the index. "
                f"Run `python manage.py scan {source.uri}` first."
            ]
        )
    return scan


def _skip_reason(status: str, mapped: bool) -> str:
    if status == ObjectHeader.Status.OK:
        return ""
    if mapped:
        return "a metadata file"
    if status in (ObjectHeader.Status.JSON_VALID, ObjectHeader.Status.JSON_INVALID):
        return "a JSON file no mapping names"
    if status == ObjectHeader.Status.UNREADABLE:
        return "unreadable when scanned"
    return "not DICOM"


def _entries(
    scan: Scan, source: planner.Source
) -> list[tuple[planner.IndexEntry, str]]:
    rows = ObjectHeader.objects.of_scan(scan).values_list(
        "key", "size", "etag", "status", "study_instance_uid", "series_instance_uid"
    )
    return [
        (
            planner.IndexEntry(
                source,
                key,
                size,
                etag=etag,
                study_uid=study,
                series_uid=series,
                is_dicom=status == ObjectHeader.Status.OK,
            ),
            status,
        )
        for key, size, etag, status, study, series in rows.iterator(chunk_size=BATCH)
    ]


def _plan_mappings(
    mappings: Sequence[Mapping],
    sources: Sequence[planner.Source],
    keys: set[tuple[str, str]],
) -> list[planner.PlanMapping]:
    """A mappings CSV's paths, each relative to the first --input that holds the file."""
    found: list[planner.PlanMapping] = []
    problems = []
    for row, mapping in enumerate(mappings, start=2):
        path = mapping.metadata_file_path.lstrip("/")
        where = next((s for s in sources if (s.bucket, s.prefix + path) in keys), None)
        if where is None:
            problems.append(
                f"--mappings row {row}: {path} is under none of the inputs as their scans found them "
                "(a path is relative to an --input)."
            )
            continue
        found.append(
            planner.PlanMapping(
                mapping.study_instance_uid,
                mapping.series_instance_uid,
                where.bucket,
                where.prefix + path,
            )
        )
    if problems:
        raise CampaignRefused(problems)
    return found


def _limit(value: int | None, quota: int, option: str, unit: str) -> int:
    if value is None:
        return quota
    if not 1 <= value <= quota:
        raise CampaignRefused(
            [
                f"{option} {value}: give 1 to {quota:,} {unit} (the datastore's quota per job); it may be lower, not higher."
            ]
        )
    return value


def campaign_plan(
    *,
    actor: Actor,
    datastore: Datastore,
    inputs: Sequence[str],
    mappings: Sequence[Mapping] = (),
    max_files: int | None = None,
    max_bytes: int | None = None,
    staging_uri: str = "",
) -> Planned:
    """Plan a campaign from the latest completed scans of `inputs` and store it (state Planned).

    Raises CampaignRefused, with every reason, when it cannot be planned; nothing is stored then.
    """
    if not inputs:
        raise CampaignRefused(["--input: give at least one source prefix."])
    sources = [_source_of(uri, "--input") for uri in inputs]
    for n, one in enumerate(sources):
        for other in sources[n + 1 :]:
            if _overlap(one, other):
                raise CampaignRefused(
                    [
                        f"--input {one.uri} and {other.uri} overlap; give each folder once."
                    ]
                )
    staging = _source_of(staging_uri, "--staging") if staging_uri else None
    if staging is not None:
        for source in sources:
            if _overlap(staging, source):
                raise CampaignRefused(
                    [
                        f"--staging {staging.uri} overlaps --input {source.uri}; the copies must stay out of the sources."
                    ]
                )
    limits = planner.Limits(
        max_files=_limit(
            max_files, datastore.max_files_per_job, "--max-files", "files"
        ),
        max_bytes=_limit(
            max_bytes, datastore.max_bytes_per_job, "--max-bytes", "bytes"
        ),
        max_folders=Scan.MAX_FOLDERS,
    )
    scans = [_latest_scan(source) for source in sources]
    indexed = [
        pair
        for scan, source in zip(scans, sources, strict=True)
        for pair in _entries(scan, source)
    ]
    keys = {(e.source.bucket, e.key) for e, _ in indexed}
    plan_mappings = _plan_mappings(mappings, sources, keys)
    mapped = {(m.bucket, m.key) for m in plan_mappings}
    with transaction.atomic():
        campaign = Campaign.objects.create(
            datastore=datastore,
            created_by=actor if isinstance(actor, User) else None,
            staging_uri=staging.uri if staging else "",
            max_files=limits.max_files,
            max_bytes=limits.max_bytes,
            max_folders=limits.max_folders,
            object_count=len(indexed),
        )
        result = planner.plan(
            sources=sources,
            entries=[e for e, _ in indexed],
            mappings=plan_mappings,
            limits=limits,
            staging=staging,
            campaign=str(campaign.pk),
        )
        if result.problems:
            transaction.set_rollback(True)
            raise CampaignRefused(result.problems)
        _store(
            campaign,
            sources,
            scans,
            result,
            {(e.source.bucket, e.key): s for e, s in indexed},
            mapped,
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CAMPAIGN_PLANNED,
            target=campaign,
            summary=f"Planned campaign {campaign.pk} into “{datastore.name}”: {len(result.jobs):,} "
            f"job{'s' if len(result.jobs) != 1 else ''} for {campaign.object_count:,} objects from "
            f"{len(sources)} source prefix{'es' if len(sources) != 1 else ''}"
            + (f", {result.staged_objects:,} staged" if result.staged_objects else ""),
            details={
                "inputs": [source.uri for source in sources],
                "scans": [scan.pk for scan in scans],
                "jobs": len(result.jobs),
                "objects": campaign.object_count,
                "staged_objects": result.staged_objects,
                "mappings": len(plan_mappings),
                "max_files": limits.max_files,
                "max_bytes": limits.max_bytes,
                "staging": campaign.staging_uri,
            },
        )
    return Planned(campaign=campaign, plan=result)


def _store(
    campaign: Campaign,
    sources: Sequence[planner.Source],
    scans: Sequence[Scan],
    result: planner.Plan,
    statuses: dict[tuple[str, str], str],
    mapped: set[tuple[str, str]],
) -> None:
    CampaignSource.objects.bulk_create(
        CampaignSource(campaign=campaign, scan=scan, input_uri=source.uri)
        for source, scan in zip(sources, scans, strict=True)
    )
    rows = CampaignJob.objects.bulk_create(
        CampaignJob(
            campaign=campaign,
            number=job.number,
            input_s3_uri=job.input_uri,
            staged=job.staged,
            files=job.files,
            bytes=job.bytes,
            folders=job.folders,
            mappings=[_request_mapping(m) for m in job.mappings],
        )
        for job in result.jobs
    )
    # SQLite's bulk_create sets no primary keys on old versions: read them back by number.
    by_number = (
        {j.number: j for j in CampaignJob.objects.filter(campaign=campaign)}
        if rows and rows[0].pk is None
        else {j.number: j for j in rows}
    )
    copies = []
    objects = []
    for job in result.jobs:
        row = by_number[job.number]
        copies += [
            CampaignCopy(
                job=row,
                bucket=c.bucket,
                key=c.key,
                etag=c.etag,
                size=c.size,
                dest_bucket=c.dest_bucket,
                dest_key=c.dest_key,
            )
            for c in job.copies
        ]
        dest = {(c.bucket, c.key): c.dest_key for c in job.copies}
        for entry in job.objects:
            where = (entry.source.bucket, entry.key)
            objects.append(
                _object(
                    campaign,
                    row,
                    entry,
                    dest.get(where, entry.key),
                    statuses[where],
                    where in mapped,
                )
            )
    for skipped in result.skipped:
        where = (skipped.entry.source.bucket, skipped.entry.key)
        objects.append(
            _object(
                campaign,
                None,
                skipped.entry,
                skipped.entry.key,
                statuses[where],
                where in mapped,
            )
        )
    CampaignCopy.objects.bulk_create(copies, batch_size=BATCH)
    CampaignObject.objects.bulk_create(objects, batch_size=BATCH)
    Campaign.objects.filter(pk=campaign.pk).update(
        staged_objects=result.staged_objects, staged_bytes=result.staged_bytes
    )
    campaign.staged_objects, campaign.staged_bytes = (
        result.staged_objects,
        result.staged_bytes,
    )


def _request_mapping(mapping: planner.JobMapping) -> dict[str, str]:
    item = {"studyInstanceUID": mapping.study_uid}
    if mapping.series_uid:
        item["seriesInstanceUID"] = mapping.series_uid
    item["metadataFilePath"] = mapping.metadata_file_path
    return item


def _object(
    campaign: Campaign,
    job: CampaignJob | None,
    entry: planner.IndexEntry,
    result_key: str,
    status: str,
    mapped: bool,
) -> CampaignObject:
    reason = _skip_reason(status, mapped)
    return CampaignObject(
        campaign=campaign,
        job=job,
        bucket=entry.source.bucket,
        key=entry.key,
        etag=entry.etag,
        size=entry.size,
        result_key=result_key,
        skip_reason=reason,
        # The dashboard's own reasons are known at planning; the rest come from the jobs' results.
        outcome=CampaignObject.Outcome.SKIPPED
        if reason
        else CampaignObject.Outcome.PENDING,
        reason=reason,
    )


# --- Running --------------------------------------------------------------------------------


def _audit_change(
    actor: Actor, campaign_id: int, action: AuditEvent.Action, done: str, old: str
) -> None:
    campaign = Campaign.objects.get(pk=campaign_id)
    audit_record(
        actor=actor,
        action=action,
        target=campaign,
        summary=f"Campaign {campaign.pk} {done}",
        details={"from": old, "to": campaign.state},
    )


def campaign_start(*, actor: Actor, campaign_id: int) -> bool:
    """Planned → Running, once every source is as its scan found it; False when it had already started.

    Raises CampaignRefused when a source changed (or cannot be listed), as confirming a draft does.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.state != Campaign.State.PLANNED:
        return False
    for source in campaign.sources.select_related("scan"):
        try:
            unchanged = scan_is_current(scan=source.scan)
        except aws.AwsError as error:
            raise CampaignRefused(
                [
                    f"{source.input_uri} could not be listed to check it is unchanged: {error}. Nothing was started."
                ]
            ) from None
        if not unchanged:
            raise CampaignRefused(
                [
                    f"Objects under {source.input_uri} were added, removed or rewritten since its scan: "
                    "scan it again and plan a new campaign. Nothing was started."
                ]
            )
    with transaction.atomic():
        # The claim: of two starts at once, one moves the campaign, the other changes nothing.
        if not Campaign.objects.filter(
            pk=campaign_id, state=Campaign.State.PLANNED
        ).update(state=Campaign.State.RUNNING, started_at=timezone.now()):
            return False
        _audit_change(
            actor,
            campaign_id,
            AuditEvent.Action.CAMPAIGN_STARTED,
            "started",
            Campaign.State.PLANNED,
        )
        staged = list(
            CampaignJob.objects.filter(
                campaign_id=campaign_id, staged=True, state=CampaignJob.State.PLANNED
            ).values_list("pk", flat=True)
        )
        CampaignJob.objects.filter(pk__in=staged).update(
            state=CampaignJob.State.STAGING
        )
        for pk in staged:
            enqueue_task(CAMPAIGN_STAGE, pk)
        enqueue_task(CAMPAIGN_ADVANCE, campaign_id)
    return True


def campaign_pause(*, actor: Actor, campaign_id: int) -> bool:
    """Running → Paused: no further job is handed to submission; jobs already handed run to their end."""
    with transaction.atomic():
        paused = Campaign.objects.filter(
            pk=campaign_id, state=Campaign.State.RUNNING
        ).update(state=Campaign.State.PAUSED)
        if paused:
            _audit_change(
                actor,
                campaign_id,
                AuditEvent.Action.CAMPAIGN_PAUSED,
                "paused",
                Campaign.State.RUNNING,
            )
    return bool(paused)


def campaign_resume(*, actor: Actor, campaign_id: int) -> bool:
    with transaction.atomic():
        resumed = Campaign.objects.filter(
            pk=campaign_id, state=Campaign.State.PAUSED
        ).update(state=Campaign.State.RUNNING)
        if resumed:
            _audit_change(
                actor,
                campaign_id,
                AuditEvent.Action.CAMPAIGN_RESUMED,
                "resumed",
                Campaign.State.PAUSED,
            )
            enqueue_task(CAMPAIGN_ADVANCE, campaign_id)
    return bool(resumed)


def campaign_cancel(*, actor: Actor, campaign_id: int) -> bool:
    """Cancelled: jobs not yet at AWS are not submitted (their objects are "not imported"); jobs at AWS run to
    their end and are accounted for."""
    with transaction.atomic():
        # Locked so the audited "from" is the state that was cancelled, not one read after.
        old = (
            Campaign.objects.select_for_update()
            .filter(pk=campaign_id)
            .values_list("state", flat=True)
            .first()
        )
        cancelled = (
            Campaign.objects.filter(pk=campaign_id)
            .filter(
                Q(state=Campaign.State.PLANNED)
                | Q(state=Campaign.State.RUNNING)
                | Q(state=Campaign.State.PAUSED)
            )
            .update(state=Campaign.State.CANCELLED)
        )
        if cancelled:
            _audit_change(
                actor,
                campaign_id,
                AuditEvent.Action.CAMPAIGN_CANCELLED,
                "cancelled",
                str(old),
            )
            enqueue_task(CAMPAIGN_ADVANCE, campaign_id)
    return bool(cancelled)
