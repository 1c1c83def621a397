"""The study/series index of a scan, built from the headers it read."""

from __future__ import annotations

from typing import Any

from imports.models import ObjectHeader, Scan, ScanSeries, ScanStudy

# Attributes whose disagreement between instances is flagged, by level. The classic reason for an
# override is a StudyDescription or PatientName spelled two ways.
STUDY_ATTRIBUTES = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "StudyDate": "study_date",
    "StudyDescription": "study_description",
    "AccessionNumber": "accession_number",
}
SERIES_ATTRIBUTES = {
    "Modality": "modality",
    "SeriesNumber": "series_number",
    "SeriesDescription": "series_description",
}


def index_build(*, scan: Scan) -> None:
    """Group the scan's readable DICOM instances into studies and series, flagging disagreements."""
    fields = [
        "study_instance_uid",
        "series_instance_uid",
        "size",
        "transfer_syntax_uid",
        "pk",
    ]
    fields += list(STUDY_ATTRIBUTES.values()) + list(SERIES_ATTRIBUTES.values())
    rows = (
        ObjectHeader.objects.of_scan(scan)
        .filter(kind=ObjectHeader.Kind.DICOM, status=ObjectHeader.Status.OK)
        .order_by("study_instance_uid", "series_instance_uid", "instance_number", "key")
        .values(*fields)
    )
    studies: list[ScanStudy] = []
    series_by_study: list[list[ScanSeries]] = []
    study_values: dict[str, dict[Any, int]] = {}
    series_values: dict[str, dict[Any, int]] = {}
    current_study: ScanStudy | None = None
    current_series: ScanSeries | None = None
    for row in rows.iterator(chunk_size=2000):
        if (
            current_study is None
            or row["study_instance_uid"] != current_study.study_instance_uid
        ):
            if current_study is not None and current_series is not None:
                _close(current_series, series_values, SERIES_ATTRIBUTES)
                _close(current_study, study_values, STUDY_ATTRIBUTES)
            current_study = ScanStudy(
                scan=scan,
                study_instance_uid=row["study_instance_uid"],
                instance_count=0,
                bytes=0,
            )
            studies.append(current_study)
            series_by_study.append([])
            study_values = {name: {} for name in STUDY_ATTRIBUTES}
            current_series = None
        if (
            current_series is None
            or row["series_instance_uid"] != current_series.series_instance_uid
        ):
            if current_series is not None:
                _close(current_series, series_values, SERIES_ATTRIBUTES)
            current_series = ScanSeries(
                series_instance_uid=row["series_instance_uid"],
                instance_count=0,
                bytes=0,
                sample_header_id=row["pk"],
            )
            series_by_study[-1].append(current_series)
            series_values = {name: {} for name in SERIES_ATTRIBUTES}
        for target in (current_study, current_series):
            target.instance_count += 1
            target.bytes += row["size"]
        if row["transfer_syntax_uid"] not in current_series.transfer_syntaxes:
            current_series.transfer_syntaxes.append(row["transfer_syntax_uid"])
        for name, column in STUDY_ATTRIBUTES.items():
            study_values[name][row[column]] = study_values[name].get(row[column], 0) + 1
        for name, column in SERIES_ATTRIBUTES.items():
            series_values[name][row[column]] = (
                series_values[name].get(row[column], 0) + 1
            )
    if current_study is not None and current_series is not None:
        _close(current_study, study_values, STUDY_ATTRIBUTES)
        _close(current_series, series_values, SERIES_ATTRIBUTES)
    ScanStudy.objects.bulk_create(studies)
    for study, series_list in zip(studies, series_by_study, strict=True):
        for series in series_list:
            series.study = study
    ScanSeries.objects.bulk_create(
        [series for series_list in series_by_study for series in series_list]
    )


def _close(
    target: ScanStudy | ScanSeries,
    values: dict[str, dict[Any, int]],
    attributes: dict[str, str],
) -> None:
    """Set each attribute to its most common value and record the attributes spelled more than one way."""
    variants: dict[str, list[Any]] = {}
    for name, column in attributes.items():
        counts = values[name]
        ranked = sorted(counts, key=lambda value: (-counts[value], str(value)))
        setattr(target, column, ranked[0] if ranked else None)
        if len(ranked) > 1:
            variants[name] = ranked
    target.variants = variants
