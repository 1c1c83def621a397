"""Ranged S3 GETs for the scanner, without botocore's per-request machinery. Only `imports.aws.client` imports this.

A scan reads one small range of many objects, so what each request costs the client's CPU decides its speed.
boto3 spends about 1.2 ms of CPU on one GetObject (event hooks, parameter validation and serialisation, the
endpoint rule set, response parsing, checksums); the request itself needs much less. Here a request is built by
hand and signed with botocore's own SigV4 signer (0.1 ms), then sent on a kept-alive http.client connection of
the calling thread (0.2 ms; botocore's urllib3 session costs 0.4 ms, and is used instead when a proxy is set,
which it knows how to reach). botocore still supplies everything that must match a boto3 client:

- credentials from the standard chain (environment, profile, SSO, container or instance role), refreshed by
  botocore when they expire;
- the object URL as the client's endpoint resolution builds it (AWS_ENDPOINT_URL, region, path or virtual-host
  addressing), learnt once per bucket from a presigned URL;
- retries as the client's "standard" mode does them: throttling codes, 5xx answers, S3's transient codes and
  connection failures, with jittered exponential backoff, at most `max_attempts` tries;
- errors as botocore's exceptions (ClientError with AWS's code and message, EndpointConnectionError,
  ReadTimeoutError, NoCredentialsError), so `aws._translate` gives the administrator the same sentence.
"""

from __future__ import annotations

import http.client
import random
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.httpsession import URLLib3Session, get_cert_path
from botocore.utils import get_environ_proxies

# botocore's "standard" retry mode: these codes, and these statuses, are worth asking again.
RETRY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
    }
)
RETRY_STATUSES = frozenset({500, 502, 503, 504})
# botocore's standard mode: a random share of min(20 s, 2^attempt s).
MAX_BACKOFF_S = 20.0


class RangedGetter:
    """Ranged GETs of one region's S3, thread-safe; built from a boto3 client and the session it came from."""

    def __init__(
        self,
        *,
        client: Any,
        credentials: Any,
        max_attempts: int,
        connect_timeout: float,
        read_timeout: float,
        max_pool_connections: int,
        ca_bundle: str | None = None,
        sleep: Any = None,
    ) -> None:
        self._client = client
        self._credentials = credentials
        self._region = client.meta.region_name
        self._max_attempts = max(1, max_attempts)
        self._sleep = sleep
        endpoint = client.meta.endpoint_url
        proxies = get_environ_proxies(endpoint)
        self._direct: _Direct | None = None
        self._http: URLLib3Session | None = None
        if proxies:
            # As botocore's endpoint builds its session (the stubs type verify and timeout narrower than botocore).
            self._http = URLLib3Session(
                verify=ca_bundle or True,  # type: ignore[arg-type]
                proxies=proxies,
                timeout=(connect_timeout, read_timeout),  # type: ignore[arg-type]
                max_pool_connections=max_pool_connections,
            )
        else:
            self._direct = _Direct(connect_timeout, read_timeout, ca_bundle)
        self._bases: dict[str, str] = {}
        self._lock = threading.Lock()

    def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes start..end (inclusive) of s3://bucket/key; botocore's exceptions on failure."""
        url = self._base(bucket) + quote(key, safe="/~")
        headers = {"Range": f"bytes={start}-{end}"}
        attempt = 0
        while True:
            attempt += 1
            try:
                status, body, reason = self._send(url, headers)
            except (
                EndpointConnectionError,
                ConnectionClosedError,
                ReadTimeoutError,
                ConnectTimeoutError,
            ):
                if attempt >= self._max_attempts:
                    raise
                self._backoff(attempt)
                continue
            if status < 300:
                return body
            error = _client_error(status, body, reason)
            code = error.response["Error"]["Code"]
            if attempt >= self._max_attempts or not (
                code in RETRY_CODES or status in RETRY_STATUSES
            ):
                raise error
            self._backoff(attempt)

    def _send(self, url: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        credentials = self._credentials
        if credentials is None:
            raise NoCredentialsError()
        # get_frozen_credentials refreshes expiring temporary credentials (botocore locks around it).
        frozen = credentials.get_frozen_credentials()
        request = AWSRequest(method="GET", url=url, headers=headers)
        S3SigV4Auth(frozen, "s3", self._region).add_auth(request)
        if self._direct is not None:
            return self._direct.send(url, dict(request.headers.items()))
        assert self._http is not None
        response = self._http.send(request.prepare())
        try:
            body = response.content
        except urllib3.exceptions.ReadTimeoutError as error:
            raise ReadTimeoutError(endpoint_url=url, error=error) from error
        except urllib3.exceptions.HTTPError as error:
            # Cut off mid-body (a reset, fewer bytes than Content-Length): nothing usable arrived.
            raise ConnectionClosedError(endpoint_url=url) from error
        return response.status_code, body, response.raw.reason or ""

    def _backoff(self, attempt: int) -> None:
        pause = self._sleep or _pause
        pause(random.random() * min(MAX_BACKOFF_S, 2.0 ** (attempt - 1)))

    def _base(self, bucket: str) -> str:
        """The URL of the bucket's objects, as the client addresses them (ends with '/')."""
        base = self._bases.get(bucket)
        if base is None:
            # Presigning runs the client's own endpoint rules once: custom endpoint, region, addressing style.
            probe = "k"
            url = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": probe}, ExpiresIn=60
            )
            parts = urlsplit(url)
            if not parts.path.endswith("/" + probe):
                raise EndpointConnectionError(endpoint_url=url)
            base = f"{parts.scheme}://{parts.netloc}{parts.path[: -len(probe)]}"
            with self._lock:
                self._bases[bucket] = base
        return base


def _pause(seconds: float) -> None:
    # Looked up at each backoff, so a test can record the waits instead of waiting them.
    time.sleep(seconds)


class _Direct:
    """Kept-alive HTTP(S) connections, one per thread and host, with botocore's timeouts and exceptions.

    Each scan thread sends one request at a time, so a connection per thread is a pool without locks. A
    connection the server closed while it sat idle fails on reuse: the request goes once more on a new one,
    as urllib3 does (a GET changes nothing).
    """

    def __init__(
        self, connect_timeout: float, read_timeout: float, ca_bundle: str | None
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ca_bundle = ca_bundle
        self._ssl: ssl.SSLContext | None = None
        self._local = threading.local()

    def send(self, url: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        # The Host header exactly as SigV4 signed it (no default port).
        headers["Host"] = _host(parts.scheme, parts.hostname or "", parts.port)
        connections: dict[tuple[str, str], http.client.HTTPConnection] = (
            self._local.__dict__.setdefault("connections", {})
        )
        where = (parts.scheme, parts.netloc)
        for last_try in (False, True):
            connection = connections.pop(where, None)
            reused = connection is not None
            if connection is None:
                connection = self._connect(
                    url, parts.scheme, parts.hostname, parts.port
                )
            try:
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                body = response.read()
            except TimeoutError as error:
                connection.close()
                raise ReadTimeoutError(endpoint_url=url, error=error) from error
            except (http.client.HTTPException, OSError) as error:
                connection.close()
                if reused and not last_try:
                    continue
                raise ConnectionClosedError(endpoint_url=url) from error
            if not response.will_close:
                connections[where] = connection
            else:
                connection.close()
            return response.status, body, response.reason or ""
        raise AssertionError(
            "unreachable"
        )  # pragma: no cover - the loop returns or raises

    def _connect(
        self, url: str, scheme: str, host: str | None, port: int | None
    ) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context(
                    cafile=get_cert_path(self._ca_bundle or True)  # type: ignore[arg-type]
                )
            connection = http.client.HTTPSConnection(
                host or "", port, timeout=self._connect_timeout, context=self._ssl
            )
        else:
            connection = http.client.HTTPConnection(
                host or "", port, timeout=self._connect_timeout
            )
        try:
            connection.connect()
        except TimeoutError as error:
            raise ConnectTimeoutError(endpoint_url=url, error=error) from error
        except OSError as error:
            raise EndpointConnectionError(endpoint_url=url, error=error) from error
        assert connection.sock is not None
        connection.sock.settimeout(self._read_timeout)
        return connection


def _host(scheme: str, hostname: str, port: int | None) -> str:
    """botocore's Host value: the name (IPv6 in brackets) and the port unless it is the scheme's default."""
    name = f"[{hostname}]" if ":" in hostname else hostname
    default = 443 if scheme == "https" else 80
    return name if port in (None, default) else f"{name}:{port}"


def _client_error(status: int, body: bytes, reason: str) -> ClientError:
    """The ClientError botocore would raise for this answer: S3's XML error code and message."""
    code, message = str(status), reason
    if body:
        try:
            root = ET.fromstring(body)
            code = root.findtext("Code") or code
            message = root.findtext("Message") or message
        except ET.ParseError:
            pass
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")
