"""Fault injection and the call log, shared by the S3 and HealthImaging sides of the server.

A fault is a rule such as {"service": "medical-imaging", "operation": "StartDICOMImportJob",
"error": "ThrottlingException", "count": 3}; the full list of keys is in localaws/README.md.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from localaws import model

SERVICES = ("s3", "medical-imaging")
# S3 errors a test may inject, with their real HTTP status and message.
S3_ERRORS = {
    "AccessDenied": (403, "Access Denied"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "SlowDown": (503, "Please reduce your request rate."),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold"),
    "RequestTimeout": (400, "Your socket connection to the server was not read from or written to within the timeout period."),
}  # fmt: skip
CALL_LOG_LIMIT = 10_000


class FaultError(ValueError):
    """A fault rule the registry cannot apply; the control endpoint answers 400 with this message."""


@dataclass
class Fault:
    service: str | None = None
    operation: str | None = None
    error: str | None = None
    count: int | None = None
    rate: float | None = None
    # Let this many matching calls through first, so a fault can begin in the middle of a run.
    after: int | None = None
    message: str | None = None
    latency_ms: float | None = None
    # A link of this many megabits per second that every response body of the service shares.
    bandwidth_mbps: float | None = None
    manifest_delay_s: float | None = None
    fail_job: bool = False

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise FaultError("a fault must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise FaultError(f"unknown fault key(s): {', '.join(sorted(unknown))}")
        fault = cls(**data)
        if fault.service is not None and fault.service not in SERVICES:
            raise FaultError(f"service must be one of {', '.join(SERVICES)}")
        if fault.error is not None:
            if fault.service is None:
                raise FaultError("an error fault needs a service")
            known = S3_ERRORS if fault.service == "s3" else model.error_codes()
            if fault.error not in known:
                raise FaultError(
                    f"unknown {fault.service} error {fault.error}; known: {', '.join(sorted(known))}"
                )
            if fault.count is None and fault.rate is None:
                fault.count = 1
            if fault.rate is not None and not 0 <= fault.rate <= 1:
                raise FaultError("rate must be between 0 and 1")
        if fault.after is not None and (
            isinstance(fault.after, bool)
            or not isinstance(fault.after, int)
            or fault.after < 0
        ):
            raise FaultError("after must be a whole number of calls, 0 or more")
        if fault.after is not None and fault.error is None:
            raise FaultError("after applies to error faults only")
        if fault.latency_ms is not None and fault.service is None:
            raise FaultError("a latency fault needs a service")
        if fault.bandwidth_mbps is not None:
            if fault.service is None:
                raise FaultError("a bandwidth fault needs a service")
            if (
                isinstance(fault.bandwidth_mbps, bool)
                or not isinstance(fault.bandwidth_mbps, int | float)
                or not fault.bandwidth_mbps > 0
            ):
                raise FaultError(
                    "bandwidth_mbps must be a number of megabits per second above 0"
                )
        if not (
            fault.error
            or fault.latency_ms
            or fault.bandwidth_mbps
            or fault.manifest_delay_s
            or fault.fail_job
        ):
            raise FaultError(
                "a fault needs one of error, latency_ms, bandwidth_mbps, manifest_delay_s or fail_job"
            )
        if fault.fail_job and fault.count is None:
            fault.count = 1
        return fault


class Link:
    """One network link that every paced response body crosses, in chunks, one chunk at a time.

    A chunk takes its size over the bandwidth to cross, after the chunks reserved before it: concurrent bodies
    interleave chunk by chunk and together never go faster than the link, as on a shared 1 Gbit/s uplink.
    """

    CHUNK = 64 * 1024

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._free_at = 0.0
        self.bytes_paced = 0

    def reserve(self, size: int, bits_per_s: float) -> float:
        """When a chunk of `size` bytes, queued now, has crossed the link."""
        with self._lock:
            start = max(self._clock(), self._free_at)
            self._free_at = start + size * 8 / bits_per_s
            self.bytes_paced += size
            return self._free_at

    def paced(self, body: Iterable[bytes], bits_per_s: float) -> Iterator[bytes]:
        """The body's bytes, each chunk released when it would have crossed the link."""
        try:
            for part in body:
                for offset in range(0, len(part), self.CHUNK):
                    chunk = part[offset : offset + self.CHUNK]
                    wait = self.reserve(len(chunk), bits_per_s) - self._clock()
                    if wait > 0:
                        self._sleep(wait)
                    yield chunk
        finally:
            # WSGI: the server closes what the application returned; the wrapper passes that on.
            close = getattr(body, "close", None)
            if close is not None:
                close()


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random()
        self.link = Link()

    def add(self, data: Any) -> list[Fault]:
        items = data if isinstance(data, list) else [data]
        parsed = [Fault.from_json(item) for item in items]
        with self._lock:
            self._faults.extend(parsed)
        return parsed

    def load_env(self) -> None:
        raw = os.environ.get("LOCALAWS_FAULTS")
        if raw:
            self.add(json.loads(raw))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {k: v for k, v in asdict(f).items() if v not in (None, False)}
                for f in self._faults
            ]

    def latency_s(self, service: str) -> float:
        with self._lock:
            return (
                sum((f.latency_ms or 0) for f in self._faults if f.service == service)
                / 1000
            )

    def bandwidth_bps(self, service: str) -> float | None:
        """The narrowest link a bandwidth fault puts in front of the service, in bits per second."""
        with self._lock:
            limits = [
                f.bandwidth_mbps * 1e6
                for f in self._faults
                if f.service == service and f.bandwidth_mbps
            ]
        return min(limits) if limits else None

    def error_for(self, service: str, operation: str) -> tuple[str, str | None] | None:
        """The (error, message) to answer instead of handling the call, consuming one count."""
        with self._lock:
            for fault in self._faults:
                if fault.error is None or fault.service != service:
                    continue
                if fault.operation is not None and fault.operation != operation:
                    continue
                if fault.after:
                    fault.after -= 1
                    continue
                if fault.count is not None:
                    if fault.count <= 0:
                        continue
                    fault.count -= 1
                    return fault.error, fault.message
                if fault.rate is not None and self._random.random() < fault.rate:
                    return fault.error, fault.message
            self._faults = [
                f
                for f in self._faults
                if f.count is None or f.count > 0 or f.error is None
            ]
        return None

    def manifest_delay_s(self) -> float:
        with self._lock:
            return max((f.manifest_delay_s or 0 for f in self._faults), default=0)

    def take_fail_job(self) -> str | None:
        with self._lock:
            for fault in self._faults:
                if fault.fail_job and (fault.count or 0) > 0:
                    fault.count = (fault.count or 1) - 1
                    return (
                        fault.message
                        or "DICOM import job has failed. INJECTED_FAULT: failed on request of a test"
                    )
        return None


class CallLog:
    """What reached the server; never request bodies, which for HealthImaging carry PHI-adjacent UIDs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: deque[dict[str, Any]] = deque(maxlen=CALL_LOG_LIMIT)

    def record(self, service: str, operation: str, status: int, **extra: Any) -> None:
        entry = {
            "service": service,
            "operation": operation,
            "status": status,
            "time": datetime.now(UTC).isoformat(),
        }
        entry.update({k: v for k, v in extra.items() if v is not None})
        with self._lock:
            self._calls.append(entry)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


def s3_operation(
    method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
) -> str:
    """The S3 API operation name of a path-style request, as botocore would call it."""
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0]
    key = parts[1] if len(parts) > 1 else ""
    if not bucket:
        return "ListBuckets"
    if not key:
        if method == "GET":
            if "list-type" in query:
                return "ListObjectsV2"
            for sub, name in (
                ("location", "GetBucketLocation"),
                ("versions", "ListObjectVersions"),
                ("uploads", "ListMultipartUploads"),
            ):
                if sub in query:
                    return name
            return "ListObjects"
        return {
            "PUT": "CreateBucket",
            "DELETE": "DeleteBucket",
            "HEAD": "HeadBucket",
        }.get(method, "DeleteObjects" if "delete" in query else "PostBucket")
    if method == "GET":
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "uploadId" in query:
            return "UploadPart"
        return (
            "CopyObject"
            if "x-amz-copy-source" in {h.lower() for h in headers}
            else "PutObject"
        )
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    return f"{method}Object"


def s3_error_body(code: str, message: str | None) -> tuple[int, bytes]:
    status, default = S3_ERRORS[code]
    text = message or default
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{_xml(text)}</Message><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    )
    return status, body.encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
