"""Browsing an S3 folder."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from imports.forms import BrowseForm
from imports.models import Datastore, Scan
from imports.scanning import browse as browsing
from imports.views.common import (
    HtmxHttpRequest,
    default_region,
    page_number,
    permission_required,
    render_page,
)

BROWSE_TOKENS_SESSION_KEY = "browse_tokens"


@require_GET
@permission_required("imports.browse_datastore")
def browse(request: HtmxHttpRequest) -> HttpResponse:
    """A file-manager view of one S3 folder, one page of at most 1,000 entries at a time."""
    datastores = Datastore.objects.filter(enabled=True)
    data = request.GET.copy()
    if data.pop("open", None) == ["datastore"]:
        # The no-JavaScript "Open datastore" button: the datastore's input, not the URI still typed.
        data.pop("uri", None)
    if not data.get("datastore") and not data.get("uri") and len(datastores) == 1:
        data["datastore"] = str(datastores[0].pk)
    form = BrowseForm(data or None)
    context: dict[str, Any] = {"form": form, "datastores": datastores}
    if form.is_valid():
        datastore: Datastore | None = form.cleaned_data["datastore"]
        region = datastore.region if datastore else default_region()
        page, token = _page_token(request, form.cleaned_data["uri"])
        try:
            listing = browsing.s3_browse(
                region=region,
                bucket=form.cleaned_data["bucket"],
                prefix=form.cleaned_data["prefix"],
                token=token,
            )
        except browsing.ListingRefused as refusal:
            context["listing_error"] = str(refusal)
        else:
            _remember_token(
                request, form.cleaned_data["uri"], page + 1, listing.next_token
            )
            here = form.cleaned_data["uri"]
            # Show where we are in the URI field, so that it can be edited from there.
            form.data = {**data.dict(), "uri": here}
            context.update(
                listing=listing,
                page_number=page,
                breadcrumbs=[
                    (name, _browse_href(datastore, uri))
                    for name, uri in _breadcrumbs(listing.bucket, listing.prefix)
                ],
                folders=[
                    (name, _browse_href(datastore, f"s3://{listing.bucket}/{folder}"))
                    for folder, name in listing.folders
                ],
                previous_href=_browse_href(datastore, here, page - 1)
                if page > 1
                else None,
                next_href=_browse_href(datastore, here, page + 1)
                if listing.next_token
                else None,
                datastore=datastore,
                active_scan=Scan.objects.filter(
                    bucket=listing.bucket, prefix=listing.prefix, status__in=Scan.ACTIVE
                ).first(),
            )
    response = render_page(request, "imports/browse.html", "browser", context)
    if request.htmx and "listing" in context:
        # The address bar names the folder shown, in the same form as a link to it, whatever was
        # typed or chosen: a reload or a shared link then opens exactly this page.
        response["HX-Push-Url"] = _browse_href(
            context["datastore"], form.cleaned_data["uri"], context["page_number"]
        )
    return response


def _browse_href(datastore: Datastore | None, uri: str, page: int = 1) -> str:
    query: dict[str, str | int] = {"uri": uri}
    if datastore is not None:
        query = {"datastore": datastore.pk, **query}
    if page > 1:
        query["page"] = page
    return reverse("imports:browse") + "?" + urlencode(query)


def _page_token(request: HttpRequest, uri: str) -> tuple[int, str | None]:
    """The page asked for and its continuation token, remembered in the session.

    S3 pages only forward; to go back, the dashboard keeps the tokens it has handed out, for the
    folder being browsed only. A shared link to page 5 whose token this session never saw opens page 1.
    """
    page = page_number(request)
    remembered = request.session.get(BROWSE_TOKENS_SESSION_KEY, {})
    token = (
        remembered.get("tokens", {}).get(str(page))
        if remembered.get("uri") == uri
        else None
    )
    if page > 1 and token is None:
        return 1, None
    return page, token


def _remember_token(
    request: HttpRequest, uri: str, page_number: int, token: str | None
) -> None:
    if token is None:
        return
    remembered = request.session.get(BROWSE_TOKENS_SESSION_KEY, {})
    tokens = remembered.get("tokens", {}) if remembered.get("uri") == uri else {}
    request.session[BROWSE_TOKENS_SESSION_KEY] = {
        "uri": uri,
        "tokens": {**tokens, str(page_number): token},
    }


def _breadcrumbs(bucket: str, prefix: str) -> list[tuple[str, str]]:
    crumbs = [(bucket, f"s3://{bucket}/")]
    path = ""
    for part in [p for p in prefix.split("/") if p]:
        path += part + "/"
        crumbs.append((part, f"s3://{bucket}/{path}"))
    return crumbs
