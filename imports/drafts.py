"""Composing an import: drafts, their mappings, suggestions, CSV in and out, validation and the request.

A draft is composed against an index, the latest completed scan of its input prefix. Every change is one
service call that checks the version the user saw (`_editing`), so two tabs cannot silently overwrite each
other, and records what it changed in the audit trail.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count

from imports import aws
from imports.audit import Actor, audit_record
from imports.mappings import (
    MAX_MAPPINGS,
    Mapping,
    MetadataFile,
    PrefixIndex,
    Problem,
    mappings_validate,
    metadata_path_problem,
    problems_sorted,
    uid_field_problem,
)
from imports.models import (
    AuditEvent,
    Datastore,
    DraftMapping,
    ImportDraft,
    ObjectHeader,
    Scan,
    ScanSeries,
    ScanStudy,
)
from imports.scanning import control
from imports.validators import split_s3_uri

CSV_COLUMNS = ["studyInstanceUID", "seriesInstanceUID", "metadataFilePath"]
# A CSV of 1,000 mappings is about 150 KB; anything far larger is not a mapping file.
CSV_MAX_BYTES = 2 * 1024 * 1024


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


def index_for_prefix(
    *, actor: Actor, datastore: Datastore, bucket: str, prefix: str
) -> Scan:
    """The scan to compose against: a running one, the latest completed one if still current, or a new one."""
    running = Scan.objects.filter(
        bucket=bucket, prefix=prefix, status__in=Scan.ACTIVE
    ).first()
    if running is not None:
        return running
    latest = (
        Scan.objects.filter(bucket=bucket, prefix=prefix, status=Scan.Status.COMPLETED)
        .order_by("-finished_at", "-id")
        .first()
    )
    if latest is not None and scan_is_current(scan=latest):
        return latest
    scan, _ = control.scan_start(
        actor=actor,
        bucket=bucket,
        prefix=prefix,
        region=datastore.region,
        datastore=datastore,
    )
    return scan


def scan_is_current(*, scan: Scan) -> bool:
    """Whether a listing of the prefix shows exactly the object versions the scan found (LISTs only)."""
    listed: set[tuple[str, str]] = set()
    token: str | None = None
    while True:
        page = aws.s3_list_page(
            region=scan.region,
            bucket=scan.bucket,
            prefix=scan.prefix,
            delimiter=None,
            token=token,
        )
        listed.update(
            (obj.key, obj.etag)
            for obj in page.objects
            # Zero-byte "folder/" keys are console placeholders; the scan skips them too.
            if not (obj.key.endswith("/") and obj.size == 0)
        )
        if page.next_token is None:
            break
        token = page.next_token
    scanned = set(ObjectHeader.objects.of_scan(scan).values_list("key", "etag"))
    return listed == scanned


# --- The index, as validation sees it ------------------------------------------------------


def prefix_index(*, scan: Scan) -> PrefixIndex:
    """What a completed scan knows, in the shape the validation rules take. Three queries."""
    studies: dict[str, set[str]] = {}
    for study_uid in ScanStudy.objects.filter(scan=scan).values_list(
        "study_instance_uid", flat=True
    ):
        studies[study_uid] = set()
    for study_uid, series_uid in ScanSeries.objects.filter(
        study__scan=scan
    ).values_list("study__study_instance_uid", "series_instance_uid"):
        studies.setdefault(study_uid, set()).add(series_uid)
    json_files = {}
    for header in (
        ObjectHeader.objects.of_scan(scan)
        .filter(kind=ObjectHeader.Kind.JSON)
        .only("key", "etag", "size", "status", "json_errors", "json_document")
    ):
        path = header.key[len(scan.prefix) :]
        json_files[path] = MetadataFile(
            path=path,
            etag=header.etag,
            size=header.size,
            valid=header.status == ObjectHeader.Status.JSON_VALID,
            errors=tuple(_json_error_lines(header)),
            document=header.json_document,
        )
    return PrefixIndex(
        studies={uid: frozenset(series) for uid, series in studies.items()},
        json_files=json_files,
        file_count=scan.objects_listed,
        total_bytes=scan.bytes_total,
        folder_count=scan.folders,
        max_files=scan.max_files,
        max_bytes=scan.max_bytes,
        max_folders=Scan.MAX_FOLDERS,
        json_max_bytes=settings.SCAN_JSON_MAX_BYTES,
    )


def _json_error_lines(header: ObjectHeader) -> Iterator[str]:
    if not header.json_errors:
        if header.error:
            yield header.error
        return
    for issue in header.json_errors:
        path, message = issue.get("path", ""), issue.get("message", "")
        yield f"{path}: {message}" if path else message


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
    *, draft: ImportDraft, index: PrefixIndex | None = None
) -> list[Problem]:
    """Every problem of the draft, errors first; the counts are kept on the draft for the Drafts list."""
    problems = _draft_problems(draft, index)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if (draft.error_count, draft.warning_count) != (errors, warnings):
        ImportDraft.objects.filter(pk=draft.pk).update(
            error_count=errors, warning_count=warnings
        )
        draft.error_count, draft.warning_count = errors, warnings
    return problems


def _draft_problems(draft: ImportDraft, index: PrefixIndex | None) -> list[Problem]:
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
    mappings = list(draft.mappings.all())
    return problems_sorted(
        mappings_validate(
            mappings=[
                Mapping(
                    m.study_instance_uid, m.series_instance_uid, m.metadata_file_path
                )
                for m in mappings
            ],
            index=index or prefix_index(scan=scan),
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
    datastore = draft.datastore
    request: dict[str, Any] = {
        "datastoreId": datastore.datastore_id,
        "dataAccessRoleArn": datastore.role_arn,
        "inputS3Uri": draft.input_s3_uri,
        "outputS3Uri": draft.output_s3_uri,
    }
    # An empty account ID violates the 12-digit constraint: leave the field out instead.
    if datastore.input_owner_account_id:
        request["inputOwnerAccountId"] = datastore.input_owner_account_id
    if draft.job_name:
        request["jobName"] = draft.job_name
    entries = []
    for row in draft.mappings.all():
        entry = {"studyInstanceUID": row.study_instance_uid}
        if row.series_instance_uid:
            entry["seriesInstanceUID"] = row.series_instance_uid
        entry["metadataFilePath"] = row.metadata_file_path
        entries.append(entry)
    request["importConfiguration"] = {
        "dicomJsonMetadataImportConfiguration": {"dicomMetadataMappings": entries}
    }
    return request


# --- Changing a draft -----------------------------------------------------------------------


@contextmanager
def _editing(draft: ImportDraft, version: int) -> Iterator[ImportDraft]:
    """Lock the draft, refuse a stale version, and bump the version and content hash after the change."""
    with transaction.atomic():
        locked = ImportDraft.objects.select_for_update().get(pk=draft.pk)
        if locked.version != version:
            raise DraftConflict(locked)
        yield locked
        locked.version += 1
        locked.content_hash = draft_content_hash(draft=locked)
        locked.save()


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
    with _editing(draft, version) as locked:
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
        raise DraftRefused(f"metadataFilePath: {problem[1]}")
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
    with _editing(draft, version) as locked:
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
    with _editing(draft, version) as locked:
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


# --- Suggestions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    study_instance_uid: str
    series_instance_uid: str
    path: str
    etag: str


def draft_suggestions(*, draft: ImportDraft) -> list[Suggestion]:
    """Valid JSON files naming a study or series of the scan, for the targets not mapped yet.

    A file that names a series of the scan is proposed for that series; one that names only a study, for the
    study. The file's own UIDs are the evidence, so a file that names nothing is never proposed.
    """
    scan = draft.scan
    if scan is None or scan.status != Scan.Status.COMPLETED:
        return []
    series_of: dict[str, str] = {}
    studies: set[str] = set()
    for study, series in ScanSeries.objects.filter(study__scan=scan).values_list(
        "study__study_instance_uid", "series_instance_uid"
    ):
        series_of[series] = study
        studies.add(study)
    mapped = set(
        draft.mappings.values_list("study_instance_uid", "series_instance_uid")
    )
    suggestions: dict[tuple[str, str], Suggestion] = {}
    files = (
        ObjectHeader.objects.of_scan(scan)
        .filter(kind=ObjectHeader.Kind.JSON, status=ObjectHeader.Status.JSON_VALID)
        .order_by("key")
        .values_list("key", "etag", "json_study_uids", "json_series_uids")
    )
    for key, etag, study_uids, series_uids in files:
        path = key[len(scan.prefix) :]
        targets = [
            (series_of[s], s)
            for s in series_uids
            if s in series_of and (not study_uids or series_of[s] in study_uids)
        ]
        if not series_uids:
            targets = [(s, "") for s in study_uids if s in studies]
        for target in targets:
            if target not in mapped and target not in suggestions:
                suggestions[target] = Suggestion(*target, path=path, etag=etag)
    return list(suggestions.values())


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


# --- CSV ------------------------------------------------------------------------------------


def mappings_read_csv(data: bytes) -> list[Mapping]:
    """Parse a mappings CSV (header row `studyInstanceUID,seriesInstanceUID,metadataFilePath`).

    Refuses the whole file, with every problem by row, when anything is wrong: a half-applied spreadsheet is
    worse than none. A UTF-8 byte order mark (as spreadsheets write it) is accepted.
    """
    if len(data) > CSV_MAX_BYTES:
        raise DraftRefused(
            f"The CSV is {len(data):,} bytes; a mappings CSV of {MAX_MAPPINGS:,} rows is far smaller "
            f"(at most {CSV_MAX_BYTES:,} bytes are read)."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:1024]:
        raise DraftRefused(
            "The CSV is not UTF-8 text (it looks like UTF-16 or a binary file); "
            "save it as “CSV UTF-8” and upload it again."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DraftRefused(
            f"The CSV is not UTF-8 text (byte 0x{data[error.start]:02X} at offset {error.start:,}); "
            "save it as “CSV UTF-8” and upload it again."
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as error:
        raise DraftRefused(f"The CSV cannot be read: {error}.") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DraftRefused(
            f"The CSV is empty; it needs the header row {','.join(CSV_COLUMNS)} and one row per mapping."
        )
    header = [cell.strip() for cell in rows[0]]
    if header != CSV_COLUMNS:
        raise DraftRefused(
            f"The first row must be exactly {','.join(CSV_COLUMNS)} (the header row); "
            f"it has {len(header)} column{'s' if len(header) != 1 else ''} "
            + ("with other names." if len(header) == 3 else "instead.")
        )
    body = rows[1:]
    if len(body) > MAX_MAPPINGS:
        raise DraftRefused(
            f"The CSV has {len(body):,} mappings; an import job takes at most {MAX_MAPPINGS:,}. "
            "Split it into several imports."
        )
    problems: list[Problem] = []
    mappings: list[Mapping] = []
    first_row: dict[tuple[str, str], int] = {}
    for number, row in enumerate(body, start=1):
        if len(row) != 3:
            problems.append(
                Problem(
                    "error",
                    number,
                    "",
                    "csv_columns",
                    f"Row {number} has {len(row)} columns; each row has exactly 3: {','.join(CSV_COLUMNS)}.",
                )
            )
            continue
        study, series, path = (cell.strip() for cell in row)
        for field, value, required in (
            ("studyInstanceUID", study, True),
            ("seriesInstanceUID", series, False),
        ):
            if value or required:
                problem = uid_field_problem(value)
                if problem is not None:
                    problems.append(Problem("error", number, field, *problem))
        path_problem = metadata_path_problem(path)
        if path_problem is not None:
            problems.append(Problem("error", number, "metadataFilePath", *path_problem))
        if (study, series) in first_row:
            problems.append(
                Problem(
                    "error",
                    number,
                    "seriesInstanceUID" if series else "studyInstanceUID",
                    "duplicate_mapping",
                    f"Row {number} maps the same {'series' if series else 'study'} as row "
                    f"{first_row[(study, series)]}; each study or series takes one file.",
                )
            )
        first_row.setdefault((study, series), number)
        mappings.append(Mapping(study, series, path))
    if problems:
        raise DraftRefused(
            f"The CSV was not applied: {len(problems)} problem{'s' if len(problems) != 1 else ''} "
            "(nothing was saved).",
            problems,
        )
    return mappings


def draft_import_csv(
    *, draft: ImportDraft, actor: Actor, version: int, data: bytes
) -> ImportDraft:
    """Add (or replace) the CSV's mappings. Files must be JSON files the scan found; nothing is saved otherwise."""
    mappings = mappings_read_csv(data)
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


def drafts_listed() -> Any:
    return ImportDraft.objects.select_related("datastore", "owner").annotate(
        mapping_count=Count("mappings")
    )


# --- What the composer shows ----------------------------------------------------------------


@dataclass
class MappingState:
    row: int
    mapping: DraftMapping
    problems: list[Problem]

    @property
    def state(self) -> str:
        if any(p.severity == "error" for p in self.problems):
            return "error"
        return "warning" if self.problems else "valid"


@dataclass(frozen=True)
class TreeSeries:
    series: ScanSeries
    target: str  # "study|series", the value of its checkbox
    mapped: MappingState | None


@dataclass(frozen=True)
class TreeStudy:
    study: ScanStudy
    target: str  # "study|"
    mapped: MappingState | None
    series: list[TreeSeries]


@dataclass
class Composer:
    draft: ImportDraft
    studies: list[TreeStudy]
    rows: list[MappingState]
    by_target: dict[tuple[str, str], MappingState]
    problems: list[Problem]
    suggestions: list[Suggestion]
    json_files: list[tuple[str, str, str]]  # (path, status, first error)
    # Studies mapped at both levels: the series file wins for the attributes it names.
    both_levels: dict[str, list[str]]

    @property
    def errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.severity == "warning" for p in self.problems)


def draft_composer(*, draft: ImportDraft) -> Composer:
    """Everything the composer page shows, in a fixed number of queries whatever the size of the draft."""
    mappings = list(draft.mappings.all())
    scan = draft.scan
    completed = scan is not None and scan.status == Scan.Status.COMPLETED
    studies = (
        list(ScanStudy.objects.filter(scan=scan).prefetch_related("series"))
        if completed
        else []
    )
    problems = draft_validate(draft=draft)
    by_row: dict[int, list[Problem]] = {}
    for problem in problems:
        if problem.row is not None:
            by_row.setdefault(problem.row, []).append(problem)
    rows = [
        MappingState(row=n, mapping=m, problems=by_row.get(n, []))
        for n, m in enumerate(mappings, start=1)
    ]
    by_target = {
        (r.mapping.study_instance_uid, r.mapping.series_instance_uid): r for r in rows
    }
    both_levels: dict[str, list[str]] = {}
    for study, series in by_target:
        if series and (study, "") in by_target:
            both_levels.setdefault(study, []).append(series)
    json_files = (
        [
            (key[len(scan.prefix) :], status, error)
            for key, status, error in ObjectHeader.objects.of_scan(scan)
            .filter(kind=ObjectHeader.Kind.JSON)
            .order_by("key")
            .values_list("key", "status", "error")
        ]
        if completed and scan is not None
        else []
    )
    tree = [
        TreeStudy(
            study=study,
            target=f"{study.study_instance_uid}|",
            mapped=by_target.get((study.study_instance_uid, "")),
            series=[
                TreeSeries(
                    series=series,
                    target=f"{study.study_instance_uid}|{series.series_instance_uid}",
                    mapped=by_target.get(
                        (study.study_instance_uid, series.series_instance_uid)
                    ),
                )
                for series in study.series.all()
            ],
        )
        for study in studies
    ]
    return Composer(
        draft=draft,
        studies=tree,
        rows=rows,
        by_target=by_target,
        problems=problems,
        suggestions=draft_suggestions(draft=draft) if completed else [],
        json_files=json_files,
        both_levels=both_levels,
    )


# --- Confirmation ---------------------------------------------------------------------------


def draft_confirm(
    *,
    draft: ImportDraft,
    actor: Actor,
    version: int,
    content_hash: str,
    acknowledged_warnings: bool,
    idempotency_key: str,
) -> dict[str, Any]:
    """Check everything again, on the server and against S3 as it is now, and record the confirmed request.

    The page the user confirmed showed `version` and `content_hash`; if the draft or a mapped file's recorded
    ETag changed since, the confirmation is refused rather than applied to something the user did not see.
    Returns the request that was confirmed.
    """
    current = ImportDraft.objects.select_related("datastore", "scan").get(pk=draft.pk)
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
    if warnings and not acknowledged_warnings:
        raise DraftRefused(
            f"Tick the box to acknowledge the {len(warnings)} warning{'s' if len(warnings) != 1 else ''} first."
        )
    request = draft_request(draft=current)
    payload = json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
    audit_record(
        actor=actor,
        action=AuditEvent.Action.DRAFT_CONFIRMED,
        target=current,
        summary=f"Confirmed the import of {current.input_s3_uri} into “{current.datastore.name}” "
        f"({len(request['importConfiguration']['dicomJsonMetadataImportConfiguration']['dicomMetadataMappings'])} mappings)",
        details={
            "content_hash": current.content_hash,
            "request_sha256": hashlib.sha256(payload).hexdigest(),
            "acknowledged_warnings": sorted({p.code for p in warnings}),
            "idempotency_key": idempotency_key,
        },
    )
    return request
