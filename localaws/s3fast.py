"""A fast path in front of moto for the GetObject requests an SDK makes: a plain GET or one `Range: bytes=a-b`.

moto answers every GetObject by copying the whole object out of its buffer (`FakeKey.value`) and only then
slicing out the range: about 2 ms of CPU for a 16 KiB range of a 0.5 MB object, which is what capped the scan
benchmark. Here only the requested bytes are read from the key's buffer, and the answer is built the way moto
builds it (same headers, same range rules, same InvalidRange error), so a client cannot tell the two apart.

Whatever this module would not answer exactly as moto does goes to moto unchanged: `get_object` returns None
for any query parameter (versionId, partNumber, response-* overrides, presigned URLs), any request header outside
the short list an SDK sends (conditional, SSE-C, Origin, account override), an unsigned request,
virtual-host addressing, a missing bucket or key, a bucket with a policy or access logging, an archived object,
and any Range value other than a satisfiable or start-past-the-end single `bytes=` range. moto's errors stay
moto's.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from moto import settings as moto_settings
from moto.core.responses import BaseResponse
from moto.core.serialize import S3Serializer
from moto.iam.models import get_account_id_from
from moto.moto_api import recorder
from moto.s3.models import FakeKey
from moto.s3.utils import ARCHIVE_STORAGE_CLASSES
from moto.utilities.aws_headers import gen_amzn_requestid_long
from moto.utilities.utils import get_partition

from localaws import s3store
from localaws.healthimaging import WSGIEnviron

# Request headers that moto's GetObject ignores or that this module handles as moto does. Anything else may
# change moto's answer (If-*, SSE-C, Origin for CORS, x-moto-account-id, ...), so it sends the request to moto.
IGNORED_HEADERS = frozenset(
    {
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "keep-alive",
        "range",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
        "x-amz-user-agent",
        "x-amz-checksum-mode",  # boto3 sends it with every GetObject; handled below as moto handles it
        "x-amzn-trace-id",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
    }
)
RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
SCOPE_REGION_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/s3/aws4_request")
# moto reads path-style buckets for these hosts (S3Response.subdomain_based_buckets); any other host may carry
# the bucket in its name.
PATH_STYLE_HOST_RE = re.compile(
    r"(localhost[^/]*|[^.]+|((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)(:\d+)?)"
)
CHECKSUM_HEADER_PREFIX = "x-amz-checksum-"
INVALID_RANGE_MESSAGE = "The requested range is not satisfiable"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return {
            200: "200 OK",
            206: "206 Partial Content",
            416: "416 Requested Range Not Satisfiable",
        }[self.status]


class _Fallback(Exception):
    """This request is moto's to answer."""


def get_object(environ: WSGIEnviron) -> Answer | None:
    """The answer to a path-style GetObject, or None when moto must answer it."""
    try:
        return _get_object(environ)
    except _Fallback:
        return None


def _get_object(environ: WSGIEnviron) -> Answer:
    if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
        raise _Fallback
    if environ.get("CONTENT_LENGTH") not in (None, "", "0"):
        raise _Fallback
    headers = {
        name[5:].replace("_", "-").lower(): value
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }
    if not IGNORED_HEADERS.issuperset(headers):
        raise _Fallback
    if not PATH_STYLE_HOST_RE.fullmatch(headers.get("host", "")):
        raise _Fallback
    _check_moto_state()
    authorization = headers.get("authorization", "")
    scope = SCOPE_REGION_RE.search(authorization)
    # An unsigned request goes through moto's ACL checks; another account or partition is another backend.
    if scope is None or get_partition(scope.group(1)) != "aws":
        raise _Fallback
    # The access key as moto reads it (BaseResponse.get_access_key), and the account moto files it under.
    access_key = BaseResponse.access_key_regex.search(authorization)
    account = get_account_id_from(access_key.group(1) if access_key else "AKIAEXAMPLE")
    if account != s3store.ACCOUNT_ID:
        raise _Fallback
    bucket_name, key_name = _bucket_and_key(environ)
    key = _key(bucket_name, key_name)
    return _answer(
        key,
        headers.get("range", ""),
        checksum=headers.get("x-amz-checksum-mode") == "ENABLED",
    )


def _check_moto_state() -> None:
    # Settings under which moto does more than read the object: a fixed account, IAM authorisation of every
    # action after the first N, the request recorder.
    if os.environ.get("MOTO_ACCOUNT_ID", s3store.ACCOUNT_ID) != s3store.ACCOUNT_ID:
        raise _Fallback
    if not math.isinf(moto_settings.INITIAL_NO_AUTH_ACTION_COUNT):
        raise _Fallback
    if recorder._user_enabled:
        raise _Fallback


def _bucket_and_key(environ: WSGIEnviron) -> tuple[str, str]:
    # moto parses the undecoded request target (werkzeug's RAW_URI; the router copies waitress's REQUEST_URI
    # there): the bucket from the raw path, the key from the percent-decoded one.
    raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    raw_path = raw.split("?", 1)[0]
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        raise _Fallback
    bucket_name, _, raw_key = raw_path[1:].partition("/")
    if not bucket_name or not raw_key or "%" in bucket_name:
        raise _Fallback
    key_name = "/".join(unquote(raw_path).split("/")[2:])
    # moto's URL map sends only /bucket/key-with-at-least-one-character to its key handler.
    if not re.fullmatch(r"/[^/]+/.+", environ.get("PATH_INFO", ""), re.DOTALL):
        raise _Fallback
    return bucket_name, key_name


def _key(bucket_name: str, key_name: str) -> Any:
    backend = s3store.backend()
    bucket = backend.buckets.get(bucket_name)
    if bucket is None or bucket.policy is not None or bucket.logging:
        raise _Fallback
    # backend.get_object, as moto's handler calls it: it also advances the key's restore state.
    key = backend.get_object(bucket_name, key_name)
    if not isinstance(key, FakeKey) or key.storage_class in ARCHIVE_STORAGE_CLASSES:
        raise _Fallback
    return key


def _answer(key: Any, range_header: str, *, checksum: bool) -> Answer:
    with key.lock:
        # FakeKey.etag reads the buffer without the key's lock the first time; under it, that read cannot
        # interleave with another reader's seek.
        key.etag  # noqa: B018
    # The headers moto's S3Response.get_object and _send_response put on a 200.
    headers: dict[str, str] = {}
    if key.version_id != "null":
        headers["x-amz-version-id"] = key.version_id
    headers.update(key.response_dict)
    if checksum and key.checksum_algorithm:
        value = key.checksum_value
        if key.checksum_type == "COMPOSITE":
            value = f"{value}-{key.checksum_parts}"
        headers[f"x-amz-checksum-{key.checksum_algorithm.lower()}"] = value
        if key.checksum_type:
            headers["x-amz-checksum-type"] = key.checksum_type
    headers.update(key.metadata)
    headers["Accept-Ranges"] = "bytes"
    size = int(key.size)
    gen_amzn_requestid_long(headers)
    if not any(name.lower() == "content-type" for name in headers):
        # moto adds XML's type to a non-empty body; Flask its own default to an empty one.
        headers["content-type"] = (
            "application/xml" if size else "text/html; charset=utf-8"
        )
    if not range_header:
        return _respond(200, headers, _read(key, 0, size, size))
    begin, end = _range(range_header, size)
    if begin is None:
        return _invalid_range(range_header, size)
    if begin or end < size - 1:
        # S3 sends no whole-object checksum with a part of it.
        for name in [
            h for h in headers if h.lower().startswith(CHECKSUM_HEADER_PREFIX)
        ]:
            del headers[name]
    body = _read(key, begin, end - begin + 1, size)
    headers["content-range"] = f"bytes {begin}-{end}/{size}"
    return _respond(206, headers, body)


def _range(header: str, size: int) -> tuple[int | None, int]:
    """(first, last) byte of a satisfiable range, (None, 0) for one that starts past the end; moto's rules."""
    found = RANGE_RE.fullmatch(header)
    if found is None:
        raise _Fallback  # several ranges, another unit, garbage: moto answers (often with the whole object)
    first = int(found.group(1)) if found.group(1) else None
    last = int(found.group(2)) if found.group(2) else None
    final = size - 1
    if (first is None and last == 0) or (first is not None and first > final):
        return None, 0
    if first is not None:
        last = final if last is None else min(last, final)
    elif last is not None:  # a suffix: the last N bytes
        first = size - min(last, size)
        last = final
    else:
        raise _Fallback  # "bytes=-": moto ignores the range
    if first > last:
        raise _Fallback  # "bytes=5-3", or a suffix of an empty object: moto ignores the range
    return first, last


def _read(key: Any, start: int, length: int, size: int) -> bytes:
    # moto keeps the bytes in a SpooledTemporaryFile guarded by the key's lock (as s3store.ObjectReader reads
    # them); its `value` property would copy the whole object.
    try:
        with key.lock:
            if int(key.size) != size:
                raise _Fallback  # rewritten since the headers were built
            key._value_buffer.seek(start)
            data = key._value_buffer.read(length)
    except ValueError as exc:
        raise _Fallback from exc  # overwritten and disposed of meanwhile: moto looks the key up again
    if not isinstance(data, bytes) or len(data) != length:
        raise _Fallback
    return data


def _respond(status: int, headers: dict[str, str], body: bytes) -> Answer:
    headers["content-length"] = str(len(body))
    return Answer(status, _with_cors(list(headers.items())), body)


def _invalid_range(range_header: str, size: int) -> Answer:
    # Byte for byte what moto serialises for its InvalidRange error (RequestId and HostId included).
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f"<Error><Code>InvalidRange</Code><Message>{INVALID_RANGE_MESSAGE}</Message>"
        f"<ActualObjectSize>{size}</ActualObjectSize><RangeRequested>{_xml(range_header)}</RangeRequested>"
        f"<RequestId>request-id</RequestId><HostId>{S3Serializer.DEFAULT_HOST_ID}</HostId></Error>"
    ).encode()
    headers = [
        ("server", "amazon.com"),
        ("Content-Type", "application/xml"),
        ("Content-Length", str(len(body))),
    ]
    return Answer(416, _with_cors(headers), body)


def _with_cors(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # moto's server wraps its app in flask-cors, which allows every origin unless MOTO_DISABLE_GLOBAL_CORS.
    if not moto_settings.DISABLE_GLOBAL_CORS:
        headers.append(("Access-Control-Allow-Origin", "*"))
    return headers


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
