"""The prediction's comparison, alone: normalization, which keywords differ, where stored values are found."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imports.drafts.prediction_rules import (
    attributes_differ,
    normalize,
    series_in_document,
    stored_attributes,
)

STORED = {
    "PatientID": "PAT-1",
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "StudyDate": "20240102",
    "AccessionNumber": "ACC-1",
    "StudyID": "S1",
    "StudyDescription": "CT HEAD",
    "SeriesNumber": 1,
    "Modality": "CT",
}

text = st.text(
    alphabet=st.characters(blacklist_characters="\\=^\0", blacklist_categories=["Cs"]),
    max_size=20,
)


def test_the_same_values_differ_nowhere() -> None:
    imported = {k: str(v) for k, v in STORED.items()}
    assert attributes_differ(imported, STORED) == []


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("PatientID", "PAT-2"),
        ("PatientName", "Doe^John"),
        ("PatientBirthDate", "19700102"),
        ("PatientSex", "M"),
        ("StudyDate", "20240103"),
        ("AccessionNumber", "ACC-2"),
        ("StudyID", "S2"),
        ("StudyDescription", "CT HEAD 2"),
        ("SeriesNumber", "2"),
        ("Modality", "MR"),
        # Case is kept: a case change is a difference.
        ("PatientID", "pat-1"),
        # An empty value where one is stored.
        ("AccessionNumber", ""),
    ],
)
def test_each_compared_attribute_that_changes_is_named(
    keyword: str, value: str
) -> None:
    imported = {k: str(v) for k, v in STORED.items()} | {keyword: value}
    assert attributes_differ(imported, STORED) == [keyword]


def test_attributes_the_import_does_not_know_are_not_compared() -> None:
    assert attributes_differ({"PatientID": "PAT-1"}, STORED) == []
    assert attributes_differ({}, STORED) == []


def test_an_absent_stored_value_equals_an_empty_imported_one() -> None:
    assert attributes_differ({"StudyID": ""}, {}) == []
    assert attributes_differ({"StudyID": "S1"}, {}) == ["StudyID"]


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        ("Doe^Jane^^", "Doe^Jane"),
        ("Doe^Jane ", "Doe^Jane"),
        ("Doe ^Jane", "Doe^Jane"),
        ("Doe^Jane==", "Doe^Jane"),
        # The stored name is one group: the ideographic group of the import is not compared.
        ("Doe^Jane=山田^花子", "Doe^Jane"),
        ({"Alphabetic": "Doe^Jane"}, "Doe^Jane"),
    ],
)
def test_person_names_compare_component_by_component(mine: object, theirs: str) -> None:
    assert attributes_differ({"PatientName": mine}, {"PatientName": theirs}) == []


def test_person_names_with_other_components_differ() -> None:
    assert attributes_differ(
        {"PatientName": "Doe^Jane^A"}, {"PatientName": "Doe^Jane"}
    ) == ["PatientName"]
    assert attributes_differ(
        {"PatientName": "Doe^Jane=山田"}, {"PatientName": "Doe^Jane=田中"}
    ) == ["PatientName"]


def test_numbers_compare_as_numbers() -> None:
    assert attributes_differ({"SeriesNumber": " 01"}, {"SeriesNumber": 1}) == []
    assert attributes_differ({"SeriesNumber": "1"}, {"SeriesNumber": 1.0}) == []


@given(value=text, padding=st.text(alphabet=" \0", max_size=4))
def test_trailing_spaces_and_nul_padding_never_make_a_difference(
    value: str, padding: str
) -> None:
    for keyword in ("PatientID", "StudyDescription", "PatientName"):
        assert normalize(keyword, value + padding) == normalize(keyword, value)


@given(value=text)
def test_normalizing_twice_changes_nothing(value: str) -> None:
    for keyword in ("PatientID", "PatientName", "SeriesNumber"):
        once = normalize(keyword, value)
        assert normalize(keyword, once) == once


@given(components=st.lists(text, min_size=1, max_size=5), extra=st.integers(0, 3))
def test_trailing_empty_name_components_never_make_a_difference(
    components: list[str], extra: int
) -> None:
    name = "^".join(components)
    assert (
        attributes_differ({"PatientName": name + "^" * extra}, {"PatientName": name})
        == []
    )


@given(a=text, b=text)
def test_values_differ_exactly_when_their_normal_forms_differ(a: str, b: str) -> None:
    differs = attributes_differ({"AccessionNumber": a}, {"AccessionNumber": b}) != []
    assert differs == (a.rstrip(" \0") != b.rstrip(" \0"))


DOCUMENT = {
    "Patient": {"DICOM": {"PatientID": "PAT-1", "PatientName": "Doe^Jane"}},
    "Study": {
        "DICOM": {"StudyDate": "20240102", "AccessionNumber": "ACC-1"},
        "Series": {
            "1.2.3": {"DICOM": {"Modality": "CT", "SeriesNumber": 4}, "Instances": {}},
            "1.2.4": {"DICOM": {"Modality": "MR"}, "Instances": {}},
        },
    },
}


def test_stored_values_are_read_at_their_level_for_the_series_asked() -> None:
    assert stored_attributes(DOCUMENT, "1.2.3") == {
        "PatientID": "PAT-1",
        "PatientName": "Doe^Jane",
        "StudyDate": "20240102",
        "AccessionNumber": "ACC-1",
        "SeriesNumber": 4,
        "Modality": "CT",
    }
    assert stored_attributes(DOCUMENT, "1.2.4")["Modality"] == "MR"
    assert "Modality" not in stored_attributes(DOCUMENT, "9.9")
    assert series_in_document(DOCUMENT) == ["1.2.3", "1.2.4"]
    assert series_in_document({}) == []
