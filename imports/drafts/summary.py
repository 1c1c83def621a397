"""The confirmation page's plain summary: what the import touches, above the exact request.

Counted from the mappings and the scanned metadata files alone (no S3 read): how many studies and
series are mapped, and which attributes the files set, with the patient-identifying ones counted
apart, as the preview counts them (group 0010 or a PN value).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from imports.dicom.levels import PATIENT_GROUP
from imports.dicom.tags import tag_label
from imports.models import ImportDraft, ObjectHeader


@dataclass(frozen=True)
class AttributeSet:
    label: str
    files: int
    is_patient: bool


@dataclass(frozen=True)
class DraftSummary:
    studies: int
    series: int
    files: int
    attributes: list[AttributeSet]

    @property
    def patient_attributes(self) -> list[AttributeSet]:
        return [a for a in self.attributes if a.is_patient]


def draft_summary(*, draft: ImportDraft) -> DraftSummary:
    """Two queries: the mappings, and the mapped files' parsed documents."""
    mappings = list(
        draft.mappings.values_list(
            "study_instance_uid", "series_instance_uid", "metadata_file_path"
        )
    )
    studies = {study for study, series, _ in mappings if not series}
    series_mapped = {(study, series) for study, series, _ in mappings if series}
    paths = {path for _, _, path in mappings}
    documents: dict[str, object] = {}
    if draft.scan is not None and paths:
        prefix = draft.scan.prefix
        for key, document in (
            ObjectHeader.objects.of_scan(draft.scan)
            .filter(kind=ObjectHeader.Kind.JSON, key__in=[prefix + p for p in paths])
            .values_list("key", "json_document")
        ):
            documents[key[len(prefix) :]] = document
    counts: Counter[int] = Counter()
    patient: set[int] = set()
    for document in documents.values():
        if not isinstance(document, dict):
            continue
        for key, element in document.items():
            try:
                tag = int(key, 16)
            except (TypeError, ValueError):
                continue  # the validation reports such a key; the summary only counts
            counts[tag] += 1
            vr = element.get("vr") if isinstance(element, dict) else None
            if tag >> 16 == PATIENT_GROUP or vr == "PN":
                patient.add(tag)
    attributes = [
        AttributeSet(label=tag_label(tag), files=n, is_patient=tag in patient)
        for tag, n in sorted(counts.items())
    ]
    return DraftSummary(
        studies=len(studies | {study for study, _ in series_mapped}),
        series=len(series_mapped),
        files=len(paths),
        attributes=attributes,
    )
