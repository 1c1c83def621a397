"""The header a series will be imported with: its own header, then the study-level file, then the series-level file.

The precedence (series file over study file over the P10 header, attribute by attribute) is the dashboard's
conservative reading of "enhances or overrides the headers": AWS does not document it (reference §2, UNVERIFIED).
The original header is read from one instance with ranged GETs up to the pixel data, and cached per object
version, so reopening a preview costs no request.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from django.core.cache import cache
from pydicom.dataset import Dataset

from imports.aws import client as aws
from imports.dicom.header import HeaderUnavailable, read_header_dataset
from imports.dicom.patient import is_patient_attribute
from imports.dicom.tags import tag_label
from imports.models import DraftMapping, ImportDraft, ObjectHeader, Scan, ScanSeries

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
HEADER_CACHE_SECONDS = 7 * 24 * 60 * 60

State = Literal["unchanged", "changed", "added", "emptied"]


@dataclass(frozen=True)
class PreviewRow:
    tag: int
    vr: str
    original: str | None  # None: the instance does not have the attribute
    imported: str | None
    source: str  # "", "study file" or "series file"
    state: State

    @property
    def label(self) -> str:
        return tag_label(self.tag)

    @property
    def is_patient(self) -> bool:
        return is_patient_attribute(self.tag, self.vr)


@dataclass
class SeriesPreview:
    series: ScanSeries
    study_mapping: DraftMapping | None
    series_mapping: DraftMapping | None
    rows: list[PreviewRow] = field(default_factory=list)
    error: str = ""

    @property
    def changed(self) -> list[PreviewRow]:
        return [r for r in self.rows if r.state != "unchanged"]

    @property
    def patient_changes(self) -> int:
        """Patient-identifying attributes the import will change: what a reviewer must look at twice."""
        return sum(1 for r in self.changed if r.is_patient)


def series_preview(*, draft: ImportDraft, series: ScanSeries) -> SeriesPreview:
    study_uid = series.study.study_instance_uid
    mappings = {
        m.series_instance_uid: m
        for m in draft.mappings.filter(study_instance_uid=study_uid).filter(
            series_instance_uid__in=["", series.series_instance_uid]
        )
    }
    preview = SeriesPreview(
        series=series,
        study_mapping=mappings.get(""),
        series_mapping=mappings.get(series.series_instance_uid),
    )
    header = series.sample_header
    if header is None:
        preview.error = "No instance of this series could be read."
        return preview
    try:
        original = _original_attributes(draft.scan.region if draft.scan else "", header)
    except (HeaderUnavailable, aws.AwsError) as error:
        preview.error = f"The header of {header.key} cannot be shown: {error}"
        return preview
    layers = [
        ("study file", _file_attributes(draft, preview.study_mapping)),
        ("series file", _file_attributes(draft, preview.series_mapping)),
    ]
    preview.rows = merge_header(original, layers)
    return preview


def merge_header(
    original: dict[int, tuple[str, str]],
    layers: list[tuple[str, dict[int, tuple[str, str | None]]]],
) -> list[PreviewRow]:
    """Apply each layer over the original, in order; the last layer naming an attribute wins."""
    imported: dict[int, tuple[str, str | None, str]] = {
        tag: (vr, value, "") for tag, (vr, value) in original.items()
    }
    for source, attributes in layers:
        for tag, (vr, value) in attributes.items():
            imported[tag] = (vr, value, source)
    rows = []
    for tag in sorted(imported):
        vr, value, source = imported[tag]
        before = original.get(tag)
        before_value = before[1] if before else None
        if before is None:
            state: State = "added"
        elif value == before_value:
            state = "unchanged"
        elif not value:
            state = "emptied"
        else:
            state = "changed"
        rows.append(PreviewRow(tag, vr, before_value, value, source, state))
    return rows


def _header_cache_key(header: ObjectHeader) -> str:
    digest = hashlib.sha256(f"{header.bucket}/{header.key}".encode()).hexdigest()
    return f"preview-header:{digest}:{header.etag}"


def cached_original_attributes(
    header: ObjectHeader,
) -> dict[int, tuple[str, str]] | None:
    """The header a preview read earlier, from the cache only: None when no preview read it (costs no request)."""
    cached = cache.get(_header_cache_key(header))
    if cached is None:
        return None
    return {int(tag): (vr, value) for tag, (vr, value) in cached.items()}


def _original_attributes(
    region: str, header: ObjectHeader
) -> dict[int, tuple[str, str]]:
    cache_key = _header_cache_key(header)
    cached = cached_original_attributes(header)
    if cached is not None:
        return cached

    def fetch(start: int, end: int) -> bytes:
        return aws.s3_get_range(
            region=region, bucket=header.bucket, key=header.key, start=start, end=end
        )

    dataset = read_header_dataset(
        fetch, size=header.size, header_length=header.header_length
    )
    attributes = dataset_attributes(dataset)
    cache.set(
        cache_key,
        {str(tag): [vr, value] for tag, (vr, value) in attributes.items()},
        timeout=HEADER_CACHE_SECONDS,
    )
    return attributes


def dataset_attributes(dataset: Dataset) -> dict[int, tuple[str, str]]:
    """Top-level attributes as (VR, display text); sequences and binary values summarised, not decoded."""
    attributes: dict[int, tuple[str, str]] = {}
    for element in dataset:
        tag = int(element.tag)
        if tag >> 16 == 0x0002 or tag & 0xFFFF == 0:
            continue
        vr = str(element.VR)
        if vr == "SQ":
            count = len(element.value or [])
            attributes[tag] = (
                vr,
                f"(sequence of {count} item{'s' if count != 1 else ''})",
            )
        elif vr in BINARY_VRS:
            size = len(element.value or b"")
            attributes[tag] = (vr, f"(binary, {size:,} bytes)")
        else:
            attributes[tag] = (vr, _text(element.value))
    return attributes


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return str(value)


def _file_attributes(
    draft: ImportDraft, mapping: DraftMapping | None
) -> dict[int, tuple[str, str | None]]:
    """The attributes a mapped metadata file sets, as display text (the scan kept the parsed file)."""
    if mapping is None or draft.scan is None:
        return {}
    return file_attributes(scan=draft.scan, path=mapping.metadata_file_path)


def file_attributes(*, scan: Scan, path: str) -> dict[int, tuple[str, str | None]]:
    """The attributes the metadata file at `path` (relative to the scan's prefix) sets, as display text."""
    document = (
        ObjectHeader.objects.of_scan(scan)
        .filter(key=scan.prefix + path)
        .values_list("json_document", flat=True)
        .first()
    )
    return document_attributes(document or {})


def document_attributes(document: dict[str, Any]) -> dict[int, tuple[str, str | None]]:
    attributes: dict[int, tuple[str, str | None]] = {}
    for key, attribute in document.items():
        try:
            tag = int(key, 16)
        except ValueError:
            continue
        if not isinstance(attribute, dict):
            continue
        vr = str(attribute.get("vr", ""))
        values = attribute.get("Value")
        if vr == "SQ":
            count = len(values) if isinstance(values, list) else 0
            attributes[tag] = (
                vr,
                f"(sequence of {count} item{'s' if count != 1 else ''})",
            )
        elif "InlineBinary" in attribute or "BulkDataURI" in attribute:
            attributes[tag] = (vr, "(binary)")
        elif not isinstance(values, list) or not values:
            attributes[tag] = (vr, "")
        else:
            attributes[tag] = (vr, "\\".join(_json_text(v) for v in values))
    return attributes


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        # PN: the component groups, written as DICOM writes them ("Alphabetic=Ideographic=Phonetic").
        groups = [
            str(value.get(g, "")) for g in ("Alphabetic", "Ideographic", "Phonetic")
        ]
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(groups)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- Every instance of a series ---------------------------------------------------------------------------------

# A preview reads at most this many headers of a series (each cached per object version), READERS at a time.
INSTANCES_READ_MAX = 500
READERS = 8
VALUES_SHOWN = 5


@dataclass(frozen=True)
class AttributeAcross:
    """One attribute over the instances read: its values now and as imported, most common first, with counts."""

    tag: int
    vr: str
    before: list[tuple[str | None, int]]  # None: instances without the attribute
    after: list[tuple[str | None, int]]
    changed: (
        int  # instances whose value the import changes (added and emptied included)
    )
    source: str  # the file that sets it, "" when none does

    @property
    def label(self) -> str:
        return tag_label(self.tag)

    @property
    def is_patient(self) -> bool:
        return is_patient_attribute(self.tag, self.vr)

    @property
    def before_shown(self) -> list[tuple[str | None, int]]:
        return self.before[:VALUES_SHOWN]

    @property
    def after_shown(self) -> list[tuple[str | None, int]]:
        return self.after[:VALUES_SHOWN]

    @property
    def before_more(self) -> int:
        return max(0, len(self.before) - VALUES_SHOWN)

    @property
    def after_more(self) -> int:
        return max(0, len(self.after) - VALUES_SHOWN)


@dataclass
class SeriesAcross:
    rows: list[AttributeAcross]
    read: int  # instances whose header was read
    attempted: int  # the first INSTANCES_READ_MAX of them
    total: int  # instances of the series in the scan
    unreadable: int  # instances whose header could not be read now
    changed_instances: int  # instances with at least one attribute changed

    @property
    def changed(self) -> list[AttributeAcross]:
        return [r for r in self.rows if r.changed]

    @property
    def patient_changes(self) -> int:
        return sum(1 for r in self.changed if r.is_patient)


def series_across_instances(*, draft: ImportDraft, series: ScanSeries) -> SeriesAcross:
    """What every instance of a series becomes, attribute by attribute: one instance can hide a change.

    A study-level file that sets the value most instances already carry changes only the others; a
    preview of one instance that carries it says "0 changed". This reads each instance's header (up to
    INSTANCES_READ_MAX, cached per object version, so a second preview costs no request).
    """
    scan = draft.scan
    assert scan is not None
    mappings = {
        m.series_instance_uid: m
        for m in draft.mappings.filter(
            study_instance_uid=series.study.study_instance_uid,
            series_instance_uid__in=["", series.series_instance_uid],
        )
    }
    layers = [
        ("study file", _file_attributes(draft, mappings.get(""))),
        (
            "series file",
            _file_attributes(draft, mappings.get(series.series_instance_uid)),
        ),
    ]
    instances = ObjectHeader.objects.of_scan(scan).filter(
        kind=ObjectHeader.Kind.DICOM,
        status=ObjectHeader.Status.OK,
        study_instance_uid=series.study.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
    )
    total = instances.count()
    headers = list(instances.order_by("instance_number", "key")[:INSTANCES_READ_MAX])

    def read(header: ObjectHeader) -> dict[int, tuple[str, str]] | None:
        try:
            return _original_attributes(scan.region, header)
        except (HeaderUnavailable, aws.AwsError):
            return None  # counted, and said on the page; the other instances still show

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        originals = list(pool.map(read, headers))
    before: dict[int, Counter[str | None]] = {}
    after: dict[int, Counter[str | None]] = {}
    vrs: dict[int, str] = {}
    sources: dict[int, str] = {}
    changed: Counter[int] = Counter()
    changed_instances = 0
    readable = [o for o in originals if o is not None]
    for original in readable:
        rows = merge_header(original, layers)
        any_change = False
        for row in rows:
            vrs.setdefault(row.tag, row.vr)
            before.setdefault(row.tag, Counter())[row.original] += 1
            after.setdefault(row.tag, Counter())[row.imported] += 1
            if row.source:
                sources[row.tag] = row.source
            if row.state != "unchanged":
                changed[row.tag] += 1
                any_change = True
        changed_instances += any_change
    for tag in before:
        # An instance without the attribute: absent before, and after unless a file adds it.
        missing = len(readable) - sum(before[tag].values())
        if missing:
            before[tag][None] += missing
            after[tag][None] += len(readable) - sum(after[tag].values())
    return SeriesAcross(
        rows=[
            AttributeAcross(
                tag=tag,
                vr=vrs[tag],
                before=before[tag].most_common(),
                after=after[tag].most_common(),
                changed=changed[tag],
                source=sources.get(tag, ""),
            )
            for tag in sorted(before)
        ],
        read=len(readable),
        attempted=len(headers),
        total=total,
        unreadable=len(originals) - len(readable),
        changed_instances=changed_instances,
    )
