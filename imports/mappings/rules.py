"""Check a set of dicomMetadataMappings against the latest scan of the input prefix, before a job is submitted.

Pure: no Django, no AWS. The caller turns its models into a PrefixIndex once; everything here is then a dictionary
lookup per row, so 1,000 mappings against 1,000 series and 1,000 files cost a few milliseconds.

HealthImaging's own checks are loose (UIDs are `[0-9.]+` of up to 512 characters, paths are printable ASCII) and
botocore checks neither pattern nor maximum (reference §1), so a mistake surfaces only as a failed job. The rules
below are the conservative reading of reference §2: a study or series that the same job imports, a path that stays
inside the prefix, a file the scan read and found valid, at most one mapping per (study, series). A UID is refused
only where the service refuses it; one that breaks DICOM's rules (PS3.5 §9.1) but that the scanned files carry is a
warning, since real archives hold such UIDs and HealthImaging imports them (reference §7).

Problems are errors (the job must not be submitted) or warnings (the job may do something surprising). Messages name
tags, UIDs, paths, sizes and counts, never an attribute value from a metadata file other than a UID.

Codes:
  errors   no_mappings, too_many_mappings, quota_files, quota_bytes, quota_folders, duplicate_mapping,
           uid_empty, uid_too_long (over HealthImaging's 512), uid_invalid_character, study_not_in_scan,
           series_not_in_study,
           path_empty, path_too_long, path_invalid_character, path_backslash, path_space_at_end, path_absolute,
           path_traversal, path_encoded_twice, file_missing, file_changed, file_too_large, json_invalid
  warnings file_names_other_study, file_names_other_series, uid_changed, patient_attribute_in_series_file,
           study_attribute_in_series_file, instance_attribute, unmapped_json_file, unmapped_study
  either   uid_longer_than_dicom (over 64), uid_leading_dot, uid_trailing_dot, uid_empty_component, uid_leading_zero:
           UIDs HealthImaging accepts and DICOM does not; a warning when the scanned files carry the UID, an error
           (instead of study_not_in_scan or series_not_in_study) when they do not

The two set-level warnings are aggregated, one problem each, listing the first 10 paths or UIDs and "and N more":
a prefix with hundreds of stray files should not bury the errors.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as Mapping_
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from imports.dicom.levels import (
    Level,
    level_of,
)
from imports.dicom.tags import tag_label
from imports.dicom.uids import (
    DICOM_UID_MAX_LENGTH,
    SERVICE_UID_MAX_LENGTH,
    uid_problem,
    uid_service_problem,
)

Severity = Literal["error", "warning"]

MAX_MAPPINGS = 1000
MAX_PATH_LENGTH = 1024
_LISTED = 10  # paths or UIDs spelled out in an aggregated warning
_TAG_KEY = re.compile(r"[0-9A-F]{8}")

STUDY_UID_TAG = 0x0020000D
SERIES_UID_TAG = 0x0020000E
SOP_INSTANCE_UID_TAG = 0x00080018
PATIENT_GROUP = 0x0010


@dataclass(frozen=True)
class Mapping:
    study_instance_uid: str
    series_instance_uid: str  # "" = study level
    metadata_file_path: str  # relative to the input prefix


@dataclass(frozen=True)
class MetadataFile:
    """What the scan knows about one JSON object under the prefix."""

    path: str  # relative to the input prefix
    etag: str
    size: int
    valid: bool  # the scan's verdict (validate_dicom_json)
    errors: tuple[str, ...]  # the scan's messages ("path: message"), already PHI-free
    document: dict[str, Any] | None  # the parsed DICOM JSON object, when it parsed


@dataclass(frozen=True)
class PrefixIndex:
    """The latest completed scan of the input prefix."""

    studies: dict[str, frozenset[str]]  # StudyInstanceUID -> its SeriesInstanceUIDs
    json_files: dict[str, MetadataFile]  # by relative path
    file_count: int
    total_bytes: int
    folder_count: int
    max_files: int
    max_bytes: int
    max_folders: int
    json_max_bytes: int


@dataclass(frozen=True)
class Problem:
    severity: Severity
    row: int | None  # 1-based row of the mapping; None for the set as a whole
    field: str  # "studyInstanceUID", "seriesInstanceUID", "metadataFilePath", or "" for the set
    code: str  # stable snake_case, listed in the module docstring
    message: str  # what is wrong and what is allowed; never a patient value


# --- Field helpers, shared with the forms and the editor -------------------------------------------------------


def uid_field_problem(value: str) -> tuple[str, str] | None:
    """(code, message) for a study or series UID that HealthImaging refuses, or None; the wording is
    uid_service_problem's. A UID it accepts may still break DICOM's rules: see uid_dicom_problem."""
    message = uid_service_problem(value)
    if message is None:
        return None
    # The same order as uid_service_problem, so the code always names the case its message describes.
    if value == "":
        code = "uid_empty"
    elif len(value) > SERVICE_UID_MAX_LENGTH:
        code = "uid_too_long"
    else:
        code = "uid_invalid_character"
    return code, message


def uid_dicom_problem(value: str) -> tuple[str, str] | None:
    """(code, message) for a UID that HealthImaging accepts but PS3.5 §9.1 does not, or None; the wording is
    uid_problem's. Only for values uid_field_problem accepts."""
    message = uid_problem(value)
    if message is None:
        return None
    # The same order as uid_problem, so the code always names the case its message describes.
    if len(value) > DICOM_UID_MAX_LENGTH:
        code = "uid_longer_than_dicom"
    elif value.startswith("."):
        code = "uid_leading_dot"
    elif value.endswith("."):
        code = "uid_trailing_dot"
    elif "" in value.split("."):
        code = "uid_empty_component"
    else:
        code = "uid_leading_zero"
    return code, message


def _decoded_segments(path: str) -> list[str]:
    """The path's segments as written and as decoded once from percent-encoding."""
    return [
        segment
        for spelling in (path, unquote(path))
        for segment in re.split(r"[/\\]", spelling)
    ]


def _still_encoded(path: str) -> bool:
    """True when decoding once leaves percent-encoding behind ('%252e'): refused however many rounds it takes, since
    a consumer that decodes once more than we looked would see another path (a '..' encoded six times was once
    written to S3 as a literal key)."""
    once = unquote(path)
    return unquote(once) != once


def _dot_segment(segment: str) -> bool:
    """'.' or '..', also in the look-alikes that Unicode compatibility folds into dots (fullwidth U+FF0E, U+2024…)."""
    return unicodedata.normalize("NFKC", segment) in (".", "..")


def prefix_problem(prefix: str) -> str | None:
    """Why an S3 prefix a user typed could name something outside itself, or None.

    S3 keys may hold any character, so this is narrower than the metadataFilePath rule: only what could climb out
    of the prefix or hide from a check (control characters, backslashes, dot segments however spelled, and
    percent-encoding left after one decoding).
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix + unquote(prefix)):
        return "it contains a control character (such as NUL or %00)"
    if "\\" in prefix:
        return "it contains a backslash; separate folders with '/'"
    if _still_encoded(prefix):
        return "it is still percent-encoded after decoding it once (such as '%252e'); write each character once"
    if any(_dot_segment(segment) for segment in _decoded_segments(prefix)):
        return (
            "it has a '.' or '..' folder (percent-encoded and fullwidth spellings included); "
            "name the folders inside the bucket without them"
        )
    return None


def metadata_path_problem(value: str) -> tuple[str, str] | None:
    """(code, message) for a metadataFilePath HealthImaging or this dashboard would refuse, or None.

    The API allows printable ASCII 0x21-0x7E with spaces inside only, 1-1,024 characters, relative to the input
    prefix. The dashboard also keeps the path inside the prefix: no leading '/', no '.' or '..' segment however it is
    spelled, no backslash (some tools read it as a separator).
    """
    if value == "":
        return (
            "path_empty",
            "metadataFilePath is required: the path of a JSON file relative to the input prefix",
        )
    if len(value) > MAX_PATH_LENGTH:
        return (
            "path_too_long",
            f"metadataFilePath is {len(value):,} characters long; the maximum is {MAX_PATH_LENGTH:,}",
        )
    bad = sorted({c for c in value if not (c == " " or 0x21 <= ord(c) <= 0x7E)})
    if bad:
        names = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        return (
            "path_invalid_character",
            f"metadataFilePath contains {names}; only printable ASCII (0x21-0x7E) and inner spaces are allowed",
        )
    if "\\" in value:
        return (
            "path_backslash",
            "metadataFilePath contains a backslash; separate folders with '/'",
        )
    if value[0] == " " or value[-1] == " ":
        return (
            "path_space_at_end",
            "metadataFilePath starts or ends with a space; spaces are allowed inside the path only",
        )
    if value.startswith("/"):
        return (
            "path_absolute",
            "metadataFilePath starts with '/'; it is relative to the input prefix, such as 'meta/study1.json'",
        )
    if _still_encoded(value):
        return (
            "path_encoded_twice",
            "metadataFilePath is still percent-encoded after decoding it once (such as '%252e'); "
            "write each character once, as the S3 key names it",
        )
    if any(_dot_segment(segment) for segment in _decoded_segments(value)):
        return (
            "path_traversal",
            "metadataFilePath has a '.' or '..' segment (percent-encoded ones included); "
            "the path must name a file inside the input prefix without them",
        )
    return None


def problems_sorted(problems: Iterable[Problem]) -> list[Problem]:
    """Errors before warnings; within each, problems of the whole set first, then by row (stable otherwise)."""
    return sorted(
        problems,
        key=lambda p: (p.severity != "error", p.row is not None, p.row or 0),
    )


# --- The set -----------------------------------------------------------------------------------------------------


def mappings_validate(
    *,
    mappings: Sequence[Mapping],
    index: PrefixIndex,
    recorded_etags: Mapping_[str, str] | None = None,
) -> list[Problem]:
    """Every problem of the mapping set against the scan, sorted by problems_sorted.

    `recorded_etags` maps a path to the ETag the draft recorded when the file was mapped; a file whose ETag has
    changed since is an error until the new version is accepted.
    """
    problems = _set_problems(mappings, index)
    first_row: dict[tuple[str, str], int] = {}
    contents: dict[str, _Contents] = {}
    for row, mapping in enumerate(mappings, start=1):
        problems += _row_problems(row, mapping, index, recorded_etags or {}, contents)
        key = (mapping.study_instance_uid, mapping.series_instance_uid)
        if key in first_row:
            problems.append(_duplicate(row, mapping, first_row[key]))
        else:
            first_row[key] = row
    problems += _unmapped(mappings, index)
    return problems_sorted(problems)


def _set_problems(mappings: Sequence[Mapping], index: PrefixIndex) -> list[Problem]:
    problems: list[Problem] = []

    def error(code: str, message: str) -> None:
        problems.append(Problem("error", None, "", code, message))

    if not mappings:
        error(
            "no_mappings",
            f"there are no mappings; a DICOM JSON import needs 1 to {MAX_MAPPINGS:,}",
        )
    elif len(mappings) > MAX_MAPPINGS:
        error(
            "too_many_mappings",
            f"there are {len(mappings):,} mappings; a job takes at most {MAX_MAPPINGS:,}, "
            "so split the studies over several jobs",
        )
    if index.file_count > index.max_files:
        error(
            "quota_files",
            f"the input prefix holds {index.file_count:,} files; an import job takes at most {index.max_files:,}",
        )
    if index.total_bytes > index.max_bytes:
        error(
            "quota_bytes",
            f"the input prefix holds {_gb(index.total_bytes)}; an import job takes at most {_gb(index.max_bytes)}",
        )
    if index.folder_count > index.max_folders:
        error(
            "quota_folders",
            f"the input prefix holds {index.folder_count:,} folders; "
            f"an import job takes at most {index.max_folders:,}",
        )
    return problems


def _gb(n: int) -> str:
    """Decimal gigabytes, as the HealthImaging quotas are written; exact bytes when rounding would hide a breach."""
    whole, rest = divmod(n, 1000**3)
    if rest == 0:
        return f"{whole:,} GB"
    return f"{n / 1000**3:,.2f} GB ({n:,} bytes)"


def _duplicate(row: int, mapping: Mapping, first: int) -> Problem:
    if mapping.series_instance_uid:
        return Problem(
            "error",
            row,
            "seriesInstanceUID",
            "duplicate_mapping",
            f"row {first} already maps this study and series; each (study, series) pair may be mapped once",
        )
    return Problem(
        "error",
        row,
        "studyInstanceUID",
        "duplicate_mapping",
        f"row {first} already maps this study at the study level; a study may have one study-level mapping",
    )


def _row_problems(
    row: int,
    mapping: Mapping,
    index: PrefixIndex,
    recorded_etags: Mapping_[str, str],
    contents: dict[str, _Contents],
) -> list[Problem]:
    problems: list[Problem] = []

    def error(field: str, code: str, message: str) -> None:
        problems.append(Problem("error", row, field, code, message))

    def not_dicom(
        field: str, label: str, found: tuple[str, str], carried: bool
    ) -> None:
        code, message = found
        if carried:
            problems.append(
                Problem(
                    "warning",
                    row,
                    field,
                    code,
                    f"{label}: {message}. The scanned files carry this UID and HealthImaging accepts it, "
                    "but other DICOM systems may refuse it",
                )
            )
        else:
            error(
                field,
                code,
                f"{label}: {message}. No scanned file under the input prefix carries this UID; "
                "a mapping must name a study or series the job imports",
            )

    study, series = mapping.study_instance_uid, mapping.series_instance_uid
    study_carried = study in index.studies
    if found := uid_field_problem(study):
        error("studyInstanceUID", found[0], f"StudyInstanceUID: {found[1]}")
    elif found := uid_dicom_problem(study):
        not_dicom("studyInstanceUID", "StudyInstanceUID", found, study_carried)
    elif not study_carried:
        error(
            "studyInstanceUID",
            "study_not_in_scan",
            f"StudyInstanceUID {study} is not among the {len(index.studies):,} studies the latest scan found "
            "under the input prefix; a mapping must name a study the job imports",
        )
    if series:
        series_carried = study_carried and series in index.studies[study]
        if found := uid_field_problem(series):
            error("seriesInstanceUID", found[0], f"SeriesInstanceUID: {found[1]}")
        elif found := uid_dicom_problem(series):
            not_dicom("seriesInstanceUID", "SeriesInstanceUID", found, series_carried)
        elif study_carried and not series_carried:
            error(
                "seriesInstanceUID",
                "series_not_in_study",
                f"SeriesInstanceUID {series} is not a series of study {study} in the latest scan; "
                "pick one of its series, or leave it empty for a study-level mapping",
            )

    path = mapping.metadata_file_path
    if found := metadata_path_problem(path):
        error("metadataFilePath", *found)
        return problems
    file = index.json_files.get(path)
    if file is None:
        error(
            "metadataFilePath",
            "file_missing",
            f"no JSON file {path} under the input prefix in the latest scan; "
            "upload it there or correct the path, then scan again",
        )
        return problems
    recorded = recorded_etags.get(path)
    if recorded is not None and recorded != file.etag:
        error(
            "metadataFilePath",
            "file_changed",
            f"{path} changed since it was mapped (ETag {recorded}, now {file.etag}); "
            "re-open the file and accept the new version",
        )
    if file.size > index.json_max_bytes:
        error(
            "metadataFilePath",
            "file_too_large",
            f"{path} is {file.size:,} bytes; metadata files are read up to {index.json_max_bytes:,} bytes "
            "(a DICOM JSON header override is a few kilobytes)",
        )
    elif not file.valid:
        shown = "; ".join(file.errors[:3]) or "the scan gave no details; scan again"
        more = f" (and {len(file.errors) - 3:,} more)" if len(file.errors) > 3 else ""
        error(
            "metadataFilePath",
            "json_invalid",
            f"{path} is not valid DICOM JSON: {shown}{more}",
        )
    elif file.document is not None:
        # Content warnings only for files that passed: an invalid file's problems come first.
        if path not in contents:
            contents[path] = _Contents.of(file.document)
        problems += _content_problems(row, mapping, contents[path])
    return problems


@dataclass(frozen=True)
class _Contents:
    """What one metadata file sets at its top level, worked out once however many rows map it."""

    study_uids: tuple[str, ...] | None  # None: the attribute is absent
    series_uids: tuple[str, ...] | None
    sets_sop_instance_uid: bool
    tags_by_level: dict[Level, tuple[int, ...]]

    @classmethod
    def of(cls, document: Mapping_[str, Any]) -> _Contents:
        tags = sorted(int(key, 16) for key in document if _TAG_KEY.fullmatch(key))
        by_level: dict[Level, list[int]] = {}
        for tag in tags:
            level = level_of(tag)
            if level is not None and tag != SOP_INSTANCE_UID_TAG:
                by_level.setdefault(level, []).append(tag)
        return cls(
            study_uids=_uids(document, STUDY_UID_TAG),
            series_uids=_uids(document, SERIES_UID_TAG),
            sets_sop_instance_uid=f"{SOP_INSTANCE_UID_TAG:08X}" in document,
            tags_by_level={level: tuple(found) for level, found in by_level.items()},
        )


def _uids(document: Mapping_[str, Any], tag: int) -> tuple[str, ...] | None:
    attr = document.get(f"{tag:08X}")
    if not isinstance(attr, dict):
        return None
    values = attr.get("Value")
    if not isinstance(values, list):
        return ()
    return tuple(v for v in values if isinstance(v, str))


def _labels(tags: Iterable[int]) -> str:
    return ", ".join(tag_label(tag) for tag in tags)


def _shown_uid(values: tuple[str, ...]) -> str:
    """The UID a file sets, quoted only when it is one (a file that passed the scan holds valid UIDs anyway)."""
    if len(values) == 1 and uid_problem(values[0]) is None:
        return values[0]
    return "another value" if values else "an empty value"


_SERIES_FILE_LEVELS: tuple[tuple[Level, str], ...] = (
    ("patient", "patient_attribute_in_series_file"),
    ("study", "study_attribute_in_series_file"),
)


def _content_problems(row: int, mapping: Mapping, contents: _Contents) -> list[Problem]:
    problems: list[Problem] = []

    def warning(code: str, message: str) -> None:
        problems.append(Problem("warning", row, "metadataFilePath", code, message))

    study, series = mapping.study_instance_uid, mapping.series_instance_uid
    if contents.study_uids is not None and contents.study_uids != (study,):
        code = "file_names_other_study" if contents.study_uids else "uid_changed"
        warning(
            code,
            f"the metadata file sets {tag_label(STUDY_UID_TAG)} to {_shown_uid(contents.study_uids)}, "
            f"but this row maps it to study {study}; leave the attribute out or give it the mapped UID",
        )
    if contents.series_uids is not None:
        if not series:
            warning(
                "uid_changed",
                f"the metadata file sets {tag_label(SERIES_UID_TAG)} in a study-level mapping, which would give "
                "every series of the study the same UID; leave it out or map each series on its own row",
            )
        elif contents.series_uids != (series,):
            code = "file_names_other_series" if contents.series_uids else "uid_changed"
            warning(
                code,
                f"the metadata file sets {tag_label(SERIES_UID_TAG)} to {_shown_uid(contents.series_uids)}, "
                f"but this row maps it to series {series}; leave the attribute out or give it the mapped UID",
            )
    if contents.sets_sop_instance_uid:
        warning(
            "uid_changed",
            f"the metadata file sets {tag_label(SOP_INSTANCE_UID_TAG)}, which would give every instance it applies "
            "to the same UID; leave it out",
        )
    if series:
        for level, code in _SERIES_FILE_LEVELS:
            if tags := contents.tags_by_level.get(level):
                warning(
                    code,
                    f"the metadata file of a series-level mapping sets {level} attributes {_labels(tags)}; "
                    f"the series of one study could then disagree, so set them in a study-level mapping",
                )
    if tags := contents.tags_by_level.get("instance"):
        warning(
            "instance_attribute",
            f"the metadata file sets instance-level attributes {_labels(tags)}, which would give every "
            "instance it applies to the same value; leave them out",
        )
    return problems


def document_problems(
    *, mapping: Mapping, document: Mapping_[str, Any], row: int = 0
) -> list[Problem]:
    """The content warnings a row mapping `document` gets, for the editor to show while the file is written."""
    return _content_problems(row, mapping, _Contents.of(document))


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    more = len(items) - _LISTED
    return f"{shown} and {more:,} more" if more > 0 else shown


def _unmapped(mappings: Sequence[Mapping], index: PrefixIndex) -> list[Problem]:
    problems: list[Problem] = []
    mapped_paths = {m.metadata_file_path for m in mappings}
    mapped_studies = {m.study_instance_uid for m in mappings}
    if paths := sorted(set(index.json_files) - mapped_paths):
        problems.append(
            Problem(
                "warning",
                None,
                "",
                "unmapped_json_file",
                f"{len(paths):,} JSON file{'s' if len(paths) != 1 else ''} under the input prefix "
                f"{'are' if len(paths) != 1 else 'is'} not named by any mapping: {_listed(paths)}; "
                "the job imports the whole prefix and may report them as failed files",
            )
        )
    if studies := sorted(set(index.studies) - mapped_studies):
        problems.append(
            Problem(
                "warning",
                None,
                "",
                "unmapped_study",
                f"{len(studies):,} stud{'ies' if len(studies) != 1 else 'y'} under the input prefix "
                f"{'have' if len(studies) != 1 else 'has'} no mapping: {_listed(studies)}; "
                "the job imports them too, unchanged",
            )
        )
    return problems
