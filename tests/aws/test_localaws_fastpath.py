"""The GetObject fast path (localaws/s3fast.py) answers as moto does, and the server keeps connections alive."""

from __future__ import annotations

import http.client
import os
import threading
import time

import pytest
from botocore.exceptions import ClientError

from localaws import s3fast

BUCKET = "fast-bucket"
KEY = "dir/ké y+%41.dcm"  # a space, non-ASCII, "+" and a literal "%41": moto decodes the raw path once
BODY = os.urandom(100_000)
# Headers that differ on every response whoever answers it.
VOLATILE = {"date", "x-amzn-requestid"}
RANGES = [
    "bytes=0-0",
    "bytes=0-8191",
    "bytes=8192-24575",
    "bytes=99990-99999",
    "bytes=99990-200000",  # end past the object: clamped
    "bytes=99999-",
    "bytes=1000-",
    "bytes=0-",  # the whole object as a range: still 206, and the checksum stays
    "bytes=-1",
    "bytes=-500",
    "bytes=-200000",  # suffix longer than the object: the whole object
]


@pytest.fixture
def s3(localaws):
    localaws.create_bucket(BUCKET)
    client = localaws.s3_client()
    client.put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=BODY,
        ContentType="application/dicom",
        Metadata={"study": "1.2.3"},
    )
    client.put_object(Bucket=BUCKET, Key="empty", Body=b"")
    return client


@pytest.fixture
def fast_answers(monkeypatch):
    """What the fast path answered to each GetObject that reached it: an Answer, or None when moto answered."""
    answers = []
    real = s3fast.get_object

    def spy(environ):
        answer = real(environ)
        answers.append(answer)
        return answer

    monkeypatch.setattr(s3fast, "get_object", spy)
    return answers


def get(client, **params):
    """(status, headers without the volatile ones, body) of a GetObject, error or not."""
    try:
        response = client.get_object(Bucket=BUCKET, **params)
        body = response["Body"].read()
        meta = response["ResponseMetadata"]
    except ClientError as error:
        meta = error.response["ResponseMetadata"]
        body = error.response["Error"]
    headers = {
        k: v for k, v in meta["HTTPHeaders"].items() if k.lower() not in VOLATILE
    }
    return meta["HTTPStatusCode"], headers, body


def from_moto(localaws, client, **params):
    localaws.server.fast_get = False
    try:
        return get(client, **params)
    finally:
        localaws.server.fast_get = True


def raw_get(localaws, path, headers):
    """One GET over a raw connection, signed or not; returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", localaws.server.port)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("byte_range", [None, *RANGES])
def test_the_fast_path_answers_byte_for_byte_as_moto_does(
    localaws, s3, fast_answers, byte_range
):
    params = {"Key": KEY} if byte_range is None else {"Key": KEY, "Range": byte_range}
    localaws.clear_calls()
    fast = get(s3, **params)
    moto = from_moto(localaws, s3, **params)
    # Only the first GET went the fast way.
    assert [answer is not None for answer in fast_answers] == [True]
    assert fast == moto
    assert fast[0] == (200 if byte_range is None else 206)
    assert [c["status"] for c in localaws.calls("s3", "GetObject")] == [fast[0]] * 2


def test_the_fast_path_serves_ranges_with_s3s_headers(s3, fast_answers):
    status, headers, body = get(s3, Key=KEY, Range="bytes=99990-200000")
    assert fast_answers[0] is not None  # the fast path answered, not moto
    assert (status, body) == (206, BODY[99990:])
    assert headers["content-range"] == "bytes 99990-99999/100000"
    assert headers["content-length"] == "10"
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-type"] == "application/dicom"
    assert headers["etag"].startswith('"')
    assert headers["last-modified"]
    assert headers["x-amz-meta-study"] == "1.2.3"
    assert not any(h.startswith("x-amz-checksum-") for h in headers)
    assert get(s3, Key=KEY, Range="bytes=-3")[2] == BODY[-3:]
    assert get(s3, Key=KEY, Range="bytes=5-")[2] == BODY[5:]
    assert [answer is not None for answer in fast_answers] == [True] * 3


@pytest.mark.parametrize(
    ("key", "byte_range"),
    [
        (KEY, "bytes=100000-"),
        (KEY, "bytes=500000-600000"),
        (KEY, "bytes=-0"),
        ("empty", "bytes=0-"),
    ],
)
def test_a_range_past_the_end_is_invalid_range_as_moto_says(
    localaws, s3, fast_answers, key, byte_range
):
    fast = get(s3, Key=key, Range=byte_range)
    assert [answer and answer.status for answer in fast_answers] == [416]
    assert fast == from_moto(localaws, s3, Key=key, Range=byte_range)
    status, _headers, error = fast
    assert status == 416
    assert error["Code"] == "InvalidRange"
    assert error["RangeRequested"] == byte_range


def test_the_invalid_range_error_is_byte_identical_to_moto_s(
    localaws, s3, fast_answers
):
    signed = {}

    def keep(request, **_kwargs):
        signed.update(request.headers.items())

    s3.meta.events.register("before-send.s3.GetObject", keep)
    get(s3, Key="empty", Range="bytes=10-")
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in signed.items()}
    fast = raw_get(localaws, f"/{BUCKET}/empty", headers)
    localaws.server.fast_get = False
    try:
        moto = raw_get(localaws, f"/{BUCKET}/empty", headers)
    finally:
        localaws.server.fast_get = True
    assert fast[0] == moto[0] == 416
    assert [a is not None for a in fast_answers] == [
        True,
        True,
    ]  # the signed GET, then the raw one
    assert fast[2] == moto[2]  # byte for byte, RequestId and HostId included
    assert {k: v for k, v in fast[1].items() if k.lower() not in VOLATILE} == {
        k: v for k, v in moto[1].items() if k.lower() not in VOLATILE
    }


@pytest.mark.parametrize(
    "byte_range", ["bytes=5-3", "bytes=-", "bytes=0-1,5-6", "items=0-5"]
)
def test_ranges_moto_ignores_or_treats_its_own_way_go_to_moto(
    localaws, s3, fast_answers, byte_range
):
    answered = get(s3, Key=KEY, Range=byte_range)
    assert fast_answers == [None]
    assert answered == from_moto(localaws, s3, Key=KEY, Range=byte_range)


def test_a_missing_key_or_bucket_is_moto_s_error(localaws, s3):
    status, _headers, error = get(s3, Key="missing", Range="bytes=0-10")
    assert (status, error["Code"], error["Key"]) == (404, "NoSuchKey", "missing")
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket="no-such-bucket", Key="x", Range="bytes=0-10")
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"
    assert [c["status"] for c in localaws.calls("s3", "GetObject")] == [404, 404]


def test_conditional_and_versioned_requests_fall_back_to_moto(localaws, s3):
    etag = s3.head_object(Bucket=BUCKET, Key=KEY)["ETag"]
    matched = s3.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=0-9", IfMatch=etag)
    assert matched["Body"].read() == BODY[:10]
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=0-9", IfMatch='"other"')
    assert raised.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=BUCKET, Key=KEY, IfNoneMatch=etag)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    overridden = s3.get_object(
        Bucket=BUCKET, Key=KEY, Range="bytes=0-9", ResponseContentType="text/plain"
    )
    assert overridden["ContentType"] == "text/plain"
    s3.put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    first = s3.put_object(Bucket=BUCKET, Key="v", Body=b"one")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key="v", Body=b"two")
    assert (
        s3.get_object(Bucket=BUCKET, Key="v", VersionId=first)["Body"].read() == b"one"
    )
    latest = s3.get_object(Bucket=BUCKET, Key="v", Range="bytes=0-1")
    assert latest["Body"].read() == b"tw"
    assert latest["VersionId"] != first


def test_an_unsigned_request_goes_to_moto(localaws, s3):
    status, _headers, _body = raw_get(
        localaws, f"/{BUCKET}/empty", {"Range": "bytes=0-1"}
    )
    assert status == 403  # moto's answer to an anonymous read of a private object


def test_faults_and_the_call_log_apply_to_the_fast_path(localaws, s3):
    localaws.clear_calls()
    localaws.add_fault(service="s3", operation="GetObject", error="SlowDown", count=1)
    status, _headers, error = get(s3, Key=KEY, Range="bytes=0-9")
    assert (status, error["Code"]) == (503, "SlowDown")
    assert get(s3, Key=KEY, Range="bytes=0-9")[2] == BODY[:10]
    calls = localaws.calls("s3", "GetObject")
    assert [(c["status"], c.get("error")) for c in calls] == [
        (503, "SlowDown"),
        (206, None),
    ]


def test_injected_latency_overlaps_between_concurrent_fast_gets(localaws, s3):
    localaws.add_fault(service="s3", latency_ms=200)
    clients = [localaws.s3_client() for _ in range(24)]
    for client in clients:  # connect first, so only the GETs are timed
        client.head_bucket(Bucket=BUCKET)
    results = []

    def read(client):
        results.append(get(client, Key=KEY, Range="bytes=0-99")[2])

    threads = [threading.Thread(target=read, args=(c,)) for c in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert results == [BODY[:100]] * 24
    # 24 sleeps of 0.2 s one after another would take 4.8 s.
    assert elapsed < 2.0


def test_one_client_reuses_its_connection(localaws, s3):
    before = localaws.server.connections_accepted
    client = localaws.s3_client()
    for i in range(20):
        client.get_object(Bucket=BUCKET, Key=KEY, Range=f"bytes={i}-{i + 99}")[
            "Body"
        ].read()
    assert localaws.server.connections_accepted - before <= 2


def test_two_requests_share_one_socket(localaws):
    connection = http.client.HTTPConnection("127.0.0.1", localaws.server.port)
    try:
        connection.request("GET", "/_localaws/health")
        first = connection.getresponse()
        assert first.status == 200
        first.read()
        sock = connection.sock
        connection.request("GET", "/_localaws/health")
        second = connection.getresponse()
        assert second.status == 200
        second.read()
        assert (
            connection.sock is sock
        )  # http.client reconnects only after the server closed the socket
    finally:
        connection.close()


def test_an_empty_put_with_expect_continue_is_answered(localaws):
    # botocore sends "Expect: 100-continue" with every PutObject; waitress alone would hang on an empty one.
    localaws.create_bucket(BUCKET)
    client = localaws.s3_client()
    client.put_object(Bucket=BUCKET, Key="folder/", Body=b"")
    assert client.get_object(Bucket=BUCKET, Key="folder/")["ContentLength"] == 0
