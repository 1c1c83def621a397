"""The image-set data plane over real HTTP with boto3: SearchImageSets (filters, sort, pages), GetImageSet,
GetImageSetMetadata (gzipped, keyed by name) and ListImageSetVersions over image sets that real jobs made."""

from __future__ import annotations

import gzip
import json

import pytest
from botocore.exceptions import ClientError

from localaws.testing import dicom_bytes

IN = "s3://input-bucket/in/"
OUT = "s3://output-bucket/out/"
STUDY = "1.2.826.0.1.3680043.8.498.20"
SERIES_1 = "1.2.826.0.1.3680043.8.498.21"
SERIES_2 = "1.2.826.0.1.3680043.8.498.22"
OTHER_STUDY = "1.2.826.0.1.3680043.8.498.30"
OTHER_SERIES = "1.2.826.0.1.3680043.8.498.31"


@pytest.fixture
def world(localaws):
    localaws.create_bucket("input-bucket")
    localaws.create_bucket("output-bucket")
    localaws.datastore_id = localaws.create_datastore()
    return localaws


def run(world, files, prefix=IN):
    for name, body in files.items():
        world.put(prefix + name, body)
    job_id = world.start_import(world.datastore_id, prefix, OUT)
    props = world.wait_for_job(world.datastore_id, job_id)
    assert props["jobStatus"] == "COMPLETED"
    return world.read_output(props)


def equal(name, value):
    return {"values": [{name: value}], "operator": "EQUAL"}


def search(world, *filters, **params):
    criteria = {"filters": list(filters)} if filters else {}
    if "sort" in params:
        criteria["sort"] = params.pop("sort")
    return world.hi_client().search_image_sets(
        datastoreId=world.datastore_id, searchCriteria=criteria, **params
    )


def ids(response):
    return [s["imageSetId"] for s in response["imageSetsMetadataSummaries"]]


@pytest.fixture
def three_sets(world):
    """Two series of one study (patient PAT-1), one series of another study (patient PAT-2, 2023)."""
    run(
        world,
        {
            "a.dcm": dicom_bytes(study=STUDY, series=SERIES_1),
            "b.dcm": dicom_bytes(study=STUDY, series=SERIES_2, SeriesNumber=2),
            "c.dcm": dicom_bytes(
                study=OTHER_STUDY,
                series=OTHER_SERIES,
                PatientID="PAT-2",
                AccessionNumber="ACC-2",
                StudyID="S2",
                StudyDate="20230505",
                StudyTime="080000",
            ),
        },
    )
    by_series = {s["seriesInstanceUID"]: s for s in world.image_sets()}
    return by_series


def test_search_finds_a_studys_primary_image_sets_and_nothing_else(world, three_sets):
    found = search(
        world, equal("DICOMStudyInstanceUID", STUDY), equal("isPrimary", True)
    )
    assert sorted(ids(found)) == sorted(
        three_sets[s]["imageSetId"] for s in (SERIES_1, SERIES_2)
    )
    summary = found["imageSetsMetadataSummaries"][0]
    assert summary["isPrimary"] is True
    assert summary["version"] == 1
    assert summary["DICOMTags"]["DICOMPatientId"] == "PAT-1"
    assert summary["DICOMTags"]["DICOMPatientName"] == "Doe^Jane"


@pytest.mark.parametrize(
    ("name", "value", "series"),
    [
        ("DICOMSeriesInstanceUID", SERIES_2, [SERIES_2]),
        ("DICOMPatientId", "PAT-2", [OTHER_SERIES]),
        ("DICOMAccessionNumber", "ACC-1", [SERIES_1, SERIES_2]),
        ("DICOMStudyId", "S2", [OTHER_SERIES]),
        ("DICOMStudyDateAndTime", {"DICOMStudyDate": "20230505"}, [OTHER_SERIES]),
        ("isPrimary", False, []),
        ("DICOMPatientId", "PAT-9", []),
    ],
)
def test_each_equal_filter_selects_on_its_attribute(
    world, three_sets, name, value, series
):
    found = search(world, equal(name, value))
    assert sorted(ids(found)) == sorted(three_sets[s]["imageSetId"] for s in series)


def test_between_selects_a_study_date_range_and_a_time_range(world, three_sets):
    dates = {
        "values": [
            {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20230101"}},
            {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20231231"}},
        ],
        "operator": "BETWEEN",
    }
    assert ids(search(world, dates)) == [three_sets[OTHER_SERIES]["imageSetId"]]
    created = [s["createdAt"] for s in three_sets.values()]
    window = {
        "values": [{"createdAt": min(created) - 1}, {"createdAt": max(created) + 1}],
        "operator": "BETWEEN",
    }
    assert len(ids(search(world, window))) == 3
    before = {
        "values": [{"updatedAt": 0}, {"updatedAt": min(created) - 1}],
        "operator": "BETWEEN",
    }
    assert ids(search(world, before)) == []


def test_it_sorts_by_study_date_in_either_order_and_echoes_the_sort(world, three_sets):
    ascending = search(
        world, sort={"sortField": "DICOMStudyDateAndTime", "sortOrder": "ASC"}
    )
    assert ids(ascending)[0] == three_sets[OTHER_SERIES]["imageSetId"]
    assert ascending["sort"] == {
        "sortField": "DICOMStudyDateAndTime",
        "sortOrder": "ASC",
    }
    descending = search(
        world, sort={"sortField": "DICOMStudyDateAndTime", "sortOrder": "DESC"}
    )
    assert ids(descending)[-1] == three_sets[OTHER_SERIES]["imageSetId"]
    assert "sort" not in search(world)


def test_it_pages_with_next_token_and_never_repeats_an_image_set(world, three_sets):
    seen, token, pages = [], None, 0
    while True:
        params = {"maxResults": 1}
        if token:
            params["nextToken"] = token
        page = search(world, **params)
        seen += ids(page)
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(s["imageSetId"] for s in three_sets.values())
    paginator = world.hi_client().get_paginator("search_image_sets")
    everything = [
        s["imageSetId"]
        for page in paginator.paginate(
            datastoreId=world.datastore_id,
            searchCriteria={},
            PaginationConfig={"PageSize": 2},
        )
        for s in page["imageSetsMetadataSummaries"]
    ]
    assert sorted(everything) == sorted(seen)


def test_a_token_of_other_criteria_is_refused(world, three_sets):
    token = search(world, maxResults=1)["nextToken"]
    with pytest.raises(ClientError) as caught:
        search(world, equal("isPrimary", True), maxResults=1, nextToken=token)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.parametrize(
    ("criteria", "says"),
    [
        # The model: the UID pattern, at most two filters, the union of one member, the operator enum.
        (
            {"filters": [equal("DICOMStudyInstanceUID", "1.2.x")]},
            "regular expression pattern",
        ),
        (
            {"filters": [equal("isPrimary", True)] * 3},
            "length less than or equal to 2",
        ),
        (
            {
                "filters": [
                    {
                        "values": [{"isPrimary": True, "DICOMPatientId": "P"}],
                        "operator": "EQUAL",
                    }
                ]
            },
            "exactly one of the following members",
        ),
        (
            {"filters": [{"values": [{"isPrimary": True}], "operator": "LIKE"}]},
            "enum value set",
        ),
        # The service's own rules: BETWEEN takes two bounds of a date or time.
        (
            {
                "filters": [
                    {
                        "values": [{"DICOMPatientId": "A"}, {"DICOMPatientId": "B"}],
                        "operator": "BETWEEN",
                    }
                ]
            },
            "BETWEEN applies to",
        ),
    ],
)
def test_a_bad_search_is_refused_with_a_validation_exception(world, criteria, says):
    client = world.hi_client(parameter_validation=False)
    with pytest.raises(ClientError) as caught:
        client.search_image_sets(
            datastoreId=world.datastore_id, searchCriteria=criteria
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert says in caught.value.response["Error"]["Message"]
    # The search criteria are sensitive: no patient value is echoed.
    assert "'P'" not in caught.value.response["Error"]["Message"]


def test_search_in_an_unknown_datastore_is_not_found(world):
    with pytest.raises(ClientError) as caught:
        world.hi_client().search_image_sets(datastoreId="0" * 32, searchCriteria={})
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_metadata_is_gzipped_json_keyed_by_attribute_name(world, three_sets):
    image_set = three_sets[SERIES_2]
    response = world.hi_client().get_image_set_metadata(
        datastoreId=world.datastore_id, imageSetId=image_set["imageSetId"]
    )
    assert response["contentEncoding"] == "gzip"
    assert response["contentType"] == "application/json"
    document = json.loads(gzip.decompress(response["imageSetMetadataBlob"].read()))
    assert document["ImageSetID"] == image_set["imageSetId"]
    assert document["Patient"]["DICOM"] == {
        "PatientName": "Doe^Jane",
        "PatientID": "PAT-1",
        "PatientBirthDate": "19700101",
        "PatientSex": "F",
    }
    assert document["Study"]["DICOM"]["StudyInstanceUID"] == STUDY
    assert document["Study"]["DICOM"]["AccessionNumber"] == "ACC-1"
    series = document["Study"]["Series"][SERIES_2]
    assert series["DICOM"]["SeriesNumber"] == 2
    assert series["DICOM"]["Modality"] == "CT"
    assert len(series["Instances"]) == 1


def test_a_second_import_makes_version_two_and_keeps_version_one(world, three_sets):
    image_set_id = three_sets[SERIES_1]["imageSetId"]
    run(
        world,
        {
            "again.dcm": dicom_bytes(
                study=STUDY, series=SERIES_1, StudyDescription="CT HEAD 2"
            )
        },
        prefix="s3://input-bucket/again/",
    )
    client = world.hi_client()
    current = client.get_image_set(
        datastoreId=world.datastore_id, imageSetId=image_set_id
    )
    assert current["versionId"] == "2"
    assert current["isPrimary"] is True
    assert current["imageSetState"] == "ACTIVE"
    assert current["imageSetArn"].endswith(f"/imageset/{image_set_id}")
    first = client.get_image_set(
        datastoreId=world.datastore_id, imageSetId=image_set_id, versionId="1"
    )
    assert first["versionId"] == "1"
    versions = client.list_image_set_versions(
        datastoreId=world.datastore_id, imageSetId=image_set_id
    )["imageSetPropertiesList"]
    assert [v["versionId"] for v in versions] == ["2", "1"]
    old = client.get_image_set_metadata(
        datastoreId=world.datastore_id, imageSetId=image_set_id, versionId="1"
    )
    document = json.loads(gzip.decompress(old["imageSetMetadataBlob"].read()))
    assert document["Study"]["DICOM"]["StudyDescription"] == "CT HEAD"
    with pytest.raises(ClientError) as caught:
        client.get_image_set(
            datastoreId=world.datastore_id, imageSetId=image_set_id, versionId="7"
        )
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_conflicting_import_shows_up_as_a_non_primary_image_set(world, three_sets):
    run(
        world,
        {"fork.dcm": dicom_bytes(study=STUDY, series=SERIES_1, PatientID="PAT-OTHER")},
        prefix="s3://input-bucket/fork/",
    )
    found = search(
        world,
        equal("DICOMSeriesInstanceUID", SERIES_1),
        equal("isPrimary", False),
    )
    assert len(ids(found)) == 1
    assert (
        found["imageSetsMetadataSummaries"][0]["DICOMTags"]["DICOMPatientId"]
        == "PAT-OTHER"
    )


def test_an_unknown_image_set_is_not_found_and_a_bad_id_is_invalid(world):
    client = world.hi_client()
    with pytest.raises(ClientError) as caught:
        client.get_image_set_metadata(
            datastoreId=world.datastore_id, imageSetId="a" * 32
        )
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        client.get_image_set(datastoreId=world.datastore_id, imageSetId="NOT-AN-ID")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_an_injected_conflict_answers_get_image_set_metadata_as_aws_does(
    world, three_sets
):
    world.add_fault(
        service="medical-imaging",
        operation="GetImageSetMetadata",
        error="ConflictException",
        message="Requested ImageSet metadata is not consistent yet. Please retry after a few seconds.",
    )
    with pytest.raises(ClientError) as caught:
        world.hi_client().get_image_set_metadata(
            datastoreId=world.datastore_id,
            imageSetId=three_sets[SERIES_1]["imageSetId"],
        )
    assert caught.value.response["Error"]["Code"] == "ConflictException"
    assert "not consistent yet" in caught.value.response["Error"]["Message"]
