"""The UID rules: DICOM's (PS3.5 §9.1), and the looser one HealthImaging applies to mapping UIDs.

`uid_problem` says exactly what is wrong by DICOM's rules, quoting the offending characters or component, for UIDs
that may be shown. `uid_problem_unquoted` gives the same verdict without any part of the value, for values that only
claim to be UIDs and may hold patient data. `uid_service_problem` says what StartDICOMImportJob itself refuses in a
mapping's studyInstanceUID or seriesInstanceUID: real archives hold UIDs that break DICOM's rules (a leading zero,
more than 64 characters), and HealthImaging imports them.
"""

from __future__ import annotations

import re

_UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")

DICOM_UID_MAX_LENGTH = 64

# HealthImaging's rule for mapping UIDs, as botocore's medical-imaging model (2023-07-19) states it in the shapes
# DICOMStudyInstanceUID and DICOMSeriesInstanceUID: pattern `[0-9.]+`, length 0 to 512 (the pattern makes it at
# least 1). It was loosened step by step, from strict DICOM (botocore 1.34.77) to this (1.42.81). This package may
# not import botocore, so the values are written here; tests/dicom/test_uid_service_rule.py reads the installed model
# and fails when they drift from it.
SERVICE_UID_PATTERN = "[0-9.]+"
SERVICE_UID_MAX_LENGTH = 512
_SERVICE_UID_RE = re.compile(SERVICE_UID_PATTERN)
# What HealthImaging imports from the files themselves: StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID of at
# most 256 characters (its "DICOM element constraints"); a file with a longer one fails the import.
IMPORT_UID_MAX_LENGTH = 256


def uid_service_problem(uid: str) -> str | None:
    """Say why HealthImaging would refuse this mapping UID, or return None when the service accepts it."""
    if uid == "":
        return "UID is empty"
    if len(uid) > SERVICE_UID_MAX_LENGTH:
        return f"UID is {len(uid)} characters long; HealthImaging accepts at most {SERVICE_UID_MAX_LENGTH}"
    if _SERVICE_UID_RE.fullmatch(uid):
        return None
    return _bad_characters(uid)


def _bad_characters(uid: str) -> str:
    shown = ", ".join(
        repr(c) for c in sorted({c for c in uid if c not in "0123456789."})
    )
    return f"UID contains {shown}; only digits 0-9 and '.' are allowed"


def uid_problem(uid: str) -> str | None:
    """Say what is wrong with a DICOM UID (PS3.5 §9.1), or return None when it is valid."""
    if uid == "":
        return "UID is empty"
    if len(uid) > DICOM_UID_MAX_LENGTH:
        return (
            f"UID is {len(uid)} characters long; the maximum is {DICOM_UID_MAX_LENGTH}"
        )
    if _UID_RE.fullmatch(uid):  # not match: its $ also matches before a final newline
        return None
    if any(c not in "0123456789." for c in uid):
        return _bad_characters(uid)
    if uid.startswith("."):
        return "UID starts with '.'; it must start with a digit"
    if uid.endswith("."):
        return "UID ends with '.'; it must end with a digit"
    for component in uid.split("."):
        if component == "":
            return "UID has an empty component ('..'); components are separated by a single '.'"
        if len(component) > 1 and component.startswith("0"):
            return f"UID component '{component}' has a leading zero; only the component '0' may start with 0"
    return "UID is not a valid DICOM UID"  # pragma: no cover - every failing case is named above


def uid_problem_unquoted(uid: str) -> str | None:
    """uid_problem's verdict without any part of the value: for UI-declared values that may hold patient data."""
    problem = uid_problem(uid)
    if problem is None:
        return None
    if problem.startswith("UID contains"):
        return "UID contains characters other than digits 0-9 and '.'"
    if problem.startswith("UID component"):
        return "a UID component has a leading zero; only the component '0' may start with 0"
    return problem  # the remaining messages name lengths and dots only
