"""Check a set of dicomMetadataMappings against the latest scan of the input prefix, before a job is submitted.

Pure: no Django, no AWS. The caller turns its models into a PrefixIndex once; everything here is then a dictionary
lookup per row, so 1,000 mappings against 1,000 series and 1,000 files cost a few milliseconds.

HealthImaging's own checks are loose (UIDs are `[0-9.]{0,512}`, paths are printable ASCII) and botocore checks
neither pattern nor maximum (reference §1), so a mistake surfaces only as a failed job. The rules below are the
conservative reading of reference §2: real DICOM UIDs, a study or series that the same job imports, a path that stays
inside the prefix, a file the scan read and found valid, at most one mapping per (study, series).

Problems are errors (the job must not be submitted) or warnings (the job may do something surprising). Messages name
tags, UIDs, paths, sizes and counts, never an attribute value from a metadata file other than a UID.

Codes:
  errors   no_mappings, too_many_mappings, quota_files, quota_bytes, quota_folders, duplicate_mapping,
           uid_empty, uid_too_long, uid_invalid_character, uid_leading_dot, uid_trailing_dot, uid_empty_component,
           uid_leading_zero, study_not_in_scan, series_not_in_study,
           path_empty, path_too_long, path_invalid_character, path_backslash, path_space_at_end, path_absolute,
           path_traversal, file_missing, file_changed, file_too_large, json_invalid
  warnings file_names_other_study, file_names_other_series, uid_changed, patient_attribute_in_series_file,
           study_attribute_in_series_file, instance_attribute, unmapped_json_file, unmapped_study

The two set-level warnings are aggregated, one problem each, listing the first 10 paths or UIDs and "and N more":
a prefix with hundreds of stray files should not bury the errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as Mapping_
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from pydicom.datadict import keyword_for_tag

from imports.dicom import uid_problem
from imports.dicomlevels import (
    Level,
    level_of,
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
    """(code, message) for a study or series UID that breaks PS3.5 §9.1, or None; the wording is uid_problem's."""
    message = uid_problem(value)
    if message is None:
        return None
    # The same order as uid_problem, so the code always names the case its message describes.
    if value == "":
        code = "uid_empty"
    elif len(value) > 64:
        code = "uid_too_long"
    elif any(c not in "0123456789." for c in value):
        code = "uid_invalid_character"
    elif value.startswith("."):
        code = "uid_leading_dot"
    elif value.endswith("."):
        code = "uid_trailing_dot"
    elif "" in value.split("."):
        code = "uid_empty_component"
    else:
        code = "uid_leading_zero"
    return code, message


_MAX_DECODES = (
    5  # "%25252e" takes three rounds; stop before a pathological input costs anything
)


def _decoded_segments(path: str) -> list[str]:
    """The path's segments in every spelling a consumer might decode it to, percent-encoding included."""
    spellings = {path}
    current = path
    for _ in range(_MAX_DECODES):
        decoded = unquote(current)
        if decoded == current:
            break
        spellings.add(decoded)
        current = decoded
    return [
        segment for spelling in spellings for segment in re.split(r"[/\\]", spelling)
    ]


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
    if any(segment in (".", "..") for segment in _decoded_segments(value)):
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

    study, series = mapping.study_instance_uid, mapping.series_instance_uid
    if found := uid_field_problem(study):
        error("studyInstanceUID", found[0], f"StudyInstanceUID: {found[1]}")
    elif study not in index.studies:
        error(
            "studyInstanceUID",
            "study_not_in_scan",
            f"StudyInstanceUID {study} is not among the {len(index.studies):,} studies the latest scan found "
            "under the input prefix; a mapping must name a study the job imports",
        )
    if series:
        if found := uid_field_problem(series):
            error("seriesInstanceUID", found[0], f"SeriesInstanceUID: {found[1]}")
        elif study in index.studies and series not in index.studies[study]:
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


def _label(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    pair = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{keyword} {pair}" if keyword else pair


def _labels(tags: Iterable[int]) -> str:
    return ", ".join(_label(tag) for tag in tags)


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
            f"the metadata file sets {_label(STUDY_UID_TAG)} to {_shown_uid(contents.study_uids)}, "
            f"but this row maps it to study {study}; leave the attribute out or give it the mapped UID",
        )
    if contents.series_uids is not None:
        if not series:
            warning(
                "uid_changed",
                f"the metadata file sets {_label(SERIES_UID_TAG)} in a study-level mapping, which would give "
                "every series of the study the same UID; leave it out or map each series on its own row",
            )
        elif contents.series_uids != (series,):
            code = "file_names_other_series" if contents.series_uids else "uid_changed"
            warning(
                code,
                f"the metadata file sets {_label(SERIES_UID_TAG)} to {_shown_uid(contents.series_uids)}, "
                f"but this row maps it to series {series}; leave the attribute out or give it the mapped UID",
            )
    if contents.sets_sop_instance_uid:
        warning(
            "uid_changed",
            f"the metadata file sets {_label(SOP_INSTANCE_UID_TAG)}, which would give every instance it applies "
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
