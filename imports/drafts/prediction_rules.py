"""The prediction's comparison, pure (no Django, no AWS): which attributes decide a fork, how values normalize,
and where GetImageSetMetadata's document keeps them. imports.drafts.prediction explains the UNVERIFIED choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# keyword -> (tag, VR), in the order a page lists them.
COMPARED: dict[str, tuple[int, str]] = {
    "PatientID": (0x00100020, "LO"),
    "PatientName": (0x00100010, "PN"),
    "PatientBirthDate": (0x00100030, "DA"),
    "PatientSex": (0x00100040, "CS"),
    "StudyDate": (0x00080020, "DA"),
    "AccessionNumber": (0x00080050, "SH"),
    "StudyID": (0x00200010, "SH"),
    "StudyDescription": (0x00081030, "LO"),
    "SeriesNumber": (0x00200011, "IS"),
    "Modality": (0x00080060, "CS"),
}
KEYWORD_OF_TAG = {tag: keyword for keyword, (tag, _) in COMPARED.items()}


def normalize(keyword: str, value: Any) -> str:
    """A value as the comparison sees it: text, trailing spaces and NUL padding gone, person names canonical."""
    if value is None:
        return ""
    if isinstance(value, dict):
        # A DICOM JSON PN object.
        groups = [
            str(value.get(g, "")) for g in ("Alphabetic", "Ideographic", "Phonetic")
        ]
        value = "=".join(groups)
    if isinstance(value, (list, tuple)):
        return "\\".join(normalize(keyword, v) for v in value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).rstrip(" \0")
    if COMPARED.get(keyword, (0, ""))[1] == "PN":
        return _person_name(text)
    if COMPARED.get(keyword, (0, ""))[1] == "IS":
        try:
            return str(int(text.strip()))
        except ValueError:
            return text.strip()
    return text


def _person_name(text: str) -> str:
    groups = []
    for group in text.split("="):
        components = [c.strip(" \0") for c in group.split("^")]
        while components and not components[-1]:
            components.pop()
        groups.append("^".join(components))
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def attributes_differ(
    imported: Mapping[str, Any], stored: Mapping[str, Any]
) -> list[str]:
    """The keywords whose normalized values differ; keywords `imported` does not know are not compared."""
    differing = []
    for keyword in COMPARED:
        if keyword not in imported:
            continue
        mine = normalize(keyword, imported[keyword])
        theirs = normalize(keyword, stored.get(keyword))
        if COMPARED[keyword][1] == "PN" and "=" not in theirs:
            mine = mine.split("=")[0]
        if mine != theirs:
            differing.append(keyword)
    return differing


def stored_attributes(document: Mapping[str, Any], series_uid: str) -> dict[str, Any]:
    """The COMPARED values of GetImageSetMetadata's document for one series: series, then study, then patient."""
    levels: list[Any] = []
    study = document.get("Study") or {}
    series_map = (
        (study.get("Series") if isinstance(study, dict) else None)
        or document.get("Series")
        or {}
    )
    series = series_map.get(series_uid) if isinstance(series_map, dict) else None
    for level in (series, study, document.get("Patient")):
        if isinstance(level, dict) and isinstance(level.get("DICOM"), dict):
            levels.append(level["DICOM"])
    found: dict[str, Any] = {}
    for keyword in COMPARED:
        for level in levels:
            if keyword in level:
                found[keyword] = level[keyword]
                break
    return found


def series_in_document(document: Mapping[str, Any]) -> list[str]:
    study = document.get("Study") or {}
    series_map = (
        (study.get("Series") if isinstance(study, dict) else None)
        or document.get("Series")
        or {}
    )
    return [str(uid) for uid in series_map] if isinstance(series_map, dict) else []
