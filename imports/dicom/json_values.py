"""The per-value rules of DICOM JSON (PS3.18 Annex F, PS3.5 §6.2): what one value of a VR may hold.

Each check returns None for a good value or a message saying what is wrong and what is allowed; `json_model`
attaches the message to the element's path. Messages name VRs, lengths, counts and ranges, never the value itself:
metadata files carry patient data, and UIDs that break the rules are described without any part of them.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import re
from typing import Any

from pydicom.datadict import dictionary_VM

from imports.dicom.tags import TAG_KEY_RE, tag_label
from imports.dicom.uids import uid_problem, uid_problem_unquoted

INLINE_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

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
# A JSON number beyond a double (1e999) parses as infinity, which JSON itself cannot write back.
_NOT_FINITE = "value is beyond the range of a double (about ±1.8e308); {vr} values must be finite numbers"
_DS_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_IS_RE = re.compile(r"[+-]?\d+")
_CS_RE = re.compile(r"[A-Z0-9 _]*")
_AS_RE = re.compile(r"\d{3}[DWMY]")
_TM_RE = re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?")
_DT_RE = re.compile(
    r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?"
)
_VM_RE = re.compile(r"(\d+)(?:-(\d+)?(n)?)?")


def type_name(value: Any) -> str:
    """What kind of JSON value this is, for messages that must not quote it."""
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


def string_kind(value: str) -> str:
    """A string described by its length only, for messages that must not quote it."""
    return f"a string of {len(value)} character{'s' if len(value) != 1 else ''}"


def vm_problem(tag: int, count: int) -> str | None:
    """Whether `count` values fit the dictionary VM of a tag ("1-n", "2-2n", ...); None when they do or it is unknown."""
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
        f"{tag_label(tag)} takes VM {vm}; got {count} value{'s' if count != 1 else ''}"
    )


def int_problem(vr: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{vr} values must be whole JSON numbers; got {type_name(value)}"
    low, high = _INT_RANGES[vr]
    if not low <= value <= high:
        return f"value is out of range for {vr} ({low} to {high})"
    return None


def number_string_problem(vr: str, value: Any) -> str | None:
    """DS, IS, SV and UV may be JSON numbers or strings (PS3.18 F.2.3)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return f"{vr} values must be numbers or numeric strings; got {type_name(value)}"
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
        if not math.isfinite(number):  # 1e999 parses, as infinity
            return _NOT_FINITE.format(vr="DS")
        return None
    if isinstance(number, float):
        if not number.is_integer():
            return f"value is not a whole number; {vr} holds integers only"
        number = int(number)
    low, high = _INT_RANGES[vr]
    if not low <= number <= high:
        return f"value is out of range for {vr} ({low} to {high})"
    return None


def surrogate_problem(value: str) -> str | None:
    """A lone surrogate ("\\ud800" in JSON) is no character: no database stores it and no page can show it."""
    lone = sorted({c for c in value if "\ud800" <= c <= "\udfff"})
    if not lone:
        return None
    names = ", ".join(f"U+{ord(c):04X}" for c in lone[:3])
    return (
        f"contains a lone surrogate ({names}), which is half of a character, not a character; "
        "write the character itself, or both halves of its surrogate pair"
    )


def string_problem(vr: str, value: str, *, quote_uid: bool) -> str | None:
    if problem := surrogate_problem(value):
        return problem
    # Format problems first: "DA is YYYYMMDD" helps more than "DA is at most 8 characters".
    if vr == "UI":
        return uid_problem(value) if quote_uid else uid_problem_unquoted(value)
    if vr == "DA" and (problem := date_problem(value)):
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


def date_problem(value: str) -> str | None:
    if value == "":
        return None
    if not re.fullmatch(r"\d{8}", value):
        return "value is not a DICOM date; DA is YYYYMMDD, such as '20240131'"
    try:
        datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return "value is not a calendar date (DA is YYYYMMDD)"
    return None


def scalar_problem(tag: int, vr: str, value: Any) -> str | None:
    """What is wrong with one non-null value of a VR other than SQ and PN, or None."""
    if vr in ("DS", "IS", "SV", "UV"):
        return number_string_problem(vr, value)
    if vr in ("US", "SS", "UL", "SL"):
        return int_problem(vr, value)
    if vr in ("FL", "FD"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{vr} values must be JSON numbers; got {type_name(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return _NOT_FINITE.format(vr=vr)
        return None
    if vr == "AT":
        if isinstance(value, str) and TAG_KEY_RE.fullmatch(value):
            return None
        return (
            "AT values are tags written as 8 uppercase hex digits, such as '00100010'; "
            f"got {string_kind(value) if isinstance(value, str) else type_name(value)}"
        )
    if not isinstance(value, str):
        return f"{vr} values must be strings; got {type_name(value)}"
    # A file's values are never quoted back, UIDs included: a malformed "UID" may be a name typed in the wrong place.
    return string_problem(vr, value, quote_uid=False)


def pn_group_problem(text: str) -> str | None:
    """What is wrong with one component group (Alphabetic, Ideographic or Phonetic) of a PN value, or None."""
    problem = string_problem("PN", text, quote_uid=False)
    if problem is None and text.count("^") > 4:
        problem = "a person name has at most 5 components separated by '^'"
    return problem


def inline_binary_problem(vr: str, value: Any) -> str | None:
    """What is wrong with an InlineBinary member, or None when it is base64 for a binary VR."""
    if vr not in INLINE_BINARY_VRS:
        return f"InlineBinary is only allowed for {', '.join(sorted(INLINE_BINARY_VRS))}, not {vr}"
    if not isinstance(value, str):
        return f"InlineBinary must be a base64 string; got {type_name(value)}"
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        return f"InlineBinary is not valid base64 ({exc})"
    return None
