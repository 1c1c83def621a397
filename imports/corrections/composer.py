"""A correction sheet in the composer: its review against the draft's scan, and "Write and map".

The review is what `import_job corrections` prints, shaped for a page: the sheet's own refusals, each row's
problems (row, column, message), and a diff per corrected study, series or patient with a summary. Patient
values are masked unless the caller says the user revealed them.

"Write and map" refuses before anything goes to S3: a row with an error, a draft that changed since the review
(its version), and a study or series the draft already maps to another file (the user resolves that conflict in
the composer; a mapping to the very file the sheet writes is the same mapping, so writing a sheet again is fine).
Then corrections_write writes and audits the files, and one draft change maps them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from imports.audit.records import Actor
from imports.corrections import matching, sheet, write
from imports.drafts import services as drafts
from imports.models import ImportDraft, Scan, ScanStudy

# What the page accepts; the command line reads sheets up to sheet.MAX_BYTES.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


class CorrectionsRefused(Exception):
    """Nothing was written or mapped; the message says why and what to do."""


@dataclass
class Diff:
    """The changes of one row on what it matched: a study, a series, or every study of a patient."""

    row: int
    scope: str
    studies: list[str]
    series: str
    changes: list[dict[str, Any]]  # Change.as_dict, masked or not
    unchanged: bool


@dataclass
class Review:
    sha256: str
    sheet_id: str
    rows: int
    refusals: list[sheet.Problem] = field(default_factory=list)  # the sheet as a whole
    problems: list[sheet.Problem] = field(default_factory=list)  # row by row
    diffs: list[Diff] = field(default_factory=list)
    studies: int = 0
    patients: int = 0
    changes: int = 0
    attributes: list[str] = field(default_factory=list)
    patient_attributes: list[str] = field(default_factory=list)

    @property
    def can_write(self) -> bool:
        return not self.refusals and not self.problems and self.changes > 0


def _scan_of(draft: ImportDraft) -> Scan:
    if draft.scan is None or draft.scan.status != Scan.Status.COMPLETED:
        raise CorrectionsRefused(
            "Wait for the scan of the input prefix to complete first: a sheet is matched against it."
        )
    return draft.scan


def _matched(
    draft: ImportDraft, data: bytes
) -> tuple[sheet.Sheet, list[matching.RowResult]]:
    parsed = sheet.sheet_read(data)
    return parsed, matching.corrections_match(scan=_scan_of(draft), sheet=parsed)


def corrections_review(*, draft: ImportDraft, data: bytes, masked: bool) -> Review:
    """Match the sheet against the draft's scan: its problems, or its diff and summary. Writes nothing."""
    try:
        parsed, results = _matched(draft, data)
    except sheet.SheetRefused as refused:
        digest = hashlib.sha256(data).hexdigest()
        return Review(
            sha256=digest,
            sheet_id=digest[: write.SHEET_ID_LENGTH],
            rows=0,
            refusals=refused.problems,
        )
    review = Review(
        sha256=parsed.sha256, sheet_id=write.sheet_id(parsed), rows=len(parsed.rows)
    )
    studies: set[str] = set()
    attributes: set[str] = set()
    patient_attributes: set[str] = set()
    for result in results:
        if result.status == "error":
            review.problems.extend(result.problems)
            continue
        review.diffs.append(
            Diff(
                row=result.row,
                scope=result.scope,
                studies=result.study_instance_uids,
                series=result.series_instance_uid or "",
                changes=[c.as_dict(masked=masked) for c in result.changes],
                unchanged=result.status == "unchanged",
            )
        )
        if result.status != "ok":
            continue
        studies.update(result.study_instance_uids)
        for change in result.changes:
            if change.unchanged:
                continue
            review.changes += len(result.study_instance_uids)
            attributes.add(change.keyword)
            if change.patient:
                patient_attributes.add(change.keyword)
    review.studies = len(studies)
    review.patients = (
        ScanStudy.objects.filter(scan=draft.scan, study_instance_uid__in=studies)
        .values("patient_id")
        .distinct()
        .count()
        if studies
        else 0
    )
    review.attributes = sorted(attributes)
    review.patient_attributes = sorted(patient_attributes)
    return review


def corrections_write_and_map(
    *, draft: ImportDraft, actor: Actor, version: int, data: bytes
) -> write.WriteResult:
    """Write the sheet's files (audited by corrections_write) and map each into the draft, as one draft change."""
    try:
        parsed, results = _matched(draft, data)
    except sheet.SheetRefused as refused:
        raise CorrectionsRefused(f"Nothing was written: {refused}") from None
    current = ImportDraft.objects.get(pk=draft.pk)
    if problem := drafts.draft_frozen_problem(current):
        raise CorrectionsRefused(problem)
    if current.version != version:
        raise drafts.DraftConflict(current)
    sid = write.sheet_id(parsed)
    paths = {
        target: f"{write.FOLDER}/{sid}/{target[1] or target[0]}.json"
        for target in write.corrections_files(sheet=parsed, results=results)
    }
    _refuse_conflicts(current, paths)
    try:
        done = write.corrections_write(
            scan=_scan_of(current), sheet=parsed, results=results, actor=actor
        )
    except (write.WriteRefused, write.WriteFailed) as refused:
        raise CorrectionsRefused(str(refused)) from None
    if not done.files:
        raise CorrectionsRefused(
            "No row changes anything: nothing was written or mapped."
        )
    try:
        drafts.draft_map_written_files(
            draft=current,
            actor=actor,
            version=version,
            files=[(f.study, f.series, f.path, f.etag) for f in done.files],
            summary=f"Mapped {len(done.files)} correction file{'s' if len(done.files) != 1 else ''} "
            f"written from sheet {sid}",
        )
    except (drafts.DraftConflict, drafts.DraftRefused) as refused:
        # Someone changed the draft while S3 was written: the files stay (recorded and audited); the same sheet
        # writes the same files again, over these versions, and maps them.
        raise CorrectionsRefused(
            f"The {len(done.files)} files were written but not mapped: {refused} "
            "Upload the same sheet again and write and map it to map them."
        ) from None
    return done


def _refuse_conflicts(draft: ImportDraft, paths: dict[tuple[str, str], str]) -> None:
    clashes: Sequence[tuple[str, str, str]] = [
        (m.study_instance_uid, m.series_instance_uid, m.metadata_file_path)
        for m in draft.mappings.all()
        if (m.study_instance_uid, m.series_instance_uid) in paths
        and paths[m.study_instance_uid, m.series_instance_uid] != m.metadata_file_path
    ]
    if not clashes:
        return
    listed = "; ".join(
        f"{'series ' + series + ' of ' if series else ''}study {study} is mapped to {path}"
        for study, series, path in clashes[:5]
    ) + ("; …" if len(clashes) > 5 else "")
    raise CorrectionsRefused(
        f"Nothing was written: the draft already maps what the sheet corrects ({listed}). Remove "
        f"{'that mapping' if len(clashes) == 1 else 'those mappings'} in the composer, or put the file's "
        "values into the sheet, then write and map again."
    )
