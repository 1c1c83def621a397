"""What the view modules share: the htmx request type, object lookups with their permission, CSV streaming."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_vary_headers
from django_htmx.middleware import HtmxDetails

from imports.dicom.patient import ValueMask
from imports.forms import BoundedIntegerField
from imports.mappings.csvfile import FORMULA_STARTS
from imports.models import ImportJob, Scan
from imports.scanning.lookup import patient_mask
from imports.validators import split_s3_uri


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (django-stubs pattern)."""

    htmx: HtmxDetails


View = TypeVar("View", bound=Callable[..., HttpResponseBase])

# How an htmx form hears "no": a change refused for what was sent answers REFUSED with the form's own fragment
# (the reasons next to the fields, the values as typed); one refused because the draft or file changed since the
# page was loaded answers CONFLICT with the newer state. htmx 2 swaps no 4xx by default: base.html's htmx-config
# swaps these two into the request's target like a 200, and django-htmx's DEBUG handler, which replaces the
# page for a 400, 403, 404 or 500, leaves them alone. A plain 400 stays what it was: a request the page did not
# send as it is (a missing field, too many rows), not a refusal to show in place.
REFUSED = 422
CONFLICT = 409


def permission_required(permission: str) -> Callable[[View], View]:
    """Django's permission_required(raise_exception=True), with the permission named in the refusal.

    The 403 page (imports.views.errors) reads it to say which role is needed, and the log line to
    say what was refused.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(
            request: HttpRequest, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            if not request.user.has_perm(permission):
                raise PermissionDenied(permission)
            return view(request, *args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def render_page(
    request: HtmxHttpRequest,
    template: str,
    fragment: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HttpResponse:
    """The page, or only its `fragment` for an htmx swap.

    A history restore (Back to a page htmx no longer has in its cache) is an htmx request too, but
    it replaces the whole body, so it gets the whole page. Vary keeps a browser cache from handing
    the fragment back for a full page load of the same URL.
    """
    wants_fragment = bool(request.htmx) and not request.htmx.history_restore_request
    response = render(
        request,
        f"{template}#{fragment}" if wants_fragment else template,
        context,
        status=status,
    )
    patch_vary_headers(response, ("HX-Request", "HX-History-Restore-Request"))
    return response


def filters_query(request: HttpRequest) -> str:
    """The request's query string without its page number, for the links to other pages."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# Pages of a list: beyond the last one, the paginator shows the last.
MAX_PAGE = 1_000_000
_PAGE = BoundedIntegerField(required=False, max_value=MAX_PAGE)


def page_number(request: HttpRequest, name: str = "page") -> int:
    """The page a link asks for (?page=), cleaned by the bounded field; 1 when missing or malformed, since a
    list never refuses its own links (an edited ?page=² opens the first page)."""
    try:
        return _PAGE.clean(request.GET.get(name)) or 1
    except ValidationError:
        return 1


def get_scan_for_user(request: HttpRequest, pk: int) -> Scan:
    """The scan, for a user whose role may see scans.

    One rule for every object lookup (scans, drafts): the role is checked first, so a refusal is a 403
    that names the role and never tells whether the object exists; a missing object is a 404. Scans and
    drafts belong to the team, not to whoever started them: any Operator may work on any of them, and
    the audit trail says who did what.
    """
    if not request.user.has_perm("imports.view_scan"):
        raise PermissionDenied("Viewing scans needs the Viewer role.")
    return get_object_or_404(Scan.objects.select_related("datastore"), pk=pk)


def get_job_for_user(request: HttpRequest, pk: int) -> ImportJob:
    if not request.user.has_perm("imports.view_importjob"):
        raise PermissionDenied("imports.view_importjob")
    return get_object_or_404(
        ImportJob.objects.select_related("datastore", "submitted_by"), pk=pk
    )


def get_job_status_for_user(request: HttpRequest, pk: int) -> ImportJob:
    """The job as its polled status fragment needs it, without the stored request and image sets.

    Everyone watching a job asks for the fragment every 2 s, and a large job's request holds thousands of
    mappings: loading it would parse that JSON on every poll for nothing the fragment shows.
    """
    if not request.user.has_perm("imports.view_importjob"):
        raise PermissionDenied("imports.view_importjob")
    return get_object_or_404(
        ImportJob.objects.select_related("datastore").defer("request", "image_sets"),
        pk=pk,
    )


def default_region() -> str:
    return str(settings.AWS_DEFAULT_REGION)


class _Echo:
    """A file whose write() hands the line back, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: S3 keys, DICOM values and user names are attacker-controlled.

    A text cell starting with a formula character gets a leading single quote, which spreadsheets
    treat as "this is text" and do not display. Quotes already in front of one are counted too, so
    that the mappings CSV reader can undo exactly one (imports.mappings.csvfile.csv_unguard) and a path
    survives export and re-import. Numbers are left alone (a negative size is a number).
    """
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_response(
    filename: str, header: list[str], rows: Iterable[Iterable[Any]]
) -> StreamingHttpResponse:
    """Rows as a CSV download, streamed so that its size does not matter; no cell is a formula."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([csv_cell(cell) for cell in header])
        for row in rows:
            yield writer.writerow([csv_cell(cell) for cell in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def key_mask(request: HttpRequest, uri: str) -> ValueMask:
    """How keys under `uri` are shown to this user: with the patient names and IDs the scans found there masked
    for those who may not reveal patient details (viewers), unchanged for the others."""
    if not uri or request.user.has_perm("imports.reveal_phi"):
        return ValueMask()
    bucket, prefix = split_s3_uri(uri)
    return patient_mask(bucket=bucket, prefix=prefix)
