"""The verification's comparison rules (imports.jobs.metadata_compare), pure: each with a passing and a failing case."""

from __future__ import annotations

from typing import Any

import pytest

from imports.jobs.metadata_compare import (
    file_overrides,
    observed_outcome,
    stored_level,
    value_text,
)

DOCUMENT: dict[str, Any] = {
    "Patient": {"DICOM": {"PatientID": "PAT-1", "PatientName": "Doe^Jane"}},
    "Study": {
        "DICOM": {"StudyDescription": "CT HEAD"},
        "Series": {"1.2.3": {"DICOM": {"SeriesDescription": "AX", "SeriesNumber": 2}}},
    },
}


@pytest.mark.parametrize(
    ("given", "stored", "same"),
    [
        (["CT HEAD "], "CT HEAD", True),  # trailing space
        (["CT HEAD\0"], "CT HEAD", True),  # NUL padding
        (["CT head"], "CT HEAD", False),  # case is kept
        ([{"Alphabetic": "Doe^Jane", "Ideographic": "ドウ"}], "Doe^Jane", True),
        ([{"Alphabetic": "Doe^John"}], "Doe^Jane", False),
        ([2], 2, True),
        ([2.0], "2", True),
        ([2], 3, False),
        (["A", "B"], ["A", "B"], True),
        (["A", "B"], ["A"], False),
    ],
)
def test_values_compare_as_the_module_says(given: Any, stored: Any, same: bool) -> None:
    assert (value_text(given) == value_text(stored)) is same


def test_a_file_sets_its_attributes_at_their_levels_without_uids_sequences_or_binaries() -> (
    None
):
    overrides = file_overrides(
        {
            "0020000D": {"vr": "UI", "Value": ["1.2"]},
            "00100020": {"vr": "LO", "Value": ["PAT-2"]},
            "00081030": {"vr": "LO", "Value": ["CT BRAIN"]},
            "0008103E": {"vr": "LO", "Value": ["AX"]},
            "00081032": {"vr": "SQ", "Value": [{}]},
            "00091001": {"vr": "OB", "InlineBinary": "AAAA"},
            "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
            "not a tag": {"vr": "LO", "Value": ["x"]},
        }
    )
    assert sorted(overrides) == [
        ("patient", "PatientID", "PAT-2"),
        ("series", "SeriesDescription", "AX"),
        ("study", "StudyDescription", "CT BRAIN"),
    ]


def test_a_value_is_looked_for_at_its_own_level_only() -> None:
    assert stored_level(DOCUMENT, "patient", "1.2.3")["PatientID"] == "PAT-1"
    assert "PatientID" not in stored_level(DOCUMENT, "study", "1.2.3")
    assert stored_level(DOCUMENT, "series", "1.2.3")["SeriesDescription"] == "AX"
    assert stored_level(DOCUMENT, "series", "9.9.9") == {}


@pytest.mark.parametrize(
    ("primary", "version", "image_set", "predicted", "observed"),
    [
        (False, 1, "b", {"outcome": "adds_to", "image_set_id": "a"}, "non_primary"),
        (True, 2, "a", {"outcome": "adds_to", "image_set_id": "a"}, "adds_to"),
        (True, 1, "b", {"outcome": "new", "image_set_id": None}, "new"),
        (True, 3, "c", {"outcome": "new", "image_set_id": None}, "adds_to"),
        (None, 1, "b", {"outcome": "new", "image_set_id": None}, None),
    ],
)
def test_what_an_import_did_comes_from_is_primary_and_the_version(
    primary: bool | None,
    version: int,
    image_set: str,
    predicted: dict[str, Any],
    observed: str | None,
) -> None:
    assert (
        observed_outcome(
            is_primary=primary,
            version=version,
            image_set_id=image_set,
            predicted=predicted,
        )
        == observed
    )
