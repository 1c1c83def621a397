"""The dashboard's only door to AWS.

Every boto3 call goes through this module. It builds cached clients from settings (region, timeouts,
retry policy; boto3 itself reads AWS_ENDPOINT_URL and credentials from the environment), exposes a
handful of domain functions, and turns AWS errors into `AwsError`s whose message an administrator
can act on. The scanner's ranged GETs take a thinner path, `imports.aws.ranged` (imported only here), built
from the same client and credential chain and failing with the same botocore exceptions.

The operations it calls are listed in `imports.aws.permissions`, from which `manage.py iam_policy` builds the
IAM policies (a test keeps the list and the calls here the same).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.utils import parse_timestamp as botocore_parse_timestamp
from django.conf import settings

from imports.aws import metrics
from imports.aws.once import built_once
from imports.aws.ranged import RangedGetter

if TYPE_CHECKING:
    from mypy_boto3_medical_imaging import HealthImagingClient
    from mypy_boto3_s3 import S3Client


class AwsError(Exception):
    """An AWS call failed; `str(error)` is a sentence for the administrator."""

    code = "Error"
    # True when asking again later may succeed (throttling, 5xx, timeouts, no connection): such a
    # failure says nothing about the object asked for.
    transient = False

    def __init__(
        self, message: str, *, code: str | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        # AWS's own message, without what we were doing.
        self.detail = detail


class AccessDenied(AwsError):
    code = "AccessDenied"


class NotFound(AwsError):
    code = "NotFound"


class Throttled(AwsError):
    code = "Throttling"
    transient = True


class Unreachable(AwsError):
    """No answer at all: endpoint down, DNS, TLS, timeouts or no credentials."""

    code = "Unreachable"
    transient = True


class OutcomeUnknown(Unreachable):
    """The request was sent and no answer came (read timeout, connection closed mid-answer): AWS may
    have acted on it. For StartDICOMImportJob that means a job may exist; never "not submitted"."""

    code = "OutcomeUnknown"


class PreconditionFailed(AwsError):
    """A conditional write was refused (412): the object is not the version the caller expected."""

    code = "PreconditionFailed"


class TooLarge(AwsError):
    """An object is larger than the caller is willing to read whole."""

    code = "TooLarge"


class Unavailable(AwsError):
    """AWS answered, with a server error (5xx) or a request timeout: its problem, not the request's."""

    code = "Unavailable"
    transient = True


_ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}
_NOT_FOUND = {
    "NoSuchBucket",
    "NoSuchKey",
    "ResourceNotFoundException",
    "404",
    "NotFound",
}
_THROTTLED = {
    "ThrottlingException",
    "SlowDown",
    "TooManyRequestsException",
    "RequestLimitExceeded",
}

# A conditional write that lost: S3 answers 412, or 409 when a concurrent conditional write of the same key won.
_PRECONDITION = {"PreconditionFailed", "ConditionalRequestConflict"}

# Answers of an overloaded or failing service; S3's RequestTimeout (400) means the connection
# stalled, which says nothing about the object either.
_UNAVAILABLE = {
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "InternalServerException",
    "ServiceUnavailableException",
}


def _translate(error: Exception, doing: str) -> AwsError:
    """Turn a botocore exception into an AwsError whose message starts with what we were doing."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", "Error"))
        detail = str(error.response.get("Error", {}).get("Message") or "").strip()
        text = f"{doing}: {code}" + (
            f" ({detail})" if detail and detail != code else ""
        )
        if code in _ACCESS_DENIED:
            return AccessDenied(text, code=code, detail=detail)
        if code in _NOT_FOUND:
            return NotFound(text, code=code, detail=detail)
        if code in _THROTTLED:
            return Throttled(text, code=code, detail=detail)
        if code in _PRECONDITION:
            return PreconditionFailed(text, code=code, detail=detail)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _UNAVAILABLE or status >= 500:
            return Unavailable(text, code=code, detail=detail)
        return AwsError(text, code=code, detail=detail)
    if isinstance(error, NoCredentialsError):
        missing = Unreachable(
            f"{doing}: no AWS credentials were found. Give the dashboard an instance role, or set "
            "AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
            code="NoCredentials",
        )
        # Configuration, not weather: retrying would only hide it.
        missing.transient = False
        return missing
    if isinstance(error, ReadTimeoutError | ConnectionClosedError):
        return OutcomeUnknown(
            f"{doing}: the request was sent, but no answer came before the connection ended or "
            "timed out; AWS may have acted on it."
        )
    if isinstance(error, EndpointConnectionError):
        return Unreachable(
            f"{doing}: could not connect to {error.kwargs.get('endpoint_url', 'the AWS endpoint')}."
        )
    return Unreachable(f"{doing}: {error}")


_AWS_ERRORS = (ClientError, BotoCoreError)


def _outcome(code: str, status: int) -> str:
    """The `outcome` label of imports_aws_calls_total for an error answer: a few values, whatever AWS's codes."""
    if code in _ACCESS_DENIED:
        return "access_denied"
    if code in _NOT_FOUND:
        return "not_found"
    if code in _THROTTLED:
        return "throttled"
    if code in _PRECONDITION:
        return "precondition_failed"
    if code in _UNAVAILABLE or status >= 500:
        return "unavailable"
    return "error"


@built_once
def _client(
    service: str,
    region: str,
    total_attempts: int | None = None,
    read_timeout: float | None = None,
) -> Any:
    retries: dict[str, Any] = {"mode": "standard"}
    if total_attempts is None:
        retries["max_attempts"] = settings.AWS_MAX_ATTEMPTS
    else:
        # botocore's max_attempts counts retries; total_max_attempts counts the first call too.
        retries["total_max_attempts"] = total_attempts
    config = Config(
        region_name=region,
        connect_timeout=settings.AWS_CONNECT_TIMEOUT,
        read_timeout=read_timeout or settings.AWS_READ_TIMEOUT,
        retries=retries,  # type: ignore[arg-type]
        # HealthImaging's image-set operations carry a "runtime-" host prefix that would break a
        # custom endpoint such as localaws; the job operations have none, so this changes nothing on AWS.
        inject_host_prefix=False,
        max_pool_connections=64,
    )
    # A session per client: boto3's default session is not thread-safe to create clients from.
    client = _session().client(service, config=config)  # type: ignore[call-overload]
    metrics.instrument(client, _outcome)
    return client


def parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, with the C parser of the standard library for ISO 8601 first.

    A listing page carries a thousand LastModified values, and dateutil spends about 0.1 ms on each: more CPU
    than the scanner's ranged GET of the object. Anything fromisoformat does not read exactly as botocore
    would (epoch numbers, dates without a zone, other formats) still goes to botocore.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    return botocore_parse_timestamp(value)


def _core_session() -> botocore.session.Session:
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    return core


def _session() -> boto3.session.Session:
    return boto3.session.Session(botocore_session=_core_session())


def s3_client(region: str) -> S3Client:
    client: S3Client = _client("s3", region)
    return client


def healthimaging_client(region: str) -> HealthImagingClient:
    client: HealthImagingClient = _client("medical-imaging", region)
    return client


def healthimaging_submit_client(region: str) -> HealthImagingClient:
    """A client that tries StartDICOMImportJob once: the dashboard's own limiter and backoff do the
    retrying, so that every attempt goes through the shared limiter, at the datastore's rate."""
    client: HealthImagingClient = _client(
        "medical-imaging", region, 1, settings.JOBS_SUBMIT_READ_TIMEOUT_S
    )
    return client


def healthimaging_poll_client(region: str) -> HealthImagingClient:
    """The poller's client: JOBS_POLL_ATTEMPTS tries of JOBS_POLL_READ_TIMEOUT_S each.

    The default client may spend 5 attempts of 30 s on one GetDICOMImportJob during a brown-out, more than
    the poll task's time limit; a poll asks again 2 s later anyway, so one call is kept short.
    """
    client: HealthImagingClient = _client(
        "medical-imaging",
        region,
        settings.JOBS_POLL_ATTEMPTS,
        settings.JOBS_POLL_READ_TIMEOUT_S,
    )
    return client


@built_once
def _ranged_getter(region: str) -> RangedGetter:
    # A session of its own, as for each client: its credential chain (environment, profile, roles) is
    # resolved once here and refreshed by botocore when temporary credentials expire.
    session = _core_session()
    return RangedGetter(
        client=s3_client(region),
        credentials=session.get_credentials(),
        # The client's "max_attempts" counts retries; the getter counts every try, as total_max_attempts does.
        max_attempts=settings.AWS_MAX_ATTEMPTS + 1,
        connect_timeout=settings.AWS_CONNECT_TIMEOUT,
        read_timeout=settings.AWS_READ_TIMEOUT,
        max_pool_connections=64,
        ca_bundle=session.get_config_variable("ca_bundle"),
    )


def reset_clients() -> None:
    """Forget cached clients, so a changed environment (endpoint, credentials) takes effect."""
    _client.cache_clear()
    _ranged_getter.cache_clear()


# --- HealthImaging --------------------------------------------------------------------------


@dataclass(frozen=True)
class DatastoreInfo:
    datastore_id: str
    name: str
    status: str
    arn: str


def datastore_describe(*, region: str, datastore_id: str) -> DatastoreInfo:
    try:
        response = healthimaging_client(region).get_datastore(datastoreId=datastore_id)
    except _AWS_ERRORS as error:
        raise _translate(error, f"GetDatastore {datastore_id} in {region}") from error
    properties = response["datastoreProperties"]
    return DatastoreInfo(
        datastore_id=properties["datastoreId"],
        name=properties["datastoreName"],
        status=properties["datastoreStatus"],
        arn=properties.get("datastoreArn", ""),
    )


@dataclass(frozen=True)
class StartedJob:
    job_id: str
    status: str
    submitted_at: datetime | None


def import_job_start(
    *, region: str, request: dict[str, Any], client_token: str
) -> StartedJob:
    """StartDICOMImportJob with our own clientToken: the same token always gets the same AWS job back."""
    try:
        response = healthimaging_submit_client(region).start_dicom_import_job(
            **request, clientToken=client_token
        )
    except _AWS_ERRORS as error:
        raise _translate(error, "StartDICOMImportJob") from error
    return StartedJob(
        job_id=response["jobId"],
        status=response["jobStatus"],
        submitted_at=response.get("submittedAt"),
    )


@dataclass(frozen=True)
class ImportJobInfo:
    job_id: str
    job_name: str
    status: str
    datastore_id: str
    submitted_at: datetime | None
    ended_at: datetime | None
    message: str
    # Only GetDICOMImportJob returns these (the job folder, not the outputS3Uri that was sent).
    input_s3_uri: str = ""
    output_s3_uri: str = ""
    role_arn: str = ""


def _job_info(properties: Any) -> ImportJobInfo:
    return ImportJobInfo(
        job_id=properties["jobId"],
        job_name=properties.get("jobName", ""),
        status=properties["jobStatus"],
        datastore_id=properties["datastoreId"],
        submitted_at=properties.get("submittedAt"),
        ended_at=properties.get("endedAt"),
        message=properties.get("message", ""),
        input_s3_uri=properties.get("inputS3Uri", ""),
        output_s3_uri=properties.get("outputS3Uri", ""),
        role_arn=properties.get("dataAccessRoleArn", ""),
    )


def import_job_describe(
    *, region: str, datastore_id: str, job_id: str, for_poll: bool = False
) -> ImportJobInfo:
    """GetDICOMImportJob. `for_poll`: with the poller's bounded client (healthimaging_poll_client)."""
    client = (
        healthimaging_poll_client(region) if for_poll else healthimaging_client(region)
    )
    try:
        response = client.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)
    except _AWS_ERRORS as error:
        raise _translate(error, f"GetDICOMImportJob {job_id}") from error
    return _job_info(response["jobProperties"])


def import_jobs_list(
    *, region: str, datastore_id: str, max_pages: int = 20
) -> Iterator[ImportJobInfo]:
    """ListDICOMImportJobs, newest first, at most `max_pages` pages of 50."""
    token: str | None = None
    for _ in range(max_pages):
        params: dict[str, Any] = {"datastoreId": datastore_id, "maxResults": 50}
        if token:
            params["nextToken"] = token
        try:
            response = healthimaging_client(region).list_dicom_import_jobs(**params)
        except _AWS_ERRORS as error:
            raise _translate(error, f"ListDICOMImportJobs {datastore_id}") from error
        for summary in response.get("jobSummaries", []):
            yield _job_info(summary)
        token = response.get("nextToken")
        if not token:
            return


# --- S3 -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str
    last_modified: datetime | None


@dataclass(frozen=True)
class S3ListPage:
    folders: list[str]
    objects: list[S3Object]
    next_token: str | None


def s3_list_page(
    *,
    region: str,
    bucket: str,
    prefix: str,
    delimiter: str | None = "/",
    token: str | None = None,
    max_keys: int = 1000,
) -> S3ListPage:
    """One ListObjectsV2 page: never more than `max_keys` entries, so big prefixes cost the same."""
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
    if delimiter:
        params["Delimiter"] = delimiter
    if token:
        params["ContinuationToken"] = token
    try:
        response = s3_client(region).list_objects_v2(**params)
    except _AWS_ERRORS as error:
        raise _translate(error, f"Listing s3://{bucket}/{prefix}") from error
    return S3ListPage(
        folders=[entry["Prefix"] for entry in response.get("CommonPrefixes", [])],
        objects=[
            S3Object(
                key=entry["Key"],
                size=entry["Size"],
                etag=entry["ETag"].strip('"'),
                last_modified=entry.get("LastModified"),
            )
            for entry in response.get("Contents", [])
        ],
        next_token=response.get("NextContinuationToken")
        if response.get("IsTruncated")
        else None,
    )


def s3_get_range(*, region: str, bucket: str, key: str, start: int, end: int) -> bytes:
    """Bytes start..end (inclusive) of an object: one ranged GET.

    The scanner's hot path: signed and sent without botocore's per-request machinery (imports.aws.ranged explains
    why), with the client's credentials, endpoint, retries and errors.
    """
    started, outcome = time.perf_counter(), metrics.OK
    try:
        return _ranged_getter(region).get_range(bucket, key, start, end)
    except _AWS_ERRORS as error:
        outcome = (
            _outcome(
                str(error.response.get("Error", {}).get("Code", "")),
                error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0),
            )
            if isinstance(error, ClientError)
            else metrics.UNREACHABLE
        )
        raise _translate(error, f"Reading s3://{bucket}/{key}") from error
    finally:
        metrics.record_call("GetObject", outcome, time.perf_counter() - started)


def s3_read_object(*, region: str, bucket: str, key: str, max_bytes: int) -> bytes:
    """A whole small object (a manifest); refuses one larger than `max_bytes`."""
    try:
        response = s3_client(region).get_object(Bucket=bucket, Key=key)
        if response["ContentLength"] > max_bytes:
            response["Body"].close()
            raise AwsError(
                f"s3://{bucket}/{key} is {response['ContentLength']} bytes, more than the {max_bytes} expected",
                code="TooLarge",
            )
        return response["Body"].read()
    except _AWS_ERRORS as error:
        raise _translate(error, f"Reading s3://{bucket}/{key}") from error


def s3_iter_lines(*, region: str, bucket: str, key: str) -> Iterator[bytes]:
    """An object's lines, streamed: memory stays flat however long the object is."""
    try:
        response = s3_client(region).get_object(Bucket=bucket, Key=key)
        yield from response["Body"].iter_lines(chunk_size=64 * 1024)
    except _AWS_ERRORS as error:
        raise _translate(error, f"Reading s3://{bucket}/{key}") from error


def s3_put_object(
    *,
    region: str,
    bucket: str,
    key: str,
    body: bytes,
    content_type: str,
    if_match: str | None = None,
    if_none_match: bool = False,
) -> str:
    """Write an object and return its ETag.

    `if_match` writes only over that ETag, `if_none_match` only where no object exists (S3's conditional
    writes): either way the check and the write are one request, so no other writer can slip in between.
    A refusal raises PreconditionFailed.
    """
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "Body": body,
        "ContentType": content_type,
    }
    if if_match is not None:
        params["IfMatch"] = f'"{if_match.strip(chr(34))}"'
    if if_none_match:
        params["IfNoneMatch"] = "*"
    try:
        response = s3_client(region).put_object(**params)
    except _AWS_ERRORS as error:
        raise _translate(error, f"Writing s3://{bucket}/{key}") from error
    return response["ETag"].strip('"')


@dataclass(frozen=True)
class S3Body:
    data: bytes
    etag: str


def s3_get_object(*, region: str, bucket: str, key: str, max_bytes: int) -> S3Body:
    """A whole object with its ETag; TooLarge (without reading the body) when it is over `max_bytes`."""
    try:
        response = s3_client(region).get_object(Bucket=bucket, Key=key)
        size = response["ContentLength"]
        if size > max_bytes:
            response["Body"].close()
            raise TooLarge(
                f"s3://{bucket}/{key} is {size:,} bytes; files over {max_bytes:,} bytes are not read"
            )
        return S3Body(response["Body"].read(), response["ETag"].strip('"'))
    except _AWS_ERRORS as error:
        raise _translate(error, f"Reading s3://{bucket}/{key}") from error


def s3_delete_object(*, region: str, bucket: str, key: str) -> None:
    try:
        s3_client(region).delete_object(Bucket=bucket, Key=key)
    except _AWS_ERRORS as error:
        raise _translate(error, f"Deleting s3://{bucket}/{key}") from error
