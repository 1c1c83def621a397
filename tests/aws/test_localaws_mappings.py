"""JSON metadata mappings: what is applied, in which order, and how a bad mapping is reported."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from localaws.dicomjson import InvalidDicomJson, check_dataset
from localaws.jobs import resolve_metadata_key
from localaws.testing import dicom_bytes

IN = "s3://input-bucket/in/"
OUT = "s3://output-bucket/out/"
STUDY = "1.2.826.0.1.3680043.8.498.20"
SERIES_A = "1.2.826.0.1.3680043.8.498.21"
SERIES_B = "1.2.826.0.1.3680043.8.498.22"
DESCRIPTION = "00081030"
SERIES_DESCRIPTION = "0008103E"


@pytest.fixture
def world(localaws):
    localaws.create_bucket("input-bucket")
    localaws.create_bucket("output-bucket")
    localaws.datastore_id = localaws.create_datastore()
    localaws.put(
        IN + "a1.dcm",
        dicom_bytes(study=STUDY, series=SERIES_A, StudyDescription="P10 value"),
    )
    localaws.put(
        IN + "a2.dcm",
        dicom_bytes(study=STUDY, series=SERIES_A, StudyDescription="P10 value"),
    )
    localaws.put(
        IN + "b1.dcm",
        dicom_bytes(
            study=STUDY, series=SERIES_B, SeriesNumber=2, StudyDescription="P10 value"
        ),
    )
    return localaws


def lo(value):
    return {"vr": "LO", "Value": [value]}


def run(world, *mappings):
    params = {}
    if mappings:
        params["importConfiguration"] = {
            "dicomJsonMetadataImportConfiguration": {
                "dicomMetadataMappings": list(mappings)
            }
        }
    job_id = world.start_import(world.datastore_id, IN, OUT, **params)
    props = world.wait_for_job(world.datastore_id, job_id)
    return props, world.read_output(props)


def stored_by_series(world):
    return {
        s["seriesInstanceUID"]: s["metadata"]
        for s in world.image_sets(world.datastore_id)
    }


def test_it_applies_a_study_level_mapping_to_every_series_of_the_study(world):
    world.put(IN + "meta/study.json", {DESCRIPTION: lo("From JSON")})
    props, out = run(
        world, {"studyInstanceUID": STUDY, "metadataFilePath": "meta/study.json"}
    )
    assert props["jobStatus"] == "COMPLETED"
    assert out["failure"] == []
    stored = stored_by_series(world)
    assert stored[SERIES_A][DESCRIPTION]["Value"] == ["From JSON"]
    assert stored[SERIES_B][DESCRIPTION]["Value"] == ["From JSON"]


def test_it_lets_a_series_level_mapping_win_over_the_study_level_one(world):
    world.put(
        IN + "meta/study.json",
        {DESCRIPTION: lo("Study level"), SERIES_DESCRIPTION: lo("Study says")},
    )
    world.put(IN + "meta/series-a.json", {SERIES_DESCRIPTION: lo("Series A says")})
    _, out = run(
        world,
        # The series mapping comes first on purpose: precedence is by level, not by position.
        {
            "studyInstanceUID": STUDY,
            "seriesInstanceUID": SERIES_A,
            "metadataFilePath": "meta/series-a.json",
        },
        {"studyInstanceUID": STUDY, "metadataFilePath": "meta/study.json"},
    )
    assert out["failure"] == []
    stored = stored_by_series(world)
    assert stored[SERIES_A][SERIES_DESCRIPTION]["Value"] == ["Series A says"]
    assert stored[SERIES_A][DESCRIPTION]["Value"] == ["Study level"]
    assert stored[SERIES_B][SERIES_DESCRIPTION]["Value"] == ["Study says"]


def test_it_does_not_count_referenced_metadata_files_as_failed_dicom(world):
    world.put(IN + "meta/study.json", {DESCRIPTION: lo("x")})
    world.put(IN + "meta/unreferenced.json", {DESCRIPTION: lo("y")})
    _, out = run(
        world, {"studyInstanceUID": STUDY, "metadataFilePath": "meta/study.json"}
    )
    assert [line["inputFile"] for line in out["failure"]] == [
        "in/meta/unreferenced.json"
    ]
    assert out["manifest"]["jobSummary"]["numberOfScannedFiles"] == 5


def test_it_reports_a_mapping_whose_uid_matches_no_file(world):
    world.put(IN + "meta/other.json", {DESCRIPTION: lo("x")})
    _, out = run(
        world, {"studyInstanceUID": "1.2.3.999", "metadataFilePath": "meta/other.json"}
    )
    (line,) = out["failure"]
    assert line["inputFile"] == "in/meta/other.json"
    assert "No DICOM file under inputS3Uri matches" in line["exception"]["message"]
    assert len(out["success"]) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"{not json", "not valid JSON"),
        (
            {"00100010": {"vr": "PN", "Value": ["Doe^John"]}},
            "PN value must be an object",
        ),
        (
            {DESCRIPTION: {"vr": "SH", "Value": ["wrong VR"]}},
            "does not match the dictionary VR",
        ),
        ({"0020000D": {"vr": "UI", "Value": ["1.2.3.4"]}}, "protected attribute"),
    ],
)
def test_it_reports_a_bad_metadata_file_and_holds_back_the_instances_it_covers(
    world, content, message
):
    if content is not None:
        world.put(IN + "meta/bad.json", content)
    props, out = run(
        world,
        {
            "studyInstanceUID": STUDY,
            "seriesInstanceUID": SERIES_A,
            "metadataFilePath": "meta/bad.json",
        },
    )
    assert props["jobStatus"] == "COMPLETED"
    failures = {
        line["inputFile"]: line["exception"]["message"] for line in out["failure"]
    }
    assert message in failures["in/meta/bad.json"]
    assert "metadata mapping in/meta/bad.json failed" in failures["in/a1.dcm"]
    assert [line["inputFile"] for line in out["success"]] == ["in/b1.dcm"]


def test_it_reports_a_metadata_file_larger_than_the_cap(world):
    world.configure(max_metadata_file_bytes=64)
    world.put(IN + "meta/big.json", {DESCRIPTION: lo("x" * 60)})
    _, out = run(
        world, {"studyInstanceUID": STUDY, "metadataFilePath": "meta/big.json"}
    )
    failures = {
        line["inputFile"]: line["exception"]["message"] for line in out["failure"]
    }
    assert "larger than the 64 bytes allowed" in failures["in/meta/big.json"]


def test_it_makes_a_non_primary_image_set_when_an_override_conflicts_with_the_stored_patient(
    world,
):
    run(world)
    world.put(IN + "meta/patient.json", {"00100020": lo("OTHER-PATIENT")})
    _, out = run(
        world,
        {
            "studyInstanceUID": STUDY,
            "seriesInstanceUID": SERIES_B,
            "metadataFilePath": "meta/patient.json",
        },
    )
    by_file = {line["inputFile"]: line["importResponse"] for line in out["success"]}
    assert by_file["in/a1.dcm"]["isPrimary"] is True
    assert by_file["in/b1.dcm"]["isPrimary"] is False


def test_it_refuses_two_mappings_for_the_same_study_and_series(world):
    mapping = {"studyInstanceUID": STUDY, "metadataFilePath": "meta/study.json"}
    configuration = {
        "dicomJsonMetadataImportConfiguration": {
            "dicomMetadataMappings": [mapping, mapping]
        }
    }
    with pytest.raises(ClientError) as excinfo:
        world.start_import(
            world.datastore_id, IN, OUT, importConfiguration=configuration
        )
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"


def test_it_echoes_the_mappings_in_get_dicom_import_job(world):
    world.put(IN + "meta/study.json", {DESCRIPTION: lo("x")})
    mapping = {"studyInstanceUID": STUDY, "metadataFilePath": "meta/study.json"}
    props, _ = run(world, mapping)
    assert props["importConfiguration"]["dicomJsonMetadataImportConfiguration"][
        "dicomMetadataMappings"
    ] == [mapping]


def test_it_resolves_metadata_paths_relative_to_the_input_prefix_and_never_outside():
    assert resolve_metadata_key("in/", "meta/a.json") == "in/meta/a.json"
    assert resolve_metadata_key("in", "./meta/a.json") == "in/meta/a.json"
    assert resolve_metadata_key("in/", "../secret.json") is None
    assert resolve_metadata_key("", "a.json") == "a.json"


@pytest.mark.parametrize(
    "document",
    [
        [{"00100010": {"vr": "PN"}}],
        {"PatientName": {"vr": "PN"}},
        {"0010001a": {"vr": "LO"}},
        {"00100020": {"Value": ["x"]}},
        {"00100020": {"vr": "ZZ", "Value": ["x"]}},
        {"00100020": {"vr": "LO", "Value": "x"}},
        {"00100020": {"vr": "LO", "Value": ["x"], "InlineBinary": "AAAA"}},
        {"00100010": {"vr": "PN", "Value": [{"Alpha": "Doe"}]}},
        {"00080000": {"vr": "UL", "Value": [4]}},
        {"00200011": {"vr": "IS", "Value": [""]}},
        {"0020000D": {"vr": "UI", "Value": ["1.2.03"]}},
        {"00080050": {"vr": "SH", "Value": ["x" * 17]}},
        {"00081115": {"vr": "SQ", "Value": [{"0008114A": {"vr": "XX"}}]}},
    ],
)
def test_its_dicom_json_checker_rejects_non_conformant_documents(document):
    with pytest.raises(InvalidDicomJson):
        check_dataset(document)


def test_its_dicom_json_checker_accepts_a_conformant_document():
    check_dataset(
        {
            "00080020": {"vr": "DA", "Value": ["20240102"]},
            "00080050": {"vr": "SH"},
            "00100010": {
                "vr": "PN",
                "Value": [{"Alphabetic": "Doe^Jane", "Ideographic": "x"}],
            },
            "00200011": {"vr": "IS", "Value": [3]},
            "00081115": {
                "vr": "SQ",
                "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}}, {}],
            },
            "00091010": {"vr": "OB", "InlineBinary": "AAEC"},
        }
    )
