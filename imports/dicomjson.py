"""Check DICOM JSON metadata files (PS3.18 Annex F) before an import job uses them.

pydicom's `Dataset.from_json` accepts keyword keys, unknown VRs, Value together with InlineBinary, plain-string PN
values and invalid UIDs; HealthImaging is stricter and fails the whole file. This validator rejects all of them, and
every message names what is wrong and what is allowed, because an administrator has to fix the file by hand.

Messages never quote an attribute's value, because metadata files carry patient data and the messages are stored,
shown and logged. They name the element (keyword and (gggg,eeee)), the VR, lengths and counts instead. The one
exception is a UID in an element whose dictionary VR is UI outside the patient group: UIDs are not treated as PHI, and
seeing the offending component is what makes "leading zero" fixable.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import (
    dictionary_VM,
    dictionary_VR,
    keyword_for_tag,
    tag_for_keyword,
)
from pydicom.dataset import Dataset
from pydicom.valuerep import VR

from imports.dicom import uid_problem
from imports.units import bytes_format

DEFAULT_MAX_BYTES = 1024 * 1024
# Arrays and objects nested deeper than this are refused before they are checked. A nested sequence costs 3 levels
# (attribute object, Value array, item object), so this allows 33 levels of sequences; real files use a handful.
MAX_DEPTH = 100
_TOO_DEEP = (
    f"nested too deeply: arrays and objects may nest at most {MAX_DEPTH} levels "
    "(each nested sequence takes 3)"
)
_PATIENT_GROUP = 0x0010
_FILE_META_GROUP = 0x0002
_PIXEL_DATA_TAGS = {
    0x7FE00008: "float pixel data",
    0x7FE00009: "double float pixel data",
    0x7FE00010: "pixel data",
}

# The VRs of PS3.5 Table 6.2-1, from pydicom (its enum also lists dictionary pairs such as "US or SS").
VRS = frozenset(vr.value for vr in VR if " or " not in vr.value)
INLINE_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_MEMBERS = ("vr", "Value", "BulkDataURI", "InlineBinary")
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")

# PS3.5 table 6.2-1, in characters; None means no limit worth checking here.
MAX_LENGTH: dict[str, int | None] = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "LT": 10240,
    "PN": 64,
    "SH": 16,
    "ST": 1024,
    "TM": 14,
    "UI": 64,
    "UC": None,
    "UR": None,
    "UT": None,
}
# Text VRs whose values may hold a backslash, because their VM is always 1.
_BACKSLASH_OK = frozenset({"LT", "ST", "UT", "UR"})
_TEXT_CONTROL_OK = frozenset({"LT", "ST", "UT"})
_INT_RANGES: dict[str, tuple[int, int]] = {
    "US": (0, 2**16 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "UL": (0, 2**32 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UV": (0, 2**64 - 1),
    "SV": (-(2**63), 2**63 - 1),
    "IS": (-(2**31), 2**31 - 1),
}

_TAG_RE = re.compile(r"[0-9A-F]{8}")
_ANY_CASE_TAG_RE = re.compile(r"[0-9A-Fa-f]{8}")
_PAIR_TAG_RE = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?")
_DS_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_IS_RE = re.compile(r"[+-]?\d+")
_CS_RE = re.compile(r"[A-Z0-9 _]*")
_AS_RE = re.compile(r"\d{3}[DWMY]")
_TM_RE = re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?")
_DT_RE = re.compile(
    r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?"
)
_VM_RE = re.compile(r"(\d+)(?:-(\d+)?(n)?)?")


@dataclass(frozen=True)
class JsonIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class DicomJsonCheck:
    """The verdict on one file.

    `document` is the parsed top-level object whenever the text parsed to an object, valid or not, so callers can
    keep it instead of reading the file again. It is None for anything else (an array, a scalar, text that is not
    JSON, a file over the size limit) and for an object nested deeper than MAX_DEPTH, which callers should not have
    to walk.
    """

    errors: list[JsonIssue] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)
    series_uids: list[str] = field(default_factory=list)
    document: dict[str, Any] | None = None

    @property
    def is_valid(self) -> bool:
        return not self.errors


class _Object(dict[str, Any]):
    """A JSON object that remembers keys the text repeated (json.loads would keep only the last)."""

    duplicates: list[str]


def _object_hook(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; use null for an empty value")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _string_kind(value: str) -> str:
    return f"a string of {len(value)} character{'s' if len(value) != 1 else ''}"


def _tag_label(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    pair = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{keyword} {pair}" if keyword else pair


def _may_quote_uid(tag: int, vr: str) -> bool:
    """Whether a UI value may be quoted: a real UID element (dictionary VR UI), not a patient or private one."""
    return vr == "UI" and tag >> 16 != _PATIENT_GROUP and _dictionary_vr(tag) == "UI"


def _too_deep(top: Any) -> bool:
    # Iterative on purpose: the point is to stay clear of the recursion limit.
    stack: list[tuple[Any, int]] = [(top, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, (dict, list))
        )
    return False


def validate_dicom_json(
    data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> DicomJsonCheck:
    """Check one DICOM JSON object as the import would need it; never raises for bad input."""
    errors: list[JsonIssue] = []
    size = (
        len(data)
        if isinstance(data, bytes)
        else len(data.encode("utf-8", "surrogatepass"))
    )
    if size > max_bytes:
        errors.append(
            JsonIssue(
                "",
                f"file is {bytes_format(size)}; metadata files are read up to {bytes_format(max_bytes)} only",
            )
        )
        return DicomJsonCheck(errors=errors)
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            errors.append(
                JsonIssue(
                    "",
                    "file starts with a UTF-8 byte order mark; save it as UTF-8 without BOM",
                )
            )
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = data[exc.start]
            errors.append(
                JsonIssue(
                    "", f"not valid UTF-8: byte 0x{bad:02X} at offset {exc.start:,}"
                )
            )
            return DicomJsonCheck(errors=errors)
    else:
        text = data
    if text.strip(" \t\n\r") == "":
        errors.append(
            JsonIssue(
                "",
                ("file is empty" if text == "" else "file holds only whitespace")
                + "; a metadata file holds one DICOM JSON object",
            )
        )
        return DicomJsonCheck(errors=errors)
    try:
        top = json.loads(
            text, object_pairs_hook=_object_hook, parse_constant=_reject_constant
        )
    except RecursionError:
        # json's C scanner gives up near the interpreter's recursion limit (about 1,000 levels).
        errors.append(JsonIssue("", _TOO_DEEP))
        return DicomJsonCheck(errors=errors)
    except json.JSONDecodeError as exc:
        errors.append(
            JsonIssue(
                "", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            )
        )
        return DicomJsonCheck(errors=errors)
    except ValueError as exc:
        errors.append(JsonIssue("", str(exc)))
        return DicomJsonCheck(errors=errors)
    return _check_top(top, errors)


def _check_top(top: Any, errors: list[JsonIssue]) -> DicomJsonCheck:
    if isinstance(top, list):
        errors.append(
            JsonIssue("", f"expected one DICOM JSON object, got an array of {len(top)}")
        )
        return DicomJsonCheck(errors=errors)
    if not isinstance(top, dict):
        errors.append(
            JsonIssue("", f"expected one DICOM JSON object, got {_type_name(top)}")
        )
        return DicomJsonCheck(errors=errors)
    if _too_deep(top):
        errors.append(JsonIssue("", _TOO_DEEP))
        return DicomJsonCheck(errors=errors)
    _check_dataset(top, "", errors)
    studies = _uid_values(top.get("0020000D"))
    series = _uid_values(top.get("0020000E"))
    for uid in sorted(set(studies) & set(series)):
        shown = f"UID {uid}" if uid_problem(uid) is None else "the same value"
        errors.append(
            JsonIssue(
                "0020000E",
                f"{shown} names both the study and the series; they must differ",
            )
        )
    return DicomJsonCheck(
        errors=errors, study_uids=studies, series_uids=series, document=top
    )


def _uid_values(attr: Any) -> list[str]:
    if not isinstance(attr, dict) or not isinstance(attr.get("Value"), list):
        return []
    return [v for v in attr["Value"] if isinstance(v, str)]


def _check_dataset(
    obj: Mapping[str, Any], prefix: str, errors: list[JsonIssue]
) -> None:
    for key in getattr(obj, "duplicates", []):
        errors.append(
            JsonIssue(prefix + key, "key appears more than once in the same object")
        )
    for key, attr in obj.items():
        path = prefix + key
        tag = _check_key(key, path, errors)
        if tag is None:
            continue
        if not isinstance(attr, dict):
            errors.append(
                JsonIssue(
                    path,
                    f"attribute must be an object with 'vr' and at most one value member; got {_type_name(attr)}",
                )
            )
            continue
        _check_attribute(tag, attr, path, errors)


def _check_key(key: str, path: str, errors: list[JsonIssue]) -> int | None:
    if not _TAG_RE.fullmatch(key):
        keyword_tag = tag_for_keyword(key)
        pair = _PAIR_TAG_RE.fullmatch(key)
        if _ANY_CASE_TAG_RE.fullmatch(key):
            hint = f"tag keys use uppercase hex: '{key.upper()}'"
        elif keyword_tag is not None:
            hint = f"keyword keys are not allowed; use the tag '{keyword_tag:08X}'"
        elif pair:
            hint = f"write the tag as 8 hex digits without punctuation: '{(pair[1] + pair[2]).upper()}'"
        else:
            hint = "keys are tags written as 8 uppercase hex digits, such as '0020000D'"
        errors.append(JsonIssue(path, f"'{key}' is not a valid key; {hint}"))
        return None
    tag = int(key, 16)
    if tag & 0xFFFF == 0:
        errors.append(
            JsonIssue(
                path,
                f"{_tag_label(tag)} is a group length; "
                "group length elements (gggg0000) must not be included in DICOM JSON",
            )
        )
        return None
    if tag >> 16 == _FILE_META_GROUP:
        errors.append(
            JsonIssue(
                path,
                f"{_tag_label(tag)} is file meta information (group 0002), which belongs to the "
                "P10 file header; DICOM JSON metadata must not include group 0002",
            )
        )
        return None
    if tag in _PIXEL_DATA_TAGS:
        errors.append(
            JsonIssue(
                path,
                f"{_tag_label(tag)} is {_PIXEL_DATA_TAGS[tag]}; a metadata file carries attributes only, "
                "the pixel data comes from the DICOM P10 files",
            )
        )
        return None
    return tag


def _dictionary_vr(tag: int) -> str | None:
    if (tag >> 16) % 2:
        return None  # private: no dictionary to hold it to
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _check_attribute(
    tag: int, attr: Mapping[str, Any], path: str, errors: list[JsonIssue]
) -> None:
    for member in attr:
        if member not in _MEMBERS:
            errors.append(
                JsonIssue(
                    f"{path}.{member}",
                    f"unknown member; allowed: {', '.join(_MEMBERS)}",
                )
            )
    vr = attr.get("vr")
    if vr is None:
        errors.append(JsonIssue(path, "'vr' is required"))
        return
    if not isinstance(vr, str) or vr not in VRS:
        # A VR is two letters; anything longer is not worth echoing and might be data typed into the wrong place.
        shown = (
            json.dumps(vr)
            if isinstance(vr, str)
            and len(vr) <= 2
            and vr.isascii()
            and vr.isprintable()
            else _string_kind(vr)
            if isinstance(vr, str)
            else _type_name(vr)
        )
        errors.append(
            JsonIssue(
                f"{path}.vr",
                f"{shown} is not a DICOM VR; use one of {', '.join(sorted(VRS))}",
            )
        )
        return
    expected = _dictionary_vr(tag)
    vr_matches = expected is None or vr in expected.split(" or ")
    if not vr_matches:
        errors.append(
            JsonIssue(
                f"{path}.vr",
                f"VR '{vr}' does not match the data dictionary: {_tag_label(tag)} is {expected}",
            )
        )

    present = [m for m in ("Value", "BulkDataURI", "InlineBinary") if m in attr]
    if len(present) > 1:
        errors.append(
            JsonIssue(
                path,
                f"has {' and '.join(present)}; at most one of Value, BulkDataURI, InlineBinary is allowed",
            )
        )
    if "BulkDataURI" in attr:
        errors.append(
            JsonIssue(
                f"{path}.BulkDataURI",
                "BulkDataURI is not supported: the import cannot fetch bulk data from a URI; "
                "embed the value as InlineBinary (base64) or Value",
            )
        )
    if "InlineBinary" in attr:
        _check_inline_binary(vr, attr["InlineBinary"], f"{path}.InlineBinary", errors)
    if "Value" in attr:
        _check_values(
            tag, vr, attr["Value"], f"{path}.Value", errors, check_vm=vr_matches
        )


def _check_inline_binary(
    vr: str, value: Any, path: str, errors: list[JsonIssue]
) -> None:
    if vr not in INLINE_BINARY_VRS:
        errors.append(
            JsonIssue(
                path,
                f"InlineBinary is only allowed for {', '.join(sorted(INLINE_BINARY_VRS))}, not {vr}",
            )
        )
        return
    if not isinstance(value, str):
        errors.append(
            JsonIssue(
                path, f"InlineBinary must be a base64 string; got {_type_name(value)}"
            )
        )
        return
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        errors.append(JsonIssue(path, f"InlineBinary is not valid base64 ({exc})"))


def _vm_problem(tag: int, count: int) -> str | None:
    try:
        vm = str(dictionary_VM(tag))
    except KeyError:
        return None
    match = _VM_RE.fullmatch(vm)
    if not match or count == 0:
        return None
    low = int(match[1])
    high = int(match[2]) if match[2] else None
    if match[3]:  # "1-n", "2-2n", "3-3n": at least `low`, in steps of `step`
        step = high or 1
        ok = count >= low and count % step == 0
    elif high is not None:
        ok = low <= count <= high
    else:
        ok = count == low
    if ok:
        return None
    return (
        f"{_tag_label(tag)} takes VM {vm}; got {count} value{'s' if count != 1 else ''}"
    )


def _check_values(
    tag: int,
    vr: str,
    values: Any,
    path: str,
    errors: list[JsonIssue],
    *,
    check_vm: bool,
) -> None:
    label = _tag_label(tag)
    if not isinstance(values, list):
        errors.append(
            JsonIssue(
                path,
                f"{label}: Value must be an array, even for a single value; got {_type_name(values)}",
            )
        )
        return
    if vr in INLINE_BINARY_VRS:
        errors.append(
            JsonIssue(
                path,
                f"{label}: {vr} data cannot be given as Value; put it in InlineBinary as base64",
            )
        )
        return
    if check_vm and vr != "SQ" and (problem := _vm_problem(tag, len(values))):
        errors.append(JsonIssue(path, problem))
    for i, value in enumerate(values):
        _check_value(tag, vr, value, f"{path}[{i}]", errors)


def _check_value(
    tag: int, vr: str, value: Any, path: str, errors: list[JsonIssue]
) -> None:
    label = _tag_label(tag)
    if vr == "SQ":
        if isinstance(value, dict):
            _check_dataset(value, path + ".", errors)
        else:
            errors.append(
                JsonIssue(
                    path,
                    f"{label}: sequence items must be objects ({{}} for an empty item); got {_type_name(value)}",
                )
            )
        return
    if value is None:
        return  # PS3.18 F.2.5: an empty value inside an array
    if vr == "PN":
        _check_pn(label, value, path, errors)
        return
    if vr in ("DS", "IS", "SV", "UV"):
        problem = _number_string_problem(vr, value)
    elif vr in ("US", "SS", "UL", "SL"):
        problem = _int_problem(vr, value)
    elif vr in ("FL", "FD"):
        problem = (
            f"{vr} values must be JSON numbers; got {_type_name(value)}"
            if isinstance(value, bool) or not isinstance(value, (int, float))
            else None
        )
    elif vr == "AT":
        problem = (
            None
            if isinstance(value, str) and _TAG_RE.fullmatch(value)
            else "AT values are tags written as 8 uppercase hex digits, such as '00100010'; "
            f"got {_string_kind(value) if isinstance(value, str) else _type_name(value)}"
        )
    elif not isinstance(value, str):
        problem = f"{vr} values must be strings; got {_type_name(value)}"
    else:
        problem = _string_problem(vr, value, quote_uid=_may_quote_uid(tag, vr))
    if problem:
        errors.append(JsonIssue(path, f"{label}: {problem}"))


def _check_pn(label: str, value: Any, path: str, errors: list[JsonIssue]) -> None:
    if not isinstance(value, dict):
        errors.append(
            JsonIssue(
                path,
                f"{label} must be an object with Alphabetic, Ideographic or Phonetic "
                f'(PN values are objects such as {{"Alphabetic": "Doe^John"}}); got {_type_name(value)}',
            )
        )
        return
    for group, text in value.items():
        if group not in _PN_GROUPS:
            errors.append(
                JsonIssue(
                    f"{path}.{group}",
                    f"{label}: unknown PN component group; allowed: {', '.join(_PN_GROUPS)}",
                )
            )
        elif not isinstance(text, str):
            errors.append(
                JsonIssue(
                    f"{path}.{group}",
                    f"{label}: PN component groups are strings; got {_type_name(text)}",
                )
            )
        else:
            problem = _string_problem("PN", text, quote_uid=False)
            if problem is None and text.count("^") > 4:
                problem = "a person name has at most 5 components separated by '^'"
            if problem:
                errors.append(JsonIssue(f"{path}.{group}", f"{label}: {problem}"))


def _int_problem(vr: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{vr} values must be whole JSON numbers; got {_type_name(value)}"
    low, high = _INT_RANGES[vr]
    if not low <= value <= high:
        return f"value is out of range for {vr} ({low} to {high})"
    return None


def _number_string_problem(vr: str, value: Any) -> str | None:
    """DS, IS, SV and UV may be JSON numbers or strings (PS3.18 F.2.3)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return (
            f"{vr} values must be numbers or numeric strings; got {_type_name(value)}"
        )
    if isinstance(value, str):
        text = value.strip(" ")
        if text == "":
            return f"an empty string is not a valid {vr}; use null for an empty value"
        limit = MAX_LENGTH.get(vr)
        if limit is not None and len(value) > limit:
            return f"{vr} is at most {limit} characters; this value has {len(value)}"
        if vr == "DS":
            if not _DS_RE.fullmatch(text):
                return "value is not a decimal number (DS allows digits, sign, '.', exponent)"
            return None
        if not _IS_RE.fullmatch(text):
            return f"value is not an integer ({vr} allows digits and a sign)"
        number: int | float = int(text)
    else:
        number = value
    if vr == "DS":
        if not math.isfinite(
            number
        ):  # pragma: no cover - json never yields it: constants are rejected
            return "DS must be a finite number"
        return None
    if isinstance(number, float):
        if not number.is_integer():
            return f"value is not a whole number; {vr} holds integers only"
        number = int(number)
    low, high = _INT_RANGES[vr]
    if not low <= number <= high:
        return f"value is out of range for {vr} ({low} to {high})"
    return None


def _string_problem(vr: str, value: str, *, quote_uid: bool) -> str | None:
    # Format problems first: "DA is YYYYMMDD" helps more than "DA is at most 8 characters".
    if vr == "UI":
        return uid_problem(value) if quote_uid else _unquoted_uid_problem(value)
    if vr == "DA" and (problem := _date_problem(value)):
        return problem
    if vr == "TM" and value and not _TM_RE.fullmatch(value.rstrip(" ")):
        return "value is not a valid time; TM is HH, HHMM, HHMMSS or HHMMSS.FFFFFF"
    if vr == "DT" and value and not _DT_RE.fullmatch(value.rstrip(" ")):
        return "value is not a valid date-time; DT is YYYYMMDDHHMMSS.FFFFFF with an optional +HHMM offset"
    if vr == "AS" and not _AS_RE.fullmatch(value):
        return "value is not a valid age; AS is three digits then D, W, M or Y, such as '045Y'"
    if vr == "CS" and not _CS_RE.fullmatch(value):
        return "value is not a valid CS; CS allows uppercase letters, digits, space and underscore"
    limit = MAX_LENGTH.get(vr)
    if limit is not None and len(value) > limit:
        what = f"{vr} is at most {limit} characters" + (
            " per component group" if vr == "PN" else ""
        )
        return f"{what}; this value has {len(value)}"
    if vr not in _BACKSLASH_OK and "\\" in value:
        return "contains a backslash, which DICOM uses to separate values; give each value its own array entry"
    allowed_controls = "\t\n\r\f\x1b" if vr in _TEXT_CONTROL_OK else "\x1b"
    bad = sorted({c for c in value if ord(c) < 0x20 and c not in allowed_controls})
    if bad:
        names = ", ".join(f"U+{ord(c):04X}" for c in bad)
        return f"contains control character{'s' if len(bad) > 1 else ''} {names}, which {vr} does not allow"
    return None


def _unquoted_uid_problem(uid: str) -> str | None:
    """uid_problem's verdict without any part of the value: for UI-declared values that may hold patient data."""
    problem = uid_problem(uid)
    if problem is None:
        return None
    if problem.startswith("UID contains"):
        return "UID contains characters other than digits 0-9 and '.'"
    if problem.startswith("UID component"):
        return "a UID component has a leading zero; only the component '0' may start with 0"
    return problem  # the remaining messages name lengths and dots only


def _date_problem(value: str) -> str | None:
    if value == "":
        return None
    if not re.fullmatch(r"\d{8}", value):
        return "value is not a DICOM date; DA is YYYYMMDD, such as '20240131'"
    try:
        datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return "value is not a calendar date (DA is YYYYMMDD)"
    return None


def dataset_from_dicom_json(obj: Mapping[str, Any] | str | bytes) -> Dataset:
    """Build a pydicom Dataset from DICOM JSON that passes validate_dicom_json; raise ValueError otherwise."""
    if isinstance(obj, (str, bytes)):
        check = validate_dicom_json(obj, max_bytes=1 << 62)
        parsed: Any = check.document
    else:
        check = _check_top(obj, [])
        parsed = obj
    if not check.is_valid:
        shown = "; ".join(str(e) for e in check.errors[:5])
        more = f" (and {len(check.errors) - 5} more)" if len(check.errors) > 5 else ""
        raise ValueError(f"not valid DICOM JSON: {shown}{more}")
    return Dataset.from_json(dict(parsed))


# --- One attribute at a time, for the metadata editor ------------------------------------------


def check_element(key: str, attribute: Any) -> list[JsonIssue]:
    """The verdict on one top-level attribute, with exactly the rules a whole file is held to.

    The editor checks each row as it is typed; a file assembled from rows that each pass here passes
    validate_dicom_json too (bar the cross-attribute rules, which the editor checks on the whole document).
    """
    errors: list[JsonIssue] = []
    tag = _check_key(key, key, errors)
    if tag is None:
        return errors
    if not isinstance(attribute, dict):
        errors.append(
            JsonIssue(key, f"attribute must be an object; got {_type_name(attribute)}")
        )
        return errors
    _check_attribute(tag, attribute, key, errors)
    return errors


def dictionary_vr(tag: int) -> str | None:
    """The data dictionary's VR for a tag ("US or SS" for some), or None for private and unknown tags."""
    return _dictionary_vr(tag)


def tag_label(tag: int) -> str:
    """'SeriesDescription (0008,103E)', or '(0009,1001)' for a tag without a keyword."""
    return _tag_label(tag)


def key_problem(tag: int) -> str | None:
    """Why a tag may not appear in a metadata file at all (group length, file meta, pixel data), or None."""
    errors: list[JsonIssue] = []
    _check_key(f"{tag:08X}", "", errors)
    return errors[0].message if errors else None
