"""The emulator holds requests and responses to botocore's medical-imaging service model."""

from __future__ import annotations

import json
import urllib.request

import pytest
from botocore.exceptions import ClientError

from imports.dicom.uids import uid_service_problem
from localaws import model
from localaws.testing import dicom_bytes
from tests.dicom.test_uid_service_rule import ACCEPTED, REFUSED

ROLE = "arn:aws:iam::123456789012:role/HealthImagingImportRole"
STUDY = "1.2.826.0.1.3680043.8.498.1"


@pytest.fixture
def loose(localaws):
    """A client that skips botocore's own parameter checks, so bad input reaches the server as it would AWS."""
    return localaws.hi_client(parameter_validation=False)


@pytest.fixture
def datastore_id(localaws):
    return localaws.create_datastore()


def error_of(excinfo):
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def start_params(datastore_id, **overrides):
    params = {
        "datastoreId": datastore_id,
        "dataAccessRoleArn": ROLE,
        "clientToken": "token-1",
        "inputS3Uri": "s3://input-bucket/in/",
        "outputS3Uri": "s3://output-bucket/out/",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def test_it_compiles_every_pattern_of_the_operations_it_serves():
    service = model.service_model()
    for name in model.OPERATIONS:
        op = service.operation_model(name)
        for shape in (op.input_shape, op.output_shape):
            stack = [shape]
            while stack:
                current = stack.pop()
                if "pattern" in current.metadata:
                    model.compiled_pattern(current.metadata["pattern"])
                stack.extend(getattr(current, "members", {}).values())
                if hasattr(current, "member"):
                    stack.append(current.member)


def test_it_routes_every_operation_by_the_model_request_uri():
    assert model.match_route("POST", "/startDICOMImportJob/datastore/" + "a" * 32) == (
        "StartDICOMImportJob",
        {"datastoreId": "a" * 32},
    )
    assert model.match_route("GET", "/datastore")[0] == "ListDatastores"
    assert model.match_route("POST", "/datastore")[0] == "CreateDatastore"
    assert model.match_route("DELETE", "/datastore") is None


@pytest.mark.parametrize(
    ("call", "kwargs", "fragment"),
    [
        (
            "get_datastore",
            {"datastoreId": "NOT-AN-ID"},
            "regular expression pattern: [0-9a-z]{32}",
        ),
        ("list_datastores", {"maxResults": 0}, "greater than or equal to 1"),
        ("list_datastores", {"maxResults": 51}, "less than or equal to 50"),
        ("list_datastores", {"datastoreStatus": "BOGUS"}, "enum value set"),
        (
            "create_datastore",
            {"datastoreName": "bad name!"},
            "regular expression pattern",
        ),
        (
            "create_datastore",
            {"datastoreName": "ok", "losslessStorageFormat": "PNG"},
            "enum value set",
        ),
    ],
)
def test_it_rejects_requests_that_break_the_model_with_a_validation_exception(
    loose, call, kwargs, fragment
):
    with pytest.raises(ClientError) as excinfo:
        getattr(loose, call)(**kwargs)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert fragment in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"dataAccessRoleArn": "arn:aws:iam::12345:role/x"}, "dataAccessRoleArn"),
        ({"clientToken": "has spaces"}, "clientToken"),
        ({"inputS3Uri": "https://bucket/in/"}, "inputS3Uri"),
        ({"jobName": "x" * 65}, "less than or equal to 64"),
        ({"inputOwnerAccountId": ""}, "inputOwnerAccountId"),
        ({"importConfiguration": {}}, "exactly one of the following members"),
        (
            {
                "importConfiguration": {
                    "dicomJsonMetadataImportConfiguration": {
                        "dicomMetadataMappings": []
                    }
                }
            },
            "greater than or equal to 1",
        ),
        (
            {
                "importConfiguration": {
                    "dicomJsonMetadataImportConfiguration": {
                        "dicomMetadataMappings": [
                            {"studyInstanceUID": "1.2-x", "metadataFilePath": "m.json"}
                        ]
                    }
                }
            },
            "dicomMetadataMappings.1.member.studyInstanceUID",
        ),
    ],
)
def test_it_rejects_a_start_request_that_breaks_the_model(
    loose, datastore_id, overrides, fragment
):
    with pytest.raises(ClientError) as excinfo:
        loose.start_dicom_import_job(**start_params(datastore_id, **overrides))
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert fragment in message


def _mapping_shape():
    start = model.operation_model("StartDICOMImportJob").input_shape
    return (
        start.members["importConfiguration"]
        .members["dicomJsonMetadataImportConfiguration"]
        .members["dicomMetadataMappings"]
        .member
    )


@pytest.mark.parametrize("field", ["studyInstanceUID", "seriesInstanceUID"])
@pytest.mark.parametrize("value", ACCEPTED + REFUSED)
def test_it_accepts_exactly_the_mapping_uids_the_dashboard_accepts(field, value):
    """localaws and imports.dicom.uids agree on every sample (and both agree with the model: tests/dicom)."""
    refused = model.validate(_mapping_shape().members[field], value, field)
    assert (refused == []) is (value in ACCEPTED)
    assert (uid_service_problem(value) is None) is (value in ACCEPTED)


@pytest.mark.parametrize(
    "uid",
    ["1.2.840.0123.1", "1" * 512, "1..2"],
    ids=["leading-zero", "512", "empty-component"],
)
def test_it_starts_a_job_whose_mapping_uid_breaks_dicom_but_not_the_model(
    loose, datastore_id, uid
):
    mapping = {
        "studyInstanceUID": uid,
        "seriesInstanceUID": uid,
        "metadataFilePath": "m.json",
    }
    response = loose.start_dicom_import_job(
        **start_params(
            datastore_id,
            importConfiguration={
                "dicomJsonMetadataImportConfiguration": {
                    "dicomMetadataMappings": [mapping]
                }
            },
        )
    )
    assert response["jobStatus"] == "SUBMITTED"


def test_it_rejects_a_union_with_two_members(localaws, datastore_id):
    # boto3 cannot send a second member the model does not know, so this request is written by hand.
    body = start_params(datastore_id)
    body.pop("datastoreId")
    body["importConfiguration"] = {
        "dicomJsonMetadataImportConfiguration": {
            "dicomMetadataMappings": [
                {"studyInstanceUID": STUDY, "metadataFilePath": "m.json"}
            ]
        },
        "otherImportConfiguration": {},
    }
    status, headers, payload = signed_post(
        localaws, f"/startDICOMImportJob/datastore/{datastore_id}", body
    )
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "ValidationException"
    assert "exactly one" in payload["message"]


def test_it_never_echoes_sensitive_uids_in_validation_messages(loose, datastore_id):
    mapping = {"studyInstanceUID": "9.9.9-secret", "metadataFilePath": "m.json"}
    with pytest.raises(ClientError) as excinfo:
        loose.start_dicom_import_job(
            **start_params(
                datastore_id,
                importConfiguration={
                    "dicomJsonMetadataImportConfiguration": {
                        "dicomMetadataMappings": [mapping]
                    }
                },
            )
        )
    assert "9.9.9-secret" not in error_of(excinfo)[2]


def test_it_answers_unknown_resources_with_resource_not_found(localaws):
    client = localaws.hi_client()
    with pytest.raises(ClientError) as excinfo:
        client.get_datastore(datastoreId="0" * 32)
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)
    datastore_id = localaws.create_datastore()
    with pytest.raises(ClientError) as excinfo:
        client.get_dicom_import_job(datastoreId=datastore_id, jobId="f" * 32)
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)


def test_it_sends_responses_that_validate_against_the_model_for_every_operation(
    localaws,
):
    localaws.create_bucket("input-bucket")
    localaws.create_bucket("output-bucket")
    client = localaws.hi_client()
    raw = {}

    def keep(http_response, operation_name, **kwargs):
        if model.streaming_payload(operation_name):
            # GetImageSetMetadata: the body is the gzipped document, the rest are headers.
            raw[operation_name] = {
                "imageSetMetadataBlob": http_response.content,
                "contentType": http_response.headers["Content-Type"],
                "contentEncoding": http_response.headers["Content-Encoding"],
            }
            return
        raw[operation_name] = json.loads(http_response.content)

    client.meta.events.register(
        "after-call.medical-imaging",
        lambda **kw: keep(kw["http_response"], kw["model"].name),
    )
    datastore_id = client.create_datastore(
        datastoreName="conformance", losslessStorageFormat="HTJ2K"
    )["datastoreId"]
    client.get_datastore(datastoreId=datastore_id)
    client.list_datastores(maxResults=1)
    localaws.put(
        "s3://input-bucket/in/one.dcm",
        dicom_bytes(
            study="1.2.826.0.1.3680043.8.498.40", series="1.2.826.0.1.3680043.8.498.41"
        ),
    )
    job_id = client.start_dicom_import_job(**start_params(datastore_id))["jobId"]
    localaws.wait_for_job(datastore_id, job_id)
    client.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)
    client.list_dicom_import_jobs(datastoreId=datastore_id)
    found = client.search_image_sets(
        datastoreId=datastore_id,
        searchCriteria={"sort": {"sortField": "createdAt", "sortOrder": "ASC"}},
    )
    image_set_id = found["imageSetsMetadataSummaries"][0]["imageSetId"]
    client.get_image_set(datastoreId=datastore_id, imageSetId=image_set_id)
    client.get_image_set_metadata(datastoreId=datastore_id, imageSetId=image_set_id)
    client.list_image_set_versions(datastoreId=datastore_id, imageSetId=image_set_id)
    assert set(raw) == set(model.OPERATIONS)
    for operation, body in raw.items():
        model.check_output(operation, body)


def test_its_output_check_catches_a_response_the_model_forbids():
    with pytest.raises(model.ModelViolation, match="datastoreStatus"):
        model.check_output(
            "CreateDatastore", {"datastoreId": "a" * 32, "datastoreStatus": "READY"}
        )
    with pytest.raises(model.ModelViolation, match="unknown member"):
        model.check_output(
            "CreateDatastore",
            {"datastoreId": "a" * 32, "datastoreStatus": "ACTIVE", "extra": 1},
        )


def signed_post(localaws, path, body):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = localaws.endpoint_url + path
    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST", url=url, data=data, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(
        Credentials("localaws", "localaws"), "medical-imaging", "us-east-1"
    ).add_auth(request)
    http = urllib.request.Request(
        url, data=data, headers=dict(request.headers), method="POST"
    )
    try:
        with urllib.request.urlopen(http) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())
