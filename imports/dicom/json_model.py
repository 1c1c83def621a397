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

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.valuerep import VR

from imports.dicom.json_values import (
    INLINE_BINARY_VRS,
    inline_binary_problem,
    pn_group_problem,
    scalar_problem,
    string_kind,
    type_name,
    vm_problem,
)
from imports.dicom.tags import TAG_KEY_RE, dictionary_vr, tag_label
from imports.dicom.uids import uid_problem
from imports.units import bytes_format

DEFAULT_MAX_BYTES = 1024 * 1024
# Arrays and objects nested deeper than this are refused before they are checked. A nested sequence costs 3 levels
# (attribute object, Value array, item object), so this allows 33 levels of sequences; real files use a handful.
MAX_DEPTH = 100
_TOO_DEEP = (
    f"nested too deeply: arrays and objects may nest at most {MAX_DEPTH} levels "
    "(each nested sequence takes 3)"
)
_FILE_META_GROUP = 0x0002
_PIXEL_DATA_TAGS = {
    0x7FE00008: "float pixel data",
    0x7FE00009: "double float pixel data",
    0x7FE00010: "pixel data",
}

# The VRs of PS3.5 Table 6.2-1, from pydicom (its enum also lists dictionary pairs such as "US or SS").
VRS = frozenset(vr.value for vr in VR if " or " not in vr.value)
_MEMBERS = ("vr", "Value", "BulkDataURI", "InlineBinary")
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")

_ANY_CASE_TAG_RE = re.compile(r"[0-9A-Fa-f]{8}")
_PAIR_TAG_RE = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?")


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
            JsonIssue("", f"expected one DICOM JSON object, got {type_name(top)}")
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
        # Only a tag is named; any other key may be patient data, and is never quoted back.
        errors.append(
            JsonIssue(
                prefix + (key if TAG_KEY_RE.fullmatch(key) else "(a key)"),
                "key appears more than once in the same object",
            )
        )
    for position, (key, attr) in enumerate(obj.items(), start=1):
        tag = _check_key(key, prefix, position, errors)
        if tag is None:
            continue
        path = prefix + key
        if not isinstance(attr, dict):
            errors.append(
                JsonIssue(
                    path,
                    f"attribute must be an object with 'vr' and at most one value member; got {type_name(attr)}",
                )
            )
            continue
        _check_attribute(tag, attr, path, errors)


def _check_key(
    key: str, prefix: str, position: int, errors: list[JsonIssue]
) -> int | None:
    """The tag a key names, or None with the reason; a key that is not a tag is named by its position only."""
    path = prefix + key
    if not TAG_KEY_RE.fullmatch(key):
        path = f"{prefix}(key {position})"
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
        errors.append(JsonIssue(path, f"key {position} is not a valid key; {hint}"))
        return None
    tag = int(key, 16)
    if tag & 0xFFFF == 0:
        errors.append(
            JsonIssue(
                path,
                f"{tag_label(tag)} is a group length; "
                "group length elements (gggg0000) must not be included in DICOM JSON",
            )
        )
        return None
    if tag >> 16 == _FILE_META_GROUP:
        errors.append(
            JsonIssue(
                path,
                f"{tag_label(tag)} is file meta information (group 0002), which belongs to the "
                "P10 file header; DICOM JSON metadata must not include group 0002",
            )
        )
        return None
    if tag in _PIXEL_DATA_TAGS:
        errors.append(
            JsonIssue(
                path,
                f"{tag_label(tag)} is {_PIXEL_DATA_TAGS[tag]}; a metadata file carries attributes only, "
                "the pixel data comes from the DICOM P10 files",
            )
        )
        return None
    return tag


def _check_attribute(
    tag: int, attr: Mapping[str, Any], path: str, errors: list[JsonIssue]
) -> None:
    for position, member in enumerate(attr, start=1):
        if member not in _MEMBERS:
            errors.append(
                JsonIssue(
                    f"{path}.(member {position})",
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
            else string_kind(vr)
            if isinstance(vr, str)
            else type_name(vr)
        )
        errors.append(
            JsonIssue(
                f"{path}.vr",
                f"{shown} is not a DICOM VR; use one of {', '.join(sorted(VRS))}",
            )
        )
        return
    expected = dictionary_vr(tag)
    vr_matches = expected is None or vr in expected.split(" or ")
    if not vr_matches:
        errors.append(
            JsonIssue(
                f"{path}.vr",
                f"VR '{vr}' does not match the data dictionary: {tag_label(tag)} is {expected}",
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
    if "InlineBinary" in attr and (
        problem := inline_binary_problem(vr, attr["InlineBinary"])
    ):
        errors.append(JsonIssue(f"{path}.InlineBinary", problem))
    if "Value" in attr:
        _check_values(
            tag, vr, attr["Value"], f"{path}.Value", errors, check_vm=vr_matches
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
    label = tag_label(tag)
    if not isinstance(values, list):
        errors.append(
            JsonIssue(
                path,
                f"{label}: Value must be an array, even for a single value; got {type_name(values)}",
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
    if check_vm and vr != "SQ" and (problem := vm_problem(tag, len(values))):
        errors.append(JsonIssue(path, problem))
    for i, value in enumerate(values):
        _check_value(tag, vr, value, f"{path}[{i}]", errors)


def _check_value(
    tag: int, vr: str, value: Any, path: str, errors: list[JsonIssue]
) -> None:
    label = tag_label(tag)
    if vr == "SQ":
        if isinstance(value, dict):
            _check_dataset(value, path + ".", errors)
        else:
            errors.append(
                JsonIssue(
                    path,
                    f"{label}: sequence items must be objects ({{}} for an empty item); got {type_name(value)}",
                )
            )
        return
    if value is None:
        return  # PS3.18 F.2.5: an empty value inside an array
    if vr == "PN":
        _check_pn(label, value, path, errors)
        return
    problem = scalar_problem(tag, vr, value)
    if problem:
        errors.append(JsonIssue(path, f"{label}: {problem}"))


def _check_pn(label: str, value: Any, path: str, errors: list[JsonIssue]) -> None:
    if not isinstance(value, dict):
        errors.append(
            JsonIssue(
                path,
                f"{label} must be an object with Alphabetic, Ideographic or Phonetic "
                f'(PN values are objects such as {{"Alphabetic": "Doe^John"}}); got {type_name(value)}',
            )
        )
        return
    for position, (group, text) in enumerate(value.items(), start=1):
        if group not in _PN_GROUPS:
            errors.append(
                JsonIssue(
                    f"{path}.(member {position})",
                    f"{label}: unknown PN component group; allowed: {', '.join(_PN_GROUPS)}",
                )
            )
        elif not isinstance(text, str):
            errors.append(
                JsonIssue(
                    f"{path}.{group}",
                    f"{label}: PN component groups are strings; got {type_name(text)}",
                )
            )
        elif problem := pn_group_problem(text):
            errors.append(JsonIssue(f"{path}.{group}", f"{label}: {problem}"))


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
    tag = _check_key(key, "", 1, errors)
    if tag is None:
        return errors
    if not isinstance(attribute, dict):
        errors.append(
            JsonIssue(key, f"attribute must be an object; got {type_name(attribute)}")
        )
        return errors
    _check_attribute(tag, attribute, key, errors)
    return errors


def key_problem(tag: int) -> str | None:
    """Why a tag may not appear in a metadata file at all (group length, file meta, pixel data), or None."""
    errors: list[JsonIssue] = []
    _check_key(f"{tag:08X}", "", 1, errors)
    return errors[0].message if errors else None
