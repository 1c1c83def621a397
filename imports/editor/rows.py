"""The metadata editor's rows: one DICOM attribute each, to and from a DICOM JSON object (PS3.18 Annex F).

Pure: pydicom's data dictionary and the project's own rules, no Django, no AWS. Each row is parsed into the
attribute it stands for and then held to exactly the rules a whole file is held to (`dicomjson.check_element`), so a
file assembled from rows that pass is valid by construction. Level warnings are the composer's own
(`mappings.document_problems`), worded the same.

Messages never quote a value: they say which value of the row ("value 2") and what the VR allows.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import dictionary_VM, keyword_for_tag
from pydicom.datadict import tag_for_keyword as _tag_for_keyword

from imports.dicom import json_model as dicomjson
from imports.dicom.json_values import INLINE_BINARY_VRS
from imports.dicom.levels import Level, level_of
from imports.dicom.tags import dictionary_vr, tag_label, tag_pair
from imports.mappings.rules import Mapping, document_problems

MAX_ROWS = 200
# No standard attribute a header override would carry takes more; ImageType has a handful.
MAX_VALUES = 256
PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
PN_COMPONENTS = ("family", "given", "middle", "prefix", "suffix")
INT_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
FLOAT_VRS = frozenset({"FL", "FD"})
LONG_TEXT_VRS = frozenset({"LT", "ST", "UT"})
# Out of scope: nested datasets, and binary data that only InlineBinary or BulkDataURI can carry.
UNSUPPORTED_VRS = {
    "SQ": "sequences (SQ) cannot be written in the editor; they are out of its scope",
    **{
        vr: f"binary data ({vr}) cannot be written in the editor; it takes base64 InlineBinary"
        for vr in sorted(INLINE_BINARY_VRS)
    },
}
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")
_PAIR = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?")
_INT = re.compile(r"[+-]?\d+")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


# --- Tags -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagInfo:
    tag: int
    keyword: str
    name: str
    vr: str  # the dictionary's ("US or SS" for some); "" for private and unknown tags
    vm: str
    level: Level | None
    retired: bool = False

    @property
    def key(self) -> str:
        return f"{self.tag:08X}"

    @property
    def pair(self) -> str:
        return tag_pair(self.tag)

    @property
    def label(self) -> str:
        return tag_label(self.tag)

    @property
    def vr_choices(self) -> list[str]:
        return self.vr.split(" or ") if self.vr else sorted(dicomjson.VRS)


def tag_info(tag: int) -> TagInfo:
    entry = DicomDictionary.get(tag)
    if entry is None or (tag >> 16) % 2:
        vr = dictionary_vr(tag) or ""  # repeating groups such as (60xx,3000)
        try:
            vm = str(dictionary_VM(tag))
        except KeyError:
            vm = ""
        return TagInfo(tag, keyword_for_tag(tag), "", vr, vm, level_of(tag))
    vr, vm, name, retired, keyword = entry
    return TagInfo(tag, keyword, name, vr, vm, level_of(tag), bool(retired))


def tag_parse(text: str) -> tuple[int | None, str]:
    """A tag from `0008103E`, `(0008,103E)`, `0008,103E` or a keyword; (None, why) otherwise."""
    text = text.strip()
    if not text:
        return (
            None,
            "type a tag (0008103E or (0008,103E)) or a keyword (SeriesDescription)",
        )
    if _HEX8.fullmatch(text):
        return int(text, 16), ""
    if pair := _PAIR.fullmatch(text):
        return int(pair[1] + pair[2], 16), ""
    if _KEYWORD.fullmatch(text):
        tag = _tag_for_keyword(text)
        if tag is not None:
            return tag, ""
        return None, (
            f"'{text}' is not a keyword of the DICOM dictionary; "
            "type a keyword such as SeriesDescription, or the tag as 8 hex digits"
        )
    return None, (
        "a tag is 8 hex digits (0008103E), a (gggg,eeee) pair such as (0008,103E), or a keyword"
    )


@functools.cache
def _dictionary() -> tuple[TagInfo, ...]:
    entries = []
    for tag, (vr, vm, name, retired, keyword) in DicomDictionary.items():
        # Never suggest what a metadata file may not carry.
        if (
            not keyword
            or tag >> 16 == 0x0002
            or tag & 0xFFFF == 0
            or tag >> 16 == 0x7FE0
        ):
            continue
        entries.append(
            TagInfo(tag, keyword, name, vr, vm, level_of(tag), bool(retired))
        )
    return tuple(entries)


def tag_search(query: str, *, limit: int = 20) -> list[TagInfo]:
    """Dictionary entries for what is typed: a keyword or name fragment, or the start of a tag."""
    text = query.strip()
    if not text:
        return []
    hexed = re.sub(r"[(),\s]", "", text).upper()
    tag_like = bool(re.fullmatch(r"[0-9A-F]{1,8}", hexed))
    lowered = text.lower().replace(" ", "")
    ranked: list[tuple[int, int, TagInfo]] = []
    for info in _dictionary():
        keyword = info.keyword.lower()
        if keyword == lowered or (tag_like and info.key == hexed):
            rank = 0
        elif keyword.startswith(lowered):
            rank = 1
        elif tag_like and info.key.startswith(hexed):
            rank = 2
        elif lowered in keyword or lowered in info.name.lower().replace(" ", ""):
            rank = 3
        else:
            continue
        ranked.append((rank + (4 if info.retired else 0), info.tag, info))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [info for _, _, info in ranked[:limit]]


# --- Rows -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowInput:
    """What the form sent for one row."""

    tag: str = ""
    vr: str = ""  # chosen VR; "" means the dictionary's
    value: str = (
        ""  # one value, or one value per line where the attribute takes several
    )
    pn: tuple[str, ...] = ()  # the PN widget: 3 groups x 5 components, Alphabetic first
    # A patient value shown masked (not revealed): the row carries no value, a save keeps the file's, and
    # `shown` is the mask the page displays (never a value to write).
    kept: bool = False
    shown: str = ""

    @property
    def blank(self) -> bool:
        return not (self.tag.strip() or self.value.strip() or any(self.pn) or self.kept)

    @property
    def text(self) -> str:
        """The value as text: one value per line, a PN typed as components written Family^Given..."""
        if self.value or not any(self.pn):
            return self.value
        return _pn_text(self.pn)


@dataclass
class RowCheck:
    number: int  # 1-based
    input: RowInput
    info: TagInfo | None = None
    vr: str = ""
    multi: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    attribute: dict[str, Any] | None = None  # set when the row has no error

    @property
    def widget(self) -> str:
        if self.vr in UNSUPPORTED_VRS:
            return "text"
        if self.vr in LONG_TEXT_VRS:
            return "long"
        if self.multi:
            return "list"
        if self.vr == "PN":
            return "pn"
        if self.vr in INT_VRS | FLOAT_VRS | {"IS", "DS"}:
            return "number"
        return {"DA": "date", "TM": "time", "DT": "datetime", "UI": "uid"}.get(
            self.vr, "text"
        )

    @property
    def value_text(self) -> str:
        """The value as the text widgets show it (a PN typed as components, shown as Family^Given...)."""
        return self.input.text

    @property
    def pn_groups(self) -> list[dict[str, Any]]:
        """The PN widget's boxes: for each component group, its index, name and (index, name, value) components."""
        components = list(self.input.pn) or _pn_components(self.input.value)
        components += [""] * (15 - len(components))
        return [
            {
                "g": g,
                "group": group,
                "components": [
                    (c, name, components[g * 5 + c])
                    for c, name in enumerate(PN_COMPONENTS)
                ],
            }
            for g, group in enumerate(PN_GROUPS)
        ]

    @property
    def has_other_pn_groups(self) -> bool:
        components = list(self.input.pn) or _pn_components(self.input.value)
        return any(components[5:])

    @property
    def vr_choices(self) -> list[str]:
        choices = self.info.vr_choices if self.info else []
        if self.input.vr and self.input.vr not in choices:
            choices = [*choices, self.input.vr]
        return choices

    @property
    def state(self) -> str:
        return "error" if self.errors else "warning" if self.warnings else "valid"


def _pn_text(components: Sequence[str]) -> str:
    groups = ["^".join(components[g * 5 : g * 5 + 5]).rstrip("^") for g in range(3)]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _pn_components(text: str) -> list[str]:
    components: list[str] = []
    for group in (text.split("=") + ["", ""])[:3]:
        parts = (group.split("^") + [""] * 5)[:5]
        components += parts
    return components


def _takes_several(info: TagInfo | None, vr: str) -> bool:
    if vr in LONG_TEXT_VRS or vr == "UR":
        return False
    if info is None or not info.vm:
        return True  # private or unknown: a list, which also holds one value
    return info.vm != "1"


def row_check(number: int, row: RowInput, *, target: Mapping | None = None) -> RowCheck:
    """One row: which attribute it is, the value(s) it holds, and what is wrong with them."""
    check = RowCheck(number=number, input=row)
    tag, why = tag_parse(row.tag)
    if tag is None:
        check.errors.append(f"Tag: {why}")
        check.vr = row.vr
        return check
    if not 0 <= tag <= 0xFFFFFFFF:
        check.errors.append("Tag: a tag is 8 hex digits")
        return check
    info = tag_info(tag)
    check.info = info
    if problem := dicomjson.key_problem(tag):
        check.errors.append(problem)
        return check
    check.vr = row.vr or (info.vr_choices[0] if info.vr else "")
    check.multi = _takes_several(info, check.vr)
    if not check.vr:
        check.errors.append(
            f"{info.label} is {'a private tag' if (tag >> 16) % 2 else 'not in the DICOM dictionary'}, "
            "so it has no VR to go by: choose its VR"
        )
        return check
    if check.vr not in dicomjson.VRS:
        check.errors.append(f"VR: use one of {', '.join(sorted(dicomjson.VRS))}")
        return check
    if check.vr in UNSUPPORTED_VRS:
        check.errors.append(f"{info.label}: {UNSUPPORTED_VRS[check.vr]}")
        return check
    if row.kept:
        return check  # the file's own value, checked when the file was read; a save puts it back first
    values, problems = _values(check, row)
    check.errors += problems
    if problems:
        return check
    attribute: dict[str, Any] = {"vr": check.vr}
    if values:
        attribute["Value"] = values
    issues = dicomjson.check_element(info.key, attribute)
    for issue in issues:
        where = re.search(r"\[(\d+)\]", issue.path)
        prefix = f"value {int(where[1]) + 1}: " if where and len(values) > 1 else ""
        check.errors.append(prefix + issue.message)
    if check.errors:
        return check
    check.attribute = attribute
    if target is not None:
        check.warnings += [
            p.message
            for p in document_problems(mapping=target, document={info.key: attribute})
        ]
    return check


def _values(check: RowCheck, row: RowInput) -> tuple[list[Any], list[str]]:
    vr = check.vr
    if vr == "PN" and not check.multi:
        components = list(row.pn) or _pn_components(row.value)
        bad = [c for c in components if any(ch in c for ch in "^=\\")]
        if bad:
            return [], [
                "a name component cannot contain ^, = or a backslash; type each part in its own box"
            ]
        name = {
            group: text
            for group, text in zip(
                PN_GROUPS,
                ["^".join(components[g * 5 : g * 5 + 5]).rstrip("^") for g in range(3)],
                strict=True,
            )
            if text
        }
        return ([name] if name else []), []
    text = check.value_text
    if check.multi:
        lines = text.replace("\r\n", "\n").split("\n")
        while lines and lines[-1].strip() == "":
            lines.pop()
    else:
        lines = [text] if text != "" else []
    if len(lines) > MAX_VALUES:
        return [], [
            f"{len(lines):,} values; a row holds at most {MAX_VALUES} (one per line)"
        ]
    values: list[Any] = []
    errors: list[str] = []
    for n, line in enumerate(lines, start=1):
        where = f"value {n}: " if len(lines) > 1 else ""
        if line.strip() == "" and check.multi:
            values.append(None)  # PS3.18 F.2.5: an empty value inside the array
            continue
        value, problem = _convert(vr, line)
        if problem:
            errors.append(where + problem)
        values.append(value)
    return values, errors


def _convert(vr: str, text: str) -> tuple[Any, str]:
    stripped = text.strip()
    if vr in INT_VRS or vr == "IS":
        if not _INT.fullmatch(stripped):
            return None, f"{vr} takes a whole number, such as 42"
        return int(stripped), ""
    if vr in FLOAT_VRS or vr == "DS":
        if vr == "DS" and len(stripped) > 16:
            return None, f"DS is at most 16 characters; this value has {len(stripped)}"
        try:
            number = float(stripped)
        except ValueError:
            return None, f"{vr} takes a number, such as 2.5 or -1e-3"
        if not math.isfinite(number):
            return None, f"{vr} takes a finite number"
        value: int | float = int(stripped) if _INT.fullmatch(stripped) else number
        if vr == "DS" and len(json.dumps(value)) > 16:
            return None, "DS is at most 16 characters once written; round the value"
        return value, ""
    if vr == "AT":
        tag, why = tag_parse(stripped)
        if tag is None:
            return None, f"AT takes a tag: {why}"
        return f"{tag:08X}", ""
    if (
        vr == "PN"
    ):  # several names, one per line, each Family^Given^Middle^Prefix^Suffix
        groups = text.split("=")
        if len(groups) > 3:
            return None, "a person name has at most 3 component groups separated by '='"
        return {
            group: part for group, part in zip(PN_GROUPS, groups, strict=False) if part
        }, ""
    return text, ""


def rows_check(
    rows: Sequence[RowInput], *, target: Mapping | None = None
) -> list[RowCheck]:
    """Every non-blank row checked, plus the rules between rows (one row per attribute, at most MAX_ROWS)."""
    checks = [
        row_check(n, row, target=target)
        for n, row in enumerate(rows, start=1)
        if not row.blank
    ]
    seen: dict[int, int] = {}
    for check in checks:
        if check.info is None:
            continue
        first = seen.setdefault(check.info.tag, check.number)
        if first != check.number:
            check.errors.append(
                f"{check.info.label} is already row {first}; give each attribute one row"
            )
            check.attribute = None
    return checks


def rows_problem(rows: Sequence[RowInput]) -> str:
    """What stops a set of rows from being a file at all, whatever the rows hold; "" when nothing does."""
    filled = sum(not row.blank for row in rows)
    if filled > MAX_ROWS:
        return f"{filled:,} rows; a metadata file written here holds at most {MAX_ROWS} attributes"
    if filled == 0:
        return "add at least one attribute"
    return ""


def document_from_checks(checks: Iterable[RowCheck]) -> dict[str, Any]:
    """The DICOM JSON object, keys in ascending tag order as PS3.18 F.2 asks; only for rows without errors."""
    attributes = {}
    for check in checks:
        assert check.attribute is not None
        assert check.info is not None
        attributes[check.info.key] = check.attribute
    return dict(sorted(attributes.items()))


def document_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# --- A file into rows -----------------------------------------------------------------------------------


def rows_from_document(document: Any) -> tuple[list[RowInput], str]:
    """The rows of a parsed file, and "" or the reason the editor cannot represent it (it then opens read-only)."""
    if not isinstance(document, dict):
        return [], "the file is not one DICOM JSON object"
    if len(document) > MAX_ROWS:
        return (
            [],
            f"the file has {len(document):,} attributes; the editor shows at most {MAX_ROWS}",
        )
    rows: list[RowInput] = []
    for key in sorted(document):
        attribute = document[key]
        label = _key_label(key)
        if not isinstance(attribute, dict):
            return [], f"{label} is not an attribute object"
        vr = attribute.get("vr", "")
        vr = vr if isinstance(vr, str) and vr in dicomjson.VRS else ""
        if "BulkDataURI" in attribute or "InlineBinary" in attribute:
            member = "BulkDataURI" if "BulkDataURI" in attribute else "InlineBinary"
            return (
                [],
                f"{label} holds its value as {member}, which the editor cannot show",
            )
        if vr in UNSUPPORTED_VRS:
            return [], f"{label}: {UNSUPPORTED_VRS[vr]}"
        values = attribute.get("Value", [])
        if not isinstance(values, list) or len(values) > MAX_VALUES:
            return [], f"{label} has a Value the editor cannot show"
        if vr == "PN" and len(values) == 1 and isinstance(values[0], dict):
            name = values[0]
            components: list[str] = []
            for group in PN_GROUPS:
                components += _pn_components(str(name.get(group, "")))[:5]
            rows.append(RowInput(tag=key, vr=vr, pn=tuple(components)))
            continue
        lines = [_value_text(v) for v in values]
        rows.append(RowInput(tag=key, vr=vr, value="\n".join(lines)))
    return rows, ""


def _key_label(key: str) -> str:
    if _HEX8.fullmatch(key):
        return tag_label(int(key, 16))
    return "an attribute" if len(key) > 64 else f"'{key}'"


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        groups = [str(value.get(g, "")) for g in PN_GROUPS]
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(groups)
    return str(value)
