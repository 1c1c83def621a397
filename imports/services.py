"""Business rules. Views, admin actions, management commands and tasks call these functions."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db import transaction

from imports import aws
from imports.audit import audit_record
from imports.dicom import sniff_kind
from imports.models import AuditEvent, Datastore, ObjectHeader, Scan
from imports.validators import split_s3_uri

Actor = AbstractBaseUser | AnonymousUser | None


# --- Datastores -----------------------------------------------------------------------------


def datastore_create(*, actor: Actor, **fields: Any) -> Datastore:
    """Validate and save a datastore. Raises ValidationError naming each bad field; saves nothing then."""
    datastore = Datastore(**fields)
    datastore.full_clean()
    with transaction.atomic():
        datastore.save()
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DATASTORE_CREATED,
            target=datastore,
            summary=f"Created datastore “{datastore.name}” ({datastore.region}/{datastore.datastore_id})",
        )
    return datastore


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str


def datastore_check_connection(
    *, datastore: Datastore, actor: Actor
) -> list[CheckResult]:
    """Check, with the dashboard's credentials, what an import into this datastore will need.

    1. GetDatastore answers and the datastore is ACTIVE (StartDICOMImportJob needs ACTIVE).
    2. The input prefix can be listed (browsing and scanning need s3:ListBucket).
    3. A marker object can be written then deleted under the output prefix (job results land there).
    Every outcome is a sentence; nothing here raises for an AWS failure.
    """
    results = [
        _check_datastore_active(datastore),
        _check_input_listable(datastore),
        _check_output_writable(datastore),
    ]
    audit_record(
        actor=actor,
        action=AuditEvent.Action.DATASTORE_CHECKED,
        target=datastore,
        summary=f"Checked connection of “{datastore.name}”: "
        + ("all checks passed" if all(r.ok for r in results) else "problems found"),
        details={
            "results": [
                {"name": r.name, "ok": r.ok, "message": r.message} for r in results
            ]
        },
    )
    return results


def _check_datastore_active(datastore: Datastore) -> CheckResult:
    name = "Datastore"
    try:
        info = aws.datastore_describe(
            region=datastore.region, datastore_id=datastore.datastore_id
        )
    except aws.NotFound:
        return CheckResult(
            name,
            False,
            f"There is no datastore {datastore.datastore_id} in {datastore.region}: check the ID and the region.",
        )
    except aws.AccessDenied as error:
        return CheckResult(
            name,
            False,
            f"The dashboard may not call medical-imaging:GetDatastore ({error.code}): {error}",
        )
    except aws.AwsError as error:
        return CheckResult(name, False, f"HealthImaging did not answer: {error}")
    if info.status != "ACTIVE":
        return CheckResult(
            name,
            False,
            f"Datastore “{info.name}” is {info.status}; imports need it to be ACTIVE.",
        )
    return CheckResult(name, True, f"Datastore “{info.name}” is ACTIVE.")


def _check_input_listable(datastore: Datastore) -> CheckResult:
    name = "Input prefix"
    bucket, prefix = split_s3_uri(datastore.input_s3_uri)
    try:
        page = aws.s3_list_page(
            region=datastore.region, bucket=bucket, prefix=prefix, max_keys=1
        )
    except aws.AwsError as error:
        return _s3_check_failed(name, "list", datastore.input_s3_uri, error)
    if not page.objects and not page.folders:
        return CheckResult(
            name, True, f"{datastore.input_s3_uri} can be listed; it is empty for now."
        )
    return CheckResult(name, True, f"{datastore.input_s3_uri} can be listed.")


def _check_output_writable(datastore: Datastore) -> CheckResult:
    name = "Output prefix"
    bucket, prefix = split_s3_uri(datastore.output_s3_uri)
    key = f"{prefix}.dashboard-connection-check-{uuid.uuid4().hex}"
    try:
        aws.s3_put_object(
            region=datastore.region,
            bucket=bucket,
            key=key,
            body=b"connection check\n",
            content_type="text/plain",
        )
    except aws.AwsError as error:
        return _s3_check_failed(name, "write to", datastore.output_s3_uri, error)
    try:
        aws.s3_delete_object(region=datastore.region, bucket=bucket, key=key)
    except aws.AwsError as error:
        return CheckResult(
            name,
            False,
            f"The dashboard wrote s3://{bucket}/{key} but cannot delete it ({error.code}); delete it by hand.",
        )
    return CheckResult(
        name,
        True,
        f"{datastore.output_s3_uri} is writable (a test object was written and deleted).",
    )


def _s3_check_failed(
    name: str, verb: str, uri: str, error: aws.AwsError
) -> CheckResult:
    if isinstance(error, aws.AccessDenied):
        return CheckResult(
            name, False, f"The dashboard cannot {verb} {uri}: {error.code}."
        )
    if isinstance(error, aws.NotFound):
        bucket, _ = split_s3_uri(uri)
        return CheckResult(
            name, False, f"Bucket “{bucket}” does not exist ({error.code})."
        )
    return CheckResult(name, False, f"S3 did not answer: {error}")


def s3_problem(*, uri: str, error: aws.AwsError, needs: str) -> str:
    """What went wrong reading an S3 prefix, for the person who typed or chose it."""
    if isinstance(error, aws.NotFound) and error.code == "NoSuchBucket":
        bucket, _ = split_s3_uri(uri)
        return f"Bucket “{bucket}” does not exist."
    if isinstance(error, aws.AccessDenied):
        return (
            f"The dashboard may not read {uri} ({error.code}): it needs {needs} there."
        )
    return f"S3 did not answer: {error}"


# --- Browsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrowseEntry:
    key: str
    name: str
    size: int
    last_modified: Any
    kind: str


@dataclass(frozen=True)
class BrowsePage:
    bucket: str
    prefix: str
    folders: list[tuple[str, str]]  # (prefix, display name)
    entries: list[BrowseEntry]
    next_token: str | None


# Bytes enough to tell DICOM (preamble + "DICM", or a bare dataset) and JSON apart.
SNIFF_BYTES = 512
SNIFF_CACHE_SECONDS = 24 * 60 * 60


def s3_browse(
    *, region: str, bucket: str, prefix: str, token: str | None, page_size: int = 1000
) -> BrowsePage:
    """One page of a folder listing, each object with its kind.

    The name tells the kind of most objects; a scanned object's kind is known from the scan cache;
    only the rest cost a small ranged GET, in parallel, and only for the entries shown.
    """
    page = aws.s3_list_page(
        region=region, bucket=bucket, prefix=prefix, token=token, max_keys=page_size
    )
    objects = [obj for obj in page.objects if obj.key != prefix]
    kinds: dict[str, str] = {}
    unknown: list[aws.S3Object] = []
    scanned = {
        (key, etag): kind
        for key, etag, kind in ObjectHeader.objects.filter(
            bucket=bucket, key__in=[o.key for o in objects]
        ).values_list("key", "etag", "kind")
    }
    sniffed = cache.get_many([_sniff_cache_key(bucket, o) for o in objects])
    for obj in objects:
        by_name = sniff_kind(obj.key, b"")
        known = scanned.get((obj.key, obj.etag)) or sniffed.get(
            _sniff_cache_key(bucket, obj)
        )
        if by_name != "other":
            kinds[obj.key] = by_name
        elif known:
            kinds[obj.key] = known
        elif obj.size == 0:
            kinds[obj.key] = "other"
        else:
            unknown.append(obj)
    if unknown:
        with ThreadPoolExecutor(max_workers=settings.SCAN_THREADS) as pool:
            found = list(pool.map(lambda o: _sniff(region, bucket, o), unknown))
        kinds.update((obj.key, kind) for obj, kind in zip(unknown, found, strict=True))
        # Remembered per object version, so paging back and forth costs no second GET.
        cache.set_many(
            {
                _sniff_cache_key(bucket, o): kind
                for o, kind in zip(unknown, found, strict=True)
                if kind != "unknown"
            },
            timeout=SNIFF_CACHE_SECONDS,
        )
    return BrowsePage(
        bucket=bucket,
        prefix=prefix,
        folders=[(folder, folder[len(prefix) :]) for folder in page.folders],
        entries=[
            BrowseEntry(
                key=obj.key,
                name=obj.key[len(prefix) :],
                size=obj.size,
                last_modified=obj.last_modified,
                kind=kinds[obj.key],
            )
            for obj in objects
        ],
        next_token=page.next_token,
    )


def _sniff_cache_key(bucket: str, obj: aws.S3Object) -> str:
    digest = hashlib.sha256(f"{bucket}/{obj.key}".encode()).hexdigest()
    return f"sniff:{digest}:{obj.etag}"


def _sniff(region: str, bucket: str, obj: aws.S3Object) -> str:
    try:
        head = aws.s3_get_range(
            region=region, bucket=bucket, key=obj.key, start=0, end=SNIFF_BYTES - 1
        )
    except aws.AwsError:
        return "unknown"
    return sniff_kind(obj.key, head)


# --- Patient data ---------------------------------------------------------------------------


def phi_reveal(*, actor: Actor, scan: Scan) -> None:
    """Record that `actor` looked at the unmasked patient names and IDs of a scan."""
    audit_record(
        actor=actor,
        action=AuditEvent.Action.PHI_REVEALED,
        target=scan,
        summary=f"Revealed patient names and IDs in the scan of {scan.uri}",
    )
