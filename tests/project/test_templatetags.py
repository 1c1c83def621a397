"""The filters that show DICOM values: masking keeps one letter a word and nothing else."""

from __future__ import annotations

import pytest

from imports.templatetags.imports_tags import (
    dicom_date,
    lookup,
    mask,
    percent_of,
    person_name,
    transfer_syntax,
)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("DOE^JOHN", "D*** J***"),
        ("Smith^John^A", "S*** J*** A***"),
        ("PAT-0042", "P***"),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Y*** T***"),
        ("=山田^太郎", "***"),
        ("", ""),
        (None, ""),
    ],
)
def test_it_masks_names_and_ids(value: str | None, masked: str) -> None:
    assert mask(value) == masked


def test_it_shows_a_person_name_for_reading() -> None:
    assert person_name("DOE^JOHN") == "DOE, JOHN"
    assert person_name("Smith^John^A^Dr") == "Smith, John A Dr"
    assert person_name("Yamada^Tarou=山田^太郎") == "Yamada, Tarou"


def test_it_formats_dicom_dates_and_leaves_other_values_alone() -> None:
    assert dicom_date("20240102") == "2024-01-02"
    assert dicom_date("2024") == "2024"
    assert dicom_date(None) == ""


def test_it_names_transfer_syntaxes_it_knows() -> None:
    assert transfer_syntax("1.2.840.10008.1.2.1.99") == "Deflated explicit VR LE"
    assert transfer_syntax("1.2.3.4") == "1.2.3.4"
    assert transfer_syntax("") == "none"


def test_it_caps_a_share_at_100_percent() -> None:
    assert percent_of(2500, 5000) == 50
    assert percent_of(6000, 5000) == 100
    assert percent_of(1, 0) == 0


def test_lookup_answers_a_keys_value_and_none_for_a_missing_key_or_mapping() -> None:
    assert lookup({"Modality": "CT"}, "Modality") == "CT"
    assert lookup({"Modality": "CT"}, "PatientID") is None
    assert lookup({"Modality": "CT"}, None) is None
    assert lookup(None, "Modality") is None
