"""Browsing S3: one folder page at a time, each object with its kind, and what to say when S3 refuses."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from imports.aws import client as aws
from imports.dicom.sniff import sniff_kind
from imports.models import ObjectHeader
from imports.storable_text import text_storable
from imports.validators import split_s3_uri


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


class ListingRefused(Exception):
    """S3 refused or failed the listing; the message says why, for the person who asked."""


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
    """One page of a folder listing, each object with its kind; ListingRefused when S3 says no.

    The name tells the kind of most objects; a scanned object's kind is known from the scan cache;
    only the rest cost a small ranged GET, in parallel, and only for the entries shown.
    """
    try:
        page = aws.s3_list_page(
            region=region, bucket=bucket, prefix=prefix, token=token, max_keys=page_size
        )
    except aws.AwsError as error:
        raise ListingRefused(
            s3_problem(
                uri=f"s3://{bucket}/{prefix}", error=error, needs="s3:ListBucket"
            )
        ) from error
    objects = [obj for obj in page.objects if obj.key != prefix]
    kinds: dict[str, str] = {}
    unknown: list[aws.S3Object] = []
    scanned = {
        (key, etag): kind
        for key, etag, kind in ObjectHeader.objects.filter(
            # A key no column can hold (a NUL) is never in the cache, and cannot even be asked for.
            bucket=bucket,
            key__in=[o.key for o in objects if text_storable(o.key) == o.key],
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
