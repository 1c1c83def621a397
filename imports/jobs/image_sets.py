"""The image sets a job made, a page at a time, each named by the study and series it holds.

HealthImaging's success lines name an image set per file; the scan knows which study and series each
file belongs to. So one file per image set, its header, and its series row name the set: three
queries a page, whatever the number of image sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Min

from imports.models import ImportJob, ImportJobResult, ObjectHeader, ScanSeries

PAGE_SIZE = 50


@dataclass(frozen=True)
class ImageSetRow:
    image_set_id: str
    version: int | None
    is_primary: bool | None
    sop_instances: int | None
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""


def job_image_sets_page(
    *, job: ImportJob, page: Any
) -> tuple[Page[Any], list[ImageSetRow]]:
    """The page `page` of the job's image sets (Paginator's rules: a bad number gives the first or last)."""
    sets = Paginator(list(job.image_sets or []), PAGE_SIZE).get_page(page)
    ids = [s.get("imageSetId", "") for s in sets]
    first_file = dict(
        ImportJobResult.objects.filter(job=job, image_set_id__in=ids)
        .exclude(input_file="")
        .values("image_set_id")
        .annotate(first=Min("input_file"))
        .values_list("image_set_id", "first")
    )
    where = {
        key: (study, series)
        for key, study, series in ObjectHeader.objects.filter(
            bucket=job.input_bucket, key__in=set(first_file.values())
        ).values_list("key", "study_instance_uid", "series_instance_uid")
    }
    series_uids = {series for _, series in where.values() if series}
    described: dict[str, tuple[int | None, str, str]] = {}
    # The newest scan's row wins where several scans saw the series.
    for uid, number, description, modality in (
        ScanSeries.objects.filter(series_instance_uid__in=series_uids)
        .order_by("-study__scan_id")
        .values_list(
            "series_instance_uid", "series_number", "series_description", "modality"
        )
    ):
        described.setdefault(uid, (number, description, modality))
    rows = []
    for image_set in sets:
        study, series = where.get(
            first_file.get(image_set.get("imageSetId", ""), ""), ("", "")
        )
        number, description, modality = described.get(series, (None, "", ""))
        rows.append(
            ImageSetRow(
                image_set_id=image_set.get("imageSetId", ""),
                version=image_set.get("imageSetVersion"),
                is_primary=image_set.get("isPrimary"),
                sop_instances=image_set.get("numberOfMatchedSOPInstances"),
                study_instance_uid=study,
                series_instance_uid=series,
                series_number=number,
                series_description=description,
                modality=modality,
            )
        )
    return sets, rows
