"""A correction sheet: a CSV (UTF-8, BOM accepted) or XLSX file with a header row, read into key and value cells.

Pure: no Django, no AWS. The header names key columns (KEY_COLUMNS, spelled exactly so) and value columns (a DICOM
keyword such as PatientName, or a tag: `(0010,0010)`, `00100010`). A key keyword is always a key: to set
AccessionNumber, PatientID or StudyDate, name the value column by its tag, `(0010,0020)`. Every key cell a row fills
must agree with what it matches; the row is keyed by StudyInstanceUID, SeriesInstanceUID, AccessionNumber, or
PatientID with Scope=patient (all the studies of that patient: a merge).

Values are held to exactly the editor's rules (`editor.rows.row_check`), so an override built from a sheet is valid
DICOM JSON. An empty cell leaves the attribute as it is; `<empty>` clears it. What spreadsheets do to values
(dates turned into serial numbers, long numbers into scientific notation, numbers into floats, non-breaking spaces)
is named, never repaired: a guess at a patient's data is worse than a refusal.

Rows are numbered as the spreadsheet shows them: the header is row 1. Messages name the row, the column (letter
and header), what is wrong and what is allowed; they never quote a patient value.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from openpyxl import load_workbook
from pydicom._dicom_dict import DicomDictionary

from imports.corrections.cells import cell_text, invisible
from imports.dicom import json_model as dicomjson
from imports.dicom.json_values import INLINE_BINARY_VRS
from imports.dicom.patient import is_patient_attribute
from imports.editor.rows import (
    RowInput,
    TagInfo,
    row_check,
    tag_info,
    tag_parse,
)

MAX_ROWS = 1_000
MAX_BYTES = 10 * 1024 * 1024
EMPTY = "<empty>"
SCOPES = ("study", "series", "patient")
# Key columns and the VR their cells are held to.
KEY_COLUMNS = {
    "StudyInstanceUID": "UI",
    "SeriesInstanceUID": "UI",
    "AccessionNumber": "SH",
    "PatientID": "LO",
    "StudyDate": "DA",
    "Scope": "CS",
}
# What HealthImaging identifies instances by, and the Image Pixel module: what the pixel data itself depends on.
PROTECTED = {
    0x00080016: "the SOP class says what the instance is",
    **dict.fromkeys((2621442, 2621444, 2621446, 2621448, 2621456, 2621457, 2621492, 2621696, 2621697, 2621698, 2621699, 2621702, 2621703, 2625793, 2625794, 2625795, 2626049, 2626050, 2626051, 2629632), "the Image Pixel module describes the pixel data, which the P10 files keep"),
}  # fmt: skip


@dataclass(frozen=True)
class Problem:
    row: int | None  # None: the sheet as a whole
    column: str  # the header, or "" for the sheet as a whole
    code: str
    message: str


class SheetRefused(Exception):
    """The sheet cannot be read at all: not CSV or XLSX, too many rows, bad headers."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(p.message for p in problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Column:
    index: int  # 0-based
    header: str
    key: str = ""  # a KEY_COLUMNS name for a key column
    info: TagInfo | None = None  # the attribute of a value column

    @property
    def letter(self) -> str:
        n, letters = self.index + 1, ""
        while n:
            n, rest = divmod(n - 1, 26)
            letters = chr(65 + rest) + letters
        return letters

    @property
    def name(self) -> str:
        return self.key or (self.info.keyword if self.info else "") or self.header

    @property
    def vr(self) -> str:
        return KEY_COLUMNS[self.key] if self.key else self.info.vr if self.info else ""

    @property
    def is_patient(self) -> bool:
        if self.key:
            return self.key == "PatientID"
        return self.info is not None and is_patient_attribute(self.info.tag, self.vr)

    def where(self, row: int) -> str:
        return f"Row {row}, column {self.letter} ({self.header})"


@dataclass(frozen=True)
class Value:
    """One value cell that sets or clears an attribute."""

    column: Column
    text: str  # the new value as text: "" when cleared, a name in ^ form, several values joined by "\"
    attribute: dict[str, Any]  # as DICOM JSON writes it: {"vr": ..., "Value": [...]}

    @property
    def info(self) -> TagInfo:
        assert self.column.info is not None
        return self.column.info


@dataclass
class SheetRow:
    number: int
    keys: dict[str, str] = field(default_factory=dict)
    values: list[Value] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def scope(self) -> str:
        given = self.keys.get("Scope", "")
        if given:
            return given
        return "series" if self.keys.get("SeriesInstanceUID") else "study"


@dataclass
class Sheet:
    columns: list[Column]
    rows: list[SheetRow]
    sha256: str


def sheet_read(data: bytes) -> Sheet:
    """The sheet's columns and rows, each row with its problems; SheetRefused when the file cannot be a sheet."""
    if len(data) > MAX_BYTES:
        _refuse(
            "too_large",
            f"The file is {len(data):,} bytes; a sheet is at most {MAX_BYTES:,} bytes.",
        )
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        _refuse(
            "xls",
            "The file is an Excel 97-2003 workbook (.xls): save it as .xlsx or as CSV UTF-8.",
        )
    records = _xlsx_records(data) if data[:4] == b"PK\x03\x04" else _csv_records(data)
    header = next(records, None)
    if header is None or not any(_filled(c) for c in header):
        _refuse("no_header", "The sheet is empty: its first row must name the columns.")
    columns, unnamed = _columns(header)
    rows: list[SheetRow] = []
    for number, record in enumerate(records, start=2):
        if not any(_filled(c) for c in record):
            continue  # a blank row separates nothing and changes nothing
        if len(rows) == MAX_ROWS:
            _refuse(
                "too_many_rows",
                f"The sheet has more than {MAX_ROWS:,} rows: more than {MAX_ROWS:,} studies in one sheet: "
                "split it; campaigns do that.",
            )
        for index in unnamed:
            if index < len(record) and _filled(record[index]):
                letter = Column(index, "").letter
                _refuse(
                    "unnamed_column",
                    f"Row {number}, column {letter} holds a value but the column has no header: name it "
                    "(a keyword such as PatientName, or a tag such as (0010,0010)) or empty it.",
                )
        rows.append(_row(number, columns, record))
    return Sheet(columns=columns, rows=rows, sha256=hashlib.sha256(data).hexdigest())


def _refuse(code: str, message: str) -> NoReturn:
    raise SheetRefused([Problem(None, "", code, message)])


def _filled(cell: Any) -> bool:
    return cell is not None and cell != ""


# --- Reading the file --------------------------------------------------------------------------------


def _csv_records(data: bytes) -> Iterator[list[Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        _refuse(
            "not_utf8",
            f"The CSV file is not UTF-8 (byte {error.start + 1:,} is not): save it as CSV UTF-8.",
        )
    try:
        yield from csv.reader(io.StringIO(text, newline=""))
    except csv.Error as error:
        _refuse("csv_invalid", f"The CSV file cannot be read: {error}.")


def _xlsx_records(data: bytes) -> Iterator[list[Any]]:
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (
        Exception
    ) as error:  # openpyxl raises zip, XML and key errors alike for a damaged file
        _refuse(
            "xlsx_invalid",
            f"The XLSX file cannot be read ({type(error).__name__}): save it again as .xlsx.",
        )
    try:
        sheet = workbook.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            yield list(values)
    finally:
        workbook.close()


# --- The header --------------------------------------------------------------------------------------


def _columns(header: Sequence[Any]) -> tuple[list[Column], list[int]]:
    columns: list[Column] = []
    unnamed: list[int] = []
    problems: list[Problem] = []
    seen: dict[str, Column] = {}
    for index, raw in enumerate(header):
        letter = Column(index, "").letter
        if not _filled(raw):
            unnamed.append(index)
            continue
        text = raw if isinstance(raw, str) else str(raw)
        column, why = _column(index, text)
        if column is None:
            problems.append(
                Problem(None, text, "bad_header", f"Column {letter} ({text}): {why}")
            )
            continue
        identity = f"{column.info.tag:08X}" if column.info else column.key
        if identity in seen:
            first = seen[identity]
            problems.append(
                Problem(
                    None,
                    text,
                    "duplicate_column",
                    f"Column {letter} ({text}) names {column.name} again, as column {first.letter} does: "
                    "give each attribute one column.",
                )
            )
            continue
        seen[identity] = column
        columns.append(column)
    problems += _shape_problems(columns) if not problems else []
    if problems:
        raise SheetRefused(problems)
    return columns, unnamed


def _column(index: int, text: str) -> tuple[Column | None, str]:
    if bad := invisible(text):
        return None, f"the header holds {bad}; type it again with plain characters."
    if text != text.strip():
        return None, "the header starts or ends with a space; remove it."
    if text in KEY_COLUMNS:
        return Column(index, text, key=text), ""
    for key in KEY_COLUMNS:
        if text.lower() == key.lower():
            return None, f"key columns are spelled exactly: {key}."
    tag, why = tag_parse(text)
    if tag is None and re.fullmatch(r"\(?[0-9A-Fa-f]{4}\)?", text):
        return None, (
            'half a (gggg,eeee) tag: in a CSV file a header with a comma is quoted, "(0010,0010)", '
            "or written without one, 00100010."
        )
    if tag is None:
        hint = _keyword_case().get(text.lower())
        return None, (
            f"keywords are case-sensitive: {hint}."
            if hint
            else why[0].upper() + why[1:] + "."
        )
    info = tag_info(tag)
    if problem := dicomjson.key_problem(tag):
        return None, problem + "."
    if (tag >> 16) % 2:
        return (
            None,
            f"{info.label} is a private tag: its VR is in no dictionary, so a sheet cannot set it.",
        )
    if not info.vr:
        return (
            None,
            f"{info.label} is not in the DICOM dictionary; use a keyword such as StudyDescription.",
        )
    if " or " in info.vr:
        return (
            None,
            f"{info.label} takes {info.vr} depending on the pixel data; a sheet cannot set it.",
        )
    if info.vr == "SQ":
        return (
            None,
            f"{info.label} is a sequence (SQ); a sheet sets single values, not nested datasets.",
        )
    if info.vr in INLINE_BINARY_VRS:
        return (
            None,
            f"{info.label} holds binary data ({info.vr}); a sheet sets text and numbers only.",
        )
    if info.vr == "UI":
        key = (
            " (as a key column, write its keyword)"
            if info.keyword in KEY_COLUMNS
            else ""
        )
        return (
            None,
            f"{info.label} is a UID, which identifies what HealthImaging stores; a sheet cannot change it{key}.",
        )
    if tag in PROTECTED:
        return (
            None,
            f"{info.label} is protected: {PROTECTED[tag]}; a sheet cannot change it.",
        )
    return Column(index, text, info=info), ""


def _keyword_case() -> dict[str, str]:
    return {
        entry[4].lower(): entry[4] for entry in DicomDictionary.values() if entry[4]
    }


def _shape_problems(columns: Iterable[Column]) -> list[Problem]:
    keys = {c.key for c in columns if c.key}
    problems = []
    if (
        not keys & {"StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber"}
        and not {
            "PatientID",
            "Scope",
        }
        <= keys
    ):
        problems.append(
            Problem(
                None,
                "",
                "no_key_column",
                "The sheet has no key column: add StudyInstanceUID, SeriesInstanceUID or AccessionNumber, "
                "or PatientID with a Scope column saying patient.",
            )
        )
    if not any(c.info for c in columns):
        problems.append(
            Problem(
                None,
                "",
                "no_value_column",
                "The sheet has no value column: add one named by a DICOM keyword (PatientName) or a tag "
                "((0008,1030)). To set a key attribute, name its column by tag: (0010,0020) for PatientID.",
            )
        )
    return problems


# --- A row -------------------------------------------------------------------------------------------


def _row(number: int, columns: Sequence[Column], record: Sequence[Any]) -> SheetRow:
    row = SheetRow(number=number)
    for column in columns:
        raw = record[column.index] if column.index < len(record) else None
        if not _filled(raw):
            continue
        if column.info is not None and raw == EMPTY:
            row.values.append(Value(column, "", {"vr": column.vr}))
            continue
        text, why = cell_text(raw, vr=column.vr, patient=column.is_patient)
        if why:
            row.problems.append(_problem(row, column, why[0], why[1]))
        elif column.key:
            row.keys[column.key] = text
        else:
            _value(row, column, text)
    if not row.problems:
        row.problems += _key_problems(row, columns)
    if not row.values and not row.problems:
        row.problems.append(
            Problem(
                number,
                "",
                "no_values",
                f"Row {number} sets no value: fill a value cell, or write {EMPTY} to clear one.",
            )
        )
    return row


def _problem(row: SheetRow, column: Column, code: str, what: str) -> Problem:
    return Problem(
        row.number, column.header, code, f"{column.where(row.number)}: {what}"
    )


def _value(row: SheetRow, column: Column, text: str) -> None:
    info = column.info
    assert info is not None
    if column.vr == "PN" and "=" in text:
        row.problems.append(
            _problem(
                row,
                column,
                "value_invalid",
                "a sheet writes a name's alphabetic form only, in ^ form (Family^Given^Middle^Prefix^Suffix); "
                "'=' is not allowed.",
            )
        )
        return
    several = info.vm not in ("", "1")
    check = row_check(
        row.number,
        RowInput(tag=info.key, value=text.replace("\\", "\n") if several else text),
    )
    if check.errors or check.attribute is None:
        for error in check.errors:
            row.problems.append(
                _problem(
                    row,
                    column,
                    "value_invalid",
                    error.removeprefix(f"{info.label}: ") + ".",
                )
            )
        return
    row.values.append(Value(column, value_text(check.attribute), check.attribute))


def value_text(attribute: dict[str, Any]) -> str:
    """An attribute's value(s) as a sheet writes them: a name's alphabetic group, several values joined by "\\"."""
    texts = []
    for value in attribute.get("Value", []):
        if isinstance(value, dict):
            texts.append(str(value.get("Alphabetic", "")))
        else:
            texts.append("" if value is None else str(value))
    return "\\".join(texts)


def _key_problems(row: SheetRow, columns: Sequence[Column]) -> list[Problem]:
    by_key = {c.key: c for c in columns if c.key}
    keys = row.keys
    scope = keys.get("Scope", "")
    if scope and scope not in SCOPES:
        return [
            _problem(
                row,
                by_key["Scope"],
                "scope_invalid",
                f"Scope is one of {', '.join(SCOPES)}, or empty (study, or series when SeriesInstanceUID is filled).",
            )
        ]
    if row.scope == "patient":
        if not keys.get("PatientID"):
            return [
                _problem(
                    row,
                    by_key["Scope"],
                    "key_missing",
                    "Scope=patient takes every study of the PatientID: fill PatientID.",
                )
            ]
        extra = [
            k
            for k in (
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "AccessionNumber",
                "StudyDate",
            )
            if keys.get(k)
        ]
        return [
            _problem(
                row,
                by_key[k],
                "key_not_allowed",
                f"a Scope=patient row takes its studies from PatientID alone; leave {k} empty.",
            )
            for k in extra
        ]
    if row.scope == "series" and not keys.get("SeriesInstanceUID"):
        column = by_key.get("Scope") or columns[0]
        return [
            _problem(
                row,
                column,
                "key_missing",
                "Scope=series needs a SeriesInstanceUID: fill it.",
            )
        ]
    if not any(
        keys.get(k)
        for k in ("StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber")
    ):
        first = next(c for c in columns if c.key or c.info)
        column = (
            by_key.get("StudyInstanceUID")
            or by_key.get("AccessionNumber")
            or by_key.get("SeriesInstanceUID")
            or first
        )
        return [
            _problem(
                row,
                column,
                "key_missing",
                "the row names no study: fill StudyInstanceUID, AccessionNumber or SeriesInstanceUID "
                "(PatientID alone needs Scope=patient).",
            )
        ]
    return []
