"""The verification's comparison, pure (no Django, no AWS): what a metadata file sets, where GetImageSetMetadata's
document keeps it, how two values compare, and what an import did to a series. imports.jobs.verification runs it;
its module docstring lists the UNVERIFIED choices made here.
"""

from __future__ import annotations

from typing import Any

from imports.dicom.levels import level_of
from imports.dicom.tags import tag_keyword

# The mapping's own keys: HealthImaging files the instances by them, so they are not overrides to check.
KEY_TAGS = frozenset({0x0020000D, 0x0020000E})


def value_text(value: Any) -> str:
    """A DICOM JSON Value or a stored metadata value as the comparison sees it (see the module's notes)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        # A DICOM JSON PN object: the stored metadata keeps its alphabetic group.
        return value_text(value.get("Alphabetic"))
    if isinstance(value, (list, tuple)):
        return "\\".join(value_text(v) for v in value).rstrip("\\")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).rstrip(" \0")


def file_overrides(document: Any) -> list[tuple[str, str, str]]:
    """The (level, keyword, expected text) a metadata file sets; sequences, binary values and UIDs left out."""
    found: list[tuple[str, str, str]] = []
    if not isinstance(document, dict):
        return found
    for key, attribute in document.items():
        try:
            tag = int(key, 16)
        except ValueError:
            continue
        if tag in KEY_TAGS or not isinstance(attribute, dict):
            continue
        if attribute.get("vr") == "SQ" or "InlineBinary" in attribute:
            continue
        if "BulkDataURI" in attribute:
            continue
        level = level_of(tag) or "series"
        keyword = tag_keyword(tag)
        if level == "instance" or not keyword:
            continue
        found.append((level, keyword, value_text(attribute.get("Value"))))
    return found


def stored_level(
    document: dict[str, Any], level: str, series_uid: str
) -> dict[str, Any]:
    """The DICOM member of GetImageSetMetadata's document at one level ({} when it has none)."""
    study = document.get("Study") if isinstance(document.get("Study"), dict) else {}
    if level == "patient":
        holder = document.get("Patient")
    elif level == "study":
        holder = study
    else:
        series_map = study.get("Series") if isinstance(study, dict) else None
        holder = series_map.get(series_uid) if isinstance(series_map, dict) else None
    dicom = holder.get("DICOM") if isinstance(holder, dict) else None
    return dicom if isinstance(dicom, dict) else {}


def observed_outcome(
    *,
    is_primary: bool | None,
    version: int | None,
    image_set_id: str,
    predicted: dict[str, Any],
) -> str | None:
    """What an import did to a series, from its result lines; None when they do not say."""
    if is_primary is None:
        return None
    if not is_primary:
        return "non_primary"
    if predicted.get("image_set_id") and predicted["image_set_id"] == image_set_id:
        return "adds_to"
    if version is None:
        return None
    return "new" if version == 1 else "adds_to"
