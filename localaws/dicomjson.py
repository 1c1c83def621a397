"""A conservative checker for DICOM JSON Model objects (PS3.18 Annex F), as the emulated service applies it.

Deliberately independent of the dashboard's validator in `imports`: the emulator plays AWS, and a test that
compares the two must not compare a validator with itself. pydicom's `Dataset.from_json` is too lenient to serve
(unknown VRs, Value plus InlineBinary and plain-string PN all pass), so this module checks the structure itself and
uses pydicom only for the data dictionary.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.tag import Tag
from pydicom.valuerep import VR

# The VRs of PS3.5 Table 6.2-1, from pydicom (its enum also lists dictionary pairs such as "US or SS").
KNOWN_VRS = frozenset(vr.value for vr in VR if " or " not in vr.value)
INLINE_BINARY_VRS = frozenset(["OB", "OD", "OF", "OL", "OV", "OW", "UN"])
NUMBER_VRS = frozenset(["FD", "FL", "SL", "SS", "UL", "US", "SV", "UV", "IS", "DS"])
STRING_AS_NUMBER_VRS = frozenset(["IS", "DS", "SV", "UV"])
# PS3.5 table 6.2-1 maximum lengths (characters) for the string VRs.
MAX_LENGTH = {
    "AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64,
    "LT": 10240, "SH": 16, "ST": 1024, "TM": 14, "UI": 64,
}  # fmt: skip
PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
# F.2.4: a backslash cannot round-trip through these VRs.
NO_BACKSLASH_VRS = frozenset(["SH", "LO", "PN", "UC"])
UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
TAG_RE = re.compile(r"[0-9A-F]{8}")
DA_RE = re.compile(r"\d{8}")
MAX_DEPTH = 8


class InvalidDicomJson(ValueError):
    pass


def check_dataset(obj: Any, *, where: str = "", depth: int = 0) -> None:
    """Raise InvalidDicomJson naming the first problem found in a DICOM JSON dataset object."""
    if not isinstance(obj, dict):
        found = "an array" if isinstance(obj, list) else type(obj).__name__
        raise InvalidDicomJson(
            f"{where or 'the document'} must be a JSON object keyed by tag, found {found}"
        )
    if depth > MAX_DEPTH:
        raise InvalidDicomJson(
            f"{where}: sequences nested deeper than {MAX_DEPTH} levels"
        )
    for key, element in obj.items():
        path = f"{where}/{key}" if where else key
        if not isinstance(key, str) or not TAG_RE.fullmatch(key):
            raise InvalidDicomJson(
                f"key '{_clip(key)}' is not an 8-digit uppercase hexadecimal tag"
            )
        _check_element(key, element, path, depth)


def _check_element(key: str, element: Any, path: str, depth: int) -> None:
    group, elem = int(key[:4], 16), int(key[4:], 16)
    if elem == 0:
        raise InvalidDicomJson(f"{path}: group length elements must not be included")
    if group == 0x0002:
        raise InvalidDicomJson(
            f"{path}: file meta information (group 0002) does not belong in a dataset"
        )
    if not isinstance(element, dict):
        raise InvalidDicomJson(f"{path}: an attribute must be an object with a 'vr'")
    extra = set(element) - {"vr", "Value", "BulkDataURI", "InlineBinary"}
    if extra:
        raise InvalidDicomJson(
            f"{path}: unknown member(s) {', '.join(sorted(map(str, extra)))}"
        )
    vr = element.get("vr")
    if vr is None:
        raise InvalidDicomJson(f"{path}: 'vr' is required")
    if vr not in KNOWN_VRS:
        raise InvalidDicomJson(f"{path}: unknown VR '{_clip(vr)}'")
    if group % 2 == 0:
        try:
            expected = dictionary_VR(Tag(group, elem))
        except KeyError as exc:
            raise InvalidDicomJson(
                f"{path}: not a tag of the DICOM data dictionary"
            ) from exc
        allowed = {v.strip() for v in expected.split(" or ")}
        if vr not in allowed and expected not in ("NONE", ""):
            raise InvalidDicomJson(
                f"{path}: VR '{vr}' does not match the dictionary VR '{expected}'"
            )
    payloads = [k for k in ("Value", "BulkDataURI", "InlineBinary") if k in element]
    if len(payloads) > 1:
        raise InvalidDicomJson(
            f"{path}: at most one of Value, BulkDataURI and InlineBinary may be present"
        )
    if "BulkDataURI" in element:
        # Nothing could fetch the bulk data during an import, so the reference cannot be honoured.
        raise InvalidDicomJson(
            f"{path}: BulkDataURI is not supported in metadata files"
        )
    if "InlineBinary" in element:
        if vr not in INLINE_BINARY_VRS:
            raise InvalidDicomJson(f"{path}: InlineBinary is not allowed for VR {vr}")
        data = element["InlineBinary"]
        try:
            base64.b64decode(data if isinstance(data, str) else "!", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidDicomJson(f"{path}: InlineBinary is not valid base64") from exc
    if "Value" in element:
        values = element["Value"]
        if not isinstance(values, list):
            raise InvalidDicomJson(
                f"{path}: 'Value' must be an array, even for a single value"
            )
        if vr in INLINE_BINARY_VRS:
            raise InvalidDicomJson(
                f"{path}: binary VR {vr} takes InlineBinary, not Value"
            )
        for i, value in enumerate(values):
            _check_value(vr, value, f"{path}[{i}]", depth)


def _check_value(vr: str, value: Any, path: str, depth: int) -> None:
    if value is None:
        return
    if vr == "SQ":
        check_dataset(value, where=path, depth=depth + 1)
    elif vr == "PN":
        if not isinstance(value, dict):
            raise InvalidDicomJson(
                f"{path}: a PN value must be an object with Alphabetic, Ideographic or Phonetic"
            )
        unknown = set(value) - set(PN_GROUPS)
        if unknown or not value:
            raise InvalidDicomJson(
                f"{path}: a PN value may only hold Alphabetic, Ideographic and Phonetic"
            )
        for group_name, text in value.items():
            if not isinstance(text, str):
                raise InvalidDicomJson(f"{path}.{group_name}: must be a string")
            if len(text) > 64:
                raise InvalidDicomJson(
                    f"{path}.{group_name}: longer than 64 characters"
                )
            if "\\" in text:
                raise InvalidDicomJson(f"{path}.{group_name}: contains a backslash")
    elif vr in NUMBER_VRS:
        if isinstance(value, bool):
            raise InvalidDicomJson(f"{path}: must be a number")
        if isinstance(value, str) and vr in STRING_AS_NUMBER_VRS:
            _check_numeric_string(vr, value, path)
        elif not isinstance(value, int | float):
            raise InvalidDicomJson(f"{path}: must be a number")
    elif vr == "AT":
        if not isinstance(value, str) or not TAG_RE.fullmatch(value):
            raise InvalidDicomJson(
                f"{path}: an AT value must be an 8-digit uppercase hexadecimal tag"
            )
    else:
        if not isinstance(value, str):
            raise InvalidDicomJson(f"{path}: a {vr} value must be a string")
        limit = MAX_LENGTH.get(vr)
        if limit is not None and len(value) > limit:
            raise InvalidDicomJson(
                f"{path}: longer than {limit} characters, the maximum for VR {vr}"
            )
        if vr in NO_BACKSLASH_VRS and "\\" in value:
            raise InvalidDicomJson(f"{path}: contains a backslash")
        if vr == "UI" and not UID_RE.fullmatch(value):
            raise InvalidDicomJson(f"{path}: not a valid UID")
        if vr == "DA" and not DA_RE.fullmatch(value):
            raise InvalidDicomJson(f"{path}: a DA value must be YYYYMMDD")


def _check_numeric_string(vr: str, value: str, path: str) -> None:
    limit = MAX_LENGTH.get(vr)
    if limit is not None and len(value) > limit:
        raise InvalidDicomJson(
            f"{path}: longer than {limit} characters, the maximum for VR {vr}"
        )
    try:
        float(value) if vr == "DS" else int(value)
    except ValueError as exc:
        raise InvalidDicomJson(
            f"{path}: '{_clip(value)}' is not a valid {vr} number"
        ) from exc


def _clip(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
