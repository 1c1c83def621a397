"""Write and map a matched correction sheet: one DICOM JSON file per study (or series) it corrects, and its mappings.

Each file goes under the scan's prefix at `metadata/corrections/<sheet id>/<UID>.json`, the sheet id being the
first 12 hex digits of the sheet's sha256, so the same sheet always writes the same files. A new file is written
with `IfNoneMatch: *` and a file the scan already found only with `IfMatch` on the ETag the scan found: S3 checks
and writes in one request, so a file someone else wrote meanwhile is never overwritten.

Everything that can refuse does so before the first write: a row with an error, more than MAX_STUDIES studies.
S3 itself can still refuse a write half-way (a precondition, an outage); what was written is then recorded and
audited, no mappings are returned, and the error says so. The written files are recorded in the scan as the editor
records a save (imports.scanning.written), so the scan stays current and validation sees them without a rescan.
The audit event names the sheet's sha256, the row count, the files and the tags changed, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from imports.audit.records import Actor, audit_record
from imports.aws import client as aws
from imports.corrections.matching import RowResult
from imports.corrections.sheet import Sheet
from imports.dicom.json_model import validate_dicom_json
from imports.dicom.tags import tag_label
from imports.editor.rows import document_bytes
from imports.mappings.rules import Mapping
from imports.models import AuditEvent, ObjectHeader, Scan
from imports.scanning.written import scan_record_written

# One sheet, one job: splitting a sheet across jobs belongs to campaigns.
MAX_STUDIES = 1_000
SHEET_ID_LENGTH = 12
FOLDER = "metadata/corrections"
# S3 writes in flight at once: 1,000 files at 20 ms each take well under the 30 s the issue allows.
WRITERS = 8
STUDY_UID = "0020000D"
SERIES_UID = "0020000E"


class WriteRefused(Exception):
    """Nothing was written; the message says why and what to do."""


class WriteFailed(Exception):
    """S3 refused a write half-way: `written` were written (and recorded, and audited), the rest were not."""

    def __init__(self, message: str, written: Sequence[Written]) -> None:
        super().__init__(message)
        self.written = list(written)


@dataclass(frozen=True)
class Written:
    study: str
    series: str  # "" for a study-level file
    path: str  # relative to the prefix, as a mapping names it
    etag: str
    previous_etag: str  # "" for a new file
    size: int
    tags_changed: list[str]

    @property
    def mapping(self) -> Mapping:
        return Mapping(self.study, self.series, self.path)


@dataclass
class WriteResult:
    sheet_id: str
    files: list[Written] = field(default_factory=list)

    @property
    def mappings(self) -> list[Mapping]:
        return [f.mapping for f in self.files]


@dataclass
class _File:
    study: str
    series: str
    document: dict[str, Any]
    path: str = ""
    body: bytes = b""
    previous_etag: str = ""
    study_uids: list[str] = field(default_factory=list)
    series_uids: list[str] = field(default_factory=list)


def sheet_id(sheet: Sheet) -> str:
    return sheet.sha256[:SHEET_ID_LENGTH]


def corrections_files(
    *, sheet: Sheet, results: Sequence[RowResult]
) -> dict[tuple[str, str], dict[str, Any]]:
    """(study, series) -> the DICOM JSON document its file holds: the rows' values merged by attribute.

    Rows that set different values of one attribute on one target were refused as conflicts by the matching,
    so merging cannot lose a value. Rows that change nothing write nothing.
    """
    files: dict[tuple[str, str], dict[str, Any]] = {}
    for row, result in zip(sheet.rows, results, strict=True):
        if result.status != "ok":
            continue
        series = result.series_instance_uid or ""
        for study in result.study_instance_uids:
            document = files.setdefault((study, series), _named(study, series))
            for value in row.values:
                document[value.info.key] = value.attribute
    return files


def _named(study: str, series: str) -> dict[str, Any]:
    # The file names what it is for, as the editor's new files do, so the composer can suggest it too.
    document: dict[str, Any] = {STUDY_UID: {"vr": "UI", "Value": [study]}}
    if series:
        document[SERIES_UID] = {"vr": "UI", "Value": [series]}
    return document


def corrections_write(
    *, scan: Scan, sheet: Sheet, results: Sequence[RowResult], actor: Actor
) -> WriteResult:
    """Write one file per corrected study or series under the scan's prefix, record them in the scan, audit it."""
    errors = [r.row for r in results if r.status == "error"]
    if errors:
        listed = ", ".join(str(n) for n in errors[:10]) + (
            ", …" if len(errors) > 10 else ""
        )
        raise WriteRefused(
            f"Nothing was written: {len(errors)} row{'s have' if len(errors) != 1 else ' has'} errors "
            f"(row{'s' if len(errors) != 1 else ''} {listed}); fix them and run again."
        )
    if scan.status != Scan.Status.COMPLETED:
        raise WriteRefused("Nothing was written: the prefix's scan has not completed.")
    documents = corrections_files(sheet=sheet, results=results)
    studies = {study for study, _ in documents}
    if len(studies) > MAX_STUDIES:
        raise WriteRefused(
            f"Nothing was written: the sheet corrects {len(studies):,} studies; one sheet corrects at most "
            f"{MAX_STUDIES:,}, the studies of one import job. Split it into several sheets (campaigns "
            "import a prefix in several jobs)."
        )
    result = WriteResult(sheet_id=sheet_id(sheet))
    files = [_File(study, series, doc) for (study, series), doc in documents.items()]
    if not files:
        return result
    for file in files:
        file.path = f"{FOLDER}/{result.sheet_id}/{file.series or file.study}.json"
        file.body = document_bytes(file.document)
        verdict = validate_dicom_json(file.body, max_bytes=settings.SCAN_JSON_MAX_BYTES)
        if (
            not verdict.is_valid
        ):  # the sheet's cells passed the editor's rules, so this is a bug
            raise WriteRefused(
                f"Nothing was written: the file for {file.series or file.study} would not be valid "
                f"DICOM JSON ({verdict.errors[0]})."
            )
        file.study_uids, file.series_uids = verdict.study_uids, verdict.series_uids
    keys = {scan.prefix + f.path: f for f in files}
    for key, etag in (
        ObjectHeader.objects.of_scan(scan)
        .filter(bucket=scan.bucket, key__in=list(keys))
        .values_list("key", "etag")
    ):
        keys[key].previous_etag = etag
    aws.s3_client(scan.region)  # built once here: the client cache takes no lock
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        outcomes = list(pool.map(lambda f: _put(scan, f), files))
    written: list[tuple[_File, str]] = []
    failures: list[str] = []
    for file, outcome in zip(files, outcomes, strict=True):
        if isinstance(outcome, aws.AwsError):
            failures.append(f"{file.path}: {outcome}")
        else:
            written.append((file, outcome))
    result.files = _record(scan=scan, sheet=sheet, actor=actor, written=written)
    if failures:
        raise WriteFailed(
            f"{len(failures)} of {len(files)} files could not be written, so no mappings were written "
            f"({failures[0]}). The {len(written)} written are recorded; run the sheet again to write the rest: "
            "a file changed by someone else since the scan is not overwritten.",
            result.files,
        )
    return result


def _put(scan: Scan, file: _File) -> str | aws.AwsError:
    try:
        return aws.s3_put_object(
            region=scan.region,
            bucket=scan.bucket,
            key=scan.prefix + file.path,
            body=file.body,
            content_type="application/dicom+json",
            if_match=file.previous_etag or None,
            if_none_match=not file.previous_etag,
        )
    except aws.AwsError as error:
        return error


def _record(
    *,
    scan: Scan,
    sheet: Sheet,
    actor: Actor,
    written: Sequence[tuple[_File, str]],
) -> list[Written]:
    done: list[Written] = []
    if not written:
        return done
    with transaction.atomic():
        for file, etag in written:
            before = (
                scan_record_written(
                    scan=scan,
                    bucket=scan.bucket,
                    key=scan.prefix + file.path,
                    etag=etag,
                    size=len(file.body),
                    document=file.document,
                    study_uids=file.study_uids,
                    series_uids=file.series_uids,
                )
                or {}
            )
            changed = sorted(
                key
                for key in set(before) | set(file.document)
                if key not in (STUDY_UID, SERIES_UID)
                and before.get(key) != file.document.get(key)
            )
            done.append(
                Written(
                    study=file.study,
                    series=file.series,
                    path=file.path,
                    etag=etag,
                    previous_etag=file.previous_etag,
                    size=len(file.body),
                    tags_changed=[tag_label(int(key, 16)) for key in changed],
                )
            )
        tags = sorted({tag for f in done for tag in f.tags_changed})
        audit_record(
            actor=actor,
            action=AuditEvent.Action.METADATA_WRITTEN,
            target=scan,
            summary=f"Wrote {len(done):,} correction file{'s' if len(done) != 1 else ''} from a sheet of "
            f"{len(sheet.rows):,} row{'s' if len(sheet.rows) != 1 else ''} (sheet {sheet.sha256[:SHEET_ID_LENGTH]}) "
            f"under s3://{scan.bucket}/{scan.prefix}{FOLDER}/",
            # Tags only: the values a sheet sets are patient data as often as not.
            details={
                "sheet_sha256": sheet.sha256,
                "rows": len(sheet.rows),
                "files": [
                    {
                        "key": f"s3://{scan.bucket}/{scan.prefix}{f.path}",
                        "study_instance_uid": f.study,
                        "series_instance_uid": f.series,
                        "etag": f.etag,
                        "previous_etag": f.previous_etag,
                        "size": f.size,
                        "tags_changed": f.tags_changed,
                    }
                    for f in done
                ],
                "tags_changed": tags,
            },
        )
    return done
