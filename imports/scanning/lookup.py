"""Which scan to compose against, whether it still describes the prefix, and what it knows for validation."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db.models import Q

from imports.audit.records import Actor
from imports.aws import client as aws
from imports.dicom.patient import ValueMask
from imports.mappings.rules import MetadataFile, PrefixIndex
from imports.models import Datastore, ObjectHeader, Scan, ScanSeries, ScanStudy
from imports.scanning import control
from imports.storable_text import text_storable


def index_for_prefix(
    *, actor: Actor, datastore: Datastore, bucket: str, prefix: str
) -> Scan:
    """The scan to compose against: a running one, the latest completed one if still current, or a new one."""
    running = Scan.objects.filter(
        bucket=bucket, prefix=prefix, status__in=Scan.ACTIVE
    ).first()
    if running is not None:
        return running
    latest = (
        Scan.objects.filter(bucket=bucket, prefix=prefix, status=Scan.Status.COMPLETED)
        .order_by("-finished_at", "-id")
        .first()
    )
    if latest is not None and _still_current(latest):
        return latest
    scan, _ = control.scan_start(
        actor=actor,
        bucket=bucket,
        prefix=prefix,
        region=datastore.region,
        datastore=datastore,
    )
    return scan


def _still_current(scan: Scan) -> bool:
    try:
        return scan_is_current(scan=scan)
    except aws.AwsError:
        # The prefix cannot be listed now. A new scan retries through an outage and ends with a plain reason
        # (access denied, no such bucket) that the composer shows, instead of this request failing.
        return False


def scan_is_current(*, scan: Scan) -> bool:
    """Whether a listing of the prefix shows exactly the object versions the scan found (LISTs only)."""
    listed: set[tuple[str, str]] = set()
    token: str | None = None
    while True:
        page = aws.s3_list_page(
            region=scan.region,
            bucket=scan.bucket,
            prefix=scan.prefix,
            delimiter=None,
            token=token,
        )
        listed.update(
            # As the scan stored it: a key with a NUL has U+FFFD in its place (scanning/storable.py).
            (text_storable(obj.key), obj.etag)
            for obj in page.objects
            # Zero-byte "folder/" keys are console placeholders; the scan skips them too.
            if not (obj.key.endswith("/") and obj.size == 0)
        )
        if page.next_token is None:
            break
        token = page.next_token
    scanned = set(ObjectHeader.objects.of_scan(scan).values_list("key", "etag"))
    return listed == scanned


# --- Patient values in keys ------------------------------------------------------------------


def patient_mask(*, bucket: str, prefix: str) -> ValueMask:
    """The patient names and IDs (every spelling) that scans of this prefix, of a folder under it or of a
    folder above it found, as a mask for keys and messages. One query over studies, not objects."""
    parts = prefix.split("/")[:-1]
    above = ["/".join(parts[:n]) + "/" if n else "" for n in range(len(parts))]
    studies = ScanStudy.objects.filter(scan__bucket=bucket).filter(
        Q(scan__prefix__startswith=prefix) | Q(scan__prefix__in=above)
    )
    values: list[str] = []
    for name, patient_id, variants in studies.values_list(
        "patient_name", "patient_id", "variants"
    ):
        values += [name, patient_id]
        for attribute in ("PatientName", "PatientID"):
            values += [str(v) for v in (variants or {}).get(attribute, []) if v]
    return ValueMask(values)


# --- The index, as validation sees it ------------------------------------------------------


def prefix_index(*, scan: Scan, datastore: Datastore | None = None) -> PrefixIndex:
    """What a completed scan knows, in the shape the validation rules take. Three queries.

    The job limits are those of `datastore` (the draft's) as they are now, else the scan's own
    (`Scan.file_limit`): a quota raised in the admin counts without a rescan.
    """
    studies: dict[str, set[str]] = {}
    for study_uid in ScanStudy.objects.filter(scan=scan).values_list(
        "study_instance_uid", flat=True
    ):
        studies[study_uid] = set()
    for study_uid, series_uid in ScanSeries.objects.filter(
        study__scan=scan
    ).values_list("study__study_instance_uid", "series_instance_uid"):
        studies.setdefault(study_uid, set()).add(series_uid)
    json_files = {}
    # Plain rows, not model instances: a prefix holds up to thousands of metadata files.
    for key, etag, size, status, error, json_errors, document in (
        ObjectHeader.objects.of_scan(scan)
        .filter(kind=ObjectHeader.Kind.JSON)
        .values_list(
            "key", "etag", "size", "status", "error", "json_errors", "json_document"
        )
    ):
        path = key[len(scan.prefix) :]
        json_files[path] = MetadataFile(
            path=path,
            etag=etag,
            size=size,
            valid=status == ObjectHeader.Status.JSON_VALID,
            errors=tuple(_json_error_lines(error, json_errors)),
            document=document,
        )
    return PrefixIndex(
        studies={uid: frozenset(series) for uid, series in studies.items()},
        json_files=json_files,
        file_count=scan.objects_listed,
        total_bytes=scan.bytes_total,
        folder_count=scan.folders,
        max_files=datastore.max_files_per_job if datastore else scan.file_limit,
        max_bytes=datastore.max_bytes_per_job if datastore else scan.byte_limit,
        max_folders=Scan.MAX_FOLDERS,
        json_max_bytes=settings.SCAN_JSON_MAX_BYTES,
    )


def _json_error_lines(error: str, json_errors: list[dict[str, str]]) -> Iterator[str]:
    if not json_errors:
        if error:
            yield error
        return
    for issue in json_errors:
        path, message = issue.get("path", ""), issue.get("message", "")
        yield f"{path}: {message}" if path else message
