"""Fault injection and the call log, driven over plain HTTP like a benchmark or the demo would."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from localaws.faults import s3_operation
from localaws.healthimaging import _client_token
from localaws.testing import dicom_bytes

IN = "s3://input-bucket/in/"
OUT = "s3://output-bucket/out/"


def control(localaws, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{localaws.endpoint_url}/_localaws/{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def world(localaws):
    localaws.create_bucket("input-bucket")
    localaws.create_bucket("output-bucket")
    localaws.put(IN + "a.dcm", dicom_bytes(study="1.2.3.1", series="1.2.3.2"))
    localaws.datastore_id = localaws.create_datastore()
    localaws.clear_calls()
    return localaws


def test_it_fails_the_next_calls_of_an_operation_with_the_real_error_format(world):
    status, _ = control(
        world,
        "POST",
        "faults",
        {
            "service": "medical-imaging",
            "operation": "StartDICOMImportJob",
            "error": "ThrottlingException",
            "count": 2,
        },
    )
    assert status == 200
    for _ in range(2):
        with pytest.raises(ClientError) as excinfo:
            world.start_import(world.datastore_id, IN, OUT)
        response = excinfo.value.response
        assert response["Error"]["Code"] == "ThrottlingException"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert (
            response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"]
            == "ThrottlingException"
        )
    world.start_import(world.datastore_id, IN, OUT)
    # Other operations were never affected.
    world.hi_client().get_datastore(datastoreId=world.datastore_id)


def test_it_lets_boto3_standard_retries_ride_out_a_throttle(world):
    world.add_fault(
        service="medical-imaging",
        operation="GetDatastore",
        error="ThrottlingException",
        count=1,
    )
    client = world.hi_client(retries={"mode": "standard", "total_max_attempts": 3})
    client.get_datastore(datastoreId=world.datastore_id)
    statuses = [c["status"] for c in world.calls("medical-imaging", "GetDatastore")]
    assert statuses == [429, 200]


@pytest.mark.parametrize(
    ("error", "status"),
    [("AccessDenied", 403), ("SlowDown", 503), ("NoSuchKey", 404)],
)
def test_it_injects_s3_errors_in_s3_xml_format(world, error, status):
    world.add_fault(service="s3", operation="GetObject", error=error, count=1)
    s3 = world.s3_client()
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="input-bucket", Key="in/a.dcm")
    assert excinfo.value.response["Error"]["Code"] == error
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert s3.get_object(Bucket="input-bucket", Key="in/a.dcm")["Body"].read()
    s3.list_objects_v2(Bucket="input-bucket", Prefix="in/")


def test_it_fails_a_share_of_calls_with_a_rate(world):
    world.add_fault(service="s3", operation="ListObjectsV2", error="SlowDown", rate=1.0)
    with pytest.raises(ClientError):
        world.s3_client().list_objects_v2(Bucket="input-bucket")
    world.clear_faults()
    world.add_fault(service="s3", operation="ListObjectsV2", error="SlowDown", rate=0.0)
    world.s3_client().list_objects_v2(Bucket="input-bucket")


def test_it_lets_the_first_calls_through_when_a_fault_starts_after_some(world):
    world.add_fault(
        service="s3", operation="GetObject", error="SlowDown", after=2, count=1
    )
    s3 = world.s3_client()
    for _ in range(2):
        s3.get_object(Bucket="input-bucket", Key="in/a.dcm")
    # Other operations do not use up the calls the fault lets through.
    s3.list_objects_v2(Bucket="input-bucket", Prefix="in/")
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="input-bucket", Key="in/a.dcm")
    assert excinfo.value.response["Error"]["Code"] == "SlowDown"
    s3.get_object(Bucket="input-bucket", Key="in/a.dcm")
    statuses = [c["status"] for c in world.calls("s3", "GetObject")]
    assert statuses == [200, 200, 503, 200]


def test_it_refuses_an_after_that_is_not_a_count(world):
    status, body = control(
        world,
        "POST",
        "faults",
        {"service": "s3", "error": "SlowDown", "after": -1},
    )
    assert (status, body) == (
        400,
        {"error": "after must be a whole number of calls, 0 or more"},
    )


def test_it_adds_latency_per_service(world):
    world.add_fault(service="s3", latency_ms=150)
    s3 = world.s3_client()
    started = time.monotonic()
    s3.head_bucket(Bucket="input-bucket")
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    world.hi_client().get_datastore(datastoreId=world.datastore_id)
    assert time.monotonic() - started < 0.15


def test_it_fails_the_next_job_on_request(world):
    control(
        world,
        "POST",
        "faults",
        {"fail_job": True, "message": "Injected failure for the demo"},
    )
    job_id = world.start_import(world.datastore_id, IN, OUT)
    props = world.wait_for_job(world.datastore_id, job_id)
    assert (props["jobStatus"], props["message"]) == (
        "FAILED",
        "Injected failure for the demo",
    )
    second = world.wait_for_job(
        world.datastore_id, world.start_import(world.datastore_id, IN, OUT)
    )
    assert second["jobStatus"] == "COMPLETED"


def test_it_writes_the_manifest_late_when_asked(world):
    world.add_fault(manifest_delay_s=0.4)
    props = world.wait_for_job(
        world.datastore_id, world.start_import(world.datastore_id, IN, OUT)
    )
    out = world.read_output(props)
    assert out["manifest"] is None
    assert out["success"]
    deadline = time.monotonic() + 5
    while world.read_output(props)["manifest"] is None:
        assert time.monotonic() < deadline, "the manifest never appeared"
        time.sleep(0.05)


def test_it_clears_faults_over_http(world):
    world.add_fault(service="s3", error="AccessDenied", count=100)
    status, body = control(world, "DELETE", "faults")
    assert (status, body) == (200, {"faults": []})
    world.s3_client().head_bucket(Bucket="input-bucket")


def test_it_rejects_a_fault_it_cannot_apply(world):
    assert (
        control(world, "POST", "faults", {"service": "s3", "error": "NoSuchThing"})[0]
        == 400
    )
    assert (
        control(world, "POST", "faults", {"service": "dynamodb", "latency_ms": 5})[0]
        == 400
    )
    assert control(world, "POST", "faults", {"surprise": 1})[0] == 400


def test_it_logs_calls_with_the_token_and_job_of_each_start_and_no_bodies(world):
    mapping = {"studyInstanceUID": "1.2.3.1", "metadataFilePath": "m.json"}
    job_id = world.start_import(
        world.datastore_id,
        IN,
        OUT,
        clientToken="dashboard-7",
        importConfiguration={
            "dicomJsonMetadataImportConfiguration": {"dicomMetadataMappings": [mapping]}
        },
    )
    world.s3_client().get_object(Bucket="input-bucket", Key="in/a.dcm")
    status, calls = control(world, "GET", "calls")
    assert status == 200
    (start,) = [c for c in calls if c["operation"] == "StartDICOMImportJob"]
    assert (
        start["service"],
        start["clientToken"],
        start["jobId"],
        start["status"],
    ) == (
        "medical-imaging",
        "dashboard-7",
        job_id,
        200,
    )
    assert "time" in start
    assert any(c["service"] == "s3" and c["operation"] == "GetObject" for c in calls)
    assert "1.2.3.1" not in json.dumps(calls)
    assert control(world, "DELETE", "calls") == (200, [])
    assert control(world, "GET", "calls") == (200, [])


def test_it_names_s3_operations_from_method_path_and_query():
    assert s3_operation("GET", "/", {}, {}) == "ListBuckets"
    assert s3_operation("GET", "/b", {"list-type": ["2"]}, {}) == "ListObjectsV2"
    assert s3_operation("GET", "/b/", {}, {}) == "ListObjects"
    assert s3_operation("PUT", "/b", {}, {}) == "CreateBucket"
    assert s3_operation("GET", "/b/k/x.dcm", {}, {}) == "GetObject"
    assert s3_operation("HEAD", "/b/k", {}, {}) == "HeadObject"
    assert s3_operation("PUT", "/b/k", {}, {}) == "PutObject"
    assert s3_operation("PUT", "/b/k", {}, {"x-amz-copy-source": "b/j"}) == "CopyObject"
    assert (
        s3_operation("POST", "/b/k", {"uploads": [""]}, {}) == "CreateMultipartUpload"
    )
    assert s3_operation("POST", "/b", {"delete": [""]}, {}) == "DeleteObjects"


def test_it_loads_faults_from_the_environment_at_start(monkeypatch):
    from localaws.faults import FaultRegistry

    monkeypatch.setenv(
        "LOCALAWS_FAULTS", json.dumps([{"service": "s3", "latency_ms": 20}])
    )
    registry = FaultRegistry()
    registry.load_env()
    assert registry.latency_s("s3") == pytest.approx(0.02)


class FakeTime:
    """A clock that moves only when slept on: pacing is checked without timing anything."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_link_releases_a_body_at_its_bandwidth_chunk_by_chunk():
    from localaws.faults import Link

    fake = FakeTime()
    link = Link(clock=fake.clock, sleep=fake.sleep)
    body = b"x" * (Link.CHUNK * 2 + 1000)
    out = list(link.paced([body], bits_per_s=8e6))  # 1 MB/s
    assert b"".join(out) == body
    assert [len(c) for c in out] == [Link.CHUNK, Link.CHUNK, 1000]
    assert fake.now - 100.0 == pytest.approx(len(body) / 1e6)
    assert link.bytes_paced == len(body)


def test_bodies_of_concurrent_connections_share_one_link():
    from localaws.faults import Link

    fake = FakeTime()
    link = Link(clock=fake.clock, sleep=fake.sleep)
    # Two chunks queued at the same instant: the second crosses after the first, not alongside it.
    first = link.reserve(Link.CHUNK, bits_per_s=8e6)
    second = link.reserve(Link.CHUNK, bits_per_s=8e6)
    assert first == pytest.approx(100.0 + Link.CHUNK / 1e6)
    assert second == pytest.approx(first + Link.CHUNK / 1e6)
    # An idle link does not bank the time it was idle.
    fake.now = 200.0
    assert link.reserve(1000, bits_per_s=8e6) == pytest.approx(200.0 + 1000 / 1e6)


def test_a_bandwidth_fault_paces_s3_bodies_and_nothing_else(world):
    status, body = control(
        world, "POST", "faults", {"service": "s3", "bandwidth_mbps": 1000}
    )
    assert (status, body["faults"]) == (
        200,
        [{"service": "s3", "bandwidth_mbps": 1000}],
    )
    registry = world.server.faults
    assert registry.bandwidth_bps("s3") == 1e9
    assert registry.bandwidth_bps("medical-imaging") is None
    data = world.s3_client().get_object(Bucket="input-bucket", Key="in/a.dcm")
    assert registry.link.bytes_paced == len(data["Body"].read())
    world.hi_client().get_datastore(datastoreId=world.datastore_id)
    assert registry.link.bytes_paced == data["ContentLength"]
    control(world, "DELETE", "faults")
    world.s3_client().get_object(Bucket="input-bucket", Key="in/a.dcm")["Body"].read()
    assert registry.link.bytes_paced == data["ContentLength"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"bandwidth_mbps": 1000}, "a bandwidth fault needs a service"),
        (
            {"service": "s3", "bandwidth_mbps": 0},
            "bandwidth_mbps must be a number of megabits per second above 0",
        ),
        (
            {"service": "s3", "bandwidth_mbps": "fast"},
            "bandwidth_mbps must be a number of megabits per second above 0",
        ),
    ],
)
def test_it_refuses_a_bandwidth_it_cannot_model(world, fault, message):
    assert control(world, "POST", "faults", fault) == (400, {"error": message})


def test_it_logs_the_token_of_a_start_that_a_fault_refused(world):
    """Without the token of refused calls, no test could prove that a retry reuses it."""
    control(
        world,
        "POST",
        "faults",
        {
            "service": "medical-imaging",
            "operation": "StartDICOMImportJob",
            "error": "ThrottlingException",
            "count": 2,
        },
    )
    for _ in range(2):
        with pytest.raises(ClientError):
            world.start_import(world.datastore_id, IN, OUT, clientToken="retry-me")
    world.start_import(world.datastore_id, IN, OUT, clientToken="retry-me")
    _, calls = control(world, "GET", "calls")
    starts = [c for c in calls if c["operation"] == "StartDICOMImportJob"]
    assert [(c["status"], c["clientToken"]) for c in starts] == [
        (429, "retry-me"),
        (429, "retry-me"),
        (200, "retry-me"),
    ]


def test_it_reads_a_token_only_from_a_json_object_that_carries_one_as_text():
    assert _client_token(b'{"clientToken": "abc"}') == "abc"
    assert _client_token(b"") is None
    assert _client_token(b"not json") is None
    assert _client_token(b'["clientToken"]') is None
    assert _client_token(b'{"clientToken": 7}') is None
