"""Composing an import: drafts, their mappings, suggestions, CSV in and out, validation and the request.

A draft is composed against an index, the latest completed scan of its input prefix. Every change is one
service call that checks the version the user saw (`_editing`), so two tabs cannot silently overwrite each
other, and records what it changed in the audit trail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from imports.audit.records import Actor, audit_record
from imports.drafts.approval import approvals_void
from imports.drafts.suggestions import draft_suggestions
from imports.jobs import request as jobrequest
from imports.mappings.csvfile import CsvRefused, mappings_read_csv
from imports.mappings.rules import (
    MAX_MAPPINGS,
    Mapping,
    PrefixIndex,
    Problem,
    mappings_validate,
    metadata_path_problem,
    problems_sorted,
)
from imports.models import (
    AuditEvent,
    Datastore,
    DraftMapping,
    ImportDraft,
    ObjectHeader,
    Scan,
    ScanSeries,
)
from imports.scanning.lookup import index_for_prefix, prefix_index
from imports.validators import split_s3_uri


class DraftConflict(Exception):
    """The draft changed since the user loaded it (another tab, another person)."""

    def __init__(self, current: ImportDraft) -> None:
        super().__init__(
            "This draft changed since you opened it (another tab or another person saved it); "
            "the newer state is shown. Make your change again."
        )
        self.current = current


class DraftRefused(Exception):
    """A change that cannot be applied; nothing was saved. `problems` say why, row by row."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


# --- Starting -------------------------------------------------------------------------------


def draft_start(
    *,
    actor: Actor,
    datastore: Datastore,
    input_s3_uri: str,
    output_s3_uri: str,
    job_name: str = "",
) -> ImportDraft:
    """Create a draft, with the input prefix's index: the latest completed scan if the prefix is unchanged
    since, otherwise a new scan (which reads only objects it has not seen, so a rescan costs LISTs, no GET)."""
    bucket, prefix = split_s3_uri(input_s3_uri)
    scan = index_for_prefix(
        actor=actor, datastore=datastore, bucket=bucket, prefix=prefix
    )
    with transaction.atomic():
        draft = ImportDraft.objects.create(
            datastore=datastore,
            input_s3_uri=input_s3_uri,
            output_s3_uri=output_s3_uri,
            job_name=job_name,
            scan=scan,
            owner=actor if isinstance(actor, User) else None,
        )
        draft.content_hash = draft_content_hash(draft=draft)
        draft.save(update_fields=["content_hash"])
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DRAFT_CREATED,
            target=draft,
            summary=f"Started an import draft of {input_s3_uri} into “{datastore.name}”",
            details={"scan": scan.pk, "output_s3_uri": output_s3_uri},
        )
    return draft


# --- Validation -----------------------------------------------------------------------------


def draft_mappings(*, draft: ImportDraft) -> list[Mapping]:
    return [
        Mapping(
            study_instance_uid=row.study_instance_uid,
            series_instance_uid=row.series_instance_uid,
            metadata_file_path=row.metadata_file_path,
        )
        for row in draft.mappings.all()
    ]


def draft_validate(
    *,
    draft: ImportDraft,
    index: PrefixIndex | None = None,
    mappings: list[DraftMapping] | None = None,
) -> list[Problem]:
    """Every problem of the draft, errors first; the counts are kept on the draft for the Drafts list.

    `index` and `mappings` save a caller that already loaded them (the composer) loading them twice.
    """
    problems = _draft_problems(draft, index, mappings)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if (draft.error_count, draft.warning_count) != (errors, warnings):
        ImportDraft.objects.filter(pk=draft.pk).update(
            error_count=errors, warning_count=warnings
        )
        draft.error_count, draft.warning_count = errors, warnings
    return problems


def _draft_problems(
    draft: ImportDraft,
    index: PrefixIndex | None,
    mappings: list[DraftMapping] | None,
) -> list[Problem]:
    scan = draft.scan
    if scan is None:
        return [
            _set_error(
                "no_index",
                "This draft has no scan of its input prefix (it was deleted); refresh the index.",
            )
        ]
    if scan.is_active:
        return [
            _set_error(
                "index_running",
                "The input prefix is still being scanned; the mappings can be checked when the scan ends.",
            )
        ]
    if scan.status != Scan.Status.COMPLETED:
        return [
            _set_error(
                "index_not_completed",
                f"The scan of the input prefix ended {scan.get_status_display().lower()}; "
                "an import cannot be composed against a partial index. Refresh the index.",
            )
        ]
    if mappings is None:
        mappings = list(draft.mappings.all())
    return problems_sorted(
        mappings_validate(
            mappings=[
                Mapping(
                    m.study_instance_uid, m.series_instance_uid, m.metadata_file_path
                )
                for m in mappings
            ],
            index=index or prefix_index(scan=scan, datastore=draft.datastore),
            recorded_etags={
                m.metadata_file_path: m.metadata_etag
                for m in mappings
                if m.metadata_etag
            },
        )
    )


def _set_error(code: str, message: str) -> Problem:
    return Problem(severity="error", row=None, field="", code=code, message=message)


def draft_content_hash(*, draft: ImportDraft) -> str:
    """sha256 over the request's fixed fields and each mapping with the ETag of its file, in a stable order."""
    content = {
        "input": draft.input_s3_uri,
        "output": draft.output_s3_uri,
        "jobName": draft.job_name,
        "mappings": sorted(
            draft.mappings.values_list(
                "study_instance_uid",
                "series_instance_uid",
                "metadata_file_path",
                "metadata_etag",
            )
        ),
    }
    return hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def draft_request(*, draft: ImportDraft) -> dict[str, Any]:
    """The StartDICOMImportJob parameters, exactly as they will be sent (the client token is added at submit)."""
    return jobrequest.job_request_build(
        datastore=draft.datastore,
        input_s3_uri=draft.input_s3_uri,
        output_s3_uri=draft.output_s3_uri,
        job_name=draft.job_name,
        mappings=[
            Mapping(m.study_instance_uid, m.series_instance_uid, m.metadata_file_path)
            for m in draft.mappings.all()
        ],
    )


# --- Changing a draft -----------------------------------------------------------------------


def draft_frozen_problem(draft: ImportDraft) -> str:
    """Why this draft can no longer change ("" if it can): a confirmed draft is what its job was made from."""
    if draft.confirmed_at is None:
        return ""
    job = draft.jobs.order_by("created_at", "pk").first()
    made = f"import job {job.pk}" if job is not None else "an import job"
    return (
        f"This draft was confirmed as {made} and can no longer change. "
        "Clone that job to start a new draft from it."
    )


@contextmanager
def _editing(draft: ImportDraft, version: int, actor: Actor) -> Iterator[ImportDraft]:
    """Lock the draft, refuse a stale version, bump the version and content hash after the change, note who made
    it, and void the approvals of the version before (drafts.approval)."""
    with transaction.atomic():
        locked = ImportDraft.objects.select_for_update().get(pk=draft.pk)
        if problem := draft_frozen_problem(locked):
            raise DraftRefused(problem)
        if locked.version != version:
            raise DraftConflict(locked)
        yield locked
        locked.version += 1
        locked.content_hash = draft_content_hash(draft=locked)
        locked.changed_by = actor if isinstance(actor, User) else None
        locked.save()
        approvals_void(draft=locked, actor=actor)


def _mapping_rows(draft: ImportDraft) -> dict[tuple[str, str], DraftMapping]:
    return {
        (m.study_instance_uid, m.series_instance_uid): m for m in draft.mappings.all()
    }


def _apply(
    *,
    draft: ImportDraft,
    actor: Actor,
    version: int,
    upserts: Sequence[tuple[str, str, str, str]],
    removals: Iterable[tuple[str, str]] = (),
    summary: str,
) -> ImportDraft:
    """Insert or replace mappings (study, series, path, etag) and remove others, as one audited change."""
    with _editing(draft, version, actor) as locked:
        existing = _mapping_rows(locked)
        added, changed, removed = [], [], []
        for key in removals:
            row = existing.pop(key, None)
            if row is not None:
                removed.append(
                    _describe(
                        row.study_instance_uid,
                        row.series_instance_uid,
                        row.metadata_file_path,
                    )
                )
                row.delete()
        to_create, to_update = [], []
        for study, series, path, etag in upserts:
            row = existing.get((study, series))
            if row is None:
                row = DraftMapping(
                    draft=locked,
                    study_instance_uid=study,
                    series_instance_uid=series,
                    metadata_file_path=path,
                    metadata_etag=etag,
                )
                existing[(study, series)] = row
                to_create.append(row)
                added.append(_describe(study, series, path))
            elif (row.metadata_file_path, row.metadata_etag) != (path, etag):
                before = row.metadata_file_path
                row.metadata_file_path, row.metadata_etag = path, etag
                if row.pk is not None:
                    to_update.append(row)
                changed.append({**_describe(study, series, path), "before": before})
        if len(existing) > MAX_MAPPINGS:
            raise DraftRefused(
                f"This change would give the draft {len(existing):,} mappings; "
                f"an import job takes at most {MAX_MAPPINGS:,}. Split the import."
            )
        DraftMapping.objects.bulk_create(to_create)
        DraftMapping.objects.bulk_update(
            to_update, ["metadata_file_path", "metadata_etag"]
        )
        if added or changed or removed:
            audit_record(
                actor=actor,
                action=AuditEvent.Action.DRAFT_CHANGED,
                target=locked,
                summary=summary,
                details={"added": added, "changed": changed, "removed": removed},
            )
    return locked


def _describe(study: str, series: str, path: str) -> dict[str, str]:
    return {
        "studyInstanceUID": study,
        "seriesInstanceUID": series,
        "metadataFilePath": path,
    }


def _json_file(draft: ImportDraft, path: str) -> ObjectHeader:
    """The scanned JSON file at `path` (relative to the input prefix), or DraftRefused."""
    problem = metadata_path_problem(path)
    if problem is not None:
        raise DraftRefused(problem[1])
    if draft.scan is None or draft.scan.status != Scan.Status.COMPLETED:
        raise DraftRefused("Wait for the scan of the input prefix to complete first.")
    header = (
        ObjectHeader.objects.of_scan(draft.scan)
        .filter(key=draft.scan.prefix + path, kind=ObjectHeader.Kind.JSON)
        .first()
    )
    if header is None:
        raise DraftRefused(
            f"metadataFilePath: no JSON file “{path}” was found under {draft.input_s3_uri} by the scan; "
            "choose one of the files in the list."
        )
    return header


def draft_assign(
    *,
    draft: ImportDraft,
    actor: Actor,
    version: int,
    targets: Sequence[tuple[str, str]],
    path: str,
) -> ImportDraft:
    """Map one JSON file to studies (series "") or series, replacing what they were mapped to."""
    if not targets:
        raise DraftRefused("Choose at least one study or series to map the file to.")
    header = _json_file(draft, path)
    known = _known_targets(draft)
    for study, series in targets:
        if (study, series) not in known:
            raise DraftRefused(
                "A chosen series or study is not in the scan of the input prefix; reload the page."
            )
    return _apply(
        draft=draft,
        actor=actor,
        version=version,
        upserts=[(study, series, path, header.etag) for study, series in targets],
        summary=f"Mapped {path} to {len(targets)} "
        + ("study" if len(targets) == 1 and not targets[0][1] else "target")
        + ("s" if len(targets) > 1 else ""),
    )


def draft_map_written_file(
    *,
    draft: ImportDraft,
    actor: Actor,
    version: int,
    targets: Sequence[tuple[str, str]],
    path: str,
    etag: str,
) -> ImportDraft:
    """Map a file the dashboard has just written (the metadata editor), whose ETag S3 gave in its answer.

    The editor records the file in the draft's scan before calling this (editor._record_written), so validation
    finds it at that ETag like any scanned file.
    """
    return draft_map_written_files(
        draft=draft,
        actor=actor,
        version=version,
        files=[(study, series, path, etag) for study, series in targets],
        summary=f"Mapped {path}, written in the metadata editor",
    )


def draft_map_written_files(
    *,
    draft: ImportDraft,
    actor: Actor,
    version: int,
    files: Sequence[tuple[str, str, str, str]],
    summary: str,
) -> ImportDraft:
    """Map files just written and recorded in the draft's scan, each (study, series, path, ETag), as one change."""
    if draft.scan is None:
        raise DraftRefused(
            "This draft has no scan of its input prefix; refresh the index."
        )
    known = _known_targets(draft)
    if not files or any((study, series) not in known for study, series, _, _ in files):
        raise DraftRefused(
            "A chosen series or study is not in the scan of the input prefix; reload the page."
        )
    return _apply(
        draft=draft, actor=actor, version=version, upserts=files, summary=summary
    )


def draft_known_targets(*, draft: ImportDraft) -> set[tuple[str, str]]:
    """Every (study, series) of the draft's scan, and (study, "") for each study."""
    return _known_targets(draft)


def _known_targets(draft: ImportDraft) -> set[tuple[str, str]]:
    assert draft.scan is not None
    rows = ScanSeries.objects.filter(study__scan=draft.scan).values_list(
        "study__study_instance_uid", "series_instance_uid"
    )
    known = set(rows)
    known |= {(study, "") for study, _ in known}
    return known


def draft_unmap(
    *, draft: ImportDraft, actor: Actor, version: int, mapping_ids: Sequence[int]
) -> ImportDraft:
    keys = list(
        draft.mappings.filter(pk__in=mapping_ids).values_list(
            "study_instance_uid", "series_instance_uid"
        )
    )
    if not keys:
        # Answering an unknown ID with success would hide a stale page or a forged form.
        raise DraftRefused(
            "That mapping is not in this draft (it was removed already, or belongs to another "
            "draft); reload the page. Nothing was saved."
        )
    return _apply(
        draft=draft,
        actor=actor,
        version=version,
        upserts=[],
        removals=keys,
        summary=f"Removed {len(keys)} mapping{'s' if len(keys) != 1 else ''}",
    )


def draft_update_settings(
    *, draft: ImportDraft, actor: Actor, version: int, job_name: str, output_s3_uri: str
) -> ImportDraft:
    with _editing(draft, version, actor) as locked:
        before = {"job_name": locked.job_name, "output_s3_uri": locked.output_s3_uri}
        locked.job_name, locked.output_s3_uri = job_name, output_s3_uri
        after = {"job_name": job_name, "output_s3_uri": output_s3_uri}
        if before != after:
            audit_record(
                actor=actor,
                action=AuditEvent.Action.DRAFT_CHANGED,
                target=locked,
                summary="Changed the job name or output URI of an import draft",
                details={"before": before, "after": after},
            )
    return locked


def draft_refresh_index(
    *, draft: ImportDraft, actor: Actor, version: int
) -> ImportDraft:
    """Compose against the prefix as it is now: the current scan, or a new one."""
    assert draft.datastore_id is not None
    bucket, prefix = split_s3_uri(draft.input_s3_uri)
    scan = index_for_prefix(
        actor=actor, datastore=draft.datastore, bucket=bucket, prefix=prefix
    )
    with _editing(draft, version, actor) as locked:
        locked.scan = scan
    return locked


def draft_delete(*, draft: ImportDraft, actor: Actor) -> None:
    with transaction.atomic():
        count = draft.mappings.count()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DRAFT_DELETED,
            target=draft,
            summary=f"Deleted import draft {draft.pk} ({count} mapping{'s' if count != 1 else ''})",
            details={
                "mappings": [
                    _describe(*row)
                    for row in draft.mappings.values_list(
                        "study_instance_uid",
                        "series_instance_uid",
                        "metadata_file_path",
                    )
                ]
            },
        )
        draft.delete()


def draft_accept_suggestions(
    *, draft: ImportDraft, actor: Actor, version: int
) -> ImportDraft:
    suggestions = draft_suggestions(draft=draft)
    if not suggestions:
        raise DraftRefused("There are no suggestions to accept.")
    return _apply(
        draft=draft,
        actor=actor,
        version=version,
        upserts=[
            (s.study_instance_uid, s.series_instance_uid, s.path, s.etag)
            for s in suggestions
        ],
        summary=f"Accepted {len(suggestions)} suggested mapping{'s' if len(suggestions) != 1 else ''}",
    )


def draft_import_csv(
    *, draft: ImportDraft, actor: Actor, version: int, data: bytes
) -> ImportDraft:
    """Add (or replace) the CSV's mappings. Files must be JSON files the scan found; nothing is saved otherwise."""
    try:
        mappings = mappings_read_csv(data)
    except CsvRefused as refused:
        raise DraftRefused(str(refused), refused.problems) from None
    if draft.scan is None or draft.scan.status != Scan.Status.COMPLETED:
        raise DraftRefused("Wait for the scan of the input prefix to complete first.")
    etags = {
        key[len(draft.scan.prefix) :]: etag
        for key, etag in ObjectHeader.objects.of_scan(draft.scan)
        .filter(kind=ObjectHeader.Kind.JSON)
        .values_list("key", "etag")
    }
    # Files the scan did not find are kept (validation names them as missing), so that a spreadsheet prepared
    # before the files were uploaded still loads; their ETag is recorded once known.
    return _apply(
        draft=draft,
        actor=actor,
        version=version,
        upserts=[
            (
                m.study_instance_uid,
                m.series_instance_uid,
                m.metadata_file_path,
                etags.get(m.metadata_file_path, ""),
            )
            for m in mappings
        ],
        summary=f"Loaded {len(mappings)} mapping{'s' if len(mappings) != 1 else ''} from a CSV",
    )


def draft_csv_rows(*, draft: ImportDraft) -> Iterator[list[str]]:
    for row in draft.mappings.all():
        yield [row.study_instance_uid, row.series_instance_uid, row.metadata_file_path]


# --- The list ------------------------------------------------------------------------------
