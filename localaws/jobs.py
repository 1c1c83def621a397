"""What an import job does with the objects under its input prefix: scan, parse, map, group, report.

`scan` reads S3 and parses DICOM outside any lock; `assign` decides image sets against the datastore's existing
ones and must run under the service lock; `write_outputs` puts the result files where AWS puts them.
The choices made where AWS documents nothing are listed in localaws/README.md.
"""

from __future__ import annotations

import json
import posixpath
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from localaws import s3store
from localaws.dicomjson import InvalidDicomJson, check_dataset

REQUIRED_ATTRIBUTES = (
    "TransferSyntaxUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
)
# Patient, study and series attributes kept as the image set's metadata (after overrides).
STORED_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "StudyDescription",
    "ReferringPhysicianName",
    "SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription", "BodyPartExamined",
    "SeriesDate", "SeriesTime", "ProtocolName", "Laterality",
)  # fmt: skip
# The normalized elements whose disagreement with an existing primary image set makes a non-primary one.
CONFLICT_TAGS = {
    "00100020": "PatientID",
    "00100010": "PatientName",
    "00100030": "PatientBirthDate",
    "00100040": "PatientSex",
    "0020000D": "StudyInstanceUID",
    "00080020": "StudyDate",
    "00080050": "AccessionNumber",
    "00200010": "StudyID",
    "0020000E": "SeriesInstanceUID",
    "00200011": "SeriesNumber",
    "00080060": "Modality",
}
# HealthImaging element limits enforced at import (dicom-element-constraints).
ELEMENT_LIMITS = {
    "PatientName": 256, "PatientID": 256, "PatientBirthDate": 18, "PatientSex": 16, "StudyInstanceUID": 256,
    "StudyID": 256, "StudyDescription": 256, "AccessionNumber": 256, "StudyDate": 18, "StudyTime": 28,
    "SOPInstanceUID": 256, "SeriesInstanceUID": 256,
}  # fmt: skip
MESSAGE_DISALLOWED = re.compile(r"[^\w -:`]")
COERCION_CODE = 0xB000


class JobFailed(Exception):
    """A job-level failure: the whole job ends FAILED with this message."""


@dataclass
class Instance:
    key: str
    study: str
    series: str
    sop: str
    metadata: dict[str, Any]


@dataclass
class Mapping:
    index: int
    study: str
    series: str | None
    file_key: str
    elements: dict[str, Any] | None = None
    error: str | None = None
    matched: bool = False


@dataclass
class ScanResult:
    scanned: int
    instances: list[Instance] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Limits:
    max_files: int
    max_total_bytes: int
    max_nested_folders: int
    max_metadata_file_bytes: int
    max_p10_bytes: int


def safe_message(text: str) -> str:
    """Fit a job message to the model's pattern [\\w -:`]+ and its 2048-character limit."""
    cleaned = MESSAGE_DISALLOWED.sub(" ", text).strip() or "failed"
    return cleaned[:2048]


def failure(
    key: str, message: str, kind: str = "ValidationException"
) -> dict[str, Any]:
    return {"inputFile": key, "exception": {"exceptionType": kind, "message": message}}


def resolve_metadata_key(prefix: str, path: str) -> str | None:
    """The S3 key of a metadataFilePath (relative to inputS3Uri), or None when it escapes the prefix."""
    base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    joined = posixpath.normpath(base + path.lstrip("/"))
    if (
        path.endswith("/")
        or joined.startswith("..")
        or (base and not joined.startswith(base))
    ):
        return None
    return joined


def scan(
    input_s3_uri: str, import_configuration: dict[str, Any] | None, limits: Limits
) -> tuple[ScanResult, list[Mapping]]:
    bucket, prefix = s3store.parse_s3_uri(input_s3_uri)
    try:
        objects = [
            o for o in s3store.list_objects(bucket, prefix) if not o.key.endswith("/")
        ]
    except s3store.NoSuchBucket as exc:
        raise JobFailed(
            "DICOM import job has failed. INPUT_S3_LOCATION_NOT_ACCESSIBLE: the input bucket does not exist "
            "or the data access role cannot list it"
        ) from exc
    _check_quotas(objects, prefix, limits)

    mappings = _load_mappings(bucket, prefix, import_configuration, limits)
    metadata_keys = {m.file_key for m in mappings}
    result = ScanResult(scanned=len(objects))
    for obj in objects:
        if obj.key in metadata_keys:
            continue
        if obj.size > limits.max_p10_bytes:
            result.failures.append(
                failure(
                    obj.key,
                    f"DICOM P10 file exceeds the maximum size of {limits.max_p10_bytes} bytes",
                )
            )
            continue
        parsed = _parse_instance(bucket, obj.key)
        if isinstance(parsed, str):
            result.failures.append(failure(obj.key, parsed))
        else:
            result.instances.append(parsed)
    _apply_mappings(result, mappings)
    return result, mappings


def _check_quotas(
    objects: list[s3store.ObjectInfo], prefix: str, limits: Limits
) -> None:
    if len(objects) > limits.max_files:
        raise JobFailed(
            f"DICOM import job has failed. FILE_COUNTS_LIMIT_EXCEEDED: the input S3 location holds {len(objects)} "
            f"files, more than the limit of {limits.max_files} files per import job"
        )
    total = sum(o.size for o in objects)
    if total > limits.max_total_bytes:
        raise JobFailed(
            f"DICOM import job has failed. FILE_SIZE_LIMIT_EXCEEDED: the input S3 location holds {total} bytes, "
            f"more than the limit of {limits.max_total_bytes} bytes per import job"
        )
    folders = sum(1 for _ in s3store.iter_prefix_folders(objects, prefix))
    if folders > limits.max_nested_folders:
        raise JobFailed(
            f"DICOM import job has failed. NESTED_FOLDERS_LIMIT_EXCEEDED: the input S3 location holds {folders} "
            f"nested folders, more than the limit of {limits.max_nested_folders}"
        )


def _parse_instance(bucket: str, key: str) -> Instance | str:
    reader = s3store.open_object(bucket, key)
    if reader is None:
        return "DICOM file disappeared during the import"
    try:
        ds = pydicom.dcmread(reader, stop_before_pixels=True)
    except InvalidDicomError:
        return "DICOM attribute TransferSyntaxUID does not exist"
    except Exception:  # noqa: BLE001 - hostile bytes can break pydicom in many ways; none may stop the job
        return "DICOM file could not be parsed: the file is truncated or corrupt"
    try:
        values = {
            "TransferSyntaxUID": str(ds.file_meta.get("TransferSyntaxUID") or "")
            if hasattr(ds, "file_meta")
            else "",
            "SOPInstanceUID": str(ds.get("SOPInstanceUID") or ""),
            "StudyInstanceUID": str(ds.get("StudyInstanceUID") or ""),
            "SeriesInstanceUID": str(ds.get("SeriesInstanceUID") or ""),
        }
        for name in REQUIRED_ATTRIBUTES:
            if not values[name].strip("\0 "):
                return f"DICOM attribute {name} does not exist"
        for name, limit in ELEMENT_LIMITS.items():
            value = ds.get(name)
            if value is not None and len(str(value)) > limit:
                return f"DICOM attribute {name} exceeds the maximum length of {limit}"
        subset = Dataset()
        for keyword in STORED_KEYWORDS:
            if keyword in ds:
                subset[keyword] = ds[keyword]
        metadata = subset.to_json_dict(suppress_invalid_tags=True)
    except Exception:  # noqa: BLE001 - a value pydicom cannot decode is the file's fault, not the job's
        return "DICOM file could not be parsed: an attribute value is corrupt"
    return Instance(
        key=key,
        study=values["StudyInstanceUID"].strip("\0 "),
        series=values["SeriesInstanceUID"].strip("\0 "),
        sop=values["SOPInstanceUID"].strip("\0 "),
        metadata=metadata,
    )


def _load_mappings(
    bucket: str,
    prefix: str,
    import_configuration: dict[str, Any] | None,
    limits: Limits,
) -> list[Mapping]:
    if not import_configuration:
        return []
    raw = import_configuration.get("dicomJsonMetadataImportConfiguration", {}).get(
        "dicomMetadataMappings", []
    )
    mappings: list[Mapping] = []
    loaded: dict[str, dict[str, Any] | str] = {}
    for index, item in enumerate(raw):
        path = item["metadataFilePath"]
        key = resolve_metadata_key(prefix, path)
        mapping = Mapping(
            index,
            item["studyInstanceUID"],
            item.get("seriesInstanceUID") or None,
            key or prefix + path,
        )
        mappings.append(mapping)
        if key is None:
            mapping.error = f"metadataFilePath of dicomMetadataMappings[{index}] resolves outside inputS3Uri"
            continue
        if key not in loaded:
            loaded[key] = _load_metadata_file(
                bucket, key, limits.max_metadata_file_bytes
            )
        content = loaded[key]
        if isinstance(content, str):
            mapping.error = content
            continue
        mapping.error = _protected_tag_error(mapping, content)
        if mapping.error is None:
            mapping.elements = content
    return mappings


def _load_metadata_file(bucket: str, key: str, limit: int) -> dict[str, Any] | str:
    try:
        data = s3store.read_capped(bucket, key, limit)
    except ValueError:
        return f"Metadata file is larger than the {limit} bytes allowed"
    if data is None:
        return "Metadata file does not exist under inputS3Uri"
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "Metadata file is not valid JSON"
    try:
        check_dataset(document)
    except InvalidDicomJson as exc:
        return f"Metadata file is not a valid DICOM JSON object: {exc}"
    assert isinstance(document, dict)
    return document


def _protected_tag_error(mapping: Mapping, elements: dict[str, Any]) -> str | None:
    def value_of(tag: str) -> Any:
        values = elements[tag].get("Value") or [None]
        return values[0]

    for tag in elements:
        if tag == "0020000D" and value_of(tag) != mapping.study:
            return "Metadata file may not change StudyInstanceUID (0020000D), a protected attribute"
        if tag == "0020000E" and (
            mapping.series is None or value_of(tag) != mapping.series
        ):
            return "Metadata file may not change SeriesInstanceUID (0020000E), a protected attribute"
        if (
            tag in ("00080018", "00080016")
            or tag.startswith("0028")
            or tag.startswith("7FE0")
        ):
            return f"Metadata file may not set {tag}, a protected instance or pixel attribute"
    return None


def _apply_mappings(result: ScanResult, mappings: list[Mapping]) -> None:
    # Study-level first, then series-level, so a series mapping wins over a study mapping for the same
    # attribute; both win over the P10 header.
    ordered = sorted(mappings, key=lambda m: (m.series is not None, m.index))
    kept: list[Instance] = []
    for instance in result.instances:
        applicable = [
            m
            for m in ordered
            if m.study == instance.study
            and (m.series is None or m.series == instance.series)
        ]
        for m in applicable:
            m.matched = True
        broken = next((m for m in applicable if m.error is not None), None)
        if broken is not None:
            result.failures.append(
                failure(
                    instance.key,
                    f"Not imported because its metadata mapping {broken.file_key} failed",
                )
            )
            continue
        for m in applicable:
            instance.metadata.update(m.elements or {})
        kept.append(instance)
    result.instances = kept
    for m in mappings:
        if m.error is not None:
            result.failures.append(failure(m.file_key, m.error))
        elif not m.matched:
            level = (
                "studyInstanceUID and seriesInstanceUID"
                if m.series
                else "studyInstanceUID"
            )
            result.failures.append(
                failure(
                    m.file_key,
                    f"No DICOM file under inputS3Uri matches the {level} of dicomMetadataMappings[{m.index}]",
                )
            )


# ---- image-set assignment ------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    image_set_id: str
    datastore_id: str
    study: str
    series: str
    version: int
    is_primary: bool
    metadata: dict[str, Any]
    instances: dict[str, str]
    created_at: float
    updated_at: float
    # One entry a version, oldest first: {"versionId": n, "at": epoch seconds, "metadata": DICOM JSON then}.
    # Empty in state saved before versions were kept; ListImageSetVersions then reports the latest only.
    history: list[dict[str, Any]] = field(default_factory=list)

    def record_version(self, now: float) -> None:
        self.history.append(
            {"versionId": self.version, "at": now, "metadata": dict(self.metadata)}
        )


def signature(metadata: dict[str, Any]) -> str:
    return json.dumps(
        {tag: metadata.get(tag, {}).get("Value") for tag in CONFLICT_TAGS},
        sort_keys=True,
    )


@dataclass
class Outcome:
    success: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    summaries: list[dict[str, Any]]


def assign(
    instances: list[Instance],
    datastore_id: str,
    existing: dict[str, ImageSet],
    now: float,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> Outcome:
    """Place instances into image sets, mutating `existing`; the caller holds the service lock."""
    groups: dict[tuple[str, str, str], list[Instance]] = {}
    for instance in instances:
        groups.setdefault(
            (instance.study, instance.series, signature(instance.metadata)), []
        ).append(instance)
    touched: dict[str, ImageSet] = {}
    matched: dict[str, int] = {}
    success: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for (study, series, sig), members in groups.items():
        primary = next(
            (
                s
                for s in existing.values()
                if s.datastore_id == datastore_id
                and s.study == study
                and s.series == series
                and s.is_primary
            ),
            None,
        )
        merged = dict(members[0].metadata)
        if primary is None:
            target = ImageSet(
                new_id(), datastore_id, study, series, 1, True, merged, {}, now, now
            )
            existing[target.image_set_id] = target
        elif signature(primary.metadata) == sig:
            target = primary
            if target.image_set_id not in touched:
                target.version += 1
                target.updated_at = now
            target.metadata.update(merged)
        else:
            target = ImageSet(
                new_id(), datastore_id, study, series, 1, False, merged, {}, now, now
            )
            existing[target.image_set_id] = target
        touched[target.image_set_id] = target
        for instance in members:
            target.instances[instance.sop] = instance.key
            matched[target.image_set_id] = matched.get(target.image_set_id, 0) + 1
            response = {
                "imageSetId": target.image_set_id,
                "imageSetVersion": target.version,
                "isPrimary": target.is_primary,
            }
            success.append({"inputFile": instance.key, "importResponse": response})
            differing = sorted(
                tag
                for tag, element in instance.metadata.items()
                if tag not in CONFLICT_TAGS and merged.get(tag) != element
            )
            if differing:
                warnings.append(
                    {
                        "inputFile": instance.key,
                        "importResponse": {
                            **response,
                            "warnings": [
                                {
                                    "warning_reason_code": COERCION_CODE,
                                    "type": "COERCION_OF_DATA_ELEMENTS",
                                    "message": f"Element(s) {', '.join(differing)} differ from the image set's value; the image set keeps the first instance's value",
                                }
                            ],
                        },
                    }
                )
    for target in touched.values():
        if target.history and target.history[-1]["versionId"] == target.version:
            target.history[-1]["metadata"] = dict(target.metadata)
        else:
            target.record_version(now)
    summaries = [
        {
            "imageSetId": s.image_set_id,
            "imageSetVersion": s.version,
            "isPrimary": s.is_primary,
            "numberOfMatchedSOPInstances": matched[s.image_set_id],
        }
        for s in touched.values()
    ]
    return Outcome(success, warnings, summaries)


# ---- output ----------------------------------------------------------------------------------------------------


def job_folder(output_s3_uri: str, datastore_id: str, job_id: str) -> str:
    base = output_s3_uri if output_s3_uri.endswith("/") else output_s3_uri + "/"
    return f"{base}{datastore_id}-DicomImport-{job_id}/"


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def job_summary(
    *,
    job_id: str,
    datastore_id: str,
    input_s3_uri: str,
    folder: str,
    scanned: int,
    failures: list[dict[str, Any]],
    outcome: Outcome | None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "jobId": job_id,
        "datastoreId": datastore_id,
        "inputS3Uri": input_s3_uri,
        "outputS3Uri": folder,
        "successOutputS3Uri": folder + "SUCCESS/",
        "failureOutputS3Uri": folder + "FAILURE/",
    }
    if outcome is not None and outcome.warnings:
        summary["warningsOutputS3Uri"] = folder + "WARNING/"
    summary.update(
        {
            "numberOfScannedFiles": scanned,
            "numberOfImportedFiles": len(outcome.success) if outcome else 0,
            "numberOfFilesWithCustomerError": len(failures),
            "numberOfFilesWithServerError": 0,
            "numberOfGeneratedImageSets": len(outcome.summaries) if outcome else 0,
            "imageSetsSummary": outcome.summaries if outcome else [],
        }
    )
    return {"jobSummary": summary}


def write_results(
    folder: str, failures: list[dict[str, Any]], outcome: Outcome | None
) -> None:
    """The ndjson files; the manifest is written separately because a fault may delay it."""
    bucket, prefix = s3store.parse_s3_uri(folder)
    json_type = "application/x-ndjson"
    s3store.put_object(
        bucket,
        prefix + "SUCCESS/success.ndjson",
        ndjson(outcome.success if outcome else []),
        json_type,
    )
    s3store.put_object(
        bucket, prefix + "FAILURE/failure.ndjson", ndjson(failures), json_type
    )
    if outcome is not None and outcome.warnings:
        s3store.put_object(
            bucket,
            prefix + "WARNING/warning.ndjson",
            ndjson(outcome.warnings),
            json_type,
        )


def write_manifest(folder: str, manifest: dict[str, Any]) -> None:
    bucket, prefix = s3store.parse_s3_uri(folder)
    s3store.put_object(
        bucket,
        prefix + "job-output-manifest.json",
        json.dumps(manifest).encode(),
        "application/json",
    )
