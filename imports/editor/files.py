"""Writing metadata files in the browser: open one, fix an inconsistency, save it under the input prefix, map it.

The rows and their rules are imports.editor.rows (pure); this module reads and writes S3 through imports.aws.client, keeps
the draft's index in step with what it wrote, maps the file and records the save in the audit trail.

Writes are conditional (S3's IfMatch / IfNoneMatch), so "never overwrite what the user did not see" is one request,
not a check followed by a write that another writer could slip in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Count

from imports.audit.records import Actor, audit_record
from imports.aws import client as aws
from imports.dicom.json_model import validate_dicom_json
from imports.dicom.patient import is_patient_attribute, mask_value
from imports.dicom.tags import tag_label
from imports.drafts.services import (
    DraftConflict,
    draft_frozen_problem,
    draft_known_targets,
    draft_map_written_file,
)
from imports.editor.rows import (
    RowCheck,
    RowInput,
    document_bytes,
    document_from_checks,
    rows_check,
    rows_from_document,
    rows_problem,
    tag_info,
    tag_parse,
)
from imports.mappings.rules import Mapping, metadata_path_problem
from imports.models import (
    AuditEvent,
    ImportDraft,
    ObjectHeader,
    Scan,
    ScanSeries,
    ScanStudy,
)
from imports.scanning.index import SERIES_ATTRIBUTES, STUDY_ATTRIBUTES
from imports.scanning.storable import json_storable
from imports.scanning.written import scan_record_written
from imports.storable_text import text_storable
from imports.validators import split_s3_uri

PATIENT_ATTRIBUTES = frozenset({"PatientName", "PatientID"})


class EditorRefused(Exception):
    """Nothing was written; the message says why, `checks` hold the rows' verdicts when they are the reason."""

    def __init__(self, message: str, checks: Sequence[RowCheck] = ()) -> None:
        super().__init__(message)
        self.checks = list(checks)


@dataclass
class Opened:
    """A metadata file as the editor loads it: its rows and the ETag a save must still find."""

    path: str
    etag: str = ""  # "" for a file that does not exist yet
    rows: list[RowInput] = field(default_factory=list)
    read_only_reason: str = ""


class EditorConflict(Exception):
    """The object in S3 is not the version the editor loaded (or a new file's key is taken): nothing was written."""

    def __init__(self, current: Opened) -> None:
        super().__init__(
            f"{current.path} changed in S3 since you opened it (or was created meanwhile); nothing was written. "
            "Its current contents are shown below: load them to start again from them, or tick "
            "“Replace the existing file” and save to replace them with your rows."
        )
        self.current = current


@dataclass(frozen=True)
class Target:
    study: str
    series: str = ""  # "" for a study-level file

    @property
    def level(self) -> str:
        return "series" if self.series else "study"

    def mapping(self, path: str) -> Mapping:
        return Mapping(self.study, self.series, path)


def default_path(*, target: Target) -> str:
    return f"metadata/{target.series or target.study}.json"


def _where(draft: ImportDraft) -> tuple[str, str, str]:
    bucket, prefix = split_s3_uri(draft.input_s3_uri)
    return draft.datastore.region, bucket, prefix


def editor_target_problem(*, draft: ImportDraft, target: Target) -> str:
    scan = draft.scan
    if scan is None or scan.status != Scan.Status.COMPLETED:
        return "The input prefix has no completed scan yet; wait for it, then open the editor again."
    if (target.study, target.series) not in draft_known_targets(draft=draft):
        return "The study or series is not in the scan of the input prefix; open the editor from the composer."
    return ""


# --- What the instances hold now --------------------------------------------------------------------------


@dataclass(frozen=True)
class CurrentValue:
    """An attribute as the scan found it in the target's instances, before any file overrides it."""

    value: str  # the value most instances carry ("" when they carry none)
    others: int  # how many other values the rest carry
    patient: bool  # masked unless patient details are revealed


def editor_current_values(
    *, draft: ImportDraft, target: Target | None
) -> dict[str, CurrentValue]:
    """Keyword -> the target's current value, for the attributes the scan indexes (two queries at most).

    The scan reads every instance's header but keeps only these attributes per study and series, so an
    attribute outside them has no current value here; the preview reads one instance's whole header.
    """
    scan = draft.scan
    if target is None or scan is None or scan.status != Scan.Status.COMPLETED:
        return {}
    owners: list[tuple[ScanStudy | ScanSeries, dict[str, str]]] = []
    study = (
        ScanStudy.objects.filter(scan=scan, study_instance_uid=target.study)
        .only("variants", *STUDY_ATTRIBUTES.values())
        .first()
    )
    if study is None:
        return {}
    owners.append((study, STUDY_ATTRIBUTES))
    if target.series:
        series = (
            ScanSeries.objects.filter(study=study, series_instance_uid=target.series)
            .only("variants", *SERIES_ATTRIBUTES.values())
            .first()
        )
        if series is None:
            return {}
        owners.append((series, SERIES_ATTRIBUTES))
    current: dict[str, CurrentValue] = {}
    for owner, columns in owners:
        for keyword, column in columns.items():
            ranked = owner.variants.get(keyword)
            if (
                ranked
            ):  # the index ranked the values by frequency: the first is the most common
                value, others = ranked[0], len(ranked) - 1
            else:
                value, others = getattr(owner, column), 0
            current[keyword] = CurrentValue(
                "" if value is None else str(value),
                others,
                keyword in PATIENT_ATTRIBUTES,
            )
    return current


# --- Opening --------------------------------------------------------------------------------------------


def editor_open(*, draft: ImportDraft, path: str) -> Opened:
    """The file at `path` (relative to the input prefix) from S3 as it is now, or an empty new file."""
    if problem := metadata_path_problem(path):
        raise EditorRefused(f"File: {problem[1]}")
    region, bucket, prefix = _where(draft)
    try:
        body = aws.s3_get_object(
            region=region,
            bucket=bucket,
            key=prefix + path,
            max_bytes=settings.SCAN_JSON_MAX_BYTES,
        )
    except aws.NotFound:
        return Opened(path=path)
    except aws.TooLarge as error:
        return Opened(path=path, read_only_reason=f"{error}; it opens read-only")
    except aws.AwsError as error:
        raise EditorRefused(f"{path} could not be read: {error}") from None
    check = validate_dicom_json(body.data, max_bytes=settings.SCAN_JSON_MAX_BYTES)
    if check.document is None:
        first = str(check.errors[0]) if check.errors else "not a DICOM JSON object"
        return Opened(
            path=path,
            etag=body.etag,
            read_only_reason=f"The file cannot be shown as rows ({first}); it opens read-only.",
        )
    # What no page or database can hold is shown as U+FFFD (or empty), and never saved back.
    document, unshowable = json_storable(check.document)
    rows, reason = rows_from_document(document)
    if unshowable:
        first = f" ({text_storable(str(check.errors[0]))})" if check.errors else ""
        reason = (
            "the file holds a NUL character, a lone surrogate or a number beyond a double, which "
            f"the editor cannot show as written or save back{first}"
        )
    return Opened(
        path=path,
        etag=body.etag,
        rows=rows,
        read_only_reason=f"{reason[0].upper()}{reason[1:]}; the file opens read-only."
        if reason
        else "",
    )


# --- Patient values: masked until an audited reveal -------------------------------------------------------


def _is_patient_row(row: RowInput) -> bool:
    tag, _ = tag_parse(row.tag)
    if tag is None:
        return False
    info = tag_info(tag)
    vr = row.vr or (info.vr_choices[0] if info.vr else "")
    return is_patient_attribute(tag, vr)


def rows_masked(rows: Sequence[RowInput]) -> list[RowInput]:
    """The rows as a page shows them before a reveal: each patient value (group 0010, any PN) replaced by its mask.

    A masked row carries no value at all, so the page never holds the value and a save cannot write the mask
    over it: `editor_save` puts the file's own value back (see `_with_kept_values`).
    """
    return [
        RowInput(
            tag=row.tag,
            vr=row.vr,
            kept=True,
            shown="\n".join(mask_value(line) for line in row.text.split("\n")),
        )
        if not row.kept and _is_patient_row(row)
        else row
        for row in rows
    ]


def _with_kept_values(
    *, draft: ImportDraft, path: str, loaded_etag: str, rows: Sequence[RowInput]
) -> list[RowInput]:
    """The rows with each masked row replaced by the attribute as the loaded version of the file holds it.

    The version is the one the editor showed (`loaded_etag`): if the object changed since, the save is a conflict,
    as any save over a changed file is.
    """
    if not any(row.kept for row in rows):
        return list(rows)
    if not loaded_etag:
        raise EditorRefused(
            "Masked patient values can only be kept from the file they were read from; "
            "reload the file. Nothing was written."
        )
    current = editor_open(draft=draft, path=path)
    if current.etag != loaded_etag:
        raise EditorConflict(current)
    if current.read_only_reason:
        # Its rows are what the editor could show, not what the file holds.
        raise EditorRefused(
            f"{current.read_only_reason} Masked patient values cannot be kept from it. "
            "Nothing was written."
        )
    held = {tag_parse(row.tag)[0]: row for row in current.rows}
    restored = []
    for number, row in enumerate(rows, start=1):
        if not row.kept:
            restored.append(row)
        elif (original := held.get(tag_parse(row.tag)[0])) is not None:
            restored.append(original)
        else:
            raise EditorRefused(
                f"Row {number} is a masked patient value that the file does not hold; "
                "reload the file. Nothing was written."
            )
    return restored


# --- Fix inconsistency ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    value: str
    count: int


@dataclass
class Fix:
    attribute: str
    target: Target
    opened: Opened
    variants: list[Variant]
    masked: bool  # patient values: shown masked, and not prefilled until revealed
    prefilled: bool


def fix_target(
    *, draft: ImportDraft, study: str, series: str, attribute: str
) -> Target:
    """The level a flagged attribute is fixed at: its own (study attributes at study level, series at series)."""
    if attribute in STUDY_ATTRIBUTES:
        return Target(study)
    if attribute in SERIES_ATTRIBUTES and series:
        return Target(study, series)
    raise EditorRefused(
        f"Only attributes the scan compares can be fixed here: {', '.join([*STUDY_ATTRIBUTES, *SERIES_ATTRIBUTES])}."
    )


def editor_fix(
    *,
    draft: ImportDraft,
    study: str,
    series: str,
    attribute: str,
    revealed: bool,
) -> Fix:
    """The editor prefilled to unify a flagged attribute with the value most instances carry.

    It opens the file already mapped at that level (or the default one), and sets that one attribute in it.
    How many instances carry each variant is counted from the scan's headers.
    """
    target = fix_target(draft=draft, study=study, series=series, attribute=attribute)
    if problem := editor_target_problem(draft=draft, target=target):
        raise EditorRefused(problem)
    scan = draft.scan
    assert scan is not None
    owner: ScanStudy | ScanSeries | None
    if target.series:
        owner = ScanSeries.objects.filter(
            study__scan=scan,
            study__study_instance_uid=study,
            series_instance_uid=series,
        ).first()
        column = SERIES_ATTRIBUTES[attribute]
    else:
        owner = ScanStudy.objects.filter(scan=scan, study_instance_uid=study).first()
        column = STUDY_ATTRIBUTES[attribute]
    if owner is None or attribute not in owner.variants:
        raise EditorRefused(
            f"{attribute} does not differ between the instances of this {target.level}; nothing to fix."
        )
    headers = ObjectHeader.objects.of_scan(scan).filter(
        kind=ObjectHeader.Kind.DICOM,
        status=ObjectHeader.Status.OK,
        study_instance_uid=study,
    )
    if target.series:
        headers = headers.filter(series_instance_uid=series)
    counted = dict(
        headers.values_list(column).annotate(n=Count("pk")).values_list(column, "n")
    )
    # The index ranked the variants by frequency; its first is the value most instances carry.
    variants = [
        Variant("" if v is None else str(v), counted.get(v, 0))
        for v in owner.variants[attribute]
    ]
    mapped = draft.mappings.filter(
        study_instance_uid=target.study, series_instance_uid=target.series
    ).first()
    path = mapped.metadata_file_path if mapped else default_path(target=target)
    opened = editor_open(draft=draft, path=path)
    masked = attribute in PATIENT_ATTRIBUTES and not revealed
    prefilled = not opened.read_only_reason and not masked
    if prefilled:
        opened.rows = _with_value(opened.rows, attribute, variants[0].value, target)
    return Fix(attribute, target, opened, variants, masked, prefilled)


def _with_value(
    rows: list[RowInput], keyword: str, value: str, target: Target
) -> list[RowInput]:
    tag, _ = tag_parse(keyword)
    new = RowInput(tag=keyword, value=value)
    kept = [row for row in rows if tag_parse(row.tag)[0] != tag]
    if not rows:
        # A new file names the study (and series) it is for, so the composer can also suggest it.
        kept = [RowInput(tag="StudyInstanceUID", value=target.study)]
        if target.series:
            kept.append(RowInput(tag="SeriesInstanceUID", value=target.series))
    return [*kept, new]


# --- Saving ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    path: str
    etag: str
    size: int
    draft: ImportDraft
    tags_changed: list[str]


def editor_save(
    *,
    draft: ImportDraft,
    actor: Actor,
    version: int,
    target: Target,
    path: str,
    rows: Sequence[RowInput],
    loaded_etag: str,
    replace: bool,
) -> Saved:
    """Check the rows, write the file under the input prefix, record it in the index, map it, audit it.

    `loaded_etag` is the version the editor showed ("" for a new file): S3 writes over that version only, or only
    where there is no object yet, and a refusal raises EditorConflict with the version that is there now.
    Masked rows (`RowInput.kept`) keep the value the loaded version holds.
    """
    if problem := draft_frozen_problem(draft) or editor_target_problem(
        draft=draft, target=target
    ):
        raise EditorRefused(problem)
    if path_problem := metadata_path_problem(path):
        raise EditorRefused(f"File: {path_problem[1]}")
    rows = _with_kept_values(draft=draft, path=path, loaded_etag=loaded_etag, rows=rows)
    if problem := rows_problem(rows):
        raise EditorRefused(f"Nothing was written: {problem}.")
    checks = rows_check(rows, target=target.mapping(path))
    if bad := [c for c in checks if c.errors]:
        raise EditorRefused(
            f"Nothing was written: {len(bad)} row{'s have' if len(bad) != 1 else ' has'} errors; "
            "fix them first.",
            checks,
        )
    document = document_from_checks(checks)
    body = document_bytes(document)
    verdict = validate_dicom_json(body, max_bytes=settings.SCAN_JSON_MAX_BYTES)
    if not verdict.is_valid:
        raise EditorRefused(
            "Nothing was written: " + "; ".join(str(e) for e in verdict.errors[:3]),
            checks,
        )
    if loaded_etag and not replace:
        raise EditorRefused(
            f"{path} already exists: tick “Replace the existing file” to write over it.",
            checks,
        )
    current = ImportDraft.objects.only("version").get(pk=draft.pk)
    if current.version != version:
        raise DraftConflict(
            ImportDraft.objects.select_related("datastore", "scan").get(pk=draft.pk)
        )
    region, bucket, prefix = _where(draft)
    try:
        etag = aws.s3_put_object(
            region=region,
            bucket=bucket,
            key=prefix + path,
            body=body,
            content_type="application/dicom+json",
            if_match=loaded_etag or None,
            if_none_match=not loaded_etag,
        )
    except aws.PreconditionFailed:
        raise EditorConflict(editor_open(draft=draft, path=path)) from None
    except aws.AwsError as error:
        raise EditorRefused(
            f"{path} could not be written: {error}. Nothing was saved."
        ) from None
    assert draft.scan is not None
    with transaction.atomic():
        previous = scan_record_written(
            scan=draft.scan,
            bucket=bucket,
            key=prefix + path,
            etag=etag,
            size=len(body),
            document=document,
            study_uids=verdict.study_uids,
            series_uids=verdict.series_uids,
        )
        before = previous or {}
        changed = sorted(
            key
            for key in set(before) | set(document)
            if before.get(key) != document.get(key)
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.METADATA_WRITTEN,
            target=draft,
            summary=f"Wrote metadata file {path} ({len(body):,} bytes, "
            f"{len(changed)} attribute{'s' if len(changed) != 1 else ''} changed) for the {target.level} "
            f"{target.series or target.study}",
            # Tags only: the values of patient attributes never reach the audit trail.
            details={
                "key": f"s3://{bucket}/{prefix}{path}",
                "size": len(body),
                "etag": etag,
                "previous_etag": loaded_etag,
                "tags_changed": [tag_label(int(key, 16)) for key in changed],
            },
        )
    mapped = draft_map_written_file(
        draft=draft,
        actor=actor,
        version=version,
        targets=[(target.study, target.series)],
        path=path,
        etag=etag,
    )
    return Saved(
        path, etag, len(body), mapped, [tag_label(int(k, 16)) for k in changed]
    )
