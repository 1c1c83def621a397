"""One port: routing by SigV4 scope, the control endpoints, and state that survives a restart."""

from __future__ import annotations

import json
import os
import urllib.request

from localaws import s3store
from localaws.server import LocalAWS, signing_service
from localaws.testing import LocalAWSHandle, dicom_bytes


def get_json(url):
    with urllib.request.urlopen(url) as response:
        return response.status, json.loads(response.read())


def test_it_routes_by_the_service_in_the_credential_scope():
    scope = "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/{}/aws4_request, SignedHeaders=host, Signature=abc"
    assert (
        signing_service({"HTTP_AUTHORIZATION": scope.format("medical-imaging")})
        == "medical-imaging"
    )
    assert signing_service({"HTTP_AUTHORIZATION": scope.format("s3")}) == "s3"
    assert (
        signing_service(
            {
                "QUERY_STRING": "X-Amz-Credential=AKID%2F20240102%2Fus-east-1%2Fs3%2Faws4_request"
            }
        )
        == "s3"
    )
    assert signing_service({}) is None


def test_it_serves_s3_and_healthimaging_on_the_same_port(localaws):
    localaws.create_bucket("input-bucket")
    localaws.create_datastore("same-port")
    assert [b["Name"] for b in localaws.s3_client().list_buckets()["Buckets"]] == [
        "input-bucket"
    ]
    assert [
        d["datastoreName"]
        for d in localaws.hi_client().list_datastores()["datastoreSummaries"]
    ] == ["same-port"]
    services = {c["service"] for c in localaws.calls()}
    assert services == {"s3", "medical-imaging"}


def test_it_points_boto3_at_itself_through_the_environment(localaws):
    import boto3

    assert os.environ["AWS_ENDPOINT_URL"] == localaws.endpoint_url
    boto3.client("s3").create_bucket(Bucket="from-the-environment")
    assert localaws.s3_client().head_bucket(Bucket="from-the-environment")


def test_it_answers_health_and_exposes_stored_image_sets(localaws):
    assert get_json(localaws.endpoint_url + "/_localaws/health") == (
        200,
        {"status": "ok", "endpoint": localaws.endpoint_url},
    )
    localaws.create_bucket("input-bucket")
    localaws.create_bucket("output-bucket")
    datastore_id = localaws.create_datastore()
    localaws.put(
        "s3://input-bucket/in/a.dcm",
        dicom_bytes(study="1.2.3.1", series="1.2.3.2", PatientID="P-9"),
    )
    localaws.wait_for_job(
        datastore_id,
        localaws.start_import(
            datastore_id, "s3://input-bucket/in/", "s3://output-bucket/o/"
        ),
    )
    status, sets = get_json(
        f"{localaws.endpoint_url}/_localaws/imagesets?datastoreId={datastore_id}"
    )
    assert status == 200
    (image_set,) = sets
    assert (image_set["studyInstanceUID"], image_set["seriesInstanceUID"]) == (
        "1.2.3.1",
        "1.2.3.2",
    )
    assert (image_set["version"], image_set["isPrimary"]) == (1, True)
    assert image_set["metadata"]["00100020"] == {"vr": "LO", "Value": ["P-9"]}


def test_it_changes_settings_over_http_until_the_next_reset(localaws):
    data = json.dumps({"max_files_per_job": 7}).encode()
    request = urllib.request.Request(
        localaws.endpoint_url + "/_localaws/config", data=data, method="POST"
    )
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["max_files_per_job"] == 7
    localaws.server.reset()
    assert localaws.server.settings.max_files_per_job == 5000


def test_it_keeps_datastores_jobs_image_sets_and_objects_across_a_restart(
    localaws, tmp_path
):
    # A second server in the same process shares moto's globals; clearing them between the two stands in
    # for the new process a real restart would be.
    first = LocalAWS(
        state_dir=tmp_path, job_submitted_delay_s=0.01, job_in_progress_delay_s=0.01
    ).start()
    try:
        handle = LocalAWSHandle(first)
        handle.create_bucket("input-bucket")
        handle.create_bucket("output-bucket")
        handle.put(
            "s3://input-bucket/in/a.dcm", dicom_bytes(study="1.2.3.1", series="1.2.3.2")
        )
        datastore_id = handle.create_datastore("kept")
        job_id = handle.start_import(
            datastore_id, "s3://input-bucket/in/", "s3://output-bucket/o/"
        )
        props = handle.wait_for_job(datastore_id, job_id)
    finally:
        first.stop()
    s3store.reset()

    second = LocalAWS(state_dir=tmp_path).start()
    try:
        handle = LocalAWSHandle(second)
        again = handle.hi_client().get_dicom_import_job(
            datastoreId=datastore_id, jobId=job_id
        )["jobProperties"]
        assert again["jobStatus"] == "COMPLETED"
        assert handle.read_output(props)["manifest"]["jobSummary"]["jobId"] == job_id
        body = (
            handle.s3_client()
            .get_object(Bucket="input-bucket", Key="in/a.dcm")["Body"]
            .read()
        )
        assert body.startswith(b"\0" * 128 + b"DICM")
        assert [s["studyInstanceUID"] for s in handle.image_sets(datastore_id)] == [
            "1.2.3.1"
        ]
    finally:
        second.stop()


def test_it_finishes_a_job_that_was_running_when_it_stopped(localaws, tmp_path):
    first = LocalAWS(state_dir=tmp_path, job_submitted_delay_s=30).start()
    try:
        handle = LocalAWSHandle(first)
        handle.create_bucket("input-bucket")
        handle.create_bucket("output-bucket")
        datastore_id = handle.create_datastore()
        job_id = handle.start_import(
            datastore_id, "s3://input-bucket/in/", "s3://output-bucket/o/"
        )
    finally:
        first.stop()
    s3store.reset()
    second = LocalAWS(
        state_dir=tmp_path, job_submitted_delay_s=0.01, job_in_progress_delay_s=0.01
    ).start()
    try:
        assert (
            LocalAWSHandle(second).wait_for_job(datastore_id, job_id)["jobStatus"]
            == "COMPLETED"
        )
    finally:
        second.stop()
