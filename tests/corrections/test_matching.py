"""Matching a sheet against a scan of localaws over HTTP: one study, series or patient per row, or the row's problem."""

from __future__ import annotations

import pytest

from imports.corrections.matching import RowResult, corrections_match
from imports.corrections.sheet import sheet_read
from imports.models import Scan
from tests.corrections.conftest import (
    MERGE_1,
    MERGE_1_SERIES_2,
    MERGE_2,
    MERGE_3,
    SAME_1,
    SAME_2,
    TWIN_A,
    TWIN_B,
    ZEROS,
)

pytestmark = pytest.mark.django_db


def match(scan: Scan, *lines: str) -> list[RowResult]:
    return corrections_match(
        scan=scan, sheet=sheet_read(("\n".join(lines) + "\n").encode())
    )


def changes(result: RowResult) -> dict[str, tuple[object, str]]:
    return {c.keyword: (c.before, c.after) for c in result.changes}


def test_a_sheet_keyed_by_accession_matches_one_study_with_what_its_instances_hold(
    scan: Scan,
) -> None:
    (result,) = match(
        scan,
        'AccessionNumber,StudyDescription,"(0010,0020)"',
        "0012345,CT BRAIN,000988",
    )
    assert (result.status, result.study_instance_uids) == ("ok", [ZEROS])
    assert changes(result) == {
        # The two instances spell it two ways: both, with their counts.
        "StudyDescription": (
            [{"value": "CT HEAD", "count": 1}, {"value": "CT Head", "count": 1}],
            "CT BRAIN",
        ),
        "PatientID": ([{"value": "000987", "count": 2}], "000988"),
    }
    assert result.changes[1].as_dict(masked=True)["before"] == [
        {"value": "0***", "count": 2}
    ]


def test_a_sheet_keyed_by_uid_matches_its_study_and_an_attribute_the_scan_does_not_index_has_no_before(
    scan: Scan,
) -> None:
    (result,) = match(scan, "StudyInstanceUID,PatientBirthDate", f"{TWIN_B},19800102")
    assert (result.status, result.study_instance_uids) == ("ok", [TWIN_B])
    assert changes(result) == {"PatientBirthDate": (None, "19800102")}


def test_a_key_that_matches_nothing_is_refused(scan: Scan) -> None:
    (result,) = match(scan, "StudyInstanceUID,StudyDescription", "1.2.3.4,CT")
    assert result.status == "error"
    assert (
        result.message
        == "Row 2, column A (StudyInstanceUID): no study has StudyInstanceUID 1.2.3.4."
    )
    assert result.code == "no_match"


def test_a_key_that_matches_once_its_leading_zeros_are_put_back_says_so(
    scan: Scan,
) -> None:
    (result,) = match(scan, "AccessionNumber,StudyDescription", "12345,CT")
    assert result.message == (
        "Row 2, column A (AccessionNumber): no study has AccessionNumber 12345; 0012345 does — were leading "
        "zeros lost?"
    )
    (ok,) = match(scan, "AccessionNumber,StudyDescription", "0012345,CT")
    assert ok.status == "ok"


def test_a_patient_id_narrowing_that_lost_its_zeros_says_so_masked(scan: Scan) -> None:
    (result,) = match(
        scan, "AccessionNumber,PatientID,StudyDescription", "0012345,987,CT"
    )
    assert result.message == (
        "Row 2, column B (PatientID): AccessionNumber 0012345 matches 1 study, but none has PatientID 9***; "
        "0*** does — were leading zeros lost?"
    )
    assert "987" not in result.message


def test_a_key_that_matches_several_studies_says_how_many_and_what_decides(
    scan: Scan,
) -> None:
    (result,) = match(scan, "AccessionNumber,StudyDescription", "DUP,MR")
    assert result.code == "several_matches"
    assert result.message == (
        f"Row 2, column A (AccessionNumber): AccessionNumber DUP matches 2 studies ({TWIN_A}, {TWIN_B}); "
        "PatientID would decide: fill it."
    )
    (narrowed,) = match(
        scan, "AccessionNumber,PatientID,StudyDescription", "DUP,PAT-B,MR"
    )
    assert (narrowed.status, narrowed.study_instance_uids) == ("ok", [TWIN_B])


def test_when_no_narrowing_column_decides_it_says_to_key_by_uid(scan: Scan) -> None:
    (result,) = match(scan, "AccessionNumber,StudyDescription", "SAME,XR CHEST")
    assert result.message == (
        f"Row 2, column A (AccessionNumber): AccessionNumber SAME matches 2 studies ({SAME_1}, {SAME_2}); "
        "neither PatientID nor StudyDate tells them apart: key the row by StudyInstanceUID."
    )
    (keyed,) = match(
        scan,
        "StudyInstanceUID,AccessionNumber,StudyDescription",
        f"{SAME_2},SAME,XR CHEST",
    )
    assert (keyed.status, keyed.study_instance_uids) == ("ok", [SAME_2])


def test_a_narrowing_column_that_leaves_nothing_says_so(scan: Scan) -> None:
    (dated,) = match(
        scan, "AccessionNumber,StudyDate,StudyDescription", "DUP,20240101,MR"
    )
    assert dated.message == (
        "Row 2, column B (StudyDate): AccessionNumber DUP matches 2 studies, but none has StudyDate 20240101."
    )
    (same_date,) = match(
        scan, "AccessionNumber,StudyDate,StudyDescription", "DUP,20240103,MR"
    )
    assert same_date.message.endswith("PatientID would decide: fill it.")


def test_a_patient_row_merges_every_study_of_the_patient(scan: Scan) -> None:
    (result,) = match(
        scan,
        'PatientID,Scope,"(0010,0020)",PatientName',
        "PAT-M,patient,PAT-N,New^Name",
    )
    assert result.status == "ok"
    assert result.study_instance_uids == sorted([MERGE_1, MERGE_2, MERGE_3])
    # MERGE_1 has three instances over two series, the others one each.
    assert changes(result)["PatientID"] == ([{"value": "PAT-M", "count": 5}], "PAT-N")
    assert changes(result)["PatientName"] == (
        [{"value": "Patient^PAT-M", "count": 5}],
        "New^Name",
    )
    (nobody,) = match(scan, 'PatientID,Scope,"(0010,0020)"', "PAT-X,patient,PAT-N")
    assert nobody.message == "Row 2, column A (PatientID): no study has PatientID P***."


def test_a_series_row_matches_its_series(scan: Scan) -> None:
    (result,) = match(
        scan,
        "SeriesInstanceUID,SeriesDescription,StudyDescription",
        f"{MERGE_1_SERIES_2},AX T2,CT",
    )
    assert (result.status, result.study_instance_uids, result.series_instance_uid) == (
        "ok", [MERGE_1], MERGE_1_SERIES_2,
    )  # fmt: skip
    assert changes(result) == {
        "SeriesDescription": ([{"value": "series 2", "count": 2}], "AX T2"),
        "StudyDescription": (
            None,
            "CT",
        ),  # the scan indexes it per study, not per series
    }
    (missing,) = match(scan, "SeriesInstanceUID,SeriesDescription", "1.2.3.9,AX")
    assert (
        missing.message
        == "Row 2, column A (SeriesInstanceUID): no series has SeriesInstanceUID 1.2.3.9."
    )


def test_two_rows_that_set_different_values_on_one_study_conflict_on_both(
    scan: Scan,
) -> None:
    first, second, third = match(
        scan,
        "StudyInstanceUID,AccessionNumber,StudyDescription",
        f"{TWIN_A},,MR KNEE LEFT",
        ",DUP,MR",  # several studies: refused for itself, so it claims nothing
        f"{TWIN_A},,MR KNEE RIGHT",
    )
    assert (first.status, second.status, third.status) == ("error", "error", "error")
    assert first.message == (
        f"Row 2, column C (StudyDescription): row 4 sets StudyDescription of study {TWIN_A} to "
        "'MR KNEE RIGHT'; give each study one value (one row per study, or the same value in both rows)."
    )
    assert third.message.startswith("Row 4, column C (StudyDescription): row 2 sets")
    assert second.code == "several_matches"


def test_a_patient_row_and_a_study_row_conflict_on_a_shared_study_and_patient_values_stay_masked(
    scan: Scan,
) -> None:
    merge, study = match(
        scan,
        'PatientID,Scope,StudyInstanceUID,"(0010,0020)"',
        "PAT-M,patient,,PAT-N",
        f",,{MERGE_2},PAT-Q",
    )
    assert merge.code == study.code == "conflict"
    assert study.message == (
        f"Row 3, column D ((0010,0020)): row 2 sets PatientID of study {MERGE_2} to a different value; give "
        "each study one value (one row per study, or the same value in both rows)."
    )
    assert "PAT-N" not in merge.message + study.message


def test_rows_that_agree_do_not_conflict(scan: Scan) -> None:
    results = match(
        scan,
        'PatientID,Scope,StudyInstanceUID,"(0010,0020)"',
        "PAT-M,patient,,PAT-N",
        f",,{MERGE_2},PAT-N",
    )
    assert [r.status for r in results] == ["ok", "ok"]


def test_series_rows_of_different_series_do_not_conflict(scan: Scan) -> None:
    results = match(
        scan,
        "SeriesInstanceUID,SeriesDescription",
        f"{MERGE_1}.1,ONE",
        f"{MERGE_1_SERIES_2},TWO",
    )
    assert [r.status for r in results] == ["ok", "ok"]


def test_a_row_that_changes_nothing_is_unchanged_not_an_error(scan: Scan) -> None:
    unchanged, changed = match(
        scan,
        'StudyInstanceUID,StudyDescription,"(0008,0020)"',
        f"{TWIN_A},MR KNEE,20240103",
        f"{TWIN_B},MR KNEE,20240104",
    )
    assert unchanged.status == "unchanged"
    assert (
        unchanged.message
        == "Row 2 changes nothing: every value it sets is what the scan found in 1 study."
    )
    assert changed.status == "ok"


def test_a_value_two_instances_spell_differently_is_a_change(scan: Scan) -> None:
    (result,) = match(scan, "StudyInstanceUID,StudyDescription", f"{ZEROS},CT HEAD")
    assert result.status == "ok"


def test_a_row_with_sheet_problems_is_not_matched(scan: Scan) -> None:
    (result,) = match(scan, "AccessionNumber,StudyDescription", "1.2345E+11,CT")
    assert (result.status, result.code, result.study_instance_uids) == (
        "error",
        "scientific_notation",
        [],
    )


def test_matching_a_sheet_takes_a_handful_of_queries(
    scan: Scan, django_assert_max_num_queries
) -> None:
    lines = [
        f"{uid},X" for uid in (ZEROS, TWIN_A, TWIN_B, MERGE_1, MERGE_2, MERGE_3)
    ] * 3
    with django_assert_max_num_queries(4):
        match(scan, "StudyInstanceUID,StudyDescription", *lines)
