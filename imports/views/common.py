"""What the view modules share: the htmx request type, object lookups with their permission, CSV streaming."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django_htmx.middleware import HtmxDetails

from imports.models import ImportJob, Scan


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (django-stubs pattern)."""

    htmx: HtmxDetails


def filters_query(request: HttpRequest) -> str:
    """The request's query string without its page number, for the links to other pages."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def get_scan_for_user(request: HttpRequest, pk: int) -> Scan:
    if not request.user.has_perm("imports.view_scan"):
        raise Http404
    return get_object_or_404(Scan.objects.select_related("datastore"), pk=pk)


def get_job_for_user(request: HttpRequest, pk: int) -> ImportJob:
    if not request.user.has_perm("imports.view_importjob"):
        raise Http404
    return get_object_or_404(
        ImportJob.objects.select_related("datastore", "submitted_by"), pk=pk
    )


def default_region() -> str:
    return str(settings.AWS_DEFAULT_REGION)


class _Echo:
    """A file whose write() hands the line back, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_response(
    filename: str, header: list[str], rows: Iterable[Iterable[Any]]
) -> StreamingHttpResponse:
    """Rows as a CSV download, streamed so that its size does not matter."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
