"""Suggested mappings: a metadata file whose own StudyInstanceUID or SeriesInstanceUID names a study or series
of the scan is proposed for it. The file's UIDs are the evidence, so a file that names nothing is never proposed."""

from __future__ import annotations

from dataclasses import dataclass

from imports.models import ImportDraft, ObjectHeader, Scan, ScanSeries


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
