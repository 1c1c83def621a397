"""The sheet parser: CSV and XLSX into key and value cells, every refusal with its message and a case that passes."""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest
from openpyxl import Workbook

from imports.corrections.sheet import MAX_ROWS, SheetRefused, SheetRow, sheet_read


def csv_sheet(*lines: str, bom: bool = False) -> bytes:
    return ("\ufeff" if bom else "").encode() + ("\n".join(lines) + "\n").encode()


def xlsx_sheet(*rows: list[Any]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def refusal(data: bytes) -> str:
    with pytest.raises(SheetRefused) as refused:
        sheet_read(data)
    return str(refused.value)


def only_row(data: bytes) -> SheetRow:
    rows = sheet_read(data).rows
    assert len(rows) == 1
    return rows[0]


def messages(row: SheetRow) -> list[str]:
    return [p.message for p in row.problems]


# --- Reading ---------------------------------------------------------------------------------------


def test_it_reads_a_csv_with_a_bom_into_keys_and_values() -> None:
    sheet = sheet_read(
        csv_sheet("AccessionNumber,PatientName,00081030,(0010,0030)".replace("(0010,0030)", '"(0010,0030)"'),
                  "ACC-1,Doe^John,CT HEAD,19800102", bom=True)
    )  # fmt: skip
    assert [c.name for c in sheet.columns] == [
        "AccessionNumber", "PatientName", "StudyDescription", "PatientBirthDate",
    ]  # fmt: skip
    (row,) = sheet.rows
    assert row.number == 2  # as the spreadsheet numbers it: the header is row 1
    assert row.keys == {"AccessionNumber": "ACC-1"}
    assert {v.info.keyword: v.attribute for v in row.values} == {
        "PatientName": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]},
        "StudyDescription": {"vr": "LO", "Value": ["CT HEAD"]},
        "PatientBirthDate": {"vr": "DA", "Value": ["19800102"]},
    }
    assert len(sheet.sha256) == 64


def test_it_reads_the_first_sheet_of_an_xlsx() -> None:
    sheet = sheet_read(
        xlsx_sheet(
            ["StudyInstanceUID", "StudyDescription"], ["1.2.3", "CT HEAD"], [None, None]
        )
    )
    (row,) = sheet.rows  # the blank row is no row
    assert row.keys == {"StudyInstanceUID": "1.2.3"}
    assert row.values[0].text == "CT HEAD"


def test_an_empty_cell_leaves_a_value_and_empty_clears_it() -> None:
    row = only_row(
        csv_sheet("AccessionNumber,StudyDescription,PatientSex", "A1,,<empty>")
    )
    assert [(v.info.keyword, v.text, v.attribute) for v in row.values] == [
        ("PatientSex", "", {"vr": "CS"})
    ]


def test_several_values_are_separated_by_a_backslash() -> None:
    row = only_row(csv_sheet("AccessionNumber,OtherPatientIDs", "A1,X1\\X2"))
    assert row.values[0].attribute == {"vr": "LO", "Value": ["X1", "X2"]}
    assert row.values[0].text == "X1\\X2"


def test_it_refuses_more_than_1000_rows_and_takes_1000() -> None:
    lines = [f"A{n},CT" for n in range(MAX_ROWS)]
    assert (
        len(sheet_read(csv_sheet("AccessionNumber,StudyDescription", *lines)).rows)
        == MAX_ROWS
    )
    message = refusal(
        csv_sheet("AccessionNumber,StudyDescription", *lines, "A-extra,CT")
    )
    assert (
        "more than 1,000 studies in one sheet: split it; campaigns do that" in message
    )


def test_it_refuses_a_csv_that_is_not_utf8() -> None:
    assert "not UTF-8" in refusal(
        "AccessionNumber,PatientName\nA1,Müller\n".encode("latin-1")
    )
    assert (
        sheet_read("AccessionNumber,PatientName\nA1,Müller\n".encode()).rows[0].values
    )


def test_it_refuses_an_xls_workbook() -> None:
    assert "save it as .xlsx" in refusal(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100)
    )


def test_it_refuses_a_damaged_xlsx() -> None:
    assert "The XLSX file cannot be read" in refusal(b"PK\x03\x04" + bytes(100))


# --- Headers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "PatientNmae",
            "Column B (PatientNmae): 'PatientNmae' is not a keyword of the DICOM dictionary",
        ),
        (
            "patientname",
            "Column B (patientname): keywords are case-sensitive: PatientName.",
        ),
        ("accessionnumber", "key columns are spelled exactly: AccessionNumber."),
        ("ReferencedImageSequence", "is a sequence (SQ); a sheet sets single values"),
        ("(0009,1001)", "(0009,1001) is a private tag"),
        ("EncapsulatedDocument", "holds binary data (OB)"),
        ("PixelData", "PixelData (7FE0,0010) is pixel data"),
        ("Rows", "Rows (0028,0010) is protected: the Image Pixel module"),
        ("BitsAllocated", "BitsAllocated (0028,0100) is protected"),
        ("SOPClassUID", "SOPClassUID (0008,0016) is a UID"),
        (
            "(0020,000D)",
            "StudyInstanceUID (0020,000D) is a UID, which identifies what HealthImaging stores; "
            "a sheet cannot change it (as a key column, write its keyword)",
        ),
        ("SOPInstanceUID", "SOPInstanceUID (0008,0018) is a UID"),
        ("TransferSyntaxUID", "is file meta information (group 0002)"),
        ("LargestImagePixelValue", "takes US or SS depending on the pixel data"),
        (" PatientName", "the header starts or ends with a space"),
        (
            "Patient\u00a0Name",
            "the header holds a non-breaking space (U+00A0) at character 8",
        ),
    ],
)
def test_it_names_each_bad_header(header: str, expected: str) -> None:
    quoted = f'"{header}"' if "," in header else header
    assert expected in refusal(csv_sheet(f"AccessionNumber,{quoted}", "A1,x"))


@pytest.mark.parametrize(
    "header", ["PatientName", "(0010,0010)", "00100010", "0010,0010"]
)
def test_a_value_column_is_named_by_keyword_or_tag(header: str) -> None:
    row = only_row(csv_sheet(f'AccessionNumber,"{header}"', "A1,Doe^John"))
    assert row.values[0].info.keyword == "PatientName"


def test_an_unquoted_tag_in_a_csv_header_is_named() -> None:
    assert "in a CSV file a header with a comma is quoted" in refusal(
        csv_sheet("AccessionNumber,(0010,0010)", "A1,x")
    )


def test_it_refuses_a_column_named_twice() -> None:
    message = refusal(csv_sheet("AccessionNumber,PatientName,00100010", "A1,x,y"))
    assert "Column C (00100010) names PatientName again, as column B does" in message


def test_it_refuses_a_sheet_without_a_key_column_and_takes_patient_id_with_scope() -> (
    None
):
    assert "The sheet has no key column" in refusal(
        csv_sheet("PatientID,PatientName", "P1,x")
    )
    assert (
        only_row(csv_sheet("PatientID,Scope,PatientName", "P1,patient,x")).scope
        == "patient"
    )


def test_it_refuses_a_sheet_without_a_value_column() -> None:
    assert "The sheet has no value column" in refusal(
        csv_sheet("AccessionNumber,PatientID", "A1,P1")
    )


def test_it_refuses_a_value_in_a_column_with_no_header() -> None:
    message = refusal(csv_sheet("AccessionNumber,,StudyDescription", "A1,x,CT"))
    assert "Row 2, column B holds a value but the column has no header" in message
    assert only_row(csv_sheet("AccessionNumber,,StudyDescription", "A1,,CT")).values


# --- Values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "cell", "expected"),
    [
        (
            "00080020",
            "2024-01-31",
            "Row 2, column B (00080020): '2024-01-31' is a date with separators",
        ),
        ("00080020", "31/01/2024", "does not guess which of day and month comes first"),
        ("00080020", "202401", "looks like a spreadsheet's date serial number"),
        ("00080020", "20241331", "value is not a calendar date (DA is YYYYMMDD)"),
        (
            "StudyDescription",
            "x" * 65,
            "LO is at most 64 characters; this value has 65",
        ),
        ("SeriesNumber", "two", "IS takes a whole number, such as 42"),
        ("PatientSex", "female", "Row 2, column B (PatientSex):"),
        (
            "PatientName",
            "Doe^John=ド^ジョン",
            "a sheet writes a name's alphabetic form only",
        ),
    ],
)
def test_a_value_that_breaks_its_vr_is_refused(
    column: str, cell: str, expected: str
) -> None:
    row = only_row(csv_sheet(f"AccessionNumber,{column}", f"A1,{cell}"))
    assert any(expected in m for m in messages(row)), messages(row)
    assert row.values == []


@pytest.mark.parametrize(
    ("column", "cell"),
    [("00080020", "20240131"), ("StudyDescription", "x" * 64), ("SeriesNumber", "2"),
     ("PatientSex", "F"), ("PatientName", "Doe^John")],
)  # fmt: skip
def test_a_value_that_keeps_its_vr_passes(column: str, cell: str) -> None:
    row = only_row(csv_sheet(f"AccessionNumber,{column}", f"A1,{cell}"))
    assert row.problems == []


def test_a_serial_date_names_the_date_a_spreadsheet_shows() -> None:
    row = only_row(csv_sheet("AccessionNumber,00080020", "A1,45123"))
    assert (
        "'45123' looks like a spreadsheet's date serial number, which a spreadsheet shows as 2023-07-16"
        in messages(row)[0]
    )
    assert [p.code for p in row.problems] == ["spreadsheet_date_serial"]


def test_a_serial_patient_birth_date_is_named_without_its_value() -> None:
    row = only_row(csv_sheet("AccessionNumber,PatientBirthDate", "A1,29221"))
    assert (
        "the value looks like a spreadsheet's date serial number:" in messages(row)[0]
    )
    assert "29221" not in messages(row)[0]
    assert "1980" not in messages(row)[0]


def test_scientific_notation_in_a_key_is_named_and_a_plain_number_passes() -> None:
    row = only_row(csv_sheet("AccessionNumber,StudyDescription", "1.2345E+11,CT"))
    assert messages(row) == [
        "Row 2, column A (AccessionNumber): '1.2345E+11' is a long number in scientific notation, which a "
        "spreadsheet rounded: format the column as Text and type the full value."
    ]
    assert (
        only_row(
            csv_sheet("AccessionNumber,StudyDescription", "123450000000,CT")
        ).problems
        == []
    )


def test_a_whole_number_written_as_a_float_is_named() -> None:
    row = only_row(csv_sheet("AccessionNumber,StudyDescription", "12345.0,CT"))
    assert [p.code for p in row.problems] == ["spreadsheet_number"]
    assert (
        "'12345.0' is a whole number a spreadsheet wrote with a decimal point"
        in messages(row)[0]
    )
    # A DS value may well be written so.
    assert (
        only_row(csv_sheet("AccessionNumber,PatientWeight", "A1,70.0")).problems == []
    )


def test_a_non_breaking_space_is_named_with_its_place() -> None:
    row = only_row(csv_sheet("AccessionNumber,PatientName", "A1,Doe^\u00a0John"))
    assert messages(row) == [
        "Row 2, column B (PatientName): the value holds a non-breaking space (U+00A0) at character 5; "
        "replace it with a plain space, or remove it."
    ]
    assert (
        only_row(csv_sheet("AccessionNumber,StudyDescription", "A1,CT HEAD")).problems
        == []
    )


def test_stray_whitespace_is_named() -> None:
    row = only_row(csv_sheet("AccessionNumber,StudyDescription", "A1 ,CT"))
    assert messages(row) == [
        "Row 2, column A (AccessionNumber): the value starts or ends with whitespace; remove it."
    ]


def test_xlsx_dates_and_numbers_where_text_belongs_are_named() -> None:
    data = xlsx_sheet(
        ["AccessionNumber", "StudyDate", "StudyDescription", "SeriesNumber"],
        ["A1", datetime.datetime(2024, 1, 31), 12345.5, 2],  # noqa: DTZ001 (a cell has no zone)
        [12345, "20240131", "CT", 3],
        [1234567890123456, None, "CT", None],
    )
    first, second, third = sheet_read(data).rows
    assert [p.code for p in first.problems] == [
        "spreadsheet_date",
        "spreadsheet_number",
    ]
    assert (
        "the cell holds a spreadsheet date or time, not text"
        in first.problems[0].message
    )
    assert (
        "Row 2, column C (StudyDescription): the cell holds 12345.5, a number with a decimal point, where LO takes text"
        in first.problems[1].message
    )
    # A whole number in a text column is read as its digits; matching says when leading zeros are missing.
    assert second.problems == []
    assert second.keys == {"AccessionNumber": "12345", "StudyDate": "20240131"}
    assert [p.code for p in third.problems] == ["number_digits_lost"]


def test_xlsx_scientific_notation_is_named() -> None:
    (row,) = sheet_read(
        xlsx_sheet(["AccessionNumber", "StudyDescription"], [1.2345e20, "CT"])
    ).rows
    assert "1.2345E+20, a number in scientific notation" in row.problems[0].message


# --- Keys --------------------------------------------------------------------------------------------


def test_damage_in_a_key_cell_is_named() -> None:
    row = only_row(
        csv_sheet("AccessionNumber,StudyDate,StudyDescription", "A1,45123,CT")
    )
    assert [(p.column, p.code) for p in row.problems] == [
        ("StudyDate", "spreadsheet_date_serial")
    ]
    assert (
        only_row(
            csv_sheet("AccessionNumber,StudyDate,StudyDescription", "A1,20230716,CT")
        ).problems
        == []
    )


def test_a_row_keyed_only_by_patient_id_needs_scope_patient() -> None:
    row = only_row(csv_sheet("AccessionNumber,PatientID,StudyDescription", ",P1,CT"))
    assert messages(row) == [
        "Row 2, column A (AccessionNumber): the row names no study: fill StudyInstanceUID, AccessionNumber or "
        "SeriesInstanceUID (PatientID alone needs Scope=patient)."
    ]
    assert (
        only_row(
            csv_sheet("AccessionNumber,PatientID,StudyDescription", "A1,P1,CT")
        ).problems
        == []
    )


def test_scope_is_one_of_study_series_patient() -> None:
    row = only_row(csv_sheet("PatientID,Scope,PatientName", "P1,Patient,x"))
    assert messages(row) == [
        "Row 2, column B (Scope): Scope is one of study, series, patient, or empty (study, or series when "
        "SeriesInstanceUID is filled)."
    ]


def test_a_patient_row_takes_its_studies_from_patient_id_alone() -> None:
    header = "PatientID,Scope,AccessionNumber,PatientName"
    row = only_row(csv_sheet(header, "P1,patient,A1,x"))
    assert messages(row) == [
        "Row 2, column C (AccessionNumber): a Scope=patient row takes its studies from PatientID alone; "
        "leave AccessionNumber empty."
    ]
    assert "fill PatientID" in messages(only_row(csv_sheet(header, ",patient,,x")))[0]


def test_a_series_row_needs_a_series_uid() -> None:
    header = "StudyInstanceUID,SeriesInstanceUID,Scope,SeriesDescription"
    assert (
        "Scope=series needs a SeriesInstanceUID"
        in messages(only_row(csv_sheet(header, "1.2,,series,x")))[0]
    )
    assert only_row(csv_sheet(header, "1.2,1.2.3,,x")).scope == "series"


def test_a_row_that_sets_nothing_is_refused() -> None:
    row = only_row(csv_sheet("AccessionNumber,StudyDescription,PatientID", "A1,,P1"))
    assert messages(row) == [
        "Row 2 sets no value: fill a value cell, or write <empty> to clear one."
    ]


def test_it_refuses_an_empty_sheet() -> None:
    assert "The sheet is empty" in refusal(b"")
    assert "The sheet is empty" in refusal(b",,\nA1,x\n")


def test_it_refuses_a_file_over_10_mib_and_takes_one_under() -> None:
    header = "AccessionNumber,StudyDescription\n"
    assert "a sheet is at most 10,485,760 bytes" in refusal(
        (header + " " * 10 * 1024 * 1024).encode()
    )
    assert sheet_read((header + "A1,CT\n").encode()).rows
