"""Mapping validation against a scan index. Pure: no database, no network."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from imports.mappings.rules import (
    MAX_MAPPINGS,
    Mapping,
    MetadataFile,
    PrefixIndex,
    Problem,
    mappings_validate,
    metadata_path_problem,
    problems_sorted,
    uid_dicom_problem,
    uid_field_problem,
)

ROOT = "1.2.826.0.1.3680043.8.498"
STUDY = f"{ROOT}.1"
SERIES = f"{ROOT}.1.1"
SERIES_2 = f"{ROOT}.1.2"
OTHER_STUDY = f"{ROOT}.2"
OTHER_SERIES = (
    f"{ROOT}.7.1"  # not a prefix match of OTHER_STUDY, so messages can be searched
)
PATH = "meta/study1.json"
SECRET_NAME = "Zyxwvut^Qponmlk"
SECRET_ID = "PID-7788-SECRET"


def attr(vr: str, *value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(value)}


def meta(
    path: str = PATH,
    document: dict[str, Any] | None = None,
    *,
    valid: bool = True,
    errors: tuple[str, ...] = (),
    size: int = 200,
    etag: str = '"e1"',
) -> MetadataFile:
    if document is None:
        document = {"0008103E": attr("LO", "Axial 1 mm")}
    return MetadataFile(
        path=path, etag=etag, size=size, valid=valid, errors=errors, document=document
    )


def make_index(*files: MetadataFile, **overrides: Any) -> PrefixIndex:
    fields: dict[str, Any] = {
        "studies": {
            STUDY: frozenset({SERIES, SERIES_2}),
            OTHER_STUDY: frozenset({OTHER_SERIES}),
        },
        "json_files": {f.path: f for f in (files or (meta(),))},
        "file_count": 10,
        "total_bytes": 10_000,
        "folder_count": 2,
        "max_files": 5000,
        "max_bytes": 10 * 1000**3,
        "max_folders": 10_000,
        "json_max_bytes": 1024 * 1024,
    }
    return PrefixIndex(**{**fields, **overrides})


def row(study: str = STUDY, series: str = SERIES, path: str = PATH) -> Mapping:
    return Mapping(
        study_instance_uid=study, series_instance_uid=series, metadata_file_path=path
    )


def validate(
    *mappings: Mapping, index: PrefixIndex | None = None, **kwargs: Any
) -> list[Problem]:
    return mappings_validate(
        mappings=list(mappings), index=index or make_index(), **kwargs
    )


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


def only(problems: list[Problem], code: str) -> Problem:
    found = [p for p in problems if p.code == code]
    assert len(found) == 1, problems
    return found[0]


# --- A clean set -------------------------------------------------------------------------------------------------


def test_it_finds_nothing_wrong_with_a_set_that_maps_every_study_and_file() -> None:
    other = meta("meta/other.json")
    index = make_index(meta(), other)
    assert validate(row(), row(OTHER_STUDY, "", "meta/other.json"), index=index) == []


# --- UIDs --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uid", "code", "message"),
    [
        (
            "1.2.abc",
            "uid_invalid_character",
            "UID contains 'a', 'b', 'c'; only digits 0-9 and '.' are allowed",
        ),
        (
            "1.2.3\n",
            "uid_invalid_character",
            "UID contains '\\n'; only digits 0-9 and '.' are allowed",
        ),
        (
            "1" * 513,
            "uid_too_long",
            "UID is 513 characters long; HealthImaging accepts at most 512",
        ),
        ("", "uid_empty", "UID is empty"),
    ],
)
def test_it_gives_each_uid_healthimaging_refuses_its_own_code(
    uid: str, code: str, message: str
) -> None:
    assert uid_field_problem(uid) == (code, message)


@pytest.mark.parametrize(
    ("uid", "code", "message"),
    [
        (
            "1.2.03.4",
            "uid_leading_zero",
            "UID component '03' has a leading zero; only the component '0' may start with 0",
        ),
        (
            "1" * 65,
            "uid_longer_than_dicom",
            "UID is 65 characters long; the maximum is 64",
        ),
        (".1.2", "uid_leading_dot", "UID starts with '.'; it must start with a digit"),
        ("1.2.", "uid_trailing_dot", "UID ends with '.'; it must end with a digit"),
        (
            "1..2",
            "uid_empty_component",
            "UID has an empty component ('..'); components are separated by a single '.'",
        ),
    ],
)
def test_it_gives_each_uid_healthimaging_accepts_but_dicom_does_not_its_own_code(
    uid: str, code: str, message: str
) -> None:
    assert uid_field_problem(uid) is None
    assert uid_dicom_problem(uid) == (code, message)


@pytest.mark.parametrize("uid", ["0", "1.2.0.3", "2.25.1234567890", "1." * 31 + "12"])
def test_it_accepts_valid_uids_up_to_64_characters(uid: str) -> None:
    assert len(uid) <= 64
    assert uid_field_problem(uid) is None
    assert uid_dicom_problem(uid) is None


def test_it_accepts_a_uid_of_512_digits_and_dots_as_healthimaging_does() -> None:
    assert uid_field_problem("1." * 255 + "12") is None
    assert uid_field_problem("1" * 512) is None


# The UIDs real archives hold: HealthImaging imports them, DICOM forbids them.
ODD_STUDY = f"{ROOT}.01"
ODD_SERIES = f"{ROOT}.01." + "1" * 70
ODD_UIDS = {ODD_STUDY: frozenset({ODD_SERIES, f"{ROOT}.01..2"})}


def odd_index() -> PrefixIndex:
    return make_index(studies={**make_index().studies, **ODD_UIDS})


def test_it_rejects_a_uid_with_a_leading_zero_that_no_scanned_file_carries() -> None:
    problem = only(validate(row(study=ODD_STUDY, series="")), "uid_leading_zero")
    assert (problem.severity, problem.row, problem.field) == (
        "error",
        1,
        "studyInstanceUID",
    )
    assert problem.message.startswith(
        "StudyInstanceUID: UID component '01' has a leading zero"
    )
    assert "No scanned file under the input prefix carries this UID" in problem.message
    assert "study_not_in_scan" not in codes(validate(row(study=ODD_STUDY, series="")))


def test_it_warns_on_a_uid_with_a_leading_zero_that_the_scanned_files_carry() -> None:
    problems = validate(row(study=ODD_STUDY, series=""), index=odd_index())
    problem = only(problems, "uid_leading_zero")
    assert (problem.severity, problem.row, problem.field) == (
        "warning",
        1,
        "studyInstanceUID",
    )
    assert (
        "The scanned files carry this UID and HealthImaging accepts it"
        in problem.message
    )
    assert [p for p in problems if p.severity == "error"] == []


@pytest.mark.parametrize(
    ("series", "code"),
    [(ODD_SERIES, "uid_longer_than_dicom"), (f"{ROOT}.01..2", "uid_empty_component")],
)
def test_it_warns_on_a_non_dicom_series_uid_that_the_scanned_files_carry(
    series: str, code: str
) -> None:
    problems = validate(row(study=ODD_STUDY, series=series), index=odd_index())
    problem = only(problems, code)
    assert (problem.severity, problem.field) == ("warning", "seriesInstanceUID")
    assert [p for p in problems if p.severity == "error"] == []


def test_it_rejects_a_non_dicom_series_uid_that_the_study_does_not_carry() -> None:
    # The study carries ODD_SERIES, but STUDY does not: the UID is the scan's, the pairing is not.
    problem = only(
        validate(row(study=STUDY, series=ODD_SERIES), index=odd_index()),
        "uid_longer_than_dicom",
    )
    assert (problem.severity, problem.field) == ("error", "seriesInstanceUID")


@pytest.mark.parametrize(
    ("series", "code"),
    [
        ("1" * 513, "uid_too_long"),
        (f"{ROOT}.1.x", "uid_invalid_character"),
        ("1" * 65, "uid_longer_than_dicom"),
        (f"{ROOT}.1.01", "uid_leading_zero"),
    ],
)
def test_it_rejects_a_broken_series_uid_on_the_series_field(
    series: str, code: str
) -> None:
    problem = only(validate(row(series=series)), code)
    assert (problem.severity, problem.row, problem.field) == (
        "error",
        1,
        "seriesInstanceUID",
    )


def test_it_rejects_a_uid_healthimaging_refuses_even_when_the_scan_holds_it() -> None:
    # A scan records whatever a header says; the service still refuses the request.
    bad = f"{ROOT}.1x"
    index = make_index(studies={**make_index().studies, bad: frozenset()})
    problem = only(
        validate(row(study=bad, series=""), index=index), "uid_invalid_character"
    )
    assert problem.severity == "error"


def test_it_requires_a_study_uid() -> None:
    problem = only(validate(row(study="", series="")), "uid_empty")
    assert problem.field == "studyInstanceUID"


def test_it_accepts_an_empty_series_uid_as_a_study_level_mapping() -> None:
    assert [p for p in validate(row(series="")) if p.severity == "error"] == []


def test_it_rejects_a_study_the_scan_did_not_find() -> None:
    problem = only(validate(row(study=f"{ROOT}.9", series="")), "study_not_in_scan")
    assert problem.severity == "error"
    assert f"StudyInstanceUID {ROOT}.9 is not among the 2 studies" in problem.message


def test_it_accepts_a_study_the_scan_found() -> None:
    assert "study_not_in_scan" not in codes(validate(row()))


def test_it_rejects_a_series_of_another_study_without_naming_that_study() -> None:
    problem = only(validate(row(series=OTHER_SERIES)), "series_not_in_study")
    assert (problem.severity, problem.field) == ("error", "seriesInstanceUID")
    assert f"{OTHER_SERIES} is not a series of study {STUDY}" in problem.message
    assert OTHER_STUDY not in problem.message


def test_it_accepts_a_series_of_the_mapped_study() -> None:
    assert "series_not_in_study" not in codes(validate(row(series=SERIES_2)))


def test_it_does_not_pile_a_series_error_on_a_study_the_scan_lacks() -> None:
    assert codes(validate(row(study=f"{ROOT}.9"))).count("series_not_in_study") == 0


# --- metadataFilePath --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("../x", "path_traversal"),
        ("a/../../b", "path_traversal"),
        ("./x", "path_traversal"),
        ("a/..", "path_traversal"),
        ("a/./b.json", "path_traversal"),
        ("..", "path_traversal"),
        ("%2e%2e/x", "path_traversal"),
        ("%2E./x", "path_traversal"),
        ("a/%2e%2E/b", "path_traversal"),
        ("..%2fx", "path_traversal"),
        ("%252e%252e/x", "path_encoded_twice"),
        ("%25252525252e%25252525252e/x", "path_encoded_twice"),
        ("a/%252Fb.json", "path_encoded_twice"),
        ("/x", "path_absolute"),
        ("/meta/study1.json", "path_absolute"),
        ("a\\b.json", "path_backslash"),
        ("..\\x", "path_backslash"),
        ("a%5c..%5cb", "path_traversal"),
        ("a\x00b.json", "path_invalid_character"),
        ("\u202egnp.json", "path_invalid_character"),
        ("m\u00e9ta.json", "path_invalid_character"),
        ("a\tb.json", "path_invalid_character"),
        ("a\x7fb.json", "path_invalid_character"),
        (" a.json", "path_space_at_end"),
        ("a.json ", "path_space_at_end"),
        ("", "path_empty"),
        ("a" * 1025, "path_too_long"),
    ],
)
def test_it_refuses_a_metadata_path_outside_the_allowed_form(
    path: str, code: str
) -> None:
    problem = metadata_path_problem(path)
    assert problem is not None
    assert problem[0] == code
    found = only(validate(row(path=path)), code)
    assert (found.severity, found.row, found.field) == ("error", 1, "metadataFilePath")


@pytest.mark.parametrize(
    "path",
    [
        "x",
        "meta/study 1.json",
        "a..b/c.json",
        "a/...json",
        "a/.hidden.json",
        "a%2fb.json",
        "100%25.json",
        "~!#$&'()*+,;=@[]^`{|}",
        "a" * 1024,
    ],
)
def test_it_accepts_a_relative_printable_ascii_path(path: str) -> None:
    assert metadata_path_problem(path) is None


def test_it_names_a_bad_character_by_code_point_not_by_quoting_the_path() -> None:
    code, message = metadata_path_problem("\u202egnp.json") or ("", "")
    assert message == (
        "metadataFilePath contains U+202E; only printable ASCII (0x21-0x7E) and inner spaces are allowed"
    )


def test_it_accepts_a_path_of_1024_characters_that_the_scan_found() -> None:
    long_path = "a" * 1024
    problems = validate(row(path=long_path), index=make_index(meta(long_path)))
    assert codes(problems) == ["unmapped_study"]


def test_it_rejects_a_file_the_scan_did_not_find() -> None:
    problem = only(validate(row(path="meta/nope.json")), "file_missing")
    assert (problem.severity, problem.field) == ("error", "metadataFilePath")


def test_it_rejects_a_file_that_changed_since_it_was_mapped() -> None:
    problem = only(validate(row(), recorded_etags={PATH: '"e0"'}), "file_changed")
    assert problem.severity == "error"
    assert "re-open the file and accept the new version" in problem.message


def test_it_accepts_a_file_at_the_recorded_etag() -> None:
    assert "file_changed" not in codes(
        validate(row(), recorded_etags={PATH: '"e1"', "other.json": '"x"'})
    )


def test_it_reports_a_recorded_file_that_is_gone_as_missing() -> None:
    found = codes(
        validate(row(path="meta/gone.json"), recorded_etags={"meta/gone.json": '"e1"'})
    )
    assert "file_missing" in found
    assert "file_changed" not in found


def test_it_rejects_a_file_over_the_metadata_size_limit() -> None:
    index = make_index(
        meta(size=1025, valid=False, errors=("file is 1.0 KiB",)), json_max_bytes=1024
    )
    problem = only(validate(row(), index=index), "file_too_large")
    assert "1,025 bytes; metadata files are read up to 1,024 bytes" in problem.message
    assert "json_invalid" not in codes(validate(row(), index=index))


def test_it_accepts_a_file_exactly_at_the_size_limit() -> None:
    assert "file_too_large" not in codes(
        validate(row(), index=make_index(meta(size=1024), json_max_bytes=1024))
    )


def test_it_rejects_a_file_the_scan_found_invalid_quoting_its_first_messages() -> None:
    errors = tuple(f"0008{n:04X}: problem {n}" for n in range(5))
    problem = only(
        validate(row(), index=make_index(meta(valid=False, errors=errors))),
        "json_invalid",
    )
    assert problem.message == (
        f"{PATH} is not valid DICOM JSON: 00080000: problem 0; 00080001: problem 1; 00080002: problem 2 (and 2 more)"
    )


def test_it_accepts_a_file_the_scan_found_valid() -> None:
    assert "json_invalid" not in codes(validate(row()))


# --- What a metadata file sets -----------------------------------------------------------------------------------


def with_document(document: dict[str, Any]) -> PrefixIndex:
    return make_index(meta(document=document))


def test_a_file_may_repeat_the_uids_it_is_mapped_to() -> None:
    index = with_document(
        {"0020000D": attr("UI", STUDY), "0020000E": attr("UI", SERIES)}
    )
    assert codes(validate(row(), index=index)) == ["unmapped_study"]


def test_it_warns_when_a_file_names_another_study() -> None:
    problem = only(
        validate(row(), index=with_document({"0020000D": attr("UI", OTHER_STUDY)})),
        "file_names_other_study",
    )
    assert (problem.severity, problem.field) == ("warning", "metadataFilePath")
    assert (
        f"StudyInstanceUID (0020,000D) to {OTHER_STUDY}, but this row maps it to study {STUDY}"
        in problem.message
    )


def test_it_warns_when_a_file_names_another_series() -> None:
    problem = only(
        validate(row(), index=with_document({"0020000E": attr("UI", SERIES_2)})),
        "file_names_other_series",
    )
    assert problem.severity == "warning"
    assert f"to {SERIES_2}, but this row maps it to series {SERIES}" in problem.message


def test_it_warns_when_a_file_empties_a_uid() -> None:
    found = validate(row(), index=with_document({"0020000D": {"vr": "UI"}}))
    assert "an empty value" in only(found, "uid_changed").message


def test_it_warns_when_a_study_level_file_sets_a_series_uid() -> None:
    problem = only(
        validate(row(series=""), index=with_document({"0020000E": attr("UI", SERIES)})),
        "uid_changed",
    )
    assert "every series of the study the same UID" in problem.message


def test_it_warns_when_a_file_sets_a_sop_instance_uid() -> None:
    problem = only(
        validate(row(), index=with_document({"00080018": attr("UI", f"{ROOT}.3")})),
        "uid_changed",
    )
    assert "SOPInstanceUID (0008,0018)" in problem.message
    assert "instance_attribute" not in codes(
        validate(row(), index=with_document({"00080018": attr("UI", f"{ROOT}.3")}))
    )


PATIENT_DOC = {
    "00100010": attr("PN", {"Alphabetic": SECRET_NAME}),
    "00100020": attr("LO", SECRET_ID),
}


def test_it_warns_about_patient_attributes_in_a_series_level_file_naming_tags_not_values() -> (
    None
):
    problem = only(
        validate(row(), index=with_document(PATIENT_DOC)),
        "patient_attribute_in_series_file",
    )
    assert problem.severity == "warning"
    assert (
        "sets patient attributes PatientName (0010,0010), PatientID (0010,0020)"
        in problem.message
    )
    assert SECRET_NAME not in problem.message
    assert SECRET_ID not in problem.message


def test_it_accepts_patient_attributes_in_a_study_level_file() -> None:
    assert "patient_attribute_in_series_file" not in codes(
        validate(row(series=""), index=with_document(PATIENT_DOC))
    )


def test_it_warns_about_study_attributes_in_a_series_level_file() -> None:
    index = with_document(
        {"00081030": attr("LO", "CT Chest"), "0008103E": attr("LO", "Axial")}
    )
    problem = only(validate(row(), index=index), "study_attribute_in_series_file")
    assert "StudyDescription (0008,1030)" in problem.message
    assert "SeriesDescription" not in problem.message


def test_it_accepts_study_attributes_in_a_study_level_file() -> None:
    assert "study_attribute_in_series_file" not in codes(validate(row(series="")))


@pytest.mark.parametrize("series", [SERIES, ""])
def test_it_warns_about_instance_attributes_at_any_level(series: str) -> None:
    index = with_document({"00200013": attr("IS", 1), "00280010": attr("US", 512)})
    problem = only(validate(row(series=series), index=index), "instance_attribute")
    assert "InstanceNumber (0020,0013), Rows (0028,0010)" in problem.message


def test_it_accepts_a_file_of_series_attributes_only() -> None:
    index = with_document(
        {"0008103E": attr("LO", "Axial"), "00080060": attr("CS", "CT")}
    )
    assert [p for p in validate(row(), index=index) if p.row is not None] == []


def test_it_leaves_content_warnings_until_the_file_is_valid() -> None:
    index = make_index(meta(document=PATIENT_DOC, valid=False, errors=("x: y",)))
    assert "patient_attribute_in_series_file" not in codes(validate(row(), index=index))


def test_no_problem_quotes_a_value_from_a_metadata_file() -> None:
    document = {
        **PATIENT_DOC,
        "00081030": attr("LO", SECRET_ID),
        "00200013": attr("IS", "778899"),
        "0020000D": attr("UI", OTHER_STUDY),
    }
    for series in (SERIES, ""):
        for problem in validate(row(series=series), index=with_document(document)):
            for secret in (SECRET_NAME, SECRET_ID, "Zyxwvut", "778899"):
                assert secret not in problem.message, problem


# --- The set -----------------------------------------------------------------------------------------------------


def test_it_requires_at_least_one_mapping() -> None:
    problem = only(validate(), "no_mappings")
    assert (problem.severity, problem.row, problem.field) == ("error", None, "")


def test_it_accepts_a_single_mapping() -> None:
    assert "no_mappings" not in codes(validate(row()))


def big_world(series_count: int) -> tuple[list[Mapping], PrefixIndex]:
    series = [f"{STUDY}.{n}" for n in range(1, series_count + 1)]
    files = [meta(f"meta/{n}.json") for n in range(1, series_count + 1)]
    index = make_index(*files, studies={STUDY: frozenset(series)})
    return [
        row(series=s, path=f.path) for s, f in zip(series, files, strict=True)
    ], index


def test_it_accepts_a_thousand_mappings_against_a_thousand_series_and_files() -> None:
    mappings, index = big_world(MAX_MAPPINGS)
    assert validate(*mappings, index=index) == []


def test_it_rejects_more_than_a_thousand_mappings_quoting_the_count_and_the_limit() -> (
    None
):
    mappings, index = big_world(MAX_MAPPINGS + 1)
    problem = only(validate(*mappings, index=index), "too_many_mappings")
    assert (problem.severity, problem.row) == ("error", None)
    assert "there are 1,001 mappings; a job takes at most 1,000" in problem.message


def test_it_rejects_a_repeated_study_and_series_naming_the_first_row() -> None:
    problems = validate(row(), row(series=SERIES_2), row())
    problem = only(problems, "duplicate_mapping")
    assert (problem.severity, problem.row, problem.field) == (
        "error",
        3,
        "seriesInstanceUID",
    )
    assert problem.message.startswith("row 1 already maps this study and series")


def test_it_rejects_a_repeated_study_level_mapping() -> None:
    problem = only(validate(row(series=""), row(series="")), "duplicate_mapping")
    assert (problem.row, problem.field) == (2, "studyInstanceUID")
    assert problem.message.startswith(
        "row 1 already maps this study at the study level"
    )


def test_it_accepts_a_study_level_and_series_level_mapping_of_the_same_study() -> None:
    assert "duplicate_mapping" not in codes(
        validate(row(series=""), row(), row(series=SERIES_2))
    )


def test_it_reports_each_repeat_after_the_first() -> None:
    duplicates = [
        p for p in validate(row(), row(), row()) if p.code == "duplicate_mapping"
    ]
    assert [(p.row, p.message[:5]) for p in duplicates] == [(2, "row 1"), (3, "row 1")]


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (
            {"file_count": 5001},
            "quota_files",
            "the input prefix holds 5,001 files; an import job takes at most 5,000",
        ),
        (
            {"total_bytes": 10 * 1000**3 + 1},
            "quota_bytes",
            "the input prefix holds 10.00 GB (10,000,000,001 bytes); an import job takes at most 10 GB",
        ),
        (
            {"total_bytes": 12_500_000_000},
            "quota_bytes",
            "the input prefix holds 12.50 GB (12,500,000,000 bytes); an import job takes at most 10 GB",
        ),
        (
            {"folder_count": 10_001},
            "quota_folders",
            "the input prefix holds 10,001 folders; an import job takes at most 10,000",
        ),
    ],
)
def test_it_rejects_a_prefix_over_a_quota_quoting_the_figures(
    overrides: dict[str, int], code: str, message: str
) -> None:
    problem = only(validate(row(), index=make_index(**overrides)), code)
    assert (problem.severity, problem.row, problem.message) == ("error", None, message)


def test_it_accepts_a_prefix_exactly_at_every_quota() -> None:
    index = make_index(file_count=5000, total_bytes=10 * 1000**3, folder_count=10_000)
    assert not {"quota_files", "quota_bytes", "quota_folders"} & set(
        codes(validate(row(), index=index))
    )


def test_it_warns_about_json_files_no_mapping_names() -> None:
    index = make_index(meta(), meta("meta/stray.json"))
    problem = only(validate(row(), index=index), "unmapped_json_file")
    assert (problem.severity, problem.row) == ("warning", None)
    assert problem.message.startswith(
        "1 JSON file under the input prefix is not named by any mapping: meta/stray.json;"
    )


def test_it_lists_ten_unmapped_files_and_counts_the_rest() -> None:
    strays = [meta(f"stray/{n:02}.json") for n in range(13)]
    problem = only(
        validate(row(), index=make_index(meta(), *strays)), "unmapped_json_file"
    )
    assert "13 JSON files" in problem.message
    assert "stray/09.json and 3 more;" in problem.message
    assert "stray/10.json" not in problem.message


def test_it_accepts_a_set_that_names_every_json_file() -> None:
    assert "unmapped_json_file" not in codes(validate(row()))


def test_it_warns_about_studies_no_mapping_names() -> None:
    problem = only(validate(row()), "unmapped_study")
    assert (problem.severity, problem.row) == ("warning", None)
    assert (
        f"1 study under the input prefix has no mapping: {OTHER_STUDY}; the job imports them too"
        in problem.message
    )


def test_it_accepts_a_set_that_names_every_study() -> None:
    assert "unmapped_study" not in codes(validate(row(), row(OTHER_STUDY, "")))


# --- Order -------------------------------------------------------------------------------------------------------


def test_it_sorts_errors_first_then_the_set_then_rows() -> None:
    problems = [
        Problem("warning", 1, "", "w1", ""),
        Problem("error", 2, "", "e2", ""),
        Problem("warning", None, "", "w0", ""),
        Problem("error", 1, "", "e1", ""),
        Problem("error", None, "", "e0", ""),
    ]
    assert codes(problems_sorted(problems)) == ["e0", "e1", "e2", "w0", "w1"]


def test_it_returns_problems_sorted() -> None:
    problems = validate(
        row(), row(study=f"{ROOT}.01"), index=make_index(file_count=9999)
    )
    assert problems == problems_sorted(problems)
    assert codes(problems)[:2] == ["quota_files", "uid_leading_zero"]


def test_problems_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Problem("error", None, "", "x", "").code = "y"  # type: ignore[misc]
