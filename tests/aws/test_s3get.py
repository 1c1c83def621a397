"""The scanner's ranged GET: same bytes, credentials, retries and error messages as a boto3 GetObject."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from imports.aws import client as aws
from imports.aws import ranged as s3get
from localaws.testing import LocalAWSHandle

BUCKET = "get-bucket"
DATA = bytes(range(256)) * 64


@pytest.fixture
def bucket(localaws: LocalAWSHandle) -> LocalAWSHandle:
    localaws.create_bucket(BUCKET)
    localaws.put(f"s3://{BUCKET}/in/a.dcm", DATA)
    localaws.clear_calls()
    return localaws


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoffs the getter waited, without waiting them."""
    slept: list[float] = []
    monkeypatch.setattr(s3get, "_pause", slept.append)
    return slept


def get(key: str = "in/a.dcm", start: int = 0, end: int = 99) -> bytes:
    return aws.s3_get_range(
        region="us-east-1", bucket=BUCKET, key=key, start=start, end=end
    )


def boto3_error(localaws: LocalAWSHandle, key: str = "in/a.dcm") -> aws.AwsError:
    """What the boto3 path said for the same failure: the message the scan showed before."""
    try:
        localaws.s3_client().get_object(Bucket=BUCKET, Key=key, Range="bytes=0-99")
    except ClientError as error:
        return aws._translate(error, f"Reading s3://{BUCKET}/{key}")
    raise AssertionError("boto3 did not fail")


def get_statuses(localaws: LocalAWSHandle) -> list[int]:
    return [c["status"] for c in localaws.calls("s3", "GetObject")]


@pytest.mark.parametrize(
    "key", ["in/a.dcm", "in/with space/+plus%25 ünï.dcm", "in/~tilde/(1)=x&y.dcm"]
)
def test_it_reads_the_same_bytes_as_boto3(bucket: LocalAWSHandle, key: str) -> None:
    bucket.put(f"s3://{BUCKET}/{key}", DATA)
    assert get(key, 10, 4109) == DATA[10:4110]
    # A range past the end is cut at the end, as S3 does.
    assert get(key, len(DATA) - 5, len(DATA) + 100) == DATA[-5:]


def test_it_rides_out_throttling_with_backoff(
    bucket: LocalAWSHandle, settings: Any, sleeps: list[float]
) -> None:
    settings.AWS_MAX_ATTEMPTS = (
        2  # retries, as botocore counts them: three tries in all
    )
    bucket.add_fault(service="s3", operation="GetObject", error="SlowDown", count=2)
    assert get() == DATA[:100]
    assert get_statuses(bucket) == [503, 503, 206]
    assert len(sleeps) == 2
    # botocore's standard backoff: a random share of 1 s, then of 2 s.
    assert 0 <= sleeps[0] <= 1
    assert 0 <= sleeps[1] <= 2


@pytest.mark.parametrize(
    "error", ["InternalError", "ServiceUnavailable", "RequestTimeout"]
)
def test_it_retries_server_errors_and_s3s_transient_codes(
    bucket: LocalAWSHandle, settings: Any, sleeps: list[float], error: str
) -> None:
    settings.AWS_MAX_ATTEMPTS = 1
    bucket.add_fault(service="s3", operation="GetObject", error=error, count=1)
    assert get() == DATA[:100]
    assert len(get_statuses(bucket)) == 2


@pytest.mark.parametrize(
    ("error", "kind", "transient"),
    [
        ("SlowDown", aws.Throttled, True),
        ("InternalError", aws.Unavailable, True),
        ("RequestTimeout", aws.Unavailable, True),
        ("AccessDenied", aws.AccessDenied, False),
        ("NoSuchKey", aws.NotFound, False),
    ],
)
def test_its_errors_say_what_the_boto3_path_said(
    bucket: LocalAWSHandle,
    settings: Any,
    sleeps: list[float],
    error: str,
    kind: type[aws.AwsError],
    transient: bool,
) -> None:
    settings.AWS_MAX_ATTEMPTS = 1
    bucket.add_fault(service="s3", operation="GetObject", error=error, count=2)
    with pytest.raises(kind) as raised:
        get()
    bucket.add_fault(service="s3", operation="GetObject", error=error, count=1)
    expected = boto3_error(bucket)
    assert (str(raised.value), raised.value.code, raised.value.transient) == (
        str(expected),
        expected.code,
        transient,
    )
    # Permanent answers are not asked again.
    assert len(get_statuses(bucket)) == (2 if transient else 1) + 1


def test_a_missing_key_and_a_bad_range_are_s3s_own_answers(
    bucket: LocalAWSHandle,
) -> None:
    with pytest.raises(aws.NotFound) as missing:
        get("in/gone.dcm")
    assert str(missing.value) == str(boto3_error(bucket, "in/gone.dcm"))
    with pytest.raises(aws.AwsError) as bad_range:
        get(start=len(DATA) + 10, end=len(DATA) + 20)
    assert bad_range.value.code == "InvalidRange"
    assert not bad_range.value.transient


def test_no_answer_at_all_is_unreachable_and_transient(
    monkeypatch: pytest.MonkeyPatch, settings: Any, sleeps: list[float]
) -> None:
    settings.AWS_MAX_ATTEMPTS = 1
    # A port nobody listens on: bind one, then close it.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(aws.Unreachable) as raised:
        get()
    assert raised.value.transient
    assert str(raised.value) == (
        f"Reading s3://{BUCKET}/in/a.dcm: could not connect to "
        f"http://127.0.0.1:{port}/{BUCKET}/in/a.dcm."
    )
    assert len(sleeps) == 1


def test_no_credentials_is_a_configuration_problem(
    bucket: LocalAWSHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(aws.Unreachable) as raised:
        get()
    assert raised.value.code == "NoCredentials"
    assert not raised.value.transient
    assert get_statuses(bucket) == []


# --- Credentials, checked by signature --------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Answers every GET with 206 and four bytes, and keeps the request's path and headers."""

    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append((self.path, dict(self.headers.items())))
        self.send_response(206)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"DICM")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[list[tuple[str, dict[str, str]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield Recorder.seen
    server.shutdown()
    server.server_close()


def assert_signed_by(
    seen: tuple[str, dict[str, str]], access_key: str, secret: str, token: str | None
) -> None:
    """Recompute the request's SigV4 signature with the expected secret: only that key could have made it."""
    path, headers = seen
    assert f"Credential={access_key}/" in headers["Authorization"]
    request = AWSRequest(
        method="GET",
        url=f"http://{headers['Host']}{path}",
        headers={"Range": headers["Range"]},
    )
    request.context["timestamp"] = headers["X-Amz-Date"]
    S3SigV4Auth(Credentials(access_key, secret, token), "s3", "us-east-1").add_auth(
        request
    )
    assert request.headers["Authorization"] == headers["Authorization"]
    assert headers.get("X-Amz-Security-Token") == token


def test_it_signs_with_credentials_from_the_environment(
    recorder: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "environment-token")
    assert get() == b"DICM"
    (seen,) = recorder
    assert seen[0] == f"/{BUCKET}/in/a.dcm"
    assert seen[1]["Range"] == "bytes=0-99"
    assert_signed_by(
        seen, "AKIDFROMENVIRONMENT", "environment-secret", "environment-token"
    )


def test_it_signs_with_credentials_from_a_profile(
    recorder: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[scanner]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = profile-secret\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "scanner")
    assert get() == b"DICM"
    assert_signed_by(recorder[0], "AKIDFROMPROFILE", "profile-secret", None)


def test_expired_temporary_credentials_are_refreshed_before_signing(
    recorder: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client only presigns the bucket's address here; the getter signs with the credentials it is given.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCLIENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "client-secret")

    def refresh() -> dict[str, str]:
        return {
            "access_key": "AKIDSECOND",
            "secret_key": "rotating-secret",
            "token": "rotating-token",
            "expiry_time": "2999-01-01T00:00:00Z",
        }

    # Issued long ago and expired: botocore must fetch new ones before the request is signed.
    expired = {
        **refresh(),
        "access_key": "AKIDFIRST",
        "expiry_time": "2000-01-01T00:00:00Z",
    }
    credentials = RefreshableCredentials.create_from_metadata(expired, refresh, "test")
    getter = s3get.RangedGetter(
        client=aws.s3_client("us-east-1"),
        credentials=credentials,
        max_attempts=1,
        connect_timeout=5,
        read_timeout=5,
        max_pool_connections=2,
    )
    assert getter.get_range(BUCKET, "in/a.dcm", 0, 3) == b"DICM"
    assert_signed_by(recorder[0], "AKIDSECOND", "rotating-secret", "rotating-token")


# --- Timestamps ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-29T18:44:18.000Z",
        "2026-11-29T18:44:18Z",
        "2026-11-29T20:44:18.123456+02:00",
        1764441858,
        1764441858.5,
        "2026-11-29T18:44:18",
        "Sun, 29 Nov 2026 18:44:18 GMT",
    ],
)
def test_timestamps_parse_as_botocore_parses_them(value: Any) -> None:
    assert aws.parse_timestamp(value) == botocore_parse_timestamp(value)


def test_a_listing_carries_the_objects_last_modified(bucket: LocalAWSHandle) -> None:
    page = aws.s3_list_page(region="us-east-1", bucket=BUCKET, prefix="in/")
    (listed,) = page.objects
    expected = bucket.s3_client().head_object(Bucket=BUCKET, Key="in/a.dcm")
    assert listed.last_modified == expected["LastModified"]
    assert listed.last_modified is not None
    assert listed.last_modified.tzinfo is UTC
    assert listed.last_modified <= datetime.now(UTC)


def test_behind_a_proxy_it_goes_through_the_proxy_signed_for_the_endpoint(
    recorder: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = os.environ["AWS_ENDPOINT_URL"]  # the recorder, playing the proxy here
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3.example.invalid")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDBEHINDPROXY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "proxy-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    assert get() == b"DICM"
    ((target, headers),) = recorder
    # A proxy is asked for the absolute URL of the object on the real endpoint.
    assert target == f"http://s3.example.invalid/{BUCKET}/in/a.dcm"
    assert_signed_by(
        (f"/{BUCKET}/in/a.dcm", headers), "AKIDBEHINDPROXY", "proxy-secret", None
    )
