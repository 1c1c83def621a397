"""A metadata file the dashboard just wrote under a scanned prefix, put into the scan as if the scan had read it.

The editor's saves and the corrections' writes use it, so that the scan stays current (its objects are what a listing
shows) and validation, the preview and the confirmation see the file without a rescan.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F

from imports.models import ObjectHeader, Scan, ScanObject


def scan_record_written(
    *,
    scan: Scan,
    bucket: str,
    key: str,
    etag: str,
    size: int,
    document: dict[str, Any],
    study_uids: list[str],
    series_uids: list[str],
) -> dict[str, Any] | None:
    """Put the file just written into the scan, as if the scan had read it; return the replaced version's document.

    The draft's index is its scan: validation, the preview and the confirmation's "is the prefix unchanged"
    listing all compare against the scan's objects. The dashboard wrote this object and checked it with the
    scan's own validator, so recording it is what rescanning that one object would do, without the GET.
    """
    header, _ = ObjectHeader.objects.update_or_create(
        bucket=bucket,
        key=key,
        etag=etag,
        reusable=True,
        defaults={
            "size": size,
            "kind": ObjectHeader.Kind.JSON,
            "status": ObjectHeader.Status.JSON_VALID,
            "error": "",
            "json_document": document,
            "json_study_uids": sorted(study_uids),
            "json_series_uids": sorted(series_uids),
            "json_errors": [],
        },
    )
    replaced = list(
        ScanObject.objects.filter(scan=scan, header__bucket=bucket, header__key=key)
        .exclude(header=header)
        .values_list("pk", "header__size", "header__json_document")
    )
    ScanObject.objects.filter(pk__in=[pk for pk, _, _ in replaced]).delete()
    _, created = ScanObject.objects.get_or_create(scan=scan, header=header)
    if replaced:
        Scan.objects.filter(pk=scan.pk).update(
            bytes_total=F("bytes_total") + size - replaced[0][1]
        )
        return replaced[0][2] or {}
    if created:
        Scan.objects.filter(pk=scan.pk).update(
            objects_listed=F("objects_listed") + 1,
            objects_done=F("objects_done") + 1,
            bytes_total=F("bytes_total") + size,
        )
    return None
