"""Import jobs over real HTTP with boto3: lifecycle, output layout, image sets, idempotency, quotas, paging."""

from __future__ import annotations

import re
import time

import pytest
from botocore.exceptions import ClientError
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from localaws.testing import dicom_bytes

IN = "s3://input-bucket/in/"
OUT = "s3://output-bucket/out/"
STUDY = "1.2.826.0.1.3680043.8.498.10"
SERIES = "1.2.826.0.1.3680043.8.498.11"
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def world(localaws):
    localaws.create_bucket("input-bucket")
    localaws.create_bucket("output-bucket")
    localaws.datastore_id = localaws.create_datastore()
    return localaws


def bundled(name):
    with open(get_testdata_file(name), "rb") as f:
        return f.read()


def run(world, prefix=IN, **params):
    job_id = world.start_import(world.datastore_id, prefix, OUT, **params)
    props = world.wait_for_job(world.datastore_id, job_id)
    return props, world.read_output(props)


def test_it_moves_a_job_from_submitted_through_in_progress_to_completed(world):
    world.configure(job_submitted_delay_s=0.3, job_in_progress_delay_s=0.3)
    world.put(IN + "ct.dcm", bundled("CT_small.dcm"))
    client = world.hi_client()
    started = client.start_dicom_import_job(
        datastoreId=world.datastore_id,
        dataAccessRoleArn="arn:aws:iam::123456789012:role/R",
        inputS3Uri=IN,
        outputS3Uri=OUT,
        jobName="first-import",
    )
    assert started["jobStatus"] == "SUBMITTED"
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = client.get_dicom_import_job(
            datastoreId=world.datastore_id, jobId=started["jobId"]
        )["jobProperties"]
        if not seen or seen[-1] != status["jobStatus"]:
            seen.append(status["jobStatus"])
        if status["jobStatus"] == "COMPLETED":
            break
        time.sleep(0.02)
    assert seen == ["SUBMITTED", "IN_PROGRESS", "COMPLETED"]
    assert status["jobName"] == "first-import"
    assert status["endedAt"] >= status["submittedAt"]


def test_it_writes_the_documented_output_layout_with_counts_and_image_sets(world):
    world.put(IN + "ct.dcm", bundled("CT_small.dcm"))
    world.put(IN + "mr.dcm", bundled("MR_small.dcm"))
    world.put(IN + "nested/deep/notes.txt", b"not dicom")
    props, out = run(world)

    folder = f"{OUT}{world.datastore_id}-DicomImport-{props['jobId']}/"
    assert props["jobStatus"] == "COMPLETED"
    assert props["outputS3Uri"] == folder
    assert out["files"] == [
        "FAILURE/failure.ndjson",
        "SUCCESS/success.ndjson",
        "job-output-manifest.json",
    ]
    summary = out["manifest"]["jobSummary"]
    assert summary["jobId"] == props["jobId"]
    assert summary["datastoreId"] == world.datastore_id
    assert summary["inputS3Uri"] == IN
    assert summary["outputS3Uri"] == folder
    assert summary["successOutputS3Uri"] == folder + "SUCCESS/"
    assert summary["failureOutputS3Uri"] == folder + "FAILURE/"
    assert (summary["numberOfScannedFiles"], summary["numberOfImportedFiles"]) == (3, 2)
    assert (
        summary["numberOfFilesWithCustomerError"],
        summary["numberOfFilesWithServerError"],
    ) == (1, 0)
    assert summary["numberOfGeneratedImageSets"] == 2
    for item in summary["imageSetsSummary"]:
        assert HEX32.fullmatch(item["imageSetId"])
        assert item["imageSetVersion"] == 1
        assert item["isPrimary"] is True
        assert item["numberOfMatchedSOPInstances"] == 1
    assert out["failure"] == [
        {
            "inputFile": "in/nested/deep/notes.txt",
            "exception": {
                "exceptionType": "ValidationException",
                "message": "DICOM attribute TransferSyntaxUID does not exist",
            },
        }
    ]
    assert sorted(line["inputFile"] for line in out["success"]) == [
        "in/ct.dcm",
        "in/mr.dcm",
    ]
    assert all(line["importResponse"]["isPrimary"] is True for line in out["success"])


def test_it_reports_hostile_objects_as_failures_without_failing_the_job(world):
    world.configure(max_metadata_file_bytes=1024)
    world.put(IN + "empty.dcm", b"")
    world.put(IN + "truncated.dcm", bundled("CT_small.dcm")[:300])
    world.put(IN + "no-meta.dcm", bundled("meta_missing_tsyntax.dcm"))
    world.put(
        IN + "no-sop.dcm", dicom_bytes(study=STUDY, series=SERIES, SOPInstanceUID=None)
    )
    world.put(IN + "ok.dcm", dicom_bytes(study=STUDY, series=SERIES))
    world.put(IN + "huge.json", b"[" + b"1," * 4000 + b"1]")
    props, out = run(world)

    assert props["jobStatus"] == "COMPLETED"
    failures = {
        line["inputFile"]: line["exception"]["message"] for line in out["failure"]
    }
    assert (
        failures["in/empty.dcm"] == "DICOM attribute TransferSyntaxUID does not exist"
    )
    assert failures["in/no-meta.dcm"].startswith("DICOM attribute")
    assert failures["in/no-sop.dcm"] == "DICOM attribute SOPInstanceUID does not exist"
    assert "in/truncated.dcm" in failures
    assert "in/huge.json" in failures
    assert [line["inputFile"] for line in out["success"]] == ["in/ok.dcm"]


def test_it_reads_explicit_implicit_and_deflated_transfer_syntaxes(world):
    for name, syntax in [
        ("e.dcm", None),
        ("i.dcm", ImplicitVRLittleEndian),
        ("d.dcm", DeflatedExplicitVRLittleEndian),
    ]:
        kwargs = {"transfer_syntax": syntax} if syntax else {}
        world.put(IN + name, dicom_bytes(study=STUDY, series=SERIES, **kwargs))
    _, out = run(world)
    assert out["failure"] == []
    assert len({line["importResponse"]["imageSetId"] for line in out["success"]}) == 1


def test_it_groups_instances_by_study_and_series(world):
    other_series = SERIES + ".2"
    for i in range(3):
        world.put(IN + f"a{i}.dcm", dicom_bytes(study=STUDY, series=SERIES))
    world.put(
        IN + "b.dcm", dicom_bytes(study=STUDY, series=other_series, SeriesNumber=2)
    )
    _, out = run(world)
    counts = sorted(
        s["numberOfMatchedSOPInstances"]
        for s in out["manifest"]["jobSummary"]["imageSetsSummary"]
    )
    assert counts == [1, 3]
    stored = world.image_sets(world.datastore_id)
    assert sorted(s["seriesInstanceUID"] for s in stored) == sorted(
        [SERIES, other_series]
    )


def test_it_bumps_the_version_of_the_primary_image_set_on_reimport(world):
    world.put(IN + "a.dcm", dicom_bytes(study=STUDY, series=SERIES, sop="1.2.3.4.1"))
    _, first = run(world)
    _, second = run(world)
    first_set = first["success"][0]["importResponse"]
    second_set = second["success"][0]["importResponse"]
    assert second_set["imageSetId"] == first_set["imageSetId"]
    assert (first_set["imageSetVersion"], second_set["imageSetVersion"]) == (1, 2)
    assert second_set["isPrimary"] is True


def test_it_makes_a_non_primary_image_set_when_patient_attributes_conflict(world):
    world.put(IN + "a.dcm", dicom_bytes(study=STUDY, series=SERIES, PatientID="PAT-1"))
    _, first = run(world)
    world.put(IN + "a.dcm", dicom_bytes(study=STUDY, series=SERIES, PatientID="PAT-2"))
    _, second = run(world)
    response = second["success"][0]["importResponse"]
    assert response["isPrimary"] is False
    assert response["imageSetId"] != first["success"][0]["importResponse"]["imageSetId"]
    stored = {s["imageSetId"]: s for s in world.image_sets(world.datastore_id)}
    assert stored[response["imageSetId"]]["metadata"]["00100020"]["Value"] == ["PAT-2"]


def test_it_warns_when_instances_of_one_series_disagree_on_other_attributes(world):
    world.put(
        IN + "a.dcm",
        dicom_bytes(study=STUDY, series=SERIES, StudyDescription="CT HEAD"),
    )
    world.put(
        IN + "b.dcm",
        dicom_bytes(study=STUDY, series=SERIES, StudyDescription="HEAD CT"),
    )
    _, out = run(world)
    assert "WARNING/warning.ndjson" in out["files"]
    assert out["manifest"]["jobSummary"]["warningsOutputS3Uri"].endswith("/WARNING/")
    (warning,) = out["warning"]
    assert warning["inputFile"] == "in/b.dcm"
    assert (
        warning["importResponse"]["warnings"][0]["type"] == "COERCION_OF_DATA_ELEMENTS"
    )


def test_it_returns_the_same_job_for_a_repeated_client_token(world):
    client = world.hi_client()
    params = {
        "datastoreId": world.datastore_id,
        "dataAccessRoleArn": "arn:aws:iam::123456789012:role/R",
        "inputS3Uri": IN,
        "outputS3Uri": OUT,
        "clientToken": "submission-42",
    }
    first = client.start_dicom_import_job(**params)
    again = client.start_dicom_import_job(**params)
    assert again["jobId"] == first["jobId"]
    assert (
        len(
            client.list_dicom_import_jobs(datastoreId=world.datastore_id)[
                "jobSummaries"
            ]
        )
        == 1
    )
    with pytest.raises(ClientError) as excinfo:
        client.start_dicom_import_job(**{**params, "inputS3Uri": IN + "other/"})
    assert excinfo.value.response["Error"]["Code"] == "ConflictException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_it_fails_a_job_with_more_files_than_the_quota(world):
    world.configure(max_files_per_job=2)
    for i in range(3):
        world.put(IN + f"{i}.dcm", dicom_bytes(study=STUDY, series=SERIES))
    props, out = run(world)
    assert props["jobStatus"] == "FAILED"
    assert props["message"].startswith(
        "DICOM import job has failed. FILE_COUNTS_LIMIT_EXCEEDED"
    )
    assert out["failure"][0]["inputFile"] == "in/"


def test_it_fails_a_job_over_the_size_and_folder_quotas(world):
    world.configure(max_total_bytes_per_job=100)
    world.put(IN + "a/b/c.dcm", dicom_bytes(study=STUDY, series=SERIES))
    props, _ = run(world)
    assert "FILE_SIZE_LIMIT_EXCEEDED" in props["message"]
    world.configure(max_total_bytes_per_job=10**9, max_nested_folders_per_job=1)
    props, _ = run(world)
    assert "NESTED_FOLDERS_LIMIT_EXCEEDED" in props["message"]


def test_it_refuses_more_concurrent_jobs_than_the_quota_with_402(world):
    world.configure(max_concurrent_jobs_per_datastore=1, job_submitted_delay_s=5)
    world.start_import(world.datastore_id, IN, OUT)
    with pytest.raises(ClientError) as excinfo:
        world.start_import(world.datastore_id, IN, OUT)
    assert excinfo.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 402


def test_it_refuses_jobs_on_a_datastore_that_is_not_active(world):
    world.server.healthimaging.set_datastore_status(world.datastore_id, "DELETING")
    with pytest.raises(ClientError) as excinfo:
        world.start_import(world.datastore_id, IN, OUT)
    assert excinfo.value.response["Error"]["Code"] == "ConflictException"


def test_it_refuses_jobs_on_an_unknown_datastore(world):
    with pytest.raises(ClientError) as excinfo:
        world.start_import("0" * 32, IN, OUT)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_it_keeps_a_new_datastore_creating_until_its_delay_passes(localaws):
    localaws.configure(datastore_create_delay_s=0.2)
    client = localaws.hi_client()
    datastore_id = client.create_datastore(datastoreName="slow")["datastoreId"]
    assert (
        client.get_datastore(datastoreId=datastore_id)["datastoreProperties"][
            "datastoreStatus"
        ]
        == "CREATING"
    )
    time.sleep(0.25)
    assert (
        client.get_datastore(datastoreId=datastore_id)["datastoreProperties"][
            "datastoreStatus"
        ]
        == "ACTIVE"
    )


def test_it_fails_a_job_whose_output_bucket_does_not_exist(world):
    job_id = world.start_import(world.datastore_id, IN, "s3://missing-bucket/out/")
    props = world.wait_for_job(world.datastore_id, job_id)
    assert props["jobStatus"] == "FAILED"
    assert "OUTPUT_S3_LOCATION_NOT_ACCESSIBLE" in props["message"]


def test_it_pages_through_jobs_and_datastores(world):
    world.configure(job_submitted_delay_s=5)
    client = world.hi_client()
    started = {world.start_import(world.datastore_id, IN, OUT) for _ in range(5)}
    pages = list(
        client.get_paginator("list_dicom_import_jobs").paginate(
            datastoreId=world.datastore_id, PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["jobSummaries"]) for p in pages] == [2, 2, 1]
    assert {s["jobId"] for p in pages for s in p["jobSummaries"]} == started
    assert "nextToken" not in pages[-1]
    filtered = client.list_dicom_import_jobs(
        datastoreId=world.datastore_id, jobStatus="COMPLETED"
    )
    assert filtered["jobSummaries"] == []

    for i in range(2):
        world.create_datastore(f"more-{i}")
    first = client.list_datastores(maxResults=2)
    rest = client.list_datastores(maxResults=2, nextToken=first["nextToken"])
    assert len(first["datastoreSummaries"]) + len(rest["datastoreSummaries"]) == 3
    with pytest.raises(ClientError) as excinfo:
        client.list_datastores(nextToken="garbage")
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
