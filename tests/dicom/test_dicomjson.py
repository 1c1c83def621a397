"""DICOM JSON checks added for mapping validation: depth, empty files, refused elements, the parsed document, and
messages that never echo a value that could be patient data. Pure: no Django, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imports.dicom.json_model import (
    MAX_DEPTH,
    dataset_from_dicom_json,
    validate_dicom_json,
)

STUDY = "1.2.826.0.1.3680043.8.498.10000000000000000000000000000000001"
SERIES = "1.2.826.0.1.3680043.8.498.20000000000000000000000000000000001"


def attr(vr: str, *value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(value)}


GOOD = {
    "0020000D": attr("UI", STUDY),
    "0020000E": attr("UI", SERIES),
    "00081030": attr("LO", "CT Chest"),
}


def messages(data: Any) -> list[str]:
    text = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return [str(e) for e in validate_dicom_json(text).errors]


def nested_sequences(levels: int) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for _ in range(levels):
        item = {"00081115": attr("SQ", item)}
    return item


# --- Input that once raised ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000]
)
def test_it_reports_json_nested_thousands_of_levels_deep_instead_of_raising(
    text: str,
) -> None:
    result = validate_dicom_json(text)
    assert [e.message for e in result.errors] == [
        f"nested too deeply: arrays and objects may nest at most {MAX_DEPTH} levels (each nested sequence takes 3)"
    ]
    assert result.document is None


def test_it_refuses_sequences_nested_past_the_depth_limit_that_json_itself_could_parse() -> (
    None
):
    deep = nested_sequences(MAX_DEPTH // 3 + 1)
    result = validate_dicom_json(json.dumps(deep))
    assert [e.message for e in result.errors][0].startswith("nested too deeply")
    assert result.document is None


def test_it_accepts_sequences_nested_up_to_the_depth_limit() -> None:
    # The top object is level 1 and each sequence adds 3 levels.
    result = validate_dicom_json(json.dumps(nested_sequences((MAX_DEPTH - 1) // 3)))
    assert result.is_valid, result.errors


def test_it_refuses_a_deep_dict_handed_to_it_directly_rather_than_raising() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        dataset_from_dicom_json(nested_sequences(400))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "file is empty; a metadata file holds one DICOM JSON object"),
        ("", "file is empty; a metadata file holds one DICOM JSON object"),
        (
            b" \n\t\r\n",
            "file holds only whitespace; a metadata file holds one DICOM JSON object",
        ),
        (b"\xef\xbb\xbf", "file is empty; a metadata file holds one DICOM JSON object"),
    ],
)
def test_it_says_plainly_that_a_file_is_empty(data: bytes | str, message: str) -> None:
    assert message in [e.message for e in validate_dicom_json(data).errors]


def test_it_does_not_call_a_small_valid_file_empty() -> None:
    assert validate_dicom_json(b"{}").is_valid


# --- The parsed document -------------------------------------------------------------------------------------


def test_it_hands_back_the_parsed_object_of_a_valid_file() -> None:
    assert validate_dicom_json(json.dumps(GOOD)).document == GOOD


def test_it_hands_back_the_parsed_object_even_when_the_object_has_errors() -> None:
    bad = {**GOOD, "00080020": attr("DA", "2024-01-31")}
    result = validate_dicom_json(json.dumps(bad))
    assert not result.is_valid
    assert result.document == bad


@pytest.mark.parametrize("text", ["[{}]", '"x"', "{", "12"])
def test_it_hands_back_no_document_when_the_text_is_not_one_object(text: str) -> None:
    assert validate_dicom_json(text).document is None


def test_it_hands_back_no_document_for_a_file_over_the_size_limit() -> None:
    assert validate_dicom_json(json.dumps(GOOD), max_bytes=10).document is None


# --- Elements a metadata file must not carry -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "attribute", "message"),
    [
        (
            "00080000",
            attr("UL", 4),
            "(0008,0000) is a group length; group length elements (gggg0000)",
        ),
        ("00100000", attr("UL", 4), "(0010,0000) is a group length"),
        (
            "00020010",
            attr("UI", "1.2.840.10008.1.2.1"),
            "TransferSyntaxUID (0002,0010) is file meta information (group 0002)",
        ),
        ("00020000", attr("UL", 4), "is a group length"),
        (
            "7FE00010",
            {"vr": "OW"},
            "PixelData (7FE0,0010) is pixel data; a metadata file carries attributes only",
        ),
        (
            "7FE00008",
            {"vr": "OF", "InlineBinary": "AAAAAA=="},
            "FloatPixelData (7FE0,0008) is float pixel data",
        ),
        (
            "7FE00009",
            {"vr": "OD", "InlineBinary": "AAAAAAAAAAA="},
            "DoubleFloatPixelData (7FE0,0009) is double float pixel data",
        ),
    ],
)
def test_it_refuses_group_lengths_file_meta_and_pixel_data(
    key: str, attribute: Any, message: str
) -> None:
    found = messages({**GOOD, key: attribute})
    assert any(m.startswith(f"{key}: ") and message in m for m in found), found


def test_it_refuses_pixel_data_inside_a_sequence_item_too() -> None:
    found = messages({**GOOD, "00081115": attr("SQ", {"7FE00010": {"vr": "OW"}})})
    assert any(m.startswith("00081115.Value[0].7FE00010: PixelData") for m in found), (
        found
    )


@pytest.mark.parametrize("key", ["00080005", "00280010", "7FE10010", "00091010"])
def test_it_accepts_elements_next_to_the_refused_ones(key: str) -> None:
    attribute = {
        "00080005": attr("CS", "ISO_IR 100"),
        "00280010": attr("US", 512),
        "7FE10010": {"vr": "OB", "InlineBinary": "AA=="},
        "00091010": attr("LO", "private"),
    }[key]
    assert messages({**GOOD, key: attribute}) == []


# --- Never echo a value that could be patient data -----------------------------------------------------------

SECRET_NAME = "Zyxwvut^Qponmlk"
SECRET_ID = "PID-7788-SECRET"

LEAKY = {
    "00100010": attr("PN", SECRET_NAME),  # a plain string where PN needs an object
    "00100020": attr("LO", SECRET_ID + "\\" + SECRET_ID),  # backslash in LO
    "00101000": attr("LO", SECRET_ID * 5),  # OtherPatientIDs, too long
    "00100030": attr("DA", SECRET_ID),  # PatientBirthDate, not a date
    "00101010": attr("AS", SECRET_ID),  # PatientAge, not an age
    "00100040": attr("CS", SECRET_ID),  # PatientSex, not a CS
    "00101030": attr("DS", SECRET_ID),  # PatientWeight, not a number
    "00101020": attr("DS", "1" + "9" * 20),  # PatientSize, too long
    "00100021": attr("UI", "0" + SECRET_ID),  # IssuerOfPatientID declared UI
    "00100022": attr(
        "UI", "1.0778899"
    ),  # a UI-declared patient value with a leading zero
    "00081030": attr("SH", SECRET_ID),  # StudyDescription under the wrong VR
    "00081040": attr(
        "LO", SECRET_ID + "\n"
    ),  # InstitutionalDepartmentName, control character
    "00080080": attr("LO", SECRET_ID * 5),  # InstitutionName, too long
    "00080090": attr(
        "PN", {"Alphabetic": SECRET_NAME * 5}
    ),  # ReferringPhysicianName, too long
    "00080030": attr("TM", SECRET_ID),
    "0008002A": attr("DT", SECRET_ID),
    "00280009": attr("AT", SECRET_ID),
    "00200013": attr("IS", SECRET_ID),
    "00091010": attr("UI", "1.2." + "0778899"),  # private, declared UI
    "00091011": {"vr": SECRET_ID, "Value": ["x"]},  # data typed where the VR goes
    "00091012": {"vr": {"Alphabetic": SECRET_NAME}},
    "00321032": attr("PN", SECRET_NAME),  # RequestingPhysician
}


def test_no_message_echoes_a_patient_name_an_id_or_any_text_value() -> None:
    found = messages({**GOOD, **LEAKY})
    assert len(found) >= len(LEAKY), found
    for message in found:
        for secret in (SECRET_NAME, SECRET_ID, "Zyxwvut", "7788", "778899", "0778899"):
            assert secret not in message, message


def test_a_plain_string_person_name_is_explained_without_quoting_it() -> None:
    assert messages({**GOOD, "00100010": attr("PN", "Doe^Jane")}) == [
        "00100010.Value[0]: PatientName (0010,0010) must be an object with Alphabetic, Ideographic or Phonetic "
        '(PN values are objects such as {"Alphabetic": "Doe^John"}); got a string'
    ]


def test_a_malformed_uid_is_described_without_any_part_of_it() -> None:
    # A "UID" that breaks the rules may be a name typed in the wrong place: it is never quoted back.
    assert messages({**GOOD, "0020000D": attr("UI", "1.2.03")}) == [
        "0020000D.Value[0]: StudyInstanceUID (0020,000D): "
        "a UID component has a leading zero; only the component '0' may start with 0"
    ]
    found = messages({**GOOD, "0020000D": attr("UI", "Doe^Jane")})
    assert found == [
        "0020000D.Value[0]: StudyInstanceUID (0020,000D): "
        "UID contains characters other than digits 0-9 and '.'"
    ]


def test_a_key_or_member_that_is_not_a_tag_is_named_by_its_position() -> None:
    found = messages(
        {
            **GOOD,
            "Doe^Jane": attr("LO", "x"),
            "00081030": {"vr": "LO", "Value": ["x"], "DEMO0001": 1},
        }
    )
    assert all("Doe" not in m and "DEMO0001" not in m for m in found), found
    assert any(m.startswith("(key ") and "is not a valid key" in m for m in found)
    assert any(m.startswith("00081030.(member 3): unknown member") for m in found)


def test_the_same_text_as_study_and_series_is_not_quoted_unless_it_is_a_uid() -> None:
    found = messages(
        {**GOOD, "0020000D": attr("UI", SECRET_ID), "0020000E": attr("UI", SECRET_ID)}
    )
    assert (
        "0020000E: the same value names both the study and the series; they must differ"
        in found
    )
    assert all(SECRET_ID not in m for m in found)


def test_every_value_message_names_the_element() -> None:
    found = messages(
        {**GOOD, "00080020": attr("DA", "2024-01-31"), "00280010": attr("US", 70000)}
    )
    assert found == [
        "00080020.Value[0]: StudyDate (0008,0020): value is not a DICOM date; DA is YYYYMMDD, such as '20240131'",
        "00280010.Value[0]: Rows (0028,0010): value is out of range for US (0 to 65535)",
    ]
