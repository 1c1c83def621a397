"""imports.aws.image_sets: a study's image sets found and their metadata read, over HTTP against localaws, and the
exact SearchImageSets parameters pinned with botocore's Stubber."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from imports.aws import client as aws
from imports.aws import image_sets
from localaws.testing import LocalAWSHandle, dicom_bytes

STUDY = "1.2.826.0.1.3680043.8.498.50"
SERIES_1 = "1.2.826.0.1.3680043.8.498.51"
SERIES_2 = "1.2.826.0.1.3680043.8.498.52"
DATASTORE = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def imported(localaws: LocalAWSHandle) -> LocalAWSHandle:
    """One study of two series, imported by a real localaws job; a third series made non-primary."""
    localaws.create_bucket("input-bucket")
    localaws.create_bucket("output-bucket")
    localaws.datastore_id = localaws.create_datastore()  # type: ignore[attr-defined]

    def run(prefix: str, files: dict[str, bytes]) -> None:
        for name, body in files.items():
            localaws.put(f"s3://input-bucket/{prefix}{name}", body)
        job = localaws.start_import(
            localaws.datastore_id,  # type: ignore[attr-defined]
            f"s3://input-bucket/{prefix}",
            "s3://output-bucket/out/",
        )
        localaws.wait_for_job(localaws.datastore_id, job)  # type: ignore[attr-defined]

    run(
        "first/",
        {
            "a.dcm": dicom_bytes(study=STUDY, series=SERIES_1),
            "b.dcm": dicom_bytes(study=STUDY, series=SERIES_2),
        },
    )
    run("fork/", {"c.dcm": dicom_bytes(study=STUDY, series=SERIES_1, PatientID="X")})
    localaws.clear_calls()
    return localaws


def test_it_finds_only_the_primary_image_sets_of_the_study(imported: Any) -> None:
    found = image_sets.search_image_sets(
        region="us-east-1", datastore_id=imported.datastore_id, study_uid=STUDY
    )
    assert sorted(s.series_instance_uid for s in found) == [SERIES_1, SERIES_2]
    assert {s.is_primary for s in found} == {True}
    assert {s.version for s in found} == {1}
    everything = image_sets.search_image_sets(
        region="us-east-1",
        datastore_id=imported.datastore_id,
        study_uid=STUDY,
        primary_only=False,
    )
    assert len(everything) == 3


def test_it_follows_every_page(imported: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_sets, "PAGE_SIZE", 1)
    found = image_sets.search_image_sets(
        region="us-east-1", datastore_id=imported.datastore_id, study_uid=STUDY
    )
    assert len(found) == 2
    assert len(imported.calls("medical-imaging", "SearchImageSets")) == 2


def test_it_reads_the_metadata_gunzipped(imported: Any) -> None:
    found = image_sets.search_image_sets(
        region="us-east-1", datastore_id=imported.datastore_id, study_uid=STUDY
    )
    first = next(s for s in found if s.series_instance_uid == SERIES_1)
    document = image_sets.get_image_set_metadata(
        region="us-east-1",
        datastore_id=imported.datastore_id,
        image_set_id=first.image_set_id,
        version=first.version,
    )
    assert document["Patient"]["DICOM"]["PatientID"] == "PAT-1"
    assert SERIES_1 in document["Study"]["Series"]


def test_throttling_past_the_budget_is_a_transient_error(imported: Any) -> None:
    imported.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="ThrottlingException",
        count=image_sets.ATTEMPTS,
    )
    with pytest.raises(aws.Throttled) as caught:
        image_sets.search_image_sets(
            region="us-east-1", datastore_id=imported.datastore_id, study_uid=STUDY
        )
    assert caught.value.transient
    assert STUDY not in str(caught.value)
    assert (
        len(imported.calls("medical-imaging", "SearchImageSets")) == image_sets.ATTEMPTS
    )


def test_throttling_within_the_budget_is_retried_and_succeeds(imported: Any) -> None:
    imported.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="ThrottlingException",
        count=image_sets.ATTEMPTS - 1,
    )
    found = image_sets.search_image_sets(
        region="us-east-1", datastore_id=imported.datastore_id, study_uid=STUDY
    )
    assert len(found) == 2


def test_a_server_error_is_transient_and_access_denied_is_not(imported: Any) -> None:
    imported.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="InternalServerException",
        count=image_sets.ATTEMPTS,
    )
    with pytest.raises(aws.Unavailable) as unavailable:
        image_sets.search_image_sets(
            region="us-east-1", datastore_id=imported.datastore_id, study_uid=STUDY
        )
    assert unavailable.value.transient
    imported.add_fault(
        service="medical-imaging",
        operation="SearchImageSets",
        error="AccessDeniedException",
    )
    with pytest.raises(aws.AccessDenied) as denied:
        image_sets.search_image_sets(
            region="us-east-1", datastore_id=imported.datastore_id, study_uid=STUDY
        )
    assert not denied.value.transient


def test_metadata_not_consistent_yet_is_transient(imported: Any) -> None:
    found = image_sets.search_image_sets(
        region="us-east-1", datastore_id=imported.datastore_id, study_uid=STUDY
    )
    imported.add_fault(
        service="medical-imaging",
        operation="GetImageSetMetadata",
        error="ConflictException",
        message="Requested ImageSet metadata is not consistent yet. Please retry after a few seconds.",
    )
    with pytest.raises(image_sets.NotConsistentYet) as caught:
        image_sets.get_image_set_metadata(
            region="us-east-1",
            datastore_id=imported.datastore_id,
            image_set_id=found[0].image_set_id,
        )
    assert caught.value.transient


# --- Exact parameters (Stubber) -------------------------------------------------------------


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset_clients()
    with Stubber(image_sets.image_sets_client("us-east-1")) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


CRITERIA = {
    "filters": [
        {"values": [{"DICOMStudyInstanceUID": STUDY}], "operator": "EQUAL"},
        {"values": [{"isPrimary": True}], "operator": "EQUAL"},
    ]
}


def test_it_sends_one_study_filter_and_the_primary_filter_and_pages_with_the_token(
    stub: Stubber,
) -> None:
    stub.add_response(
        "search_image_sets",
        {
            "imageSetsMetadataSummaries": [
                {"imageSetId": "a" * 32, "version": 3, "isPrimary": True,
                 "DICOMTags": {"DICOMSeriesInstanceUID": SERIES_1}},
            ],
            "nextToken": "page-2",
        },
        expected_params={"datastoreId": DATASTORE, "searchCriteria": CRITERIA, "maxResults": 50},
    )  # fmt: skip
    stub.add_response(
        "search_image_sets",
        {"imageSetsMetadataSummaries": [{"imageSetId": "b" * 32}]},
        expected_params={
            "datastoreId": DATASTORE,
            "searchCriteria": CRITERIA,
            "maxResults": 50,
            "nextToken": "page-2",
        },
    )
    found = image_sets.search_image_sets(
        region="us-east-1", datastore_id=DATASTORE, study_uid=STUDY
    )
    assert [(s.image_set_id, s.version, s.series_instance_uid) for s in found] == [
        ("a" * 32, 3, SERIES_1),
        ("b" * 32, None, ""),
    ]


def _blob(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def test_it_asks_for_the_version_it_was_given(stub: Stubber) -> None:
    document = {"Patient": {"DICOM": {"PatientID": "P"}}}
    stub.add_response(
        "get_image_set_metadata",
        {"imageSetMetadataBlob": _blob(gzip.compress(json.dumps(document).encode())),
         "contentEncoding": "gzip", "contentType": "application/json"},
        expected_params={"datastoreId": DATASTORE, "imageSetId": "a" * 32, "versionId": "2"},
    )  # fmt: skip
    assert (
        image_sets.get_image_set_metadata(
            region="us-east-1", datastore_id=DATASTORE, image_set_id="a" * 32, version=2
        )
        == document
    )


@pytest.mark.parametrize(
    "body",
    [b"\x1f\x8b\x08 broken", gzip.compress(b"[1, 2]"), gzip.compress(b"not json")],
)
def test_metadata_that_is_not_a_gzipped_json_object_is_refused(
    stub: Stubber, body: bytes
) -> None:
    stub.add_response(
        "get_image_set_metadata",
        {"imageSetMetadataBlob": _blob(body), "contentEncoding": "gzip"},
    )
    with pytest.raises(aws.AwsError) as caught:
        image_sets.get_image_set_metadata(
            region="us-east-1", datastore_id=DATASTORE, image_set_id="a" * 32
        )
    assert caught.value.code == "BadMetadata"


def test_a_search_that_never_ends_is_cut_short(stub: Stubber) -> None:
    for _ in range(2):
        stub.add_response(
            "search_image_sets",
            {"imageSetsMetadataSummaries": [], "nextToken": "again"},
        )
    with pytest.raises(aws.AwsError) as caught:
        image_sets.search_image_sets(
            region="us-east-1", datastore_id=DATASTORE, study_uid=STUDY, max_pages=2
        )
    assert caught.value.code == "TooManyPages"
