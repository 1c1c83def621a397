"""Reading one S3 object version for a scan: a DICOM header with ranged GETs, or a JSON metadata file.

Runs in the scan's thread pool, so nothing here touches the database: each read returns an unsaved
ObjectHeader, and the pipeline (imports.scanning.run) writes them in batches. A transient S3 failure
(throttling, 5xx, timeouts, no connection) is not a result: it comes back as a TransientFailure and
the pipeline reads the object again later.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from django.conf import settings
from django.db.models import CharField

from imports.aws import client as aws
from imports.dicom.fast import read_header_fast
from imports.dicom.header_read import HeaderRead
from imports.dicom.json_model import validate_dicom_json
from imports.dicom.sniff import sniff_kind
from imports.dicom.uids import IMPORT_UID_MAX_LENGTH
from imports.models import ObjectHeader
from imports.phi_logging import phi_remember

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransientFailure:
    """S3 did not answer this time; says nothing about the object, so it is never recorded as its result."""

    obj: aws.S3Object
    error: aws.AwsError


class FirstReadSizes:
    """How many bytes to fetch first, learnt per folder from the headers read there.

    Files of one series sit in one folder and have headers of nearly the same length, so after a
    few reads each object of the folder costs one ranged GET of little more than its header. A
    folder starts at the configured size; a sample is a header whose length the reader saw.
    """

    SAMPLES = 16
    FOLDERS = 1000
    STEP = 8 * 1024
    CEILING = 1024 * 1024

    def __init__(self, default: int) -> None:
        self.default = default
        self.samples: dict[str, deque[int]] = {}

    def size_for(self, key: str) -> int:
        samples = self.samples.get(key.rpartition("/")[0])
        if not samples:
            return self.default
        # A quarter more than the median header, in whole steps: small enough to stay near
        # the header, large enough that the folder's slightly longer headers still fit.
        median = sorted(samples)[len(samples) // 2]
        return min(
            self.CEILING, max(self.STEP, -(-(median * 5 // 4) // self.STEP) * self.STEP)
        )

    def observe(self, header: ObjectHeader) -> None:
        if (
            header.kind != ObjectHeader.Kind.DICOM
            or header.status != ObjectHeader.Status.OK
        ):
            return
        if header.header_length is None:
            return
        folder = header.key.rpartition("/")[0]
        if folder not in self.samples and len(self.samples) >= self.FOLDERS:
            self.samples.pop(
                next(iter(self.samples))
            )  # forget the oldest folder: memory stays flat
        self.samples.setdefault(folder, deque(maxlen=self.SAMPLES)).append(
            header.header_length
        )


def read_object(
    region: str, bucket: str, obj: aws.S3Object, first_read: int | None = None
) -> ObjectHeader | TransientFailure:
    """Read what the scan needs from one object version. Never raises: problems become the status.

    Any exception, including one nobody foresaw, becomes this object's recorded reason, so one odd
    file cannot stop a scan.
    """
    try:
        return _read(region, bucket, obj, first_read)
    except aws.AwsError as error:
        return _s3_answer(bucket, obj, error)
    except Exception as error:
        # Logged without the key or the message, which may quote file content or a patient's name.
        logger.exception(
            "Reading one object failed unexpectedly (%s)", type(error).__name__
        )
        return _unexpected(bucket, obj, error)


def _s3_answer(
    bucket: str, obj: aws.S3Object, error: aws.AwsError
) -> ObjectHeader | TransientFailure:
    if error.transient:
        return TransientFailure(obj=obj, error=error)
    # A permanent answer about this object (AccessDenied, a key deleted since the listing): this
    # scan's result, but about access rather than content, so a later scan asks again.
    kind = sniff_kind(obj.key, b"")
    return ObjectHeader(
        bucket=bucket,
        key=obj.key,
        etag=obj.etag,
        size=obj.size,
        kind=kind,
        status=ObjectHeader.Status.UNREADABLE,
        error=str(error),
        reusable=False,
    )


def _unexpected(bucket: str, obj: aws.S3Object, error: Exception) -> ObjectHeader:
    kind = sniff_kind(obj.key, b"")
    reason = f"The file could not be checked: {type(error).__name__}."
    return ObjectHeader(
        bucket=bucket,
        key=obj.key,
        etag=obj.etag,
        size=obj.size,
        kind=kind,
        status=ObjectHeader.Status.JSON_INVALID
        if kind == "json"
        else ObjectHeader.Status.UNREADABLE,
        error=reason,
        # Perhaps our failing rather than the file's: a later scan (and a fixed reader) tries again.
        reusable=False,
    )


def _read(
    region: str, bucket: str, obj: aws.S3Object, first_read: int | None
) -> ObjectHeader:
    header = ObjectHeader(bucket=bucket, key=obj.key, etag=obj.etag, size=obj.size)
    name_kind = sniff_kind(obj.key, b"")
    if obj.size == 0:
        header.kind = name_kind
        header.status = (
            ObjectHeader.Status.UNREADABLE
            if name_kind != "json"
            else ObjectHeader.Status.JSON_INVALID
        )
        header.error = "0-byte object"
        return header
    if name_kind == "json":
        return _read_json(region, bucket, obj, header, head=b"")
    first_bytes: list[bytes] = []

    def fetch(start: int, end: int) -> bytes:
        data = aws.s3_get_range(
            region=region, bucket=bucket, key=obj.key, start=start, end=end
        )
        if start == 0 and not first_bytes:
            first_bytes.append(data)
        return data

    # read_header_fast lets fetch's AwsErrors through (read_object sorts them), so an S3 failure is
    # never taken for a bad file.
    result = read_header_fast(
        fetch,
        size=obj.size,
        first_read=first_read or settings.SCAN_FIRST_READ_BYTES,
    )
    head = first_bytes[0] if first_bytes else b""
    if (
        result.status == "not_dicom"
        and name_kind == "other"
        and sniff_kind(obj.key, head) == "json"
    ):
        return _read_json(
            region, bucket, obj, header, head=head, requests=result.requests
        )
    _apply_header(header, result, name_kind)
    return header


_UID_ATTRIBUTES = (
    ("transfer_syntax_uid", "TransferSyntaxUID"),
    ("sop_class_uid", "SOPClassUID"),
    ("sop_instance_uid", "SOPInstanceUID"),
    ("study_instance_uid", "StudyInstanceUID"),
    ("series_instance_uid", "SeriesInstanceUID"),
)


def _apply_header(header: ObjectHeader, result: HeaderRead, name_kind: str) -> None:
    header.requests = result.requests
    header.bytes_read = result.bytes_read
    header.header_length = result.header_length
    if result.status == "not_dicom":
        header.kind = (
            ObjectHeader.Kind.OTHER if name_kind != "dicom" else ObjectHeader.Kind.DICOM
        )
        header.status = ObjectHeader.Status.NOT_DICOM
        header.error = result.error
        return
    header.kind = ObjectHeader.Kind.DICOM
    header.status = (
        ObjectHeader.Status.OK
        if result.status == "ok"
        else ObjectHeader.Status.UNREADABLE
    )
    header.error = result.error
    missing = [
        name
        for name, value in (
            ("TransferSyntaxUID", result.transfer_syntax_uid),
            ("SOPInstanceUID", result.sop_instance_uid),
            ("StudyInstanceUID", result.study_instance_uid),
            ("SeriesInstanceUID", result.series_instance_uid),
        )
        if not value
    ]
    if header.status == ObjectHeader.Status.OK and missing:
        # HealthImaging rejects such files; say so now rather than after the import.
        header.status = ObjectHeader.Status.UNREADABLE
        header.error = (
            f"Missing {', '.join(missing)}: HealthImaging rejects files without it."
        )
    for attname, keyword in _UID_ATTRIBUTES:
        value = getattr(result, attname) or ""
        field = ObjectHeader._meta.get_field(attname)
        assert isinstance(field, CharField)
        limit = field.max_length or 0
        if len(value) > limit:
            # A UID HealthImaging cannot import is the file's reason, never a row too long for its column.
            if header.status == ObjectHeader.Status.OK:
                header.status = ObjectHeader.Status.UNREADABLE
                header.error = f"{keyword} is {len(value):,} characters long; " + (
                    f"HealthImaging imports at most {limit}."
                    if limit == IMPORT_UID_MAX_LENGTH
                    else f"a registered UID has at most {limit}."
                )
            value = ""
        setattr(header, attname, value)
    header.patient_name = result.patient_name or ""
    header.patient_id = result.patient_id or ""
    # From now on this process's logs redact them wherever they appear (a key named after the patient).
    phi_remember((result.patient_name, result.patient_id))
    header.study_date = result.study_date or ""
    header.study_description = result.study_description or ""
    header.accession_number = result.accession_number or ""
    header.modality = result.modality or ""
    header.series_number = result.series_number
    header.series_description = result.series_description or ""
    header.instance_number = result.instance_number


def _read_json(
    region: str,
    bucket: str,
    obj: aws.S3Object,
    header: ObjectHeader,
    *,
    head: bytes,
    requests: int = 0,
) -> ObjectHeader:
    header.kind = ObjectHeader.Kind.JSON
    limit = settings.SCAN_JSON_MAX_BYTES
    if obj.size > limit:
        header.status = ObjectHeader.Status.JSON_INVALID
        header.error = (
            f"The file is {obj.size:,} bytes; metadata files over {limit:,} bytes are not read "
            "(a DICOM JSON header override is a few kilobytes)."
        )
        header.requests = requests
        return header
    data = (
        head
        if len(head) >= obj.size
        else aws.s3_get_range(
            region=region, bucket=bucket, key=obj.key, start=0, end=obj.size - 1
        )
    )
    header.requests = requests + (0 if len(head) >= obj.size else 1)
    header.bytes_read = len(data) + (len(head) if len(head) < obj.size else 0)
    check = validate_dicom_json(data, max_bytes=limit)
    header.status = (
        ObjectHeader.Status.JSON_VALID
        if check.is_valid
        else ObjectHeader.Status.JSON_INVALID
    )
    header.json_study_uids = sorted(check.study_uids)
    header.json_series_uids = sorted(check.series_uids)
    header.json_document = check.document
    header.json_errors = [
        {"path": issue.path, "message": issue.message} for issue in check.errors[:50]
    ]
    header.error = check.errors[0].message if check.errors else ""
    return header
