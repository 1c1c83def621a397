"""The read-only image-set data plane: what SearchImageSets, GetImageSet, GetImageSetMetadata and
ListImageSetVersions answer about the image sets import jobs made (localaws.jobs.ImageSet).

Pure functions over ImageSet records; localaws.healthimaging holds the lock, the routes and the model checks.
The choices made where AWS documents nothing are listed in localaws/README.md ("Image sets").
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from localaws.jobs import ImageSet
from localaws.model import ServiceError

# SearchByAttributeValue member -> the DICOM keyword whose stored value it is compared with.
STRING_FILTERS = {
    "DICOMPatientId": "PatientID",
    "DICOMAccessionNumber": "AccessionNumber",
    "DICOMStudyId": "StudyID",
    "DICOMStudyInstanceUID": "StudyInstanceUID",
    "DICOMSeriesInstanceUID": "SeriesInstanceUID",
}
# Only these take BETWEEN (AWS: "All date range queries must be input as (lowerBound, upperBound)").
RANGE_FILTERS = ("DICOMStudyDateAndTime", "createdAt", "updatedAt")
# DICOMTags of a search result -> keyword; every member of the model's DICOMTags shape but the two counts.
SUMMARY_TAGS = {
    "DICOMPatientId": "PatientID",
    "DICOMPatientName": "PatientName",
    "DICOMPatientBirthDate": "PatientBirthDate",
    "DICOMPatientSex": "PatientSex",
    "DICOMStudyInstanceUID": "StudyInstanceUID",
    "DICOMStudyId": "StudyID",
    "DICOMStudyDescription": "StudyDescription",
    "DICOMAccessionNumber": "AccessionNumber",
    "DICOMSeriesInstanceUID": "SeriesInstanceUID",
    "DICOMSeriesModality": "Modality",
    "DICOMSeriesBodyPart": "BodyPartExamined",
    "DICOMSeriesNumber": "SeriesNumber",
    "DICOMStudyDate": "StudyDate",
    "DICOMStudyTime": "StudyTime",
}
# Study-level keywords of the metadata document; the patient group (0010) goes to Patient, the rest to Series.
STUDY_KEYWORDS = frozenset(
    {
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "StudyDescription",
        "ReferringPhysicianName",
    }
)
# Upper bound of a BETWEEN that gives a date without a time: the whole day.
END_OF_DAY = "235959.999999"


def _invalid(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


def value_of(metadata: dict[str, Any], keyword: str) -> Any:
    """A stored attribute as the by-name document holds it: text, number, a list for several values, or None."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    element = metadata.get(f"{tag:08X}")
    return _plain(element) if element is not None else None


def _plain(element: dict[str, Any]) -> Any:
    values = element.get("Value")
    if not values:
        return None
    plain = [
        v.get("Alphabetic", "")
        if isinstance(v, dict) and element.get("vr") == "PN"
        else v
        for v in values
    ]
    return plain[0] if len(plain) == 1 else plain


def _text(metadata: dict[str, Any], keyword: str) -> str:
    value = value_of(metadata, keyword)
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(str(v) for v in value)
    return str(value)


# ---- SearchImageSets -------------------------------------------------------------------------------------------


def _filter_matcher(search_filter: dict[str, Any]) -> Any:
    operator = search_filter["operator"]
    values = search_filter["values"]
    names = {next(iter(v)) for v in values}
    if len(names) != 1:
        raise _invalid("A filter's values must all name the same attribute")
    name = names.pop()
    if operator == "EQUAL":
        if len(values) != 1:
            raise _invalid("An EQUAL filter takes exactly one value")
        wanted = values[0][name]
        if name == "isPrimary":
            return lambda s: s.is_primary == wanted
        if name in STRING_FILTERS:
            keyword = STRING_FILTERS[name]
            return lambda s: _text(s.metadata, keyword) == wanted
        if name in ("createdAt", "updatedAt"):
            return lambda s: _moment(s, name) == round(float(wanted), 3)
        low = high = _study_moment_bound(wanted, upper=False)
        if not wanted.get("DICOMStudyTime"):
            high = _study_moment_bound(wanted, upper=True)
        return lambda s: low <= _study_moment(s) <= high
    # BETWEEN
    if len(values) != 2:
        raise _invalid(
            "A BETWEEN filter takes exactly two values: (lowerBound, upperBound)"
        )
    if name not in RANGE_FILTERS:
        raise _invalid(
            f"BETWEEN applies to {', '.join(RANGE_FILTERS)} only, not to {name}"
        )
    first, second = values[0][name], values[1][name]
    if name == "DICOMStudyDateAndTime":
        low_s = _study_moment_bound(first, upper=False)
        high_s = _study_moment_bound(second, upper=True)
        return lambda s: low_s <= _study_moment(s) <= high_s
    low_f, high_f = float(first), float(second)
    return lambda s: low_f <= _moment(s, name) <= high_f


def _moment(image_set: ImageSet, name: str) -> float:
    return round(
        image_set.created_at if name == "createdAt" else image_set.updated_at, 3
    )


def _study_moment(image_set: ImageSet) -> str:
    return _text(image_set.metadata, "StudyDate") + _text(
        image_set.metadata, "StudyTime"
    )


def _study_moment_bound(value: dict[str, Any], *, upper: bool) -> str:
    date = str(value["DICOMStudyDate"])
    time_ = str(value.get("DICOMStudyTime") or "")
    if not time_ and upper:
        time_ = END_OF_DAY
    return date + time_


def search(
    image_sets: Iterable[ImageSet], criteria: dict[str, Any] | None
) -> tuple[list[ImageSet], dict[str, Any] | None]:
    """The image sets the criteria select, sorted; and the sort to echo (None when the request gave none)."""
    criteria = criteria or {}
    matchers = [_filter_matcher(f) for f in criteria.get("filters") or []]
    found = [s for s in image_sets if all(match(s) for match in matchers)]
    sort = criteria.get("sort")
    # AWS: "By default, SearchImageSets uses the updatedAt field for sorting in descending order".
    field = sort["sortField"] if sort else "updatedAt"
    descending = (sort["sortOrder"] == "DESC") if sort else True

    def key(s: ImageSet) -> Any:
        if field == "DICOMStudyDateAndTime":
            primary: Any = _study_moment(s)
        else:
            primary = _moment(s, field)
        return primary

    # Ties keep a stable order by id, so pages never overlap.
    found.sort(key=lambda s: s.image_set_id)
    found.sort(key=key, reverse=descending)
    return found, sort


def summary(image_set: ImageSet) -> dict[str, Any]:
    """One ImageSetsMetadataSummary: ids, times, isPrimary and the DICOMTags the set holds."""
    tags: dict[str, Any] = {}
    for member, keyword in SUMMARY_TAGS.items():
        value = value_of(image_set.metadata, keyword)
        if value is None:
            continue
        if member == "DICOMSeriesNumber":
            try:
                tags[member] = int(value if not isinstance(value, list) else value[0])
            except (TypeError, ValueError):
                continue
        else:
            tags[member] = _text(image_set.metadata, keyword)
    tags["DICOMNumberOfStudyRelatedInstances"] = len(image_set.instances)
    return {
        "imageSetId": image_set.image_set_id,
        "version": image_set.version,
        "createdAt": image_set.created_at,
        "updatedAt": image_set.updated_at,
        "DICOMTags": tags,
        "isPrimary": image_set.is_primary,
    }


# ---- versions and metadata -------------------------------------------------------------------------------------


def versions(image_set: ImageSet) -> list[dict[str, Any]]:
    """Every version, newest first, as {"versionId", "at", "metadata"}."""
    history = image_set.history or [
        {
            "versionId": image_set.version,
            "at": image_set.updated_at,
            "metadata": image_set.metadata,
        }
    ]
    return sorted(history, key=lambda v: -int(v["versionId"]))


def version(image_set: ImageSet, version_id: str | None) -> dict[str, Any]:
    """One version (the latest when version_id is None); ResourceNotFoundException for any other."""
    known = versions(image_set)
    if version_id is None:
        return known[0]
    for entry in known:
        if str(entry["versionId"]) == version_id:
            return entry
    raise ServiceError(
        "ResourceNotFoundException",
        f"Version {version_id} of image set {image_set.image_set_id} does not exist",
    )


def properties(
    image_set: ImageSet, entry: dict[str, Any], *, arn: str
) -> dict[str, Any]:
    """GetImageSet's answer (and one ImageSetProperties item without the arn)."""
    props: dict[str, Any] = {
        "imageSetId": image_set.image_set_id,
        "versionId": str(entry["versionId"]),
        "imageSetState": "ACTIVE",
        "createdAt": image_set.created_at,
        "updatedAt": entry["at"],
        "isPrimary": image_set.is_primary,
    }
    if arn:
        props["imageSetArn"] = arn
    return props


def workflow_status(entry: dict[str, Any]) -> str:
    # UNVERIFIED: which status an import leaves; CREATED for a new set and UPDATED for an added-to one.
    return "CREATED" if int(entry["versionId"]) == 1 else "UPDATED"


def metadata_document(image_set: ImageSet, entry: dict[str, Any]) -> dict[str, Any]:
    """The image set's metadata as GetImageSetMetadata holds it: keyed by attribute name, not by tag."""
    patient: dict[str, Any] = {}
    study: dict[str, Any] = {}
    series: dict[str, Any] = {}
    for tag, element in sorted(entry["metadata"].items()):
        keyword = keyword_for_tag(int(tag, 16)) or tag
        value = _plain(element)
        if int(tag, 16) >> 16 == 0x0010:
            patient[keyword] = value
        elif keyword in STUDY_KEYWORDS:
            study[keyword] = value
        else:
            series[keyword] = value
    instances = {
        sop: {
            "DICOM": {"SOPInstanceUID": sop},
            "DICOMVRs": {},
            "ImageFrames": [],
        }
        for sop in sorted(image_set.instances)
    }
    return {
        "SchemaVersion": "1.1",
        "DatastoreID": image_set.datastore_id,
        "ImageSetID": image_set.image_set_id,
        "Patient": {"DICOM": patient},
        "Study": {
            "DICOM": study,
            "Series": {image_set.series: {"DICOM": series, "Instances": instances}},
        },
    }


def metadata_blob(document: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(document).encode(), mtime=0)
